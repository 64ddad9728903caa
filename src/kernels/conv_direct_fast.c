/* The direct convolution's fast path: stride 1 without padding, with the
 * common tap counts (3x3 or 5x5 over one channel, 3x3 over three), on
 * AVX-512 builds; and the first layer's convolution + max pooling + ReLU
 * run image by image on it (nn_conv2d_maxpool2d_relu). Elsewhere
 * nn_k_conv_direct_fast_taps is 0 and conv_direct.c's general loops run.
 * Threads own whole images (forward) or weight rows (dW, db), so results
 * do not depend on the thread count. */
#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"
#include "simd.h"

#define PAR_MIN_WORK 100000 /* multiply-adds below which threads cost more than they save */

#if defined(__AVX512F__)
/* Stride 1 without padding, with common tap counts (3x3 or 5x5 over one
 * channel, 3x3 over three), on AVX-512: for a 16-wide piece of an output
 * row, the inputs under tap (c, ki, kj) are 16 consecutive values of the
 * image, loaded straight from it (no table), and the taps' count is a
 * compile-time constant so that each tap's vector or accumulator stays in
 * a register. The forward sums in the same order as the general path (the
 * same bits); the weight gradient sums each lane's positions in order and
 * then the lanes. */
static int fast_taps(const nn_conv_shape *s)
{
    int taps = s->c * s->kh * s->kw;
    int plain = s->sh == 1 && s->sw == 1 && s->pt == 0 && s->pl == 0 && s->oh == s->h - s->kh + 1 &&
                s->ow == s->w - s->kw + 1;
    return plain && (taps == 9 || taps == 25 || taps == 27) ? taps : 0;
}

/* Offsets in an image of the input under each tap, from the output's position. */
static void tap_offsets(const nn_conv_shape *s, int *off)
{
    int t = 0;
    for (int c = 0; c < s->c; c++)
        for (int ki = 0; ki < s->kh; ki++)
            for (int kj = 0; kj < s->kw; kj++) off[t++] = (c * s->h + ki) * s->w + kj;
}

/* One image's forward with T taps: the T input vectors of a piece, then
 * every output channel from them. Defined per T (a macro) so that the
 * arrays have constant sizes and live in registers. */
#define FAST_FORWARD_IMAGE(T)                                                                      \
    static void fast_forward_image_##T(const float *xn, const nn_conv_shape *s, const int *off,   \
                                       int oc, const float *w, const float *bias, int relu,        \
                                       float *yn)                                                  \
    {                                                                                              \
        const size_t ohw = (size_t)s->oh * s->ow;                                                  \
        for (int oh = 0; oh < s->oh; oh++)                                                         \
            for (int o0 = 0; o0 < s->ow; o0 += 16) {                                               \
                __mmask16 m = first_lanes(s->ow - o0);                                             \
                const float *at = xn + (size_t)oh * s->w + o0;                                     \
                __m512 xt[T];                                                                      \
                _Pragma("GCC unroll 32") for (int t = 0; t < T; t++) xt[t] =                       \
                    _mm512_maskz_loadu_ps(m, at + off[t]);                                         \
                for (int o = 0; o < oc; o++) {                                                     \
                    const float *wo = w + (size_t)o * T;                                           \
                    vf sum = {0}; /* written as the GEMM's micro-kernel: the same contraction */   \
                    _Pragma("GCC unroll 32") for (int t = 0; t < T; t++) sum += wo[t] * (vf)xt[t]; \
                    __m512 acc = (__m512)(sum + (bias ? bias[o] : 0.0f));                          \
                    if (relu)                                                                      \
                        acc = _mm512_maskz_mov_ps(                                                 \
                            _mm512_cmp_ps_mask(acc, _mm512_setzero_ps(), _CMP_GT_OQ), acc);        \
                    _mm512_mask_storeu_ps(yn + (size_t)o * ohw + (size_t)oh * s->ow + o0, m, acc); \
                }                                                                                  \
            }                                                                                      \
    }
FAST_FORWARD_IMAGE(9)
FAST_FORWARD_IMAGE(25)
FAST_FORWARD_IMAGE(27)

/* One image's forward, by fast_taps' count T. */
static void forward_image(int T, const float *xn, const nn_conv_shape *s, const int *off, int oc,
                          const float *w, const float *bias, int relu, float *yn)
{
    if (T == 9)
        fast_forward_image_9(xn, s, off, oc, w, bias, relu, yn);
    else if (T == 25)
        fast_forward_image_25(xn, s, off, oc, w, bias, relu, yn);
    else
        fast_forward_image_27(xn, s, off, oc, w, bias, relu, yn);
}

static void fast_forward(int T, const float *x, const nn_conv_shape *s, int oc, const float *w,
                         const float *bias, int relu, float *y)
{
    int off[NN_CONV_DIRECT_MAX_TAPS];
    tap_offsets(s, off);
    const size_t chw = (size_t)s->c * s->h * s->w, ohw = (size_t)s->oh * s->ow;
#pragma omp parallel for schedule(static) if ((size_t)s->n * oc * ohw * T > PAR_MIN_WORK)
    for (int n = 0; n < s->n; n++)
        forward_image(T, x + n * chw, s, off, oc, w, bias, relu, y + (size_t)n * oc * ohw);
}

/* dW and db rows [o0, o1) (at most DW_ROWS) over the whole batch, from dy
 * (masked by the fused ReLU's output y when given). Image by image, so that
 * dy is read in memory order (each row's plane of an image follows the
 * last; row by row over all images, every plane would start with a cache
 * miss). Rows go B at a time: each input vector loaded serves B rows' FMAs,
 * whose T + 1 accumulators each are in registers while they run through
 * an image, in L1 between images. Defined per T and B, as above. */
#define DW_ROWS 16
#define FAST_DW_IMAGE(T, B)                                                                        \
    static inline __attribute__((always_inline)) void fast_dw_image_##T##_##B(                     \
        const float *xn, const nn_conv_shape *s, const int *off, const float *yn,                   \
        const float *dyn, __m512 (*sums)[T + 1])                                                   \
    {                                                                                              \
        const size_t ohw = (size_t)s->oh * s->ow;                                                  \
        __m512 acc[B][T + 1];                                                                      \
        _Pragma("GCC unroll 4") for (int b = 0; b < B; b++)                                        \
            _Pragma("GCC unroll 32") for (int t = 0; t <= T; t++) acc[b][t] = sums[b][t];          \
        for (int oh = 0; oh < s->oh; oh++)                                                         \
            for (int c0 = 0; c0 < s->ow; c0 += 16) {                                               \
                __mmask16 m = first_lanes(s->ow - c0);                                             \
                const float *at = xn + (size_t)oh * s->w + c0;                                     \
                size_t r = (size_t)oh * s->ow + c0;                                                \
                __m512 g[B];                                                                       \
                _Pragma("GCC unroll 4") for (int b = 0; b < B; b++) {                              \
                    g[b] = _mm512_maskz_loadu_ps(m, dyn + b * ohw + r);                            \
                    if (yn)                                                                        \
                        g[b] = _mm512_maskz_mov_ps(                                                \
                            _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m, yn + b * ohw + r),         \
                                               _mm512_setzero_ps(), _CMP_GT_OQ),                   \
                            g[b]);                                                                 \
                    acc[b][T] = _mm512_add_ps(acc[b][T], g[b]);                                    \
                }                                                                                  \
                _Pragma("GCC unroll 32") for (int t = 0; t < T; t++) {                             \
                    __m512 xt = _mm512_maskz_loadu_ps(m, at + off[t]);                             \
                    _Pragma("GCC unroll 4") for (int b = 0; b < B; b++) acc[b][t] =                \
                        _mm512_fmadd_ps(g[b], xt, acc[b][t]);                                      \
                }                                                                                  \
            }                                                                                      \
        _Pragma("GCC unroll 4") for (int b = 0; b < B; b++)                                        \
            _Pragma("GCC unroll 32") for (int t = 0; t <= T; t++) sums[b][t] = acc[b][t];          \
    }
/* A max pooling and ReLU after the convolution, run with it: the pooled
 * gradient dy (with the pooling's argmax and ReLU'd output) is spread back
 * over the convolution's output an image at a time, into scratch (oc
 * planes), instead of being read from a stored gradient. */
typedef struct pool_after {
    const nn_conv_shape *s;
    const float *dy, *relu_y;
    const int *argmax;
    float *scratch;
} pool_after;

#define FAST_DW_ROWS(T, B)                                                                         \
    static void fast_dw_rows_##T(const float *x, const nn_conv_shape *s, const int *off, int oc,   \
                                 int o0, int o1, const float *y, const float *dy,                  \
                                 const pool_after *pool, float *dw, float *db)                     \
    {                                                                                              \
        const size_t chw = (size_t)s->c * s->h * s->w, ohw = (size_t)s->oh * s->ow;                \
        __m512 sums[DW_ROWS][T + 1]; /* taps, then the bias */                                     \
        for (int o = o0; o < o1; o++)                                                              \
            for (int t = 0; t <= T; t++) sums[o - o0][t] = _mm512_setzero_ps();                    \
        for (int n = 0; n < s->n; n++) {                                                           \
            const float *xn = x + n * chw, *dyn;                                                   \
            if (!pool) {                                                                           \
                dyn = dy + (size_t)n * oc * ohw;                                                   \
            } else {                                                                               \
                size_t pohw = (size_t)pool->s->oh * pool->s->ow;                                   \
                for (int o = o0; o < o1; o++) {                                                    \
                    size_t at = ((size_t)n * oc + o) * pohw;                                       \
                    nn_k_maxpool_bwd_plane(pool->dy + at, pool->argmax + at, pool->s,              \
                                           pool->relu_y + at, 1, pool->scratch + o * ohw);         \
                }                                                                                  \
                dyn = pool->scratch;                                                               \
            }                                                                                      \
            int o = o0;                                                                            \
            for (; o + B <= o1; o += B) {                                                          \
                size_t plane = ((size_t)n * oc + o) * ohw;                                         \
                fast_dw_image_##T##_##B(xn, s, off, y ? y + plane : NULL, dyn + o * ohw,           \
                                        sums + (o - o0));                                          \
            }                                                                                      \
            for (; o < o1; o++) {                                                                  \
                size_t plane = ((size_t)n * oc + o) * ohw;                                         \
                fast_dw_image_##T##_1(xn, s, off, y ? y + plane : NULL, dyn + o * ohw,             \
                                      sums + (o - o0));                                            \
            }                                                                                      \
        }                                                                                          \
        for (int o = o0; o < o1; o++) {                                                            \
            if (dw)                                                                                \
                for (int t = 0; t < T; t++)                                                        \
                    dw[(size_t)o * T + t] += _mm512_reduce_add_ps(sums[o - o0][t]);                \
            if (db) db[o] += _mm512_reduce_add_ps(sums[o - o0][T]);                                \
        }                                                                                          \
    }
FAST_DW_IMAGE(9, 2)
FAST_DW_IMAGE(9, 1)
FAST_DW_IMAGE(25, 1)
FAST_DW_IMAGE(27, 1)
FAST_DW_ROWS(9, 2)
FAST_DW_ROWS(25, 1)
FAST_DW_ROWS(27, 1)

static void fast_dw(int T, const float *x, const nn_conv_shape *s, int oc, const float *y,
                    const float *dy, const pool_after *pool, float *dw, float *db)
{
    int off[NN_CONV_DIRECT_MAX_TAPS];
    tap_offsets(s, off);
    /* blocks of rows split evenly between up to two threads */
    const int blocks = oc <= DW_ROWS ? 1 + (oc > 1) : (oc + DW_ROWS - 1) / DW_ROWS;
#pragma omp parallel for schedule(static) if ((size_t)s->n * oc * s->oh * s->ow * T > PAR_MIN_WORK)
    for (int bk = 0; bk < blocks; bk++) {
        int o0 = (int)((long)oc * bk / blocks), o1 = (int)((long)oc * (bk + 1) / blocks);
        if (T == 9)
            fast_dw_rows_9(x, s, off, oc, o0, o1, y, dy, pool, dw, db);
        else if (T == 25)
            fast_dw_rows_25(x, s, off, oc, o0, o1, y, dy, pool, dw, db);
        else
            fast_dw_rows_27(x, s, off, oc, o0, o1, y, dy, pool, dw, db);
    }
}
#endif

int nn_k_conv_direct_fast_taps(const nn_conv_shape *s)
{
#if defined(__AVX512F__)
    return fast_taps(s);
#else
    (void)s;
    return 0;
#endif
}

void nn_k_conv_direct_fast(const float *x, const nn_conv_shape *s, int oc, const float *w,
                           const float *bias, int relu, float *y)
{
#if defined(__AVX512F__)
    fast_forward(fast_taps(s), x, s, oc, w, bias, relu, y);
#else
    (void)x, (void)s, (void)oc, (void)w, (void)bias, (void)relu, (void)y;
#endif
}

void nn_k_conv_direct_fast_dw(const float *x, const nn_conv_shape *s, int oc, const float *y,
                              const float *dy, float *dw, float *db)
{
#if defined(__AVX512F__)
    fast_dw(fast_taps(s), x, s, oc, y, dy, NULL, dw, db);
#else
    (void)x, (void)s, (void)oc, (void)y, (void)dy, (void)dw, (void)db;
#endif
}

int nn_k_conv_direct_pool_fusable(const nn_conv_shape *s) { return nn_k_conv_direct_fast_taps(s) != 0; }

void nn_k_conv_direct_maxpool_relu(const float *x, const nn_conv_shape *s, int oc, const float *w,
                                   const float *bias, const nn_conv_shape *pool, float *scratch,
                                   float *y, int *argmax)
{
#if defined(__AVX512F__)
    const int T = fast_taps(s);
    int off[NN_CONV_DIRECT_MAX_TAPS];
    tap_offsets(s, off);
    const size_t chw = (size_t)s->c * s->h * s->w, ohw = (size_t)s->oh * s->ow;
    const size_t pohw = (size_t)pool->oh * pool->ow;
#pragma omp parallel for schedule(static) if ((size_t)s->n * oc * ohw * T > PAR_MIN_WORK)
    for (int n = 0; n < s->n; n++) {
        int me = 0;
#ifdef _OPENMP
        me = omp_get_thread_num();
#endif
        float *conv_out = scratch + (size_t)me * oc * ohw; /* this image's, in cache */
        forward_image(T, x + n * chw, s, off, oc, w, bias, 0, conv_out);
        for (int o = 0; o < oc; o++)
            nn_k_maxpool_plane(conv_out + o * ohw, pool, 1, y + ((size_t)n * oc + o) * pohw,
                               argmax + ((size_t)n * oc + o) * pohw);
    }
#else
    (void)x, (void)s, (void)oc, (void)w, (void)bias, (void)pool, (void)scratch, (void)y, (void)argmax;
#endif
}

void nn_k_conv_direct_maxpool_relu_bwd(const float *x, const nn_conv_shape *s, int oc,
                                       const nn_conv_shape *pool, const float *dy,
                                       const int *argmax, const float *y, float *scratch, float *dw,
                                       float *db)
{
#if defined(__AVX512F__)
    pool_after after = {pool, dy, y, argmax, scratch};
    fast_dw(fast_taps(s), x, s, oc, NULL, NULL, &after, dw, db);
#else
    (void)x, (void)s, (void)oc, (void)pool, (void)dy, (void)argmax, (void)y, (void)scratch, (void)dw,
        (void)db;
#endif
}
