/* A container applying its layers in order; children are named by index. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layers.h"
#include "layer_internal.h"
#include "../autograd/graph_internal.h"

/* Inference batches run through the whole stack this many samples at a
 * time, so that each layer's output is still in cache when the next layer
 * reads it (a batch of 1000 MNIST images makes an 86 MB first activation). */
#define INFERENCE_SLICE 32

typedef struct sequential {
    nn_layer base;
    nn_layer **layers;
    int count, capacity;
} sequential;

/* 1 if layers i and i+1 exist and are of the two kinds. */
static int pair_at(const sequential *s, int i, int (*first)(const nn_layer *),
                   int (*second)(const nn_layer *))
{
    return i + 1 < s->count && first(s->layers[i]) && second(s->layers[i + 1]);
}

static int relu_then_maxpool(const sequential *s, int i)
{
    return pair_at(s, i, nn__is_relu_layer, nn__is_maxpool_layer);
}

/* ReLU + max pooling run as relu(maxpool) (the ReLU on the smaller pooled
 * output; before a convolution's output is pooled, this spares the
 * convolution's backward its ReLU mask), and with the convolution before
 * them as one op; else conv + ReLU as one op. */
static nn_tensor *seq_forward_all(sequential *s, nn_graph *g, nn_tensor *x)
{
    for (int i = 0; i < s->count && x; i++) {
        char context[64]; /* misuse messages name the layer: "layer 3 (dense): ..." */
        snprintf(context, sizeof context, "layer %d (%s)", i, s->layers[i]->vt->kind);
        nn__set_context(g, context);
        if (nn__is_conv_layer(s->layers[i]) && relu_then_maxpool(s, i + 1)) {
            x = nn__conv_relu_maxpool_forward(s->layers[i], s->layers[i + 2], g, x);
            i += 2; /* the ReLU and the pooling ran inside */
            continue;
        }
        if (relu_then_maxpool(s, i)) {
            x = nn__pool_layer_forward(s->layers[i + 1], g, x, 1);
            i++; /* the ReLU ran inside the pooling */
            continue;
        }
        if (pair_at(s, i, nn__is_conv_layer, nn__is_relu_layer)) {
            x = nn__conv_layer_forward(s->layers[i], g, x, 1);
            i++; /* the ReLU ran inside the convolution */
            continue;
        }
        x = nn_layer_forward(s->layers[i], g, x);
    }
    nn__set_context(g, NULL);
    return x;
}

/* Samples [n0, n0+n) of x as a tensor sharing x's data. */
static nn_tensor slice_rows(const nn_tensor *x, int n0, int n)
{
    nn_tensor v = *x;
    size_t per = x->size / (size_t)x->shape[0];
    v.data = x->data + (size_t)n0 * per;
    v.grad = NULL;
    v.shape[0] = n;
    v.size = v.capacity = (size_t)n * per;
    return v;
}

/* Forward without gradients, in eval mode, where no layer mixes samples
 * (per_sample): slice by slice, each slice's intermediates released before
 * the next. */
static nn_tensor *seq_forward_sliced(sequential *s, nn_graph *g, nn_tensor *x)
{
    int total = x->shape[0];
    nn_tensor first = slice_rows(x, 0, INFERENCE_SLICE);
    nn_tensor *y0 = seq_forward_all(s, g, &first);
    if (!y0 || y0->shape[0] != INFERENCE_SLICE) return y0 ? seq_forward_all(s, g, x) : NULL;
    int shape[NN_MAX_DIMS];
    memcpy(shape, y0->shape, sizeof shape);
    shape[0] = total;
    nn_tensor *y = nn__new_output(g, y0->ndim, shape);
    if (!y) return NULL;
    size_t per = y0->size / INFERENCE_SLICE;
    memcpy(y->data, y0->data, y0->size * sizeof(float));
    nn__arena_mark mark = nn__arena_mark_now(g);
    for (int n0 = INFERENCE_SLICE; n0 < total; n0 += INFERENCE_SLICE) {
        int n = total - n0 < INFERENCE_SLICE ? total - n0 : INFERENCE_SLICE;
        nn_tensor part = slice_rows(x, n0, n);
        nn_tensor *yp = seq_forward_all(s, g, &part);
        if (!yp) return NULL;
        memcpy(y->data + (size_t)n0 * per, yp->data, (size_t)n * per * sizeof(float));
        nn__arena_rewind(g, mark);
    }
    return y;
}

static const nn_layer_vtable seq_vt;

/* 1 if every layer, nested containers included, treats samples separately
 * (not so a recurrent layer, whose dimension 0 is time, or a custom one). */
static int per_sample(const sequential *s)
{
    for (int i = 0; i < s->count; i++) {
        const nn_layer *l = s->layers[i];
        int ok = l->vt == &seq_vt ? per_sample((const sequential *)l)
                                  : nn__is_conv_or_pool_layer(l) || nn__is_dense_layer(l) ||
                                        nn__is_dropout_or_flatten_layer(l) ||
                                        nn__is_activation_layer(l) || nn__is_standardize_layer(l);
        if (!ok) return 0;
    }
    return 1;
}

static nn_tensor *seq_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    sequential *s = (sequential *)l;
    if (!nn__inputs_ok(g, "sequential", &x, 1)) return NULL;
    if (!l->training && !nn_graph_grad_enabled(g) && x->ndim >= 2 &&
        x->shape[0] > 2 * INFERENCE_SLICE && per_sample(s))
        return seq_forward_sliced(s, g, x);
    return seq_forward_all(s, g, x);
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
                                       seq_destroy, NULL};

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
