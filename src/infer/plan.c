/* Inference plan: see plan.h. Feature maps between steps are channels-last
 * (h, w, cs), the layout in which a convolution's tile reads its input by
 * broadcast and writes whole channel vectors; a dense layer reads a map as
 * it is (its packed weights take the order), and the caller gets the
 * library's channel-major order. Quantized steps (nn__plan_quantize) keep
 * the layout, with the input as bytes. */
#if defined(__STDC_VERSION__) && __STDC_VERSION__ < 201112L
#error "libnn is C11: build it with -std=c11 (this file uses _Thread_local or aligned_alloc)"
#endif
#include "plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "../layers/layer_internal.h"

typedef enum step_kind { STEP_CONV, STEP_MAXPOOL, STEP_ACT, STEP_COPY, STEP_DENSE } step_kind;

typedef struct plan_step {
    step_kind kind;
    nn_layer *layer; /* conv2d or dense: the weights' owner */
    float *out;
    size_t out_floats;
    int relu; /* conv, dense: clamp the output at 0 (a ReLU layer folded in) */
    /* STEP_COPY, and a conv's copy of its input into in_buf: a (c, h, w)
     * block from the input's strides to the buffer's, starting at offset */
    int c, h, w;
    size_t xs[3], ys[3], offset;
    /* STEP_CONV */
    nn_nhwc_conv conv;
    float *in_buf; /* zero-bordered channels-last input, or NULL to read the input as is */
    float *packed, *bias;
    int oc;
    /* STEP_MAXPOOL; a conv step with a pooling folded in (non-overlapping
     * windows): the convolution runs `band` windows' rows at a time into
     * the scratch, small enough to stay in L1, and pools them from there */
    nn_nhwc_pool pool;
    float *scratch;
    int band, pooled_rows;
    int winograd; /* conv + 2x2 pooling by nn_k_conv_nhwc_winograd_pool */
    /* STEP_ACT: the activation layer's kind, its slope, floats */
    const char *act;
    float slope;
    size_t n;
    /* STEP_DENSE: out x in, in the packed input's order: in_positions
     * groups of in_cs floats, the first in_c of each real (source: each
     * packed input's weight column, -1 for none; NULL: the same order) */
    int in, outn;
    int in_c, in_positions, in_cs;
    int *source;
    /* int8 (conv, dense): the largest |input| seen while calibrating; once
     * quantized, the input's bytes, the packed weights, their sums and the
     * per-output scales (input scale times weight scale) */
    float seen;
    int q8;
    nn_q8_conv qconv;
    uint8_t *qin;
    int8_t *qw;
    int32_t *wsum;
    float *qscale, inv_in_scale;
    int in_pos; /* conv: input positions (padding included) */
    /* what an int8 model file holds: the weights in the layer's layout,
     * their per-output scales, the input scale */
    int8_t *qweight;
    int wndim, wshape[4];
    float *wscale, in_scale;
} plan_step;

struct nn__plan {
    plan_step *steps;
    int count, cap;
    int out_size;
    int observing; /* record each quantizable step's largest |input| */
    int portable;  /* int8 steps on the plain C path (tests) */
};

/* What flows between steps. */
typedef struct value {
    int map;       /* 1: a (c, h, w) feature map; 0: a vector of n */
    int hwc;       /* map layout: channels-last with channel stride cs, else channel-major */
    int flattened; /* a vector still laid out as its channels-last map (h, w, cs): a
                      dense layer reads it so, through its weights' order */
    int c, h, w, cs;
    int n;
    int producer;  /* index of the step that wrote it, -1 for the caller's input */
} value;

/* A folded pooling's scratch: 32 KB, within the L1 data cache of current
 * x86 and ARM cores with room for the weights' stream. */
enum { SCRATCH_FLOATS = 8192 };

/* Winograd's transforms cost about as much as the products they save
 * below this many input channels (a first layer's one or three). */
enum { WINOGRAD_MIN_CHANNELS = 8 };

static float *buffer(size_t floats)
{
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    float *b = aligned_alloc(64, bytes ? bytes : 64);
    if (b) memset(b, 0, bytes ? bytes : 64);
    return b;
}

static plan_step *add_step(nn__plan *p, step_kind kind, size_t out_floats)
{
    if (p->count == p->cap) {
        int cap = p->cap ? 2 * p->cap : 8;
        plan_step *s = realloc(p->steps, (size_t)cap * sizeof *s);
        if (!s) return NULL;
        p->steps = s;
        p->cap = cap;
    }
    plan_step *s = &p->steps[p->count];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->out_floats = out_floats;
    s->out = buffer(out_floats);
    if (!s->out) return NULL;
    p->count++;
    return s;
}

/* Output channels of convolution and dense steps are padded to 16, a
 * multiple of every build's vector width and of the int8 kernels' output
 * groups, so a step keeps its layout when it is quantized. */
static int align_up(int n) { return (n + 15) / 16 * 16; }

/* Strides of a map value (channel, row, column). */
static void strides_of(const value *v, size_t s[3])
{
    if (v->hwc) {
        s[0] = 1;
        s[1] = (size_t)v->w * v->cs;
        s[2] = (size_t)v->cs;
    } else {
        s[0] = (size_t)v->h * v->w;
        s[1] = (size_t)v->w;
        s[2] = 1;
    }
}

/* Flatten: a vector of the map v, in channel-major order (the model's
 * output, or reorder = 0: a channels-last map is only marked flattened). */
static int to_vector(nn__plan *p, value *v, int reorder)
{
    if (v->map) {
        v->map = 0;
        v->n = v->c * v->h * v->w;
        v->flattened = v->hwc;
    }
    if (!v->flattened || !reorder) return 1;
    v->flattened = 0;
    plan_step *s = add_step(p, STEP_COPY, (size_t)v->n);
    if (!s) return 0;
    s->c = v->c, s->h = v->h, s->w = v->w;
    strides_of(v, s->xs);
    s->ys[0] = (size_t)v->h * v->w, s->ys[1] = (size_t)v->w, s->ys[2] = 1;
    v->producer = p->count - 1;
    return 1;
}

static int plan_conv(nn__plan *p, nn_layer *l, value *v)
{
    nn_tensor *w = nn_conv2d_weight(l);
    nn_layer_config cfg = nn_layer_get_config(l);
    if (!v->map || w->shape[1] != v->c || w->shape[2] != w->shape[3]) return 0;
    int k = w->shape[2], stride = cfg.stride, oc = w->shape[0];
    int pt, pb, pl, pr;
    nn__conv_padding(v->h, k, stride, cfg.padding, &pt, &pb);
    nn__conv_padding(v->w, k, stride, cfg.padding, &pl, &pr);
    int ih = v->h + pt + pb, iw = v->w + pl + pr;
    if (ih < k || iw < k) return 0;
    int oh = (ih - k) / stride + 1, ow = (iw - k) / stride + 1, ocp = align_up(oc);
    plan_step *s = add_step(p, STEP_CONV, (size_t)oh * ow * ocp);
    if (!s) return 0;
    s->layer = l;
    s->oc = oc;
    int copy = pt || pb || pl || pr || (!v->hwc && v->c > 1);
    int cs = copy ? v->c : (v->hwc ? v->cs : 1);
    if (copy) {
        s->in_buf = buffer((size_t)ih * iw * v->c);
        if (!s->in_buf) return 0;
        s->c = v->c, s->h = v->h, s->w = v->w;
        strides_of(v, s->xs);
        s->ys[0] = 1, s->ys[1] = (size_t)iw * v->c, s->ys[2] = (size_t)v->c;
        s->offset = ((size_t)pt * iw + pl) * v->c;
    }
    s->conv = (nn_nhwc_conv){iw, cs, v->c, k, stride, ocp, ow, oh, ow};
    s->in_pos = ih * iw;
    s->packed = buffer(nn_k_nhwc_packed_floats(ocp, v->c, k));
    s->bias = buffer((size_t)ocp);
    if (!s->packed || !s->bias) return 0;
    *v = (value){1, 1, 0, oc, oh, ow, ocp, 0, p->count - 1};
    return 1;
}

static int plan_maxpool(nn__plan *p, nn_layer *l, value *v)
{
    nn_layer_config cfg = nn_layer_get_config(l);
    if (!v->map || !v->hwc || v->cs % nn_k_nhwc_channel_align()) return 0;
    int k = cfg.kernel, stride = cfg.stride, pad = cfg.padding;
    if (v->h + 2 * pad < k || v->w + 2 * pad < k) return 0;
    int oh = (v->h + 2 * pad - k) / stride + 1, ow = (v->w + 2 * pad - k) / stride + 1;
    nn_nhwc_pool pool = {v->h, v->w, v->cs, k, stride, pad, oh, ow, 0};
    plan_step *conv = v->producer == p->count - 1 ? &p->steps[v->producer] : NULL;
    if (conv && conv->kind == STEP_CONV && !conv->scratch && pad == 0 && stride == 2 && k == 2 &&
        conv->conv.k == 3 && conv->conv.stride == 1 && conv->conv.c >= WINOGRAD_MIN_CHANNELS &&
        conv->conv.cs % nn_k_nhwc_channel_align() == 0) {
        free(conv->out);
        free(conv->packed);
        conv->winograd = 1;
        conv->conv.rows = 2 * oh;
        conv->conv.cols = 2 * ow;
        conv->out_floats = (size_t)oh * ow * v->cs;
        conv->out = buffer(conv->out_floats);
        conv->packed = buffer(nn_k_winograd_packed_floats(conv->conv.ocp, conv->conv.c));
        /* room for the direct form's bands too, which a quantized plan uses */
        size_t window_rows = (size_t)k * conv->conv.ow * v->cs, wino = nn_k_winograd_scratch_floats(&conv->conv);
        int band = (int)(SCRATCH_FLOATS / window_rows);
        band = band < 1 ? 1 : band > oh ? oh : band;
        conv->scratch = buffer(wino > band * window_rows ? wino : band * window_rows);
        if (!conv->out || !conv->packed || !conv->scratch) return 0;
        conv->band = band;
        conv->pooled_rows = oh;
        conv->pool = pool;
    } else if (conv && conv->kind == STEP_CONV && !conv->scratch && pad == 0 && stride == k) {
        /* fold into the convolution, which then computes only the rows
         * and columns the windows read */
        size_t window_rows = (size_t)k * conv->conv.ow * v->cs; /* floats */
        int band = (int)(SCRATCH_FLOATS / window_rows);
        band = band < 1 ? 1 : band > oh ? oh : band;
        free(conv->out);
        conv->out_floats = (size_t)oh * ow * v->cs;
        conv->out = buffer(conv->out_floats);
        conv->scratch = buffer((size_t)band * window_rows);
        if (!conv->out || !conv->scratch) return 0;
        conv->band = band;
        conv->pooled_rows = oh;
        conv->pool = pool;
        conv->pool.ih = band * k;
        conv->conv.rows = band * k;
        conv->conv.cols = ow * k;
    } else {
        plan_step *s = add_step(p, STEP_MAXPOOL, (size_t)oh * ow * v->cs);
        if (!s) return 0;
        s->pool = pool;
    }
    v->h = oh, v->w = ow;
    v->producer = p->count - 1;
    return 1;
}

static int plan_activation(nn__plan *p, nn_layer *l, value *v)
{
    const char *kind = nn_layer_kind(l);
    if (!strcmp(kind, "relu") && v->producer >= 0) {
        plan_step *prev = &p->steps[v->producer];
        if (prev->kind == STEP_CONV || prev->kind == STEP_DENSE) {
            prev->relu = 1;
            return 1;
        }
        if (prev->kind == STEP_MAXPOOL || prev->scratch) {
            prev->pool.relu = 1;
            return 1;
        }
    }
    size_t n = v->map || v->flattened ? (v->hwc ? (size_t)v->h * v->w * v->cs : (size_t)v->c * v->h * v->w)
                                      : (size_t)v->n;
    plan_step *s = add_step(p, STEP_ACT, n);
    if (!s) return 0;
    s->act = kind;
    s->slope = nn_layer_get_config(l).rate;
    s->n = n;
    v->producer = p->count - 1;
    return 1;
}

static int plan_dense(nn__plan *p, nn_layer *l, value *v)
{
    nn_tensor *w = nn_dense_weight(l);
    if (v->map || v->n != w->shape[1]) return 0; /* dense takes (N, in): flatten first */
    plan_step *s = add_step(p, STEP_DENSE, (size_t)align_up(w->shape[0]));
    if (!s) return 0;
    s->layer = l;
    s->outn = w->shape[0];
    s->in = s->in_c = w->shape[1];
    s->in_positions = 1;
    s->in_cs = s->in;
    if (v->flattened) {
        /* read the channels-last map as it is: packed input j = (position,
         * channel) takes weight column channel * positions + position */
        int positions = v->h * v->w;
        s->in = positions * v->cs;
        s->in_c = v->c;
        s->in_positions = positions;
        s->in_cs = v->cs;
        s->source = malloc(sizeof(int) * (size_t)s->in);
        if (!s->source) return 0;
        for (int j = 0; j < s->in; j++)
            s->source[j] = j % v->cs < v->c ? (j % v->cs) * positions + j / v->cs : -1;
    }
    s->packed = buffer(nn_k_dense_packed_floats(s->outn, s->in));
    s->bias = buffer((size_t)align_up(s->outn));
    if (!s->packed || !s->bias) return 0;
    *v = (value){0, 0, 0, 0, 0, 0, 0, w->shape[0], p->count - 1};
    return 1;
}

static int plan_layer(nn__plan *p, nn_layer *l, value *v)
{
    if (!strcmp(nn_layer_kind(l), "sequential")) {
        for (int i = 0; i < nn_sequential_len(l); i++)
            if (!plan_layer(p, nn_sequential_get(l, i), v)) return 0;
        return 1;
    }
    if (nn__is_conv_layer(l)) return plan_conv(p, l, v);
    if (nn__is_maxpool_layer(l)) return plan_maxpool(p, l, v);
    if (nn__is_dense_layer(l)) return plan_dense(p, l, v);
    if (nn__is_activation_layer(l)) return plan_activation(p, l, v);
    if (nn__is_dropout_or_flatten_layer(l)) {
        if (!strcmp(nn_layer_kind(l), "flatten")) return to_vector(p, v, 0);
        return 1; /* dropout: the identity in evaluation mode */
    }
    return 0;
}

nn__plan *nn__plan_new(nn_layer *model, int ndim, const int *shape)
{
    if (!model || !shape || (ndim != 1 && ndim != 3)) return NULL;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 1) return NULL;
    nn__plan *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    value v = {ndim == 3, 0, 0, shape[0], ndim == 3 ? shape[1] : 0, ndim == 3 ? shape[2] : 0, 0,
               ndim == 1 ? shape[0] : 0, -1};
    /* the caller's example is never written: its last step must be ours */
    if (!plan_layer(p, model, &v) || !to_vector(p, &v, 1) || v.producer < 0) {
        nn__plan_free(p);
        return NULL;
    }
    p->out_size = v.n;
    nn__plan_refresh(p);
    return p;
}

void nn__plan_refresh(nn__plan *p)
{
    if (!p) return;
    for (int i = 0; i < p->count; i++) {
        plan_step *s = &p->steps[i];
        if (s->kind == STEP_CONV) {
            nn_tensor *w = nn_conv2d_weight(s->layer), *b = nn_conv2d_bias(s->layer);
            if (s->winograd)
                nn_k_winograd_pack(s->oc, s->conv.ocp, s->conv.c, w->data, s->packed);
            else
                nn_k_nhwc_pack_weights(s->oc, s->conv.ocp, s->conv.c, s->conv.k, w->data, s->packed);
            for (int o = 0; o < s->oc; o++) s->bias[o] = b ? b->data[o] : 0.0f;
        } else if (s->kind == STEP_DENSE) {
            nn_tensor *b = nn_dense_bias(s->layer);
            nn_tensor *w = nn_dense_weight(s->layer);
            nn_k_dense_pack(s->outn, s->in, w->data, w->shape[1], s->source, s->packed);
            for (int o = 0; o < s->outn; o++) s->bias[o] = b ? b->data[o] : 0.0f;
        }
    }
}

static void run_activation(const plan_step *s, const float *x)
{
    if (!strcmp(s->act, "relu")) nn_k_relu(s->n, x, s->out);
    else if (!strcmp(s->act, "sigmoid")) nn_k_sigmoid(s->n, x, s->out);
    else if (!strcmp(s->act, "tanh")) nn_k_tanh(s->n, x, s->out);
    else nn_k_leaky_relu(s->n, s->slope, x, s->out);
}

/* Calibration: the step's largest |input| so far (a NaN sticks). */
static void observe(plan_step *s, int positions, int c, int cs, const float *x)
{
    float m = nn_k_max_abs(positions, c, cs, x);
    s->seen = m > s->seen || m != m ? m : s->seen;
}

/* Output rows [row0, row0 + band->rows) of a convolution step's region
 * into y, from its float input x (or, quantized, its bytes). */
static void conv_rows(const nn__plan *p, const plan_step *s, const float *x, const nn_nhwc_conv *band, int row0,
                      float *y)
{
    size_t in_row = (size_t)row0 * s->conv.stride * s->conv.iw;
    if (!s->q8) {
        nn_k_conv_nhwc(band, x + in_row * s->conv.cs, s->packed, s->bias, s->relu, y);
        return;
    }
    nn_q8_conv q = s->qconv;
    q.rows = band->rows;
    nn_k_q8_conv(&q, s->qin + in_row * q.cq, s->qw, s->wsum, s->qscale, s->bias, s->relu, p->portable, y);
}

static void run_conv(const nn__plan *p, plan_step *s, const float *x)
{
    if (p->observing) observe(s, s->in_pos, s->conv.c, s->conv.cs, x);
    if (s->q8) nn_k_q8_quantize(s->in_pos, s->conv.c, s->conv.cs, x, s->inv_in_scale, s->qconv.cq, s->qin);
    if (!s->scratch) {
        conv_rows(p, s, x, &s->conv, 0, s->out);
        return;
    }
    if (s->q8 && s->qconv.pool2) {
        nn_k_q8_conv(&s->qconv, s->qin, s->qw, s->wsum, s->qscale, s->bias, s->relu || s->pool.relu, p->portable,
                     s->out);
        return;
    }
    if (s->winograd && !s->q8) {
        nn_k_conv_nhwc_winograd_pool(&s->conv, x, s->packed, s->bias, s->relu || s->pool.relu, s->out, s->scratch);
        return;
    }
    for (int row = 0; row < s->pooled_rows; row += s->band) {
        int rows = s->pooled_rows - row < s->band ? s->pooled_rows - row : s->band;
        nn_nhwc_conv band = s->conv;
        nn_nhwc_pool pool = s->pool;
        band.rows = rows * s->pool.k;
        pool.ih = band.rows;
        pool.oh = rows;
        conv_rows(p, s, x, &band, row * s->pool.k, s->scratch);
        nn_k_maxpool_nhwc(&pool, s->scratch, s->out + (size_t)row * s->pool.ow * s->pool.cs);
    }
}

static void run_dense(const nn__plan *p, plan_step *s, const float *x)
{
    if (p->observing) observe(s, s->in_positions, s->in_c, s->in_cs, x);
    if (!s->q8) {
        nn_k_dense_packed(s->outn, s->in, s->packed, x, s->bias, s->relu, s->out);
        return;
    }
    nn_k_q8_quantize(1, s->in, s->in, x, s->inv_in_scale, s->qconv.cq, s->qin);
    nn_k_q8_conv(&s->qconv, s->qin, s->qw, s->wsum, s->qscale, s->bias, s->relu, p->portable, s->out);
}

const float *nn__plan_run(nn__plan *p, const float *x, int *out_size)
{
    const float *cur = x;
    for (int i = 0; i < p->count; i++) {
        plan_step *s = &p->steps[i];
        switch (s->kind) {
        case STEP_CONV:
            if (s->in_buf) {
                nn_k_copy_map(s->c, s->h, s->w, cur, s->xs, s->in_buf + s->offset, s->ys);
                cur = s->in_buf;
            }
            run_conv(p, s, cur);
            break;
        case STEP_MAXPOOL:
            nn_k_maxpool_nhwc(&s->pool, cur, s->out);
            break;
        case STEP_ACT:
            run_activation(s, cur);
            break;
        case STEP_COPY:
            nn_k_copy_map(s->c, s->h, s->w, cur, s->xs, s->out, s->ys);
            break;
        case STEP_DENSE:
            run_dense(p, s, cur);
            break;
        }
        cur = s->out;
    }
    if (out_size) *out_size = p->out_size;
    return cur;
}

void nn__plan_observe(nn__plan *p, const float *x)
{
    p->observing = 1;
    nn__plan_run(p, x, NULL);
    p->observing = 0;
}

/* Quantize one conv or dense step; in_scale > 0 and wscale (oc) given
 * (a loaded file) replace the calibrated and computed scales. */
static int quantize_step(plan_step *s, int min_channels, float in_scale, const float *given_wscale)
{
    int dense = s->kind == STEP_DENSE;
    nn_tensor *wt = dense ? nn_dense_weight(s->layer) : nn_conv2d_weight(s->layer);
    const float *w = wt->data;
    int oc = dense ? s->outn : s->oc, c = dense ? s->in : s->conv.c, k = dense ? 1 : s->conv.k;
    size_t per_output = wt->size / (size_t)oc;
    int row_runs = !dense && c < min_channels;
    int cq = row_runs ? c : nn_k_q8_channels(c), ocp = align_up(oc);
    size_t positions = dense ? 1 : (size_t)s->in_pos;
    s->qin = malloc(positions * cq + 3); /* row runs read up to 3 bytes past the last window */
    s->qw = malloc(dense ? nn_k_q8_packed_bytes(oc, c, 1, 0) : nn_k_q8_packed_bytes(oc, c, k, row_runs));
    s->wsum = malloc(sizeof(int32_t) * ocp);
    s->qscale = buffer((size_t)ocp);
    s->wscale = malloc(sizeof(float) * ocp);
    s->qweight = malloc(wt->size);
    if (!s->qin || !s->qw || !s->wsum || !s->qscale || !s->wscale || !s->qweight) return 0;
    memset(s->qin + positions * cq, 128, 3);
    if (given_wscale)
        memcpy(s->wscale, given_wscale, sizeof(float) * (size_t)oc);
    else
        nn_k_q8_weight_scales(oc, per_output, w, s->wscale);
    nn_k_q8_round_weights(wt->size, per_output, w, s->wscale, s->qweight);
    s->wndim = wt->ndim;
    memcpy(s->wshape, wt->shape, sizeof s->wshape);
    if (dense)
        nn_k_q8_pack_dense(oc, c, w, wt->shape[1], s->source, s->wscale, s->qw, s->wsum);
    else
        nn_k_q8_pack(oc, c, k, row_runs, w, s->wscale, s->qw, s->wsum);
    if (!(in_scale > 0.0f)) in_scale = s->seen > 0.0f ? s->seen / 127.0f : 1.0f;
    s->in_scale = in_scale;
    for (int o = 0; o < oc; o++) s->qscale[o] = in_scale * s->wscale[o];
    s->inv_in_scale = 1.0f / in_scale;
    s->qconv = dense ? (nn_q8_conv){1, cq, 1, 1, ocp, 1, 1, 1, 1, 0, 0}
                     : (nn_q8_conv){s->conv.iw, cq, k, s->conv.stride, ocp, s->conv.ow, s->conv.rows, s->conv.cols, 0, 0,
                                    row_runs};
    if (!dense && s->scratch && s->pool.k == 2 && s->pool.stride == 2) { /* the pooling in the tiles */
        s->qconv.pool2 = 1;
        s->qconv.rows = 2 * s->pooled_rows;
        s->qconv.cols = 2 * s->pool.ow;
        s->qconv.ow = s->pool.ow;
    }
    s->q8 = 1;
    return 1;
}

int nn__plan_quantize(nn__plan *p, int min_channels, const float *in_scales, const float *const *wscales)
{
    int quantized = 0;
    for (int i = 0; i < p->count; i++) {
        plan_step *s = &p->steps[i];
        if (s->kind != STEP_DENSE && s->kind != STEP_CONV) continue;
        if (!in_scales && !(s->seen < INFINITY)) return -2; /* a NaN or infinity seen */
        if (!quantize_step(s, min_channels, in_scales ? in_scales[quantized] : 0.0f,
                           wscales ? wscales[quantized] : NULL))
            return -1;
        quantized++;
    }
    return quantized;
}

int nn__plan_layers(const nn__plan *p, nn_layer **layers, int max)
{
    int n = 0;
    for (int i = 0; i < p->count; i++)
        if (p->steps[i].kind == STEP_DENSE || p->steps[i].kind == STEP_CONV) {
            if (n < max) layers[n] = p->steps[i].layer;
            n++;
        }
    return n;
}

int nn__plan_q8_layer(const nn__plan *p, int index, nn__q8_layer *out)
{
    for (int i = 0, n = 0; i < p->count; i++) {
        const plan_step *s = &p->steps[i];
        if (!s->q8 || n++ != index) continue;
        *out = (nn__q8_layer){s->qweight, s->wndim, {s->wshape[0], s->wshape[1], s->wshape[2], s->wshape[3]},
                              s->wscale, s->in_scale, s->bias};
        return 1;
    }
    return 0;
}

void nn__plan_set_portable(nn__plan *p, int portable) { p->portable = portable; }

void nn__plan_free(nn__plan *p)
{
    if (!p) return;
    for (int i = 0; i < p->count; i++) {
        free(p->steps[i].out);
        free(p->steps[i].in_buf);
        free(p->steps[i].packed);
        free(p->steps[i].bias);
        free(p->steps[i].scratch);
        free(p->steps[i].qin);
        free(p->steps[i].qweight);
        free(p->steps[i].wscale);
        free(p->steps[i].source);
        free(p->steps[i].qw);
        free(p->steps[i].wsum);
        free(p->steps[i].qscale);
    }
    free(p->steps);
    free(p);
}
