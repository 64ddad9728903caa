/* The generic layer interface: dispatch through each layer's vtable. */
#if !defined(__STDC_VERSION__) || __STDC_VERSION__ < 201112L
#error "libnn is C11: build it with -std=c11 (this file uses _Thread_local or aligned_alloc)"
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "layer_internal.h"

nn_tensor *nn_layer_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    if (!l || !g) return nn__layer_fail("nn_layer_forward: %s is NULL", l ? "the graph" : "the layer");
    return l->vt->forward(l, g, x);
}

nn_status nn_layer_params(nn_layer *l, nn_params *out)
{
    if (!l || !out) return NN_ERR_ARG;
    return l->vt->collect_params ? l->vt->collect_params(l, "", out) : NN_OK;
}

void nn_layer_set_training(nn_layer *l, int training)
{
    if (!l) return;
    l->training = training != 0;
    if (l->vt->set_training) l->vt->set_training(l, l->training);
}

void nn_layer_free(nn_layer *l)
{
    if (l) l->vt->destroy(l);
}

const char *nn_layer_kind(const nn_layer *l) { return l ? l->vt->kind : ""; }

nn_layer_config nn_layer_get_config(const nn_layer *l)
{
    nn_layer_config c = {0};
    c.kind = nn_layer_kind(l);
    if (l && l->vt->get_config) l->vt->get_config(l, &c);
    return c;
}

static _Thread_local char last_error[NN_ERROR_MSG_MAX];

const char *nn_layer_last_error(void) { return last_error; }

void *nn__layer_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return NULL;
}
