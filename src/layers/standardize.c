/* Standardisation with fixed, saved statistics: y = (x - mean) / std, or
 * the inverse y = x * std + mean for regression outputs. */
#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"
#include "layer_internal.h"
#include "../autograd/graph_internal.h"

typedef struct standardize {
    nn_layer base;
    nn_tensor *mean, *std; /* frozen parameters, saved with the model */
    int inverse;
} standardize;

static nn_tensor *standardize_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    standardize *s = (standardize *)l;
    if (s->inverse) return nn_channel_affine(g, x, s->std, s->mean);
    int c = (int)s->mean->size;
    nn_tensor *scale = nn_graph_tensor(g, 1, &c), *shift = nn_graph_tensor(g, 1, &c);
    if (!scale || !shift) return NULL;
    for (int j = 0; j < c; j++) { /* c values a step: not worth a kernel */
        scale->data[j] = 1.0f / s->std->data[j];
        shift->data[j] = -s->mean->data[j] * scale->data[j];
    }
    return nn_channel_affine(g, x, scale, shift);
}

static nn_status standardize_params(nn_layer *l, const char *prefix, nn_params *out)
{
    standardize *s = (standardize *)l;
    nn_status st = nn__params_add_prefixed(out, prefix, "mean", s->mean);
    return st ? st : nn__params_add_prefixed(out, prefix, "std", s->std);
}

static void standardize_destroy(nn_layer *l)
{
    standardize *s = (standardize *)l;
    nn_tensor_free(s->mean);
    nn_tensor_free(s->std);
    free(s);
}

static void standardize_config(const nn_layer *l, nn_layer_config *c)
{
    const standardize *s = (const standardize *)l;
    c->in = c->out = (int)s->mean->size;
    c->inverse = s->inverse;
}

static const nn_layer_vtable standardize_vt = {"standardize", standardize_forward, standardize_params,
                                               NULL, standardize_destroy, standardize_config};

nn_layer *nn_standardize_new(int features, const float *mean, const float *std, int inverse)
{
    if (features < 1) return nn__layer_fail("nn_standardize_new: features must be >= 1, got %d", features);
    for (int j = 0; std && j < features; j++)
        if (!(std[j] > 0.0f) || !(std[j] < 1e30f))
            return nn__layer_fail("nn_standardize_new: std[%d] must be positive and finite, got %g", j,
                                  (double)std[j]);
    standardize *s = calloc(1, sizeof *s);
    if (!s) return nn__layer_fail("nn_standardize_new: out of memory");
    s->base.vt = &standardize_vt;
    s->base.training = 1;
    s->inverse = inverse != 0;
    s->mean = nn__param_new(1, &features);
    s->std = nn__param_new(1, &features);
    if (!s->mean || !s->std) {
        standardize_destroy(&s->base);
        return nn__layer_fail("nn_standardize_new: out of memory");
    }
    nn_tensor_requires_grad(s->mean, 0);
    nn_tensor_requires_grad(s->std, 0);
    if (mean) memcpy(s->mean->data, mean, (size_t)features * sizeof(float));
    if (std)
        memcpy(s->std->data, std, (size_t)features * sizeof(float));
    else
        nn_tensor_fill(s->std, 1.0f);
    return &s->base;
}

int nn__is_standardize_layer(const nn_layer *l) { return l && l->vt == &standardize_vt; }
