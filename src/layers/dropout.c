/* Dropout (train/eval aware) and flatten layers. */
#include <stdlib.h>

#include "nn/ops.h"
#include "nn/layers.h"

typedef struct dropout {
    nn_layer base;
    float p;
    nn_rng rng;
} dropout;

static nn_tensor *dropout_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    dropout *d = (dropout *)l;
    if (!l->training || d->p == 0.0f) return x; /* identity: same tensor, no copy */
    return nn_dropout(g, x, d->p, &d->rng);
}

static void layer_free(nn_layer *l) { free(l); }

static const nn_layer_vtable dropout_vt = {"dropout", dropout_forward, NULL, NULL, layer_free};

nn_layer *nn_dropout_new(float p, uint64_t seed)
{
    if (!(p >= 0.0f && p < 1.0f)) return NULL;
    dropout *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->base.vt = &dropout_vt;
    d->base.training = 1;
    d->p = p;
    nn_rng_seed(&d->rng, seed);
    return &d->base;
}

static nn_tensor *flatten_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    (void)l;
    return nn_flatten(g, x);
}

static const nn_layer_vtable flatten_vt = {"flatten", flatten_forward, NULL, NULL, layer_free};

int nn__is_dropout_or_flatten_layer(const nn_layer *l)
{
    return l && (l->vt == &dropout_vt || l->vt == &flatten_vt);
}

nn_layer *nn_flatten_new(void)
{
    nn_layer *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->vt = &flatten_vt;
    l->training = 1;
    return l;
}
