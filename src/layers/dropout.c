/* Dropout (train/eval aware) and flatten layers. */
#include <stdlib.h>

#include "nn/ops.h"
#include "layer_internal.h"

typedef struct dropout {
    nn_layer base;
    float p;
    nn_rng rng;
    uint64_t seed;
} dropout;

static nn_tensor *dropout_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    dropout *d = (dropout *)l;
    if (!l->training || d->p == 0.0f) return x; /* identity: same tensor, no copy */
    return nn_dropout(g, x, d->p, &d->rng);
}

static void layer_free(nn_layer *l) { free(l); }

static void dropout_config(const nn_layer *l, nn_layer_config *c)
{
    c->rate = ((const dropout *)l)->p;
    c->seed = ((const dropout *)l)->seed;
}

static const nn_layer_vtable dropout_vt = {"dropout", dropout_forward, NULL, NULL, layer_free,
                                           dropout_config};

nn_layer *nn_dropout_new(float p, uint64_t seed)
{
    if (!(p >= 0.0f && p < 1.0f))
        return nn__layer_fail("nn_dropout_new: p must be in [0, 1), got %g", (double)p);
    dropout *d = calloc(1, sizeof *d);
    if (!d) return nn__layer_fail("nn_dropout_new: out of memory");
    d->seed = seed;
    d->base.vt = &dropout_vt;
    d->base.training = 1;
    d->p = p;
    nn_rng_seed(&d->rng, seed);
    return &d->base;
}

nn_rng *nn_layer_rng(nn_layer *l) { return l && l->vt == &dropout_vt ? &((dropout *)l)->rng : NULL; }

static nn_tensor *flatten_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    (void)l;
    return nn_flatten(g, x);
}

static const nn_layer_vtable flatten_vt = {"flatten", flatten_forward, NULL, NULL, layer_free, NULL};

int nn__is_dropout_or_flatten_layer(const nn_layer *l)
{
    return l && (l->vt == &dropout_vt || l->vt == &flatten_vt);
}

nn_layer *nn_flatten_new(void)
{
    nn_layer *l = calloc(1, sizeof *l);
    if (!l) return nn__layer_fail("nn_flatten_new: out of memory");
    l->vt = &flatten_vt;
    l->training = 1;
    return l;
}
