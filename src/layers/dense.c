/* Fully connected layer: y = x W^T + b, W stored (out, in) as in PyTorch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "nn/ops.h"
#include "layer_internal.h"
#include "../autograd/graph_internal.h"

typedef struct dense {
    nn_layer base;
    nn_tensor *weight, *bias;
} dense;

static nn_tensor *dense_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    dense *d = (dense *)l;
    if (!nn__inputs_ok(g, "dense", &x, 1)) return NULL;
    if (x->ndim != 2 || x->shape[1] != d->weight->shape[1]) {
        nn__shape_buf sx, sw;
        return nn__fail(g, "dense", "input must be (N, %d), got x %s for weight %s",
                        d->weight->shape[1], nn__shape(x, &sx), nn__shape(d->weight, &sw));
    }
    return nn_add_bias(g, nn_matmul_ex(g, x, d->weight, 0, 1), d->bias);
}

static nn_status dense_params(nn_layer *l, const char *prefix, nn_params *out)
{
    dense *d = (dense *)l;
    nn_status s = nn__params_add_prefixed(out, prefix, "weight", d->weight);
    return s ? s : nn__params_add_prefixed(out, prefix, "bias", d->bias);
}

static void dense_destroy(nn_layer *l)
{
    dense *d = (dense *)l;
    nn_tensor_free(d->weight);
    nn_tensor_free(d->bias);
    free(d);
}

static void dense_config(const nn_layer *l, nn_layer_config *c)
{
    const dense *d = (const dense *)l;
    c->in = d->weight->shape[1];
    c->out = d->weight->shape[0];
}

static const nn_layer_vtable dense_vt = {"dense", dense_forward, dense_params, NULL,
                                         dense_destroy, dense_config};

int nn__is_dense_layer(const nn_layer *l) { return l && l->vt == &dense_vt; }

nn_layer *nn_dense_new(int in_features, int out_features, nn_init init, nn_rng *rng)
{
    if (in_features < 1 || out_features < 1 || !rng)
        return nn__layer_fail("nn_dense_new: need in_features >= 1, out_features >= 1 and an rng, "
                              "got %d, %d, %s", in_features, out_features, rng ? "an rng" : "NULL");
    dense *d = calloc(1, sizeof *d);
    if (!d) return nn__layer_fail("nn_dense_new: out of memory");
    d->base.vt = &dense_vt;
    d->base.training = 1;
    d->weight = nn__param_new(2, (int[]){out_features, in_features});
    d->bias = nn__param_new(1, (int[]){out_features});
    if (!d->weight || !d->bias) {
        dense_destroy(&d->base);
        return nn__layer_fail("nn_dense_new: out of memory for a %d x %d weight", out_features,
                              in_features);
    }
    float bound = 1.0f / sqrtf((float)in_features);
    if (init == NN_INIT_HE) {
        nn_init_he(d->weight, in_features, rng);
    } else if (init == NN_INIT_FAN_IN) {
        nn_tensor_uniform(d->weight, rng, -bound, bound);
        nn_tensor_uniform(d->bias, rng, -bound, bound);
    } else {
        nn_init_xavier(d->weight, in_features, out_features, rng);
    }
    return &d->base;
}

nn_tensor *nn_dense_weight(nn_layer *l) { return l && l->vt == &dense_vt ? ((dense *)l)->weight : NULL; }
nn_tensor *nn_dense_bias(nn_layer *l) { return l && l->vt == &dense_vt ? ((dense *)l)->bias : NULL; }

nn_status nn__params_add_prefixed(nn_params *out, const char *prefix, const char *name,
                                  nn_tensor *t)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return nn_params_add(out, full, t);
}

nn_tensor *nn__param_new(int ndim, const int *shape)
{
    nn_tensor *t = nn_tensor_new(ndim, shape);
    if (t && nn_tensor_requires_grad(t, 1) != NN_OK) {
        nn_tensor_free(t);
        return NULL;
    }
    return t;
}
