/* Named parameter lists. */
#include <stdlib.h>
#include <string.h>

#include "nn/layers.h"

void nn_params_init(nn_params *p) { memset(p, 0, sizeof *p); }

nn_status nn_params_add(nn_params *p, const char *name, nn_tensor *t)
{
    if (p->count == p->capacity) {
        int cap = p->capacity ? 2 * p->capacity : 8;
        nn_tensor **ts = realloc(p->tensors, (size_t)cap * sizeof *ts);
        if (!ts) return NN_ERR_MEMORY;
        p->tensors = ts;
        char **ns = realloc(p->names, (size_t)cap * sizeof *ns);
        if (!ns) return NN_ERR_MEMORY;
        p->names = ns;
        p->capacity = cap;
    }
    size_t len = strlen(name) + 1;
    char *copy = malloc(len);
    if (!copy) return NN_ERR_MEMORY;
    memcpy(copy, name, len);
    p->names[p->count] = copy;
    p->tensors[p->count] = t;
    p->count++;
    return NN_OK;
}

nn_tensor *nn_params_find(const nn_params *p, const char *name)
{
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->names[i], name) == 0) return p->tensors[i];
    return NULL;
}

size_t nn_params_numel(const nn_params *p)
{
    size_t n = 0;
    for (int i = 0; i < p->count; i++) n += p->tensors[i]->size;
    return n;
}

void nn_params_free(nn_params *p)
{
    for (int i = 0; i < p->count; i++) free(p->names[i]);
    free(p->names);
    free(p->tensors);
    memset(p, 0, sizeof *p);
}
