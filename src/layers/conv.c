/* Convolution and pooling layers. */
#include <stdlib.h>

#include "nn/ops.h"
#include "layer_internal.h"
#include "../autograd/graph_internal.h"

typedef struct conv {
    nn_layer base;
    nn_tensor *weight, *bias;
    int stride, padding;
} conv;

/* Padding of one dimension for size in; "same" splits the total with the
 * extra element after (as TensorFlow and PyTorch do). */
void nn__conv_padding(int in, int k, int stride, int padding, int *before, int *after)
{
    if (padding >= 0) {
        *before = *after = padding;
        return;
    }
    int out = (in + stride - 1) / stride;
    int total = (out - 1) * stride + k - in;
    if (total < 0) total = 0;
    *before = total / 2;
    *after = total - total / 2;
}

static nn_window2d window_for(const nn_tensor *x, int kh, int kw, int stride, int padding)
{
    nn_window2d w = {stride, stride, 0, 0, 0, 0};
    if (x->ndim == 4) {
        nn__conv_padding(x->shape[2], kh, stride, padding, &w.pad_top, &w.pad_bottom);
        nn__conv_padding(x->shape[3], kw, stride, padding, &w.pad_left, &w.pad_right);
    }
    return w;
}

/* The window of conv layer c over x, after checking x's shape (0 if it
 * does not fit, reported). */
static int conv_window(conv *c, nn_graph *g, nn_tensor *x, nn_window2d *win)
{
    if (!nn__inputs_ok(g, "conv2d", &x, 1)) return 0;
    if (x->ndim != 4 || x->shape[1] != c->weight->shape[1]) {
        nn__shape_buf sx, sw;
        nn__fail(g, "conv2d", "input must be (N, %d, H, W), got x %s for weight %s",
                 c->weight->shape[1], nn__shape(x, &sx), nn__shape(c->weight, &sw));
        return 0;
    }
    int k = c->weight->shape[2];
    *win = window_for(x, k, k, c->stride, c->padding);
    return 1;
}

nn_tensor *nn__conv_layer_forward(nn_layer *l, nn_graph *g, nn_tensor *x, int relu)
{
    conv *c = (conv *)l;
    nn_window2d win;
    if (!conv_window(c, g, x, &win)) return NULL;
    return relu ? nn_conv2d_relu(g, x, c->weight, c->bias, win) : nn_conv2d(g, x, c->weight, c->bias, win);
}

static nn_tensor *conv_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    return nn__conv_layer_forward(l, g, x, 0);
}

static nn_status conv_params(nn_layer *l, const char *prefix, nn_params *out)
{
    conv *c = (conv *)l;
    nn_status s = nn__params_add_prefixed(out, prefix, "weight", c->weight);
    return s ? s : nn__params_add_prefixed(out, prefix, "bias", c->bias);
}

static void conv_destroy(nn_layer *l)
{
    conv *c = (conv *)l;
    nn_tensor_free(c->weight);
    nn_tensor_free(c->bias);
    free(c);
}

static void conv_config(const nn_layer *l, nn_layer_config *cfg)
{
    const conv *c = (const conv *)l;
    cfg->in = c->weight->shape[1];
    cfg->out = c->weight->shape[0];
    cfg->kernel = c->weight->shape[2];
    cfg->stride = c->stride;
    cfg->padding = c->padding;
}

static const nn_layer_vtable conv_vt = {"conv2d", conv_forward, conv_params, NULL, conv_destroy,
                                        conv_config};

nn_layer *nn_conv2d_new(int in_channels, int out_channels, int kernel, int stride, int padding,
                        nn_rng *rng)
{
    if (in_channels < 1 || out_channels < 1 || kernel < 1 || stride < 1 ||
        (padding < 0 && padding != NN_PAD_SAME) || !rng)
        return nn__layer_fail("nn_conv2d_new: need channels, kernel and stride >= 1, padding >= 0 "
                              "or NN_PAD_SAME and an rng, got in %d, out %d, kernel %d, stride %d, "
                              "padding %d%s", in_channels, out_channels, kernel, stride, padding,
                              rng ? "" : ", rng NULL");
    conv *c = calloc(1, sizeof *c);
    if (!c) return nn__layer_fail("nn_conv2d_new: out of memory");
    c->base.vt = &conv_vt;
    c->base.training = 1;
    c->stride = stride;
    c->padding = padding;
    c->weight = nn__param_new(4, (int[]){out_channels, in_channels, kernel, kernel});
    c->bias = nn__param_new(1, (int[]){out_channels});
    if (!c->weight || !c->bias) {
        conv_destroy(&c->base);
        return nn__layer_fail("nn_conv2d_new: out of memory");
    }
    nn_init_he(c->weight, in_channels * kernel * kernel, rng);
    return &c->base;
}

int nn__is_conv_layer(const nn_layer *l) { return l && l->vt == &conv_vt; }
nn_tensor *nn_conv2d_weight(nn_layer *l) { return l && l->vt == &conv_vt ? ((conv *)l)->weight : NULL; }
nn_tensor *nn_conv2d_bias(nn_layer *l) { return l && l->vt == &conv_vt ? ((conv *)l)->bias : NULL; }

typedef struct pool {
    nn_layer base;
    int kernel, stride, padding, is_max;
} pool;

nn_tensor *nn__pool_layer_forward(nn_layer *l, nn_graph *g, nn_tensor *x, int relu)
{
    pool *p = (pool *)l;
    nn_window2d w = nn_window(p->stride, p->padding);
    if (!p->is_max) return nn_avgpool2d(g, x, p->kernel, p->kernel, w);
    return relu ? nn_maxpool2d_relu(g, x, p->kernel, p->kernel, w)
                : nn_maxpool2d(g, x, p->kernel, p->kernel, w);
}

nn_tensor *nn__conv_relu_maxpool_forward(nn_layer *conv_layer, nn_layer *pool_layer, nn_graph *g,
                                         nn_tensor *x)
{
    conv *c = (conv *)conv_layer;
    pool *p = (pool *)pool_layer;
    nn_window2d win;
    if (!conv_window(c, g, x, &win)) return NULL;
    return nn_conv2d_maxpool2d_relu(g, x, c->weight, c->bias, win, p->kernel, p->kernel,
                                    nn_window(p->stride, p->padding));
}

static nn_tensor *pool_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    return nn__pool_layer_forward(l, g, x, 0);
}

static void pool_destroy(nn_layer *l) { free(l); }

static void pool_config(const nn_layer *l, nn_layer_config *c)
{
    const pool *p = (const pool *)l;
    c->kernel = p->kernel;
    c->stride = p->stride;
    c->padding = p->padding;
}

static const nn_layer_vtable maxpool_vt = {"maxpool2d", pool_forward, NULL, NULL, pool_destroy,
                                           pool_config};
static const nn_layer_vtable avgpool_vt = {"avgpool2d", pool_forward, NULL, NULL, pool_destroy,
                                           pool_config};

int nn__is_maxpool_layer(const nn_layer *l) { return l && l->vt == &maxpool_vt; }

int nn__is_conv_or_pool_layer(const nn_layer *l)
{
    return l && (l->vt == &conv_vt || l->vt == &maxpool_vt || l->vt == &avgpool_vt);
}

static nn_layer *pool_new(int kernel, int stride, int padding, int is_max)
{
    if (kernel < 1 || stride < 0 || padding < 0 || (is_max && 2 * padding > kernel))
        return nn__layer_fail("%s: need kernel >= 1, stride >= 0, padding >= 0%s, got kernel %d, "
                              "stride %d, padding %d", is_max ? "nn_maxpool2d_new" : "nn_avgpool2d_new",
                              is_max ? " and at most kernel / 2" : "", kernel, stride, padding);
    pool *p = calloc(1, sizeof *p);
    if (!p) return nn__layer_fail("pooling layer: out of memory");
    p->base.vt = is_max ? &maxpool_vt : &avgpool_vt;
    p->base.training = 1;
    p->kernel = kernel;
    p->stride = stride ? stride : kernel;
    p->padding = padding;
    p->is_max = is_max;
    return &p->base;
}

nn_layer *nn_maxpool2d_new(int kernel, int stride, int padding)
{
    return pool_new(kernel, stride, padding, 1);
}

nn_layer *nn_avgpool2d_new(int kernel, int stride, int padding)
{
    return pool_new(kernel, stride, padding, 0);
}
