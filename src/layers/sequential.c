/* A container applying its layers in order; children are named by index. */
#include <stdio.h>
#include <stdlib.h>

#include "nn/layers.h"
#include "layer_internal.h"

typedef struct sequential {
    nn_layer base;
    nn_layer **layers;
    int count, capacity;
} sequential;

static nn_tensor *seq_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    sequential *s = (sequential *)l;
    for (int i = 0; i < s->count && x; i++) {
        if (i + 1 < s->count && nn__is_conv_layer(s->layers[i]) && nn__is_relu_layer(s->layers[i + 1])) {
            x = nn__conv_layer_forward(s->layers[i], g, x, 1);
            i++; /* the ReLU ran inside the convolution */
            continue;
        }
        x = nn_layer_forward(s->layers[i], g, x);
    }
    return x;
}

static nn_status seq_params(nn_layer *l, const char *prefix, nn_params *out)
{
    sequential *s = (sequential *)l;
    for (int i = 0; i < s->count; i++) {
        nn_layer *child = s->layers[i];
        if (!child->vt->collect_params) continue;
        char p[256];
        snprintf(p, sizeof p, "%s%d.", prefix, i);
        nn_status st = child->vt->collect_params(child, p, out);
        if (st) return st;
    }
    return NN_OK;
}

static void seq_set_training(nn_layer *l, int training)
{
    sequential *s = (sequential *)l;
    for (int i = 0; i < s->count; i++) nn_layer_set_training(s->layers[i], training);
}

static void seq_destroy(nn_layer *l)
{
    sequential *s = (sequential *)l;
    for (int i = 0; i < s->count; i++) nn_layer_free(s->layers[i]);
    free(s->layers);
    free(s);
}

static const nn_layer_vtable seq_vt = {"sequential", seq_forward, seq_params, seq_set_training,
                                       seq_destroy};

nn_layer *nn_sequential_new(void)
{
    sequential *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &seq_vt;
    s->base.training = 1;
    return &s->base;
}

nn_status nn_sequential_add(nn_layer *seq, nn_layer *layer)
{
    if (!seq || seq->vt != &seq_vt || !layer) {
        nn_layer_free(layer);
        return NN_ERR_ARG;
    }
    sequential *s = (sequential *)seq;
    if (s->count == s->capacity) {
        int cap = s->capacity ? 2 * s->capacity : 8;
        nn_layer **ls = realloc(s->layers, (size_t)cap * sizeof *ls);
        if (!ls) {
            nn_layer_free(layer);
            return NN_ERR_MEMORY;
        }
        s->layers = ls;
        s->capacity = cap;
    }
    s->layers[s->count++] = layer;
    return NN_OK;
}

int nn_sequential_len(const nn_layer *seq)
{
    return seq && seq->vt == &seq_vt ? ((const sequential *)seq)->count : 0;
}

nn_layer *nn_sequential_get(nn_layer *seq, int i)
{
    if (!seq || seq->vt != &seq_vt) return NULL;
    sequential *s = (sequential *)seq;
    return i >= 0 && i < s->count ? s->layers[i] : NULL;
}
