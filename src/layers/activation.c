/* Parameterless activation layers. */
#include <stdlib.h>

#include "nn/ops.h"
#include "nn/layers.h"
#include "layer_internal.h"

typedef struct activation {
    nn_layer base;
    nn_activation kind;
} activation;

static nn_tensor *activation_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    switch (((activation *)l)->kind) {
    case NN_ACT_SIGMOID: return nn_sigmoid(g, x);
    case NN_ACT_TANH: return nn_tanh(g, x);
    case NN_ACT_RELU: break;
    }
    return nn_relu(g, x);
}

static void activation_destroy(nn_layer *l) { free(l); }

/* One vtable per kind, so that nn_layer_kind tells them apart. */
static const nn_layer_vtable relu_vt = {"relu", activation_forward, NULL, NULL, activation_destroy, NULL};
static const nn_layer_vtable sigmoid_vt = {"sigmoid", activation_forward, NULL, NULL,
                                           activation_destroy, NULL};
static const nn_layer_vtable tanh_vt = {"tanh", activation_forward, NULL, NULL, activation_destroy, NULL};

int nn__is_relu_layer(const nn_layer *l) { return l && l->vt == &relu_vt; }

nn_layer *nn_activation_new(nn_activation kind)
{
    if (kind != NN_ACT_RELU && kind != NN_ACT_SIGMOID && kind != NN_ACT_TANH)
        return nn__layer_fail("nn_activation_new: unknown activation %d", (int)kind);
    activation *a = calloc(1, sizeof *a);
    if (!a) return nn__layer_fail("nn_activation_new: out of memory");
    a->base.vt = kind == NN_ACT_RELU ? &relu_vt : kind == NN_ACT_SIGMOID ? &sigmoid_vt : &tanh_vt;
    a->base.training = 1;
    a->kind = kind;
    return &a->base;
}

typedef struct leaky {
    nn_layer base;
    float slope;
} leaky;

static nn_tensor *leaky_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    return nn_leaky_relu(g, x, ((leaky *)l)->slope);
}

static void leaky_config(const nn_layer *l, nn_layer_config *c) { c->rate = ((const leaky *)l)->slope; }

static const nn_layer_vtable leaky_vt = {"leaky_relu", leaky_forward, NULL, NULL, activation_destroy,
                                         leaky_config};

int nn__is_activation_layer(const nn_layer *l)
{
    return l && (l->vt == &relu_vt || l->vt == &sigmoid_vt || l->vt == &tanh_vt || l->vt == &leaky_vt);
}

nn_layer *nn_leaky_relu_new(float slope)
{
    if (!(slope >= 0.0f && slope < 1.0f))
        return nn__layer_fail("nn_leaky_relu_new: slope must be in [0, 1), got %g", (double)slope);
    leaky *a = calloc(1, sizeof *a);
    if (!a) return nn__layer_fail("nn_leaky_relu_new: out of memory");
    a->base.vt = &leaky_vt;
    a->base.training = 1;
    a->slope = slope;
    return &a->base;
}
