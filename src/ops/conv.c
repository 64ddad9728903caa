/* conv2d (one GEMM over the batch with the im2col columns built panel by
 * panel, or a direct loop when each output has few taps) and 2-D pooling. */
#include <limits.h>

#include "nn/ops.h"
#include "nn/threads.h"

#include "../autograd/graph_internal.h"
#include "../kernels/kernels.h"

/* Images per chunk where a buffer of `rows` floats per output position is
 * produced and used a few images at a time (the output before its
 * transpose in a forward without gradients, the input gradient's columns):
 * about 1 MB, half of a core's L2. */
static int cache_chunk(const nn_conv_shape *s, int rows)
{
    size_t per_image = (size_t)rows * s->oh * s->ow;
    int chunk = (int)((256u * 1024u) / per_image);
    if (chunk < 1) chunk = 1;
    return chunk < s->n ? chunk : s->n;
}

/* Few taps per output (a first layer): the direct kernels, no im2col. */
static int conv_is_direct(const nn_conv_shape *s)
{
    return s->c * s->kh * s->kw <= NN_CONV_DIRECT_MAX_TAPS;
}

nn_window2d nn_window(int stride, int pad)
{
    nn_window2d w = {stride, stride, pad, pad, pad, pad};
    return w;
}

/* Fill s from x's shape, the window and the kernel size; 0 (after reporting
 * against op) if they do not fit together. */
static int window_shape(nn_graph *g, const char *op, const nn_tensor *x, int kh, int kw,
                        nn_window2d win, nn_conv_shape *s)
{
    nn__shape_buf sx;
    if (x->ndim != 4) {
        nn__fail(g, op, "input must be 4-D (N, C, H, W), got %s", nn__shape(x, &sx));
        return 0;
    }
    if (kh < 1 || kw < 1 || win.stride_h < 1 || win.stride_w < 1 || win.pad_top < 0 ||
        win.pad_bottom < 0 || win.pad_left < 0 || win.pad_right < 0) {
        nn__fail(g, op, "invalid window: kernel %dx%d, stride %dx%d, padding %d/%d/%d/%d", kh, kw,
                 win.stride_h, win.stride_w, win.pad_top, win.pad_bottom, win.pad_left,
                 win.pad_right);
        return 0;
    }
    s->n = x->shape[0];
    s->c = x->shape[1];
    s->h = x->shape[2];
    s->w = x->shape[3];
    s->kh = kh;
    s->kw = kw;
    s->sh = win.stride_h;
    s->sw = win.stride_w;
    s->pt = win.pad_top;
    s->pl = win.pad_left;
    int eh = s->h + win.pad_top + win.pad_bottom - kh, ew = s->w + win.pad_left + win.pad_right - kw;
    if (eh < 0 || ew < 0) {
        nn__fail(g, op, "kernel %dx%d larger than the padded input %s", kh, kw, nn__shape(x, &sx));
        return 0;
    }
    s->oh = eh / s->sh + 1;
    s->ow = ew / s->sw + 1;
    return 1;
}

/* The im2col path's gradients from dyt, the output's gradient as
 * [oc][n*oh*ow], and sums (its per-image, per-channel sums, for the bias;
 * NULL when db is): shared by conv2d and the fused conv + pooling. */
static void im2col_backward(nn_graph *g, const nn_conv_shape *s, nn_tensor *x, nn_tensor *w,
                            const float *dyt, const float *sums, float *dw, float *db)
{
    int oc = w->shape[0], ckk = s->c * s->kh * s->kw;
    size_t ohw = (size_t)s->oh * s->ow;
    if (dw && !nn_k_conv_dw_acc(dyt, oc, x->data, s, dw)) {
        nn__fail(g, "nn_conv2d backward", "out of memory");
        return;
    }
    if (db) nn_k_sum_rows_acc(s->n, oc, sums, db);
    int fresh;
    float *dx = nn__grad_fresh(g, x, &fresh);
    if (dx) {
        int chunk = cache_chunk(s, ckk);
        float *dcol = nn__arena_alloc(g, (size_t)nn_get_threads() * ckk * chunk * ohw * sizeof(float));
        if (!dcol) return;
        nn_k_conv_dx(w->data, oc, dyt, s, dcol, chunk, fresh, dx);
    }
}

static void conv_backward(nn_graph *g, const nn_node *n)
{
    const nn_conv_shape *s = n->ptr;
    nn_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    int oc = w->shape[0];
    size_t ohw = (size_t)s->oh * s->ow, cols = (size_t)s->n * ohw;
    const float *dy = n->out->grad;
    /* iarg[0]: a ReLU was fused into the output, so its mask (the output
     * being positive) applies to dy first */
    const float *relu_out = n->iarg[0] ? n->out->data : NULL;
    float *dw = nn__grad(g, w), *db = nn__grad(g, b);
    if (conv_is_direct(s)) {
        nn_k_conv_direct_bwd(x->data, s, oc, w->data, relu_out, dy, nn__grad(g, x), dw, db);
        return;
    }
    float *dyt = nn__arena_alloc(g, (size_t)oc * cols * sizeof(float));
    float *sums = db ? nn__arena_alloc(g, (size_t)s->n * oc * sizeof(float)) : NULL;
    if (!dyt || (db && !sums)) return;
    nn_k_nc_to_cn(s->n, oc, ohw, dy, relu_out, dyt, sums);
    im2col_backward(g, s, x, w, dyt, sums, dw, db);
}

/* The geometry of a convolution of x by weight (and bias) after checking
 * that they fit together (else NULL, reported against op), in the arena. */
static nn_conv_shape *conv_shape_of(nn_graph *g, const char *op, nn_tensor *x, nn_tensor *weight,
                                    nn_tensor *bias, nn_window2d win)
{
    nn_tensor *in[3] = {x, weight, bias};
    if (!nn__inputs_ok(g, op, in, 2)) return NULL;
    nn__shape_buf sx, sw, sb;
    if (weight->ndim != 4 || x->ndim != 4 || weight->shape[1] != x->shape[1]) {
        nn__fail(g, op, "weight must be (OC, C, KH, KW) with C = input channels: x %s vs weight %s",
                 nn__shape(x, &sx), nn__shape(weight, &sw));
        return NULL;
    }
    int oc = weight->shape[0];
    if (bias && bias->size != (size_t)oc) {
        nn__fail(g, op, "bias must have %d elements: weight %s vs bias %s", oc, nn__shape(weight, &sw),
                 nn__shape(bias, &sb));
        return NULL;
    }
    nn_conv_shape *s = nn__arena_alloc(g, sizeof *s);
    if (!s || !window_shape(g, op, x, weight->shape[2], weight->shape[3], win, s)) return NULL;
    /* the kernels index x, and the GEMM the output's columns, with ints */
    if (x->size > INT_MAX || (size_t)s->n * oc * s->oh * s->ow > INT_MAX) {
        nn__fail(g, op, "input %s too large: at most 2^31 - 1 elements in and out", nn__shape(x, &sx));
        return NULL;
    }
    return s;
}

/* y (N, oc, oh, ow) = the convolution of x (plus bias b, clamped at 0 if
 * relu), by the direct kernels or im2col + GEMM; whole, a few images at a
 * time when no backward is to come (keep 0). 0 if memory ran out (reported). */
static int conv_forward(nn_graph *g, const char *op, const nn_conv_shape *s, const nn_tensor *x,
                        const nn_tensor *weight, const float *b, int relu, int keep, float *y)
{
    int oc = weight->shape[0];
    size_t ohw = (size_t)s->oh * s->ow;
    if (conv_is_direct(s)) {
        nn_k_conv_direct(x->data, s, oc, weight->data, b, relu, y);
        return 1;
    }
    if (nn_k_conv_forward(weight->data, oc, x->data, s, b, relu, y)) return 1;
    /* The GEMM's output through a buffer: without a backward to come, a few
     * images at a time, so that it stays in cache for the transpose. */
    int chunk = keep ? s->n : cache_chunk(s, oc);
    float *tmp = nn__arena_alloc(g, (size_t)oc * chunk * ohw * sizeof(float));
    if (!tmp) return 0;
    for (int n0 = 0; n0 < s->n; n0 += chunk) {
        nn_conv_shape part = *s;
        part.n = s->n - n0 < chunk ? s->n - n0 : chunk;
        if (!nn_k_conv_gemm(weight->data, oc, x->data + (size_t)n0 * s->c * s->h * s->w, &part, tmp)) {
            nn__fail(g, op, "out of memory");
            return 0;
        }
        nn_k_cn_to_nc_bias(oc, part.n, ohw, tmp, b, relu, y + (size_t)n0 * oc * ohw);
    }
    return 1;
}

static nn_tensor *conv2d(nn_graph *g, const char *op, nn_tensor *x, nn_tensor *weight,
                         nn_tensor *bias, nn_window2d win, int relu)
{
    nn_tensor *in[3] = {x, weight, bias};
    nn_conv_shape *s = conv_shape_of(g, op, x, weight, bias, win);
    if (!s) return NULL;
    nn_tensor *y = nn__new_output(g, 4, (int[]){s->n, weight->shape[0], s->oh, s->ow});
    if (!y || !conv_forward(g, op, s, x, weight, bias ? bias->data : NULL, relu,
                            nn__wants_grad(g, in, bias ? 3 : 2), y->data))
        return NULL;
    nn_node *n = nn__record(g, conv_backward, y, in, bias ? 3 : 2);
    if (n) {
        n->ptr = s;
        n->iarg[0] = relu;
    }
    return y;
}

nn_tensor *nn_conv2d(nn_graph *g, nn_tensor *x, nn_tensor *weight, nn_tensor *bias, nn_window2d win)
{
    return conv2d(g, "nn_conv2d", x, weight, bias, win, 0);
}

nn_tensor *nn_conv2d_relu(nn_graph *g, nn_tensor *x, nn_tensor *weight, nn_tensor *bias,
                          nn_window2d win)
{
    return conv2d(g, "nn_conv2d_relu", x, weight, bias, win, 1);
}

/* window_shape for max pooling, which also needs every window to hold
 * some of the input (padding at most half the window). */
static int pool_shape(nn_graph *g, const char *name, const nn_tensor *x, int kh, int kw,
                      nn_window2d win, nn_conv_shape *s)
{
    if (2 * win.pad_top > kh || 2 * win.pad_bottom > kh || 2 * win.pad_left > kw ||
        2 * win.pad_right > kw) {
        nn__fail(g, name, "padding must be at most half the %dx%d window", kh, kw);
        return 0;
    }
    return window_shape(g, name, x, kh, kw, win, s);
}

static void maxpool_backward(nn_graph *g, const nn_node *n)
{
    int fresh;
    float *dx = nn__grad_fresh(g, n->in[0], &fresh);
    const float *relu_y = n->iarg[0] ? n->out->data : NULL;
    if (dx) nn_k_maxpool_bwd(n->out->grad, (const int *)n->aux, n->ptr, relu_y, fresh, dx);
}

static nn_tensor *maxpool2d(nn_graph *g, const char *name, nn_tensor *x, int kh, int kw,
                            nn_window2d win, int relu)
{
    if (!nn__inputs_ok(g, name, &x, 1)) return NULL;
    nn_conv_shape *s = nn__arena_alloc(g, sizeof *s);
    if (!s || !pool_shape(g, name, x, kh, kw, win, s)) return NULL;
    nn_tensor *y = nn__new_output(g, 4, (int[]){s->n, s->c, s->oh, s->ow});
    int *argmax = y ? nn__arena_alloc(g, y->size * sizeof(int)) : NULL;
    if (!argmax) return NULL;
    nn_k_maxpool(x->data, s, relu, y->data, argmax);
    nn_node *n = nn__record(g, maxpool_backward, y, &x, 1);
    if (n) {
        n->ptr = s;
        n->aux = (float *)(void *)argmax;
        n->iarg[0] = relu;
    }
    return y;
}

nn_tensor *nn_maxpool2d(nn_graph *g, nn_tensor *x, int kh, int kw, nn_window2d win)
{
    return maxpool2d(g, "nn_maxpool2d", x, kh, kw, win, 0);
}

nn_tensor *nn_maxpool2d_relu(nn_graph *g, nn_tensor *x, int kh, int kw, nn_window2d win)
{
    return maxpool2d(g, "nn_maxpool2d_relu", x, kh, kw, win, 1);
}

/* The fused convolution + max pooling + ReLU: both geometries and, for the
 * direct kernels' fused path, their scratch (else NULL). */
typedef struct conv_pool {
    nn_conv_shape conv, pool;
    float *scratch;
} conv_pool;

static void conv_pool_backward(nn_graph *g, const nn_node *n)
{
    const conv_pool *cp = n->ptr;
    const nn_conv_shape *s = &cp->conv;
    nn_tensor *x = n->in[0], *w = n->in[1];
    const int *argmax = (const int *)(const void *)n->aux;
    const float *dy = n->out->grad, *relu_y = n->out->data;
    int oc = w->shape[0];
    size_t conv_size = (size_t)s->n * oc * s->oh * s->ow;
    float *dw = nn__grad(g, w), *db = nn__grad(g, n->in[2]);
    if (!conv_is_direct(s)) { /* the pooling's gradient goes straight to [oc][n*oh*ow] */
        float *dyt = nn__arena_alloc(g, conv_size * sizeof(float));
        float *sums = db ? nn__arena_alloc(g, (size_t)s->n * oc * sizeof(float)) : NULL;
        if (!dyt || (db && !sums)) return;
        nn_k_maxpool_bwd_cn(dy, argmax, &cp->pool, relu_y, dyt, sums);
        im2col_backward(g, s, x, w, dyt, sums, dw, db);
        return;
    }
    float *dx = nn__grad(g, x);
    if (cp->scratch && !dx) { /* spread an image at a time, never stored */
        if (dw || db)
            nn_k_conv_direct_maxpool_relu_bwd(x->data, s, oc, &cp->pool, dy, argmax, relu_y,
                                              cp->scratch, dw, db);
        return;
    }
    float *dconv = nn__arena_alloc(g, conv_size * sizeof(float));
    if (!dconv) return;
    nn_k_maxpool_bwd(dy, argmax, &cp->pool, relu_y, 1, dconv);
    nn_k_conv_direct_bwd(x->data, s, oc, w->data, NULL, dconv, dx, dw, db);
}

/* Max pooling without padding whose windows stop short of the last rows or
 * columns of the convolution's output (11 rows pooled 2 by 2 at stride 2
 * read rows 0-9) never reads them: for the im2col path, the convolution
 * is shortened to the rows and columns pooled, which spares their share of
 * all three GEMMs (17% of a 3x3 convolution on 13x13 inputs). The pooled
 * output is the same, and so is the gradient of every input: the dropped
 * outputs' gradients are zero. */
static void crop_to_pooled(conv_pool *cp, nn_window2d pool_win)
{
    nn_conv_shape *conv = &cp->conv, *pool = &cp->pool;
    if (pool_win.pad_top || pool_win.pad_bottom || pool_win.pad_left || pool_win.pad_right) return;
    int rows = (pool->oh - 1) * pool->sh + pool->kh, cols = (pool->ow - 1) * pool->sw + pool->kw;
    if (rows < conv->oh) conv->oh = pool->h = rows;
    if (cols < conv->ow) conv->ow = pool->w = cols;
}

nn_tensor *nn_conv2d_maxpool2d_relu(nn_graph *g, nn_tensor *x, nn_tensor *weight, nn_tensor *bias,
                                    nn_window2d conv_win, int kh, int kw, nn_window2d pool_win)
{
    static const char op[] = "nn_conv2d_maxpool2d_relu";
    nn_tensor *in[3] = {x, weight, bias};
    nn_conv_shape *s = conv_shape_of(g, op, x, weight, bias, conv_win);
    conv_pool *cp = s ? nn__arena_alloc(g, sizeof *cp) : NULL;
    if (!cp) return NULL;
    int oc = weight->shape[0];
    cp->conv = *s;
    cp->scratch = NULL;
    /* the convolution's output, as pooling sees it */
    nn_tensor conv_out = {.ndim = 4, .shape = {s->n, oc, s->oh, s->ow}};
    if (!pool_shape(g, op, &conv_out, kh, kw, pool_win, &cp->pool)) return NULL;
    if (!conv_is_direct(s)) {
        crop_to_pooled(cp, pool_win);
        s = &cp->conv;
    }
    size_t per_image = (size_t)oc * s->oh * s->ow;
    nn_tensor *y = nn__new_output(g, 4, (int[]){s->n, oc, cp->pool.oh, cp->pool.ow});
    int *argmax = y ? nn__arena_alloc(g, y->size * sizeof(int)) : NULL;
    if (!argmax) return NULL;
    const float *b = bias ? bias->data : NULL;
    if (conv_is_direct(s) && nn_k_conv_direct_pool_fusable(s)) {
        /* each image's convolution output made and pooled in cache */
        cp->scratch = nn__arena_alloc(g, (size_t)nn_get_threads() * per_image * sizeof(float));
        if (!cp->scratch) return NULL;
        nn_k_conv_direct_maxpool_relu(x->data, s, oc, weight->data, b, &cp->pool, cp->scratch,
                                      y->data, argmax);
    } else {
        float *conv = nn__arena_alloc(g, (size_t)s->n * per_image * sizeof(float));
        if (!conv ||
            !conv_forward(g, op, s, x, weight, b, 0, nn__wants_grad(g, in, bias ? 3 : 2), conv))
            return NULL;
        nn_k_maxpool(conv, &cp->pool, 1, y->data, argmax);
    }
    nn_node *n = nn__record(g, conv_pool_backward, y, in, bias ? 3 : 2);
    if (n) {
        n->ptr = cp;
        n->aux = (float *)(void *)argmax;
    }
    return y;
}

static void avgpool_backward(nn_graph *g, const nn_node *n)
{
    float *dx = nn__grad(g, n->in[0]);
    if (dx) nn_k_avgpool_bwd_acc(n->out->grad, n->ptr, dx);
}

nn_tensor *nn_avgpool2d(nn_graph *g, nn_tensor *x, int kh, int kw, nn_window2d win)
{
    if (!nn__inputs_ok(g, "nn_avgpool2d", &x, 1)) return NULL;
    nn_conv_shape *s = nn__arena_alloc(g, sizeof *s);
    if (!s || !window_shape(g, "nn_avgpool2d", x, kh, kw, win, s)) return NULL;
    nn_tensor *y = nn__new_output(g, 4, (int[]){s->n, s->c, s->oh, s->ow});
    if (!y) return NULL;
    nn_k_avgpool(x->data, s, y->data);
    nn_node *n = nn__record(g, avgpool_backward, y, &x, 1);
    if (n) n->ptr = s;
    return y;
}
