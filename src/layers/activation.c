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

static const nn_layer_vtable activation_vt = {"activation", activation_forward, NULL, NULL,
                                              activation_destroy};

int nn__is_relu_layer(const nn_layer *l)
{
    return l && l->vt == &activation_vt && ((const activation *)l)->kind == NN_ACT_RELU;
}

nn_layer *nn_activation_new(nn_activation kind)
{
    if (kind != NN_ACT_RELU && kind != NN_ACT_SIGMOID && kind != NN_ACT_TANH) return NULL;
    activation *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->base.vt = &activation_vt;
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

static const nn_layer_vtable leaky_vt = {"leaky_relu", leaky_forward, NULL, NULL, activation_destroy};

int nn__is_activation_layer(const nn_layer *l)
{
    return l && (l->vt == &activation_vt || l->vt == &leaky_vt);
}

nn_layer *nn_leaky_relu_new(float slope)
{
    if (!(slope >= 0.0f && slope < 1.0f)) return NULL;
    leaky *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->base.vt = &leaky_vt;
    a->base.training = 1;
    a->slope = slope;
    return &a->base;
}
