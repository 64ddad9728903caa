/* Convolution and pooling loops over NCHW tensors.
 *
 * conv2d runs as one GEMM over the whole batch: im2col lays the input out as
 * col[C*KH*KW][N*OH*OW], so W[OC][C*KH*KW] x col gives the output as
 * [OC][N*OH*OW], which is then transposed to NCHW with the bias added. */
#include <string.h>

#include "kernels.h"

/* Loops below split work by channel or plane: each thread owns distinct
 * output rows, so results do not depend on the thread count. */
#define PAR_MIN_WORK 100000 /* elements below which threads cost more than they save */

/* Copy of a short row (a conv's 11- or 26-wide output rows): a few 8-float
 * moves, the last one overlapping, with no loop: compilers turn a copy loop
 * into a memcpy call, which costs more than these rows' copy. */
typedef float f8 __attribute__((vector_size(8 * sizeof(float))));

static inline void copy8(float *dst, const float *src)
{
    f8 v;
    memcpy(&v, src, sizeof v);
    memcpy(dst, &v, sizeof v);
}

static inline void copy_row(float *restrict dst, const float *restrict src, int n)
{
    if (n > 32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
    } else if (n >= 8) {
        copy8(dst, src);
        if (n > 16) copy8(dst + 8, src + 8);
        if (n > 24) copy8(dst + 16, src + 16);
        copy8(dst + n - 8, src + n - 8);
    } else if (n >= 4) {
        memcpy(dst, src, 4 * sizeof(float));
        memcpy(dst + n - 4, src + n - 4, 4 * sizeof(float));
    } else {
        for (int i = 0; i < n; i++) dst[i] = src[i];
    }
}

void nn_k_conv_valid_cols(const nn_conv_shape *s, int kj, int *lo, int *hi)
{
    int off = kj - s->pl; /* iw = ow * sw + off */
    int a = off >= 0 ? 0 : (-off + s->sw - 1) / s->sw;
    int b = s->w - off <= 0 ? 0 : (s->w - off + s->sw - 1) / s->sw; /* first ow with iw >= w */
    if (b > s->ow) b = s->ow;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

void nn_k_im2col(const float *x, const nn_conv_shape *s, float *col)
{
    size_t ohw = (size_t)s->oh * s->ow, cols = (size_t)s->n * ohw;
#pragma omp parallel for schedule(static) if (cols * s->c * s->kh * s->kw > PAR_MIN_WORK)
    for (int c = 0; c < s->c; c++)
        for (int ki = 0; ki < s->kh; ki++)
            for (int kj = 0; kj < s->kw; kj++) {
                float *dst = col + ((size_t)(c * s->kh + ki) * s->kw + kj) * cols;
                int lo, hi, off = kj - s->pl;
                nn_k_conv_valid_cols(s, kj, &lo, &hi); /* the same for every row */
                for (int n = 0; n < s->n; n++) {
                    const float *plane = x + ((size_t)n * s->c + c) * s->h * s->w;
                    for (int oh = 0; oh < s->oh; oh++, dst += s->ow) {
                        int ih = oh * s->sh - s->pt + ki;
                        if (ih < 0 || ih >= s->h) {
                            memset(dst, 0, (size_t)s->ow * sizeof(float));
                            continue;
                        }
                        const float *row = plane + (size_t)ih * s->w;
                        for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                        if (s->sw == 1 && hi > lo)
                            copy_row(dst + lo, row + lo + off, hi - lo);
                        else
                            for (int ow = lo; ow < hi; ow++) dst[ow] = row[ow * s->sw + off];
                        for (int ow = hi; ow < s->ow; ow++) dst[ow] = 0.0f;
                    }
                }
            }
}

/* col2im (the adjoint of im2col, adding into dx) for input channels
 * [c0, c1) only (col still holds every channel's rows): the unit of work
 * of one thread. */
static void col2im_channels(const float *col, const nn_conv_shape *s, int c0, int c1, float *dx)
{
    size_t ohw = (size_t)s->oh * s->ow, cols = (size_t)s->n * ohw;
    for (int c = c0; c < c1; c++)
        for (int ki = 0; ki < s->kh; ki++)
            for (int kj = 0; kj < s->kw; kj++) {
                const float *src = col + ((size_t)(c * s->kh + ki) * s->kw + kj) * cols;
                int lo, hi, off = kj - s->pl;
                nn_k_conv_valid_cols(s, kj, &lo, &hi); /* the same for every row */
                for (int n = 0; n < s->n; n++) {
                    float *plane = dx + ((size_t)n * s->c + c) * s->h * s->w;
                    for (int oh = 0; oh < s->oh; oh++, src += s->ow) {
                        int ih = oh * s->sh - s->pt + ki;
                        if (ih < 0 || ih >= s->h) continue;
                        float *restrict row = plane + (size_t)ih * s->w + off;
                        const float *restrict from = src;
                        if (s->sw == 1)
                            for (int ow = lo; ow < hi; ow++) row[ow] += from[ow];
                        else
                            for (int ow = lo; ow < hi; ow++) row[ow * s->sw] += from[ow];
                    }
                }
            }
}

typedef struct conv_dx_ctx {
    const float *w, *dyt;
    const nn_conv_shape *s;
    float *scratch, *dx;
    int oc, chunk, overwrite;
} conv_dx_ctx;

/* Input channels [c0, c1) of dx, start to end: zeroed if overwriting, then
 * a chunk of images at a time, their col rows = W^T dy and col2im. */
static void conv_dx_channels(void *ctx, int c0, int c1)
{
    const conv_dx_ctx *t = ctx;
    const nn_conv_shape *s = t->s;
    const int kk = s->kh * s->kw, ckk = s->c * kk;
    const size_t ohw = (size_t)s->oh * s->ow, cols = (size_t)s->n * ohw, hw = (size_t)s->h * s->w;
    if (t->overwrite)
        for (int n = 0; n < s->n; n++)
            memset(t->dx + ((size_t)n * s->c + c0) * hw, 0, (size_t)(c1 - c0) * hw * sizeof(float));
    for (int n0 = 0; n0 < s->n; n0 += t->chunk) {
        nn_conv_shape part = *s;
        part.n = s->n - n0 < t->chunk ? s->n - n0 : t->chunk;
        int pcols = (int)(part.n * ohw);
        /* these channels' rows of the chunk's col, in their own part of
         * scratch whatever the chunk's width (the threads are not in
         * step); col is where row 0 would be */
        float *rows = t->scratch + (size_t)c0 * kk * t->chunk * ohw;
        const float *col = rows - (size_t)c0 * kk * pcols;
        nn_sgemm(1, 0, (c1 - c0) * kk, pcols, t->oc, 1.0f, t->w + (size_t)c0 * kk, ckk,
                 t->dyt + (size_t)n0 * ohw, (int)cols, 0.0f, rows, pcols);
        col2im_channels(col, &part, c0, c1, t->dx + (size_t)n0 * s->c * hw);
    }
}

void nn_k_conv_dx(const float *w, int oc, const float *dyt, const nn_conv_shape *s, float *scratch,
                  int chunk, int overwrite, float *dx)
{
    conv_dx_ctx ctx = {w, dyt, s, scratch, dx, oc, chunk, overwrite};
    size_t work = (size_t)s->n * s->oh * s->ow * s->c * s->kh * s->kw * oc;
    nn_k_parallel_rows(s->c, 1, work > PAR_MIN_WORK, conv_dx_channels, &ctx);
}

void nn_k_cn_to_nc_bias(int C, int N, size_t inner, const float *src, const float *bias, int relu,
                        float *dst)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C * inner > PAR_MIN_WORK)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const float *s = src + ((size_t)c * N + n) * inner;
            float *d = dst + ((size_t)n * C + c) * inner;
            float b = bias ? bias[c] : 0.0f;
            for (size_t i = 0; i < inner; i++) {
                float v = s[i] + b;
                d[i] = relu && !(v > 0.0f) ? 0.0f : v;
            }
        }
}

void nn_k_nc_to_cn(int N, int C, size_t inner, const float *src, const float *mask, float *dst,
                   float *sums)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C * inner > PAR_MIN_WORK)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            size_t from = ((size_t)n * C + c) * inner;
            float *d = dst + ((size_t)c * N + n) * inner;
            if (!mask)
                memcpy(d, src + from, inner * sizeof(float));
            else
                for (size_t i = 0; i < inner; i++)
                    d[i] = mask[from + i] > 0.0f ? src[from + i] : 0.0f;
            if (sums) sums[(size_t)n * C + c] = nn_k_row_sum(inner, d);
        }
}

void nn_k_sum_rows_acc(int N, int C, const float *sums, float *db)
{
    for (int c = 0; c < C; c++) {
        double t = 0.0;
        for (int n = 0; n < N; n++) t += sums[(size_t)n * C + c];
        db[c] += (float)t;
    }
}

/* 1 if v takes the place of best, the earlier candidate: v is greater, or v
 * is a NaN and best is not (a NaN wins, so it propagates). Branch-free. */
static inline int beats(float v, float best) { return v > best || (v != v && best == best); }

/* The common 2x2 stride-2 unpadded case, without bounds checks and without
 * branches (data-dependent branches mispredict about half the time here): a
 * tournament, which keeps the first maximum (or the first NaN) in row-major
 * order like the general loop.
 *
 * With an even width, the pairs of a block of whole input rows are
 * consecutive in memory, so the horizontal round runs as one long loop the
 * compiler vectorizes (rows of a small image are too short for that); the
 * vertical round then compares pairs of those rows. */
#define POOL_BLOCK 1024 /* horizontal maxima held at a time */
static void maxpool_2x2(const float *restrict in, const nn_conv_shape *s, float *restrict y,
                        int *restrict argmax)
{
    /* shape in locals: stores through argmax (int) could otherwise alias s */
    const int w = s->w, oh_n = s->oh, ow_n = s->ow;
    if (w % 2 == 0 && 2 * ow_n == w && 2 * w <= POOL_BLOCK) {
        float hm[POOL_BLOCK];
        int hi[POOL_BLOCK];
        const int rows_per = POOL_BLOCK / w / 2 * 2; /* even: whole output rows */
        for (int r0 = 0; r0 < 2 * oh_n; r0 += rows_per) {
            int rows = 2 * oh_n - r0 < rows_per ? 2 * oh_n - r0 : rows_per;
            const float *p = in + (size_t)r0 * w;
            int pairs = rows * w / 2;
            for (int i = 0; i < pairs; i++) {
                float a = p[2 * i], b = p[2 * i + 1];
                int right = beats(b, a);
                hm[i] = right ? b : a;
                hi[i] = r0 * w + 2 * i + right;
            }
            for (int r = 0; r < rows; r += 2) {
                int oh = (r0 + r) / 2;
                const float *m0 = hm + (size_t)r * ow_n, *m1 = m0 + ow_n;
                const int *i0 = hi + (size_t)r * ow_n, *i1 = i0 + ow_n;
                float *yr = y + (size_t)oh * ow_n;
                int *ar = argmax + (size_t)oh * ow_n;
                for (int j = 0; j < ow_n; j++) {
                    int bottom = beats(m1[j], m0[j]);
                    yr[j] = bottom ? m1[j] : m0[j];
                    ar[j] = bottom ? i1[j] : i0[j];
                }
            }
        }
        return;
    }
    for (int oh = 0; oh < oh_n; oh++) {
        const float *r0 = in + (size_t)(2 * oh) * w, *r1 = r0 + w;
        float *yr = y + (size_t)oh * ow_n;
        int *ar = argmax + (size_t)oh * ow_n;
        const int row0 = 2 * oh * w;
        for (int ow = 0; ow < ow_n; ow++) {
            int j = 2 * ow;
            float a = r0[j], b = r0[j + 1], c = r1[j], d = r1[j + 1];
            int top_right = beats(b, a), bottom_right = beats(d, c);
            float m0 = top_right ? b : a, m1 = bottom_right ? d : c;
            int i0 = row0 + j + top_right, i1 = row0 + w + j + bottom_right;
            int bottom = beats(m1, m0);
            yr[ow] = bottom ? m1 : m0;
            ar[ow] = bottom ? i1 : i0;
        }
    }
}

static void maxpool_plane(const float *in, const nn_conv_shape *s, int fast, float *y, int *argmax)
{
    if (fast) {
        maxpool_2x2(in, s, y, argmax);
        return;
    }
    for (int oh = 0; oh < s->oh; oh++)
        for (int ow = 0; ow < s->ow; ow++) {
            /* The first maximum in row-major window order wins ties; a NaN
             * wins over everything so it propagates. */
            float best = 0.0f;
            int idx = -1;
            for (int ki = 0; ki < s->kh; ki++) {
                int ih = oh * s->sh - s->pt + ki;
                if (ih < 0 || ih >= s->h) continue;
                for (int kj = 0; kj < s->kw; kj++) {
                    int iw = ow * s->sw - s->pl + kj;
                    if (iw < 0 || iw >= s->w) continue;
                    float v = in[ih * s->w + iw];
                    if (idx < 0 || beats(v, best)) {
                        best = v;
                        idx = ih * s->w + iw;
                    }
                }
            }
            y[oh * s->ow + ow] = best;
            argmax[oh * s->ow + ow] = idx;
        }
}

void nn_k_maxpool(const float *x, const nn_conv_shape *s, int relu, float *y, int *argmax)
{
    size_t planes = (size_t)s->n * s->c, ohw = (size_t)s->oh * s->ow;
    int fast = s->kh == 2 && s->kw == 2 && s->sh == 2 && s->sw == 2 && s->pt == 0 && s->pl == 0 &&
               2 * s->oh <= s->h && 2 * s->ow <= s->w;
#pragma omp parallel for schedule(static) if (planes * s->h * s->w > PAR_MIN_WORK)
    for (size_t p = 0; p < planes; p++) {
        float *yp = y + p * ohw;
        maxpool_plane(x + p * s->h * s->w, s, fast, yp, argmax + p * ohw);
        if (relu) nn_k_relu(ohw, yp, yp);
    }
}

#define MASK_BLOCK 256 /* outputs whose ReLU mask is applied at a time */

void nn_k_maxpool_bwd(const float *dy, const int *argmax, const nn_conv_shape *s,
                      const float *relu_y, int overwrite, float *dx)
{
    size_t planes = (size_t)s->n * s->c, ohw = (size_t)s->oh * s->ow, hw = (size_t)s->h * s->w;
    /* Windows that do not overlap (stride >= window): each input gets at
     * most one gradient, so a zeroed plane takes plain stores - a vector
     * memset and one store per output, where adding would read back every
     * store. */
    int disjoint = s->sh >= s->kh && s->sw >= s->kw;
#pragma omp parallel for schedule(static) if (planes * hw > PAR_MIN_WORK)
    for (size_t p = 0; p < planes; p++) {
        const float *g = dy + p * ohw, *ry = relu_y ? relu_y + p * ohw : NULL;
        const int *am = argmax + p * ohw;
        float *d = dx + p * hw;
        if (overwrite) memset(d, 0, hw * sizeof(float));
        for (size_t i0 = 0; i0 < ohw; i0 += MASK_BLOCK) {
            size_t n = ohw - i0 < MASK_BLOCK ? ohw - i0 : MASK_BLOCK;
            const float *v = g + i0;
            float masked[MASK_BLOCK];
            if (ry) { /* a vector select first: a branch per output mispredicts */
                for (size_t i = 0; i < n; i++) masked[i] = ry[i0 + i] > 0.0f ? v[i] : 0.0f;
                v = masked;
            }
            if (overwrite && disjoint)
                for (size_t i = 0; i < n; i++) d[am[i0 + i]] = v[i];
            else
                for (size_t i = 0; i < n; i++) d[am[i0 + i]] += v[i];
        }
    }
}

/* Average pooling divides by the full window (padding counts as zeros), as
 * PyTorch's default count_include_pad=True. */
void nn_k_avgpool(const float *x, const nn_conv_shape *s, float *y)
{
    size_t planes = (size_t)s->n * s->c;
    float inv = 1.0f / (float)(s->kh * s->kw);
    for (size_t p = 0; p < planes; p++) {
        const float *in = x + p * s->h * s->w;
        for (int oh = 0; oh < s->oh; oh++)
            for (int ow = 0; ow < s->ow; ow++) {
                float sum = 0.0f;
                for (int ki = 0; ki < s->kh; ki++) {
                    int ih = oh * s->sh - s->pt + ki;
                    if (ih < 0 || ih >= s->h) continue;
                    for (int kj = 0; kj < s->kw; kj++) {
                        int iw = ow * s->sw - s->pl + kj;
                        if (iw >= 0 && iw < s->w) sum += in[ih * s->w + iw];
                    }
                }
                y[(p * s->oh + oh) * s->ow + ow] = sum * inv;
            }
    }
}

void nn_k_avgpool_bwd_acc(const float *dy, const nn_conv_shape *s, float *dx)
{
    size_t planes = (size_t)s->n * s->c;
    float inv = 1.0f / (float)(s->kh * s->kw);
    for (size_t p = 0; p < planes; p++) {
        float *out = dx + p * s->h * s->w;
        for (int oh = 0; oh < s->oh; oh++)
            for (int ow = 0; ow < s->ow; ow++) {
                float g = dy[(p * s->oh + oh) * s->ow + ow] * inv;
                for (int ki = 0; ki < s->kh; ki++) {
                    int ih = oh * s->sh - s->pt + ki;
                    if (ih < 0 || ih >= s->h) continue;
                    for (int kj = 0; kj < s->kw; kj++) {
                        int iw = ow * s->sw - s->pl + kj;
                        if (iw >= 0 && iw < s->w) out[ih * s->w + iw] += g;
                    }
                }
            }
    }
}
