/* Max and average pooling over NCHW planes. Each thread owns whole planes,
 * so results do not depend on the thread count. The common 2x2 stride-2
 * case has its own loops: AVX-512 (16 windows a step) where the build
 * targets it, else plain C the compiler vectorizes. */
#include <string.h>

#include "kernels.h"
#include "simd.h"

#define PAR_MIN_WORK 100000 /* elements below which threads cost more than they save */

/* 1 if v takes the place of best, the earlier candidate: v is greater, or v
 * is a NaN and best is not (a NaN wins, so it propagates). Branch-free. */
static inline int beats(float v, float best) { return v > best || (v != v && best == best); }

#if !defined(__AVX512F__)
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
static void maxpool_2x2_plain(const float *restrict in, const nn_conv_shape *s, float *restrict y,
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
#endif

#if defined(__AVX512F__)
/* beats() for 16 lanes at once. */
static inline __mmask16 beats16(__m512 v, __m512 best)
{
    return _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |
           (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q));
}

/* Outputs [ow0, ow0+n) (n <= 16) of one output row from input rows top and
 * bottom: the row pairs' 2n inputs in two masked loads each, split into
 * left and right columns by two-source permutes, then the same tournament
 * as maxpool_2x2_plain on 16 windows at once. idx0 is the plane index of
 * the top-left input of window ow0. */
static inline void maxpool_2x2_row16(const float *top, const float *bottom, int w, int idx0, int n,
                                     int relu, float *y, int *argmax)
{
    const __m512i left = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i right = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    __mmask16 m0 = first_lanes(2 * n), m1 = first_lanes(2 * n - 16);
    __m512 t0 = _mm512_maskz_loadu_ps(m0, top), t1 = _mm512_maskz_loadu_ps(m1, top + 16);
    __m512 b0 = _mm512_maskz_loadu_ps(m0, bottom), b1 = _mm512_maskz_loadu_ps(m1, bottom + 16);
    __m512 a = _mm512_permutex2var_ps(t0, left, t1), b = _mm512_permutex2var_ps(t0, right, t1);
    __m512 c = _mm512_permutex2var_ps(b0, left, b1), d = _mm512_permutex2var_ps(b0, right, b1);
    __mmask16 top_right = beats16(b, a), bottom_right = beats16(d, c);
    __m512 top_max = _mm512_mask_blend_ps(top_right, a, b), bottom_max = _mm512_mask_blend_ps(bottom_right, c, d);
    __mmask16 down = beats16(bottom_max, top_max);
    __m512 best = _mm512_mask_blend_ps(down, top_max, bottom_max);
    __mmask16 to_right = (__mmask16)((down & bottom_right) | (~down & top_right));
    __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(idx0), left); /* left lane i is 2i */
    idx = _mm512_mask_add_epi32(idx, down, idx, _mm512_set1_epi32(w));
    idx = _mm512_mask_add_epi32(idx, to_right, idx, _mm512_set1_epi32(1));
    if (relu) /* ReLU(NaN) = 0, as nn_k_relu */
        best = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(best, _mm512_setzero_ps(), _CMP_GT_OQ), best);
    _mm512_mask_storeu_ps(y, first_lanes(n), best);
    _mm512_mask_storeu_epi32(argmax, first_lanes(n), idx);
}
#endif

/* 2x2 stride-2 unpadded pooling of one plane, then ReLU if relu is set. */
static void maxpool_2x2(const float *restrict in, const nn_conv_shape *s, int relu, float *restrict y,
                        int *restrict argmax)
{
#if defined(__AVX512F__)
    const int w = s->w;
    for (int oh = 0; oh < s->oh; oh++) {
        const float *top = in + (size_t)(2 * oh) * w;
        for (int ow0 = 0; ow0 < s->ow; ow0 += 16)
            maxpool_2x2_row16(top + 2 * ow0, top + w + 2 * ow0, w, 2 * oh * w + 2 * ow0,
                              s->ow - ow0 < 16 ? s->ow - ow0 : 16, relu,
                              y + (size_t)oh * s->ow + ow0, argmax + (size_t)oh * s->ow + ow0);
    }
#else
    maxpool_2x2_plain(in, s, y, argmax);
    if (relu) nn_k_relu((size_t)s->oh * s->ow, y, y);
#endif
}

/* 2x2 windows at stride 2 without padding, all inside the input. */
static int is_2x2_stride2(const nn_conv_shape *s)
{
    return s->kh == 2 && s->kw == 2 && s->sh == 2 && s->sw == 2 && s->pt == 0 && s->pl == 0 &&
           2 * s->oh <= s->h && 2 * s->ow <= s->w;
}

static void maxpool_plane(const float *in, const nn_conv_shape *s, int fast, int relu, float *y,
                          int *argmax)
{
    if (fast) {
        maxpool_2x2(in, s, relu, y, argmax);
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
    if (relu) nn_k_relu((size_t)s->oh * s->ow, y, y);
}

void nn_k_maxpool_plane(const float *x, const nn_conv_shape *s, int relu, float *y, int *argmax)
{
    maxpool_plane(x, s, is_2x2_stride2(s), relu, y, argmax);
}

void nn_k_maxpool(const float *x, const nn_conv_shape *s, int relu, float *y, int *argmax)
{
    size_t planes = (size_t)s->n * s->c, ohw = (size_t)s->oh * s->ow;
    int fast = is_2x2_stride2(s);
#pragma omp parallel for schedule(static) if (planes * s->h * s->w > PAR_MIN_WORK)
    for (size_t p = 0; p < planes; p++)
        maxpool_plane(x + p * s->h * s->w, s, fast, relu, y + p * ohw, argmax + p * ohw);
}

#define MASK_BLOCK 256 /* outputs whose ReLU mask is applied at a time */

#if defined(__AVX512F__)
/* The gradient of one plane of 2x2 stride-2 unpadded pooling, overwriting
 * dx: every input written once, in order - the window's gradient where the
 * argmax points, zeros elsewhere (and in the rows and columns no window
 * covers) - instead of a memset and a scattered store per output. Each
 * output's gradient and argmax are spread to the two input columns under
 * it by a permute, and kept where the argmax is that input. */
static void maxpool_2x2_bwd_plane(const float *dy, const float *relu_y, const int *argmax,
                                  const nn_conv_shape *s, float *dx)
{
    const int w = s->w, ow_n = s->ow;
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i under[2] = {_mm512_srli_epi32(lane, 1), /* input lane -> output lane */
                              _mm512_add_epi32(_mm512_srli_epi32(lane, 1), _mm512_set1_epi32(8))};
    for (int oh = 0; oh < s->oh; oh++) {
        float *top = dx + (size_t)(2 * oh) * w;
        for (int ow0 = 0; ow0 < ow_n; ow0 += 16) {
            int n = ow_n - ow0 < 16 ? ow_n - ow0 : 16;
            __mmask16 m = first_lanes(n);
            size_t o = (size_t)oh * ow_n + ow0;
            __m512 g = _mm512_maskz_loadu_ps(m, dy + o);
            if (relu_y) /* the fused ReLU's mask, as the scalar path */
                g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m, relu_y + o),
                                                           _mm512_setzero_ps(), _CMP_GT_OQ), g);
            __m512i am = _mm512_maskz_loadu_epi32(m, argmax + o);
            for (int half = 0; half < 2 && 2 * n > 16 * half; half++) {
                __m512 gh = _mm512_permutexvar_ps(under[half], g);
                __m512i ah = _mm512_permutexvar_epi32(under[half], am);
                int col = 2 * ow0 + 16 * half;
                __mmask16 keep = first_lanes(2 * n - 16 * half);
                __m512i at = _mm512_add_epi32(_mm512_set1_epi32(2 * oh * w + col), lane);
                _mm512_mask_storeu_ps(top + col, keep,
                                      _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(ah, at), gh));
                at = _mm512_add_epi32(at, _mm512_set1_epi32(w));
                _mm512_mask_storeu_ps(top + w + col, keep,
                                      _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(ah, at), gh));
            }
        }
        for (int col = 2 * ow_n; col < w; col++) top[col] = top[w + col] = 0.0f;
    }
    if (s->h > 2 * s->oh) memset(dx + (size_t)(2 * s->oh) * w, 0, (size_t)(s->h - 2 * s->oh) * w * sizeof(float));
}
#endif

void nn_k_maxpool_bwd_plane(const float *dy, const int *argmax, const nn_conv_shape *s,
                            const float *relu_y, int overwrite, float *dx)
{
    size_t ohw = (size_t)s->oh * s->ow, hw = (size_t)s->h * s->w;
#if defined(__AVX512F__)
    if (overwrite && is_2x2_stride2(s)) {
        maxpool_2x2_bwd_plane(dy, relu_y, argmax, s, dx);
        return;
    }
#endif
    /* Windows that do not overlap (stride >= window): each input gets at
     * most one gradient, so a zeroed plane takes plain stores - a vector
     * memset and one store per output, where adding would read back every
     * store. */
    int disjoint = s->sh >= s->kh && s->sw >= s->kw;
    if (overwrite) memset(dx, 0, hw * sizeof(float));
    for (size_t i0 = 0; i0 < ohw; i0 += MASK_BLOCK) {
        size_t n = ohw - i0 < MASK_BLOCK ? ohw - i0 : MASK_BLOCK;
        const float *v = dy + i0;
        float masked[MASK_BLOCK];
        if (relu_y) { /* a vector select first: a branch per output mispredicts */
            for (size_t i = 0; i < n; i++) masked[i] = relu_y[i0 + i] > 0.0f ? v[i] : 0.0f;
            v = masked;
        }
        if (overwrite && disjoint)
            for (size_t i = 0; i < n; i++) dx[argmax[i0 + i]] = v[i];
        else
            for (size_t i = 0; i < n; i++) dx[argmax[i0 + i]] += v[i];
    }
}

void nn_k_maxpool_bwd(const float *dy, const int *argmax, const nn_conv_shape *s,
                      const float *relu_y, int overwrite, float *dx)
{
    size_t planes = (size_t)s->n * s->c, ohw = (size_t)s->oh * s->ow, hw = (size_t)s->h * s->w;
#pragma omp parallel for schedule(static) if (planes * hw > PAR_MIN_WORK)
    for (size_t p = 0; p < planes; p++)
        nn_k_maxpool_bwd_plane(dy + p * ohw, argmax + p * ohw, s, relu_y ? relu_y + p * ohw : NULL,
                               overwrite, dx + p * hw);
}

void nn_k_maxpool_bwd_cn(const float *dy, const int *argmax, const nn_conv_shape *s,
                         const float *relu_y, float *dx_cn, float *sums)
{
    size_t planes = (size_t)s->n * s->c, ohw = (size_t)s->oh * s->ow, hw = (size_t)s->h * s->w;
#pragma omp parallel for schedule(static) if (planes * hw > PAR_MIN_WORK)
    for (size_t p = 0; p < planes; p++) { /* plane p = (image n, channel c) goes to row c, block n */
        float *d = dx_cn + ((p % s->c) * s->n + p / s->c) * hw;
        nn_k_maxpool_bwd_plane(dy + p * ohw, argmax + p * ohw, s, relu_y ? relu_y + p * ohw : NULL, 1, d);
        if (sums) sums[p] = nn_k_row_sum(hw, d);
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
