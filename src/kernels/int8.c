/* int8 inference kernels (the quantized plan, src/infer/): activations
 * quantized per tensor and stored as unsigned bytes q + 128, weights per
 * output channel as signed bytes, products summed in int32. With AVX-512
 * VNNI one vpdpbusd instruction adds four byte products into each of 16
 * int32 lanes (AVX-VNNI, on AVX2 CPUs without AVX-512: 8 lanes); the plain
 * C path computes the same integers (the sums are exact, so the two agree
 * bit for bit). The +128 offset, which VNNI's unsigned-times-signed
 * products need, is taken back out with each output channel's weight sum. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "simd.h"

/* The VNNI paths, written once over these register operations: 16 int32
 * lanes per register with AVX-512 VNNI, 8 with AVX-VNNI. */
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512F__)
#include <immintrin.h>
#define NN_HAVE_VNNI 1
#define QR_LANES 16
typedef __m512i qreg;
typedef __m512 freg;
#define qr_zero() _mm512_setzero_si512()
#define qr_load(p) _mm512_loadu_si512((const void *)(p))
#define qr_bcast(v) _mm512_set1_epi32(v)
#define qr_dot(acc, x, w) _mm512_dpbusd_epi32(acc, x, w)
#define qr_max(a, b) _mm512_max_epi32(a, b)
#define qr_sub(a, b) _mm512_sub_epi32(a, b)
#define qr_times128(a) _mm512_slli_epi32(a, 7)
#define fr_of(a) _mm512_cvtepi32_ps(a)
#define fr_load(p) _mm512_loadu_ps(p)
#define fr_fmadd(a, b, c) _mm512_fmadd_ps(a, b, c)
#define fr_relu(a) _mm512_max_ps(a, _mm512_setzero_ps())
#define fr_store(p, a) _mm512_storeu_ps(p, a)
#elif defined(__AVXVNNI__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define NN_HAVE_VNNI 1
#define QR_LANES 8
typedef __m256i qreg;
typedef __m256 freg;
#define qr_zero() _mm256_setzero_si256()
#define qr_load(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define qr_bcast(v) _mm256_set1_epi32(v)
#define qr_dot(acc, x, w) _mm256_dpbusd_avx_epi32(acc, x, w)
#define qr_max(a, b) _mm256_max_epi32(a, b)
#define qr_sub(a, b) _mm256_sub_epi32(a, b)
#define qr_times128(a) _mm256_slli_epi32(a, 7)
#define fr_of(a) _mm256_cvtepi32_ps(a)
#define fr_load(p) _mm256_loadu_ps(p)
#define fr_fmadd(a, b, c) _mm256_fmadd_ps(a, b, c)
#define fr_relu(a) _mm256_max_ps(a, _mm256_setzero_ps())
#define fr_store(p, a) _mm256_storeu_ps(p, a)
#else
#define NN_HAVE_VNNI 0
#endif

/* Outputs per group of lanes (16 int32), whatever the build, so the
 * packed layout (within one build: groups differ below) covers every
 * path. Register budget per tile, in groups of 16 lanes: 24 accumulator
 * groups (plus the weights) with 32 AVX-512 registers; with AVX-VNNI's 16
 * ymm registers 5 groups (10 registers), one lane group per convolution
 * tile and two for a dense layer. */
#if NN_HAVE_VNNI && QR_LANES == 8
enum { QL = 16, Q_MAX_P = 12, Q_MAX_NV = 2, Q_MAX_ACC = 5, Q_CONV_NV = 1 };
#else
enum { QL = 16, Q_MAX_P = 12, Q_MAX_NV = 8, Q_MAX_ACC = 24, Q_CONV_NV = 4 };
#endif

int nn_k_q8_vnni(void) { return NN_HAVE_VNNI; }

static int round4(int c) { return (c + 3) / 4 * 4; }
static int round16(int n) { return (n + QL - 1) / QL * QL; }

int nn_k_q8_channels(int c) { return round4(c); }

/* Round to nearest, ties to even: lrintf here, and in vectors by adding
 * and taking away 1.5 * 2^23 (exact for |v| <= 127 in float arithmetic,
 * which vector code always is; scalar float expressions may be evaluated
 * in double, as on s390x, where the trick would not round); NaN becomes 0. */
static const float ROUNDER = 12582912.0f;

static uint8_t quantize_one(float x, float inv_scale)
{
    float v = x * inv_scale;
    v = v == v ? v : 0.0f;
    v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
    return (uint8_t)(lrintf(v) + 128);
}

typedef uint8_t vq __attribute__((vector_size(VEC)));

/* VEC floats to bytes, as quantize_one. */
static inline void quantize_vec(const float *x, vf inv, uint8_t *q)
{
    vf v = vload(x) * inv;
    v = (vf)((vi)v & (vi)(v == v));
    vf hi = VS(127.0f) + (vf){0}, lo = VS(-127.0f) + (vf){0};
    v = (vf)(((vi)hi & (vi)(v > hi)) | ((vi)v & ~(vi)(v > hi)));
    v = (vf)(((vi)lo & (vi)(v < lo)) | ((vi)v & ~(vi)(v < lo)));
    v = (v + VS(ROUNDER)) - VS(ROUNDER);
    vi r = __builtin_convertvector(v, vi) + 128;
    vq b = __builtin_convertvector(r, vq);
    memcpy(q, &b, VEC);
}

void nn_k_q8_quantize(int positions, int c, int cs, const float *x, float inv_scale, int cq, uint8_t *q)
{
    vf inv = VS(inv_scale) + (vf){0};
    if (c == cs && c == cq) { /* one run */
        c = positions * c;
        cs = cq = c;
        positions = 1;
    }
    for (int p = 0; p < positions; p++) {
        const float *xp = x + (size_t)p * cs;
        uint8_t *qp = q + (size_t)p * cq;
        int i = 0;
        for (; i + VEC <= c; i += VEC) quantize_vec(xp + i, inv, qp + i);
        for (; i < c; i++) qp[i] = quantize_one(xp[i], inv_scale);
        for (; i < cq; i++) qp[i] = 128;
    }
}

float nn_k_max_abs(int positions, int c, int cs, const float *x)
{
    float m = 0.0f;
    for (int p = 0; p < positions; p++)
        for (int i = 0; i < c; i++) {
            float a = fabsf(x[(size_t)p * cs + i]);
            m = a > m || a != a ? a : m;
        }
    return m;
}

void nn_k_q8_weight_scales(int outputs, size_t per_output, const float *w, float *scale)
{
    for (int o = 0; o < outputs; o++) {
        float m = nn_k_max_abs(1, (int)per_output, 0, w + (size_t)o * per_output);
        scale[o] = m > 0.0f ? m / 127.0f : 1.0f;
    }
}

void nn_k_q8_round_weights(size_t n, size_t per_output, const float *w, const float *scale, int8_t *q)
{
    for (size_t i = 0; i < n; i++) {
        float v = w[i] / scale[i / per_output];
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
        q[i] = (int8_t)lrintf(v);
    }
}

/* The K loop of a window: per kernel row, `runs` runs of `run` bytes (a
 * multiple of 4): k runs of the channels (rounded up to 4), one per tap;
 * or, with row runs, one run of the row's k * c bytes rounded up to 4. */
static void window_runs(int k, int c, int row_runs, int *runs, int *run)
{
    *runs = row_runs ? 1 : k;
    *run = row_runs ? round4(k * c) : round4(c);
}

size_t nn_k_q8_packed_bytes(int oc, int c, int k, int row_runs)
{
    int runs, run;
    window_runs(k, c, row_runs, &runs, &run);
    return (size_t)round16(oc) * k * runs * run;
}

/* Output lanes [*l0, *l1) (in units of QL) of group g: as even as
 * max_nv lanes per group allow. */
static int q_groups(int nvec, int max_nv) { return (nvec + max_nv - 1) / max_nv; }
static void q_span(int nvec, int max_nv, int g, int *v0, int *v1)
{
    int groups = q_groups(nvec, max_nv);
    *v0 = nvec * g / groups;
    *v1 = nvec * (g + 1) / groups;
}

/* Groups of four lane vectors for convolutions (tiles of up to six
 * positions: few enough that the positions' input offsets stay in general
 * registers; a group's bytes, 4 x 64 per 4 channels and tap, stay in L1),
 * of up to eight for a single position (a dense layer): more independent
 * sums where there are no positions to share the weights. */
static int group_width(int single_position) { return single_position ? Q_MAX_NV : Q_CONV_NV; }

void nn_k_q8_pack(int oc, int c, int k, int row_runs, const float *w, const float *scale, int8_t *dst,
                  int32_t *wsum)
{
    int nvec = round16(oc) / QL, max_nv = group_width(0), runs, run;
    window_runs(k, c, row_runs, &runs, &run);
    for (int o = 0; o < round16(oc); o++) wsum[o] = 0;
    for (int g = 0; g < q_groups(nvec, max_nv); g++) {
        int v0, v1;
        q_span(nvec, max_nv, g, &v0, &v1);
        for (int ky = 0; ky < k; ky++)
            for (int r = 0; r < runs; r++)
                for (int j4 = 0; j4 < run; j4 += 4)
                    for (int o = v0 * QL; o < v1 * QL; o++)
                        for (int b = 0; b < 4; b++) {
                            /* byte j of the run: channel ci of column kx */
                            int j = j4 + b, kx = row_runs ? j / c : r, ci = row_runs ? j % c : j;
                            int8_t q = 0;
                            if (o < oc && kx < k && ci < c) {
                                float v = w[(((size_t)o * c + ci) * k + ky) * k + kx] / scale[o];
                                v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
                                q = (int8_t)lrintf(v);
                            }
                            *dst++ = q;
                            wsum[o] += q;
                        }
    }
}

void nn_k_q8_pack_dense(int n, int k, const float *w, int w_cols, const int *source, const float *scale,
                        int8_t *dst, int32_t *wsum)
{
    int nvec = round16(n) / QL, kq = round4(k), max_nv = group_width(1);
    for (int o = 0; o < round16(n); o++) wsum[o] = 0;
    for (int g = 0; g < q_groups(nvec, max_nv); g++) {
        int v0, v1;
        q_span(nvec, max_nv, g, &v0, &v1);
        for (int i4 = 0; i4 < kq; i4 += 4)
            for (int o = v0 * QL; o < v1 * QL; o++)
                for (int b = 0; b < 4; b++) {
                    int i = i4 + b, col = i >= k ? -1 : source ? source[i] : i;
                    int8_t q = 0;
                    if (o < n && col >= 0) {
                        float v = w[(size_t)o * w_cols + col] / scale[o];
                        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
                        q = (int8_t)lrintf(v);
                    }
                    *dst++ = q;
                    wsum[o] += q;
                }
    }
}

/* y = (acc - 128 * wsum) * scale + bias for one tile row of n outputs (a
 * multiple of 16), clamped at 0 if relu: the one dequantization both paths
 * share. */
static void dequantize(int n, const int32_t *acc, const int32_t *wsum, const float *scale, const float *bias,
                       int relu, float *y)
{
#if NN_HAVE_VNNI
    for (int o = 0; o < n; o += QR_LANES) {
        /* the same instructions as the VNNI tile's, so that both paths give
         * the same bits whatever the optimizer contracts */
        qreg a = qr_load(acc + o), offset = qr_times128(qr_load(wsum + o));
        freg f = fr_fmadd(fr_of(qr_sub(a, offset)), fr_load(scale + o), fr_load(bias + o));
        if (relu) f = fr_relu(f);
        fr_store(y + o, f);
    }
#else
    for (int o = 0; o < n; o += VEC) {
        vi a, w;
        memcpy(&a, acc + o, sizeof a);
        memcpy(&w, wsum + o, sizeof w);
        vf v = __builtin_convertvector(a - w * 128, vf) * vload(scale + o) + vload(bias + o);
        if (relu) v = (vf)((vi)v & (vi)(v > 0.0f)); /* -0 and NaN give 0 */
        vstore(y + o, v);
    }
#endif
}

/* The plain C tile: P positions, Q to a row (P = Q, or 2Q for two rows
 * of a pooling's windows), input `step` bytes apart along a row, times
 * nv lane vectors of the group whose packed weights start at w. */
static void tile_c(int P, int Q, int nv, const nn_q8_conv *s, const uint8_t *x, const int8_t *w, int32_t *acc)
{
    size_t step = (size_t)s->stride * s->cq, row_step = (size_t)s->stride * s->iw * s->cq;
    int width = nv * QL, runs, run;
    window_runs(s->k, s->cq, s->row_runs, &runs, &run);
    memset(acc, 0, sizeof(int32_t) * (size_t)P * width);
    for (int ky = 0; ky < s->k; ky++)
        for (int r = 0; r < runs; r++) {
            const uint8_t *xt = x + ((size_t)ky * s->iw + r) * s->cq;
            for (int c4 = 0; c4 < run; c4 += 4, w += width * 4)
                for (int p = 0; p < P; p++) {
                    const uint8_t *a = xt + (size_t)(p / Q) * row_step + (size_t)(p % Q) * step + c4;
                    int32_t *ap = acc + p * width;
                    for (int o = 0; o < width; o++)
                        ap[o] += a[0] * w[o * 4] + a[1] * w[o * 4 + 1] + a[2] * w[o * 4 + 2] + a[3] * w[o * 4 + 3];
                }
        }
}

/* Max pooling of a two-row tile's sums (2 x 2 windows over Q columns) into
 * its first Q / 2 rows: on the sums, before scaling, which is the same
 * (the dequantization is increasing: scales are positive). */
static void pool_sums(int Q, int width, int32_t *acc)
{
    for (int j = 0; j < Q / 2; j++)
        for (int o = 0; o < width; o++) {
            int32_t m = acc[2 * j * width + o], c;
            if ((c = acc[(2 * j + 1) * width + o]) > m) m = c;
            if ((c = acc[(Q + 2 * j) * width + o]) > m) m = c;
            if ((c = acc[(Q + 2 * j + 1) * width + o]) > m) m = c;
            acc[j * width + o] = m;
        }
}

/* Where a tile's outputs go: its group's wsum, scale and bias (from the
 * group's first output), the clamp, and the first position's output. */
typedef struct tile_out {
    const int32_t *wsum;
    const float *scale, *bias;
    int relu;
    float *y;
    size_t ystride; /* floats between positions */
} tile_out;

#if NN_HAVE_VNNI
/* The VNNI tile, dequantizing in registers as dequantize() does: P
 * positions (Q to a row) times NV groups of 16 lanes, REGS registers each. */
enum { REGS = QL / QR_LANES };

static inline __attribute__((always_inline)) void tile_vnni(int P, int Q, int NV, const nn_q8_conv *s,
                                                            const uint8_t *x, const int8_t *w, const tile_out *to)
{
    qreg a[Q_MAX_P][Q_MAX_NV * REGS];
    int H = NV * REGS;
    for (int p = 0; p < P; p++)
        for (int h = 0; h < H; h++) a[p][h] = qr_zero();
    size_t step = (size_t)s->stride * s->cq, row_step = (size_t)s->stride * s->iw * s->cq;
    int runs, run;
    window_runs(s->k, s->cq, s->row_runs, &runs, &run);
    for (int ky = 0; ky < s->k; ky++)
        for (int r = 0; r < runs; r++) {
            const uint8_t *xt = x + ((size_t)ky * s->iw + r) * s->cq;
            for (int c4 = 0; c4 < run; c4 += 4, w += NV * QL * 4) {
                qreg b[Q_MAX_NV * REGS];
                for (int h = 0; h < H; h++) {
                    b[h] = qr_load(w + h * QR_LANES * 4);
                    /* in a register: folded into each product as a memory
                     * operand, it would be loaded once per position */
                    __asm__("" : "+v"(b[h]));
                }
                for (int p = 0; p < P; p++) {
                    int32_t quad;
                    memcpy(&quad, xt + (size_t)(p / Q) * row_step + (size_t)(p % Q) * step + c4, 4);
                    qreg q = qr_bcast(quad);
                    for (int h = 0; h < H; h++) a[p][h] = qr_dot(a[p][h], q, b[h]);
                }
            }
        }
    int outputs = P;
    if (P == 2 * Q) { /* 2 x 2 max pooling on the sums, as pool_sums */
        outputs = Q / 2;
        for (int j = 0; j < outputs; j++)
            for (int h = 0; h < H; h++)
                a[j][h] = qr_max(qr_max(a[2 * j][h], a[2 * j + 1][h]), qr_max(a[Q + 2 * j][h], a[Q + 2 * j + 1][h]));
    }
    for (int h = 0; h < H; h++) {
        qreg offset = qr_times128(qr_load(to->wsum + h * QR_LANES));
        freg scale = fr_load(to->scale + h * QR_LANES), bias = fr_load(to->bias + h * QR_LANES);
        for (int p = 0; p < outputs; p++) {
            freg f = fr_fmadd(fr_of(qr_sub(a[p][h], offset)), scale, bias);
            if (to->relu) f = fr_relu(f);
            fr_store(to->y + p * to->ystride + h * QR_LANES, f);
        }
    }
}

#define QTILE(P, NV)                                                                               \
    case (P) * 16 + (NV):                                                                          \
        tile_vnni(P, P, NV, s, x, w, to);                                                          \
        return 1;
#define QPOOL(R, NV)                                                                               \
    case 1024 + (R) * 16 + (NV):                                                                   \
        tile_vnni(4 * (R), 2 * (R), NV, s, x, w, to);                                              \
        return 1;

/* P positions in a row, or (pooled) 2 rows of Q = P / 2 columns. */
static int tile_vnni_any(int P, int Q, int NV, const nn_q8_conv *s, const uint8_t *x, const int8_t *w,
                         const tile_out *to)
{
    switch (P == Q ? P * 16 + NV : 1024 + Q / 2 * 16 + NV) {
#if QR_LANES == 16 /* the tiles nn_k_q8_conv makes with AVX-512's budget */
        QTILE(1, 1) QTILE(2, 1) QTILE(3, 1) QTILE(4, 1) QTILE(5, 1) QTILE(6, 1)
        QTILE(7, 1) QTILE(8, 1) QTILE(9, 1) QTILE(10, 1) QTILE(11, 1) QTILE(12, 1)
        QTILE(1, 2) QTILE(2, 2) QTILE(3, 2) QTILE(4, 2) QTILE(5, 2) QTILE(6, 2)
        QTILE(7, 2) QTILE(8, 2) QTILE(9, 2) QTILE(10, 2) QTILE(11, 2) QTILE(12, 2)
        QTILE(1, 3) QTILE(2, 3) QTILE(3, 3) QTILE(4, 3) QTILE(5, 3) QTILE(6, 3) QTILE(7, 3) QTILE(8, 3)
        QTILE(1, 4) QTILE(2, 4) QTILE(3, 4) QTILE(4, 4) QTILE(5, 4) QTILE(6, 4)
        QTILE(1, 5) QTILE(1, 6) QTILE(1, 7) QTILE(1, 8)
        QPOOL(1, 1) QPOOL(2, 1) QPOOL(3, 1) QPOOL(1, 2) QPOOL(2, 2) QPOOL(3, 2)
        QPOOL(1, 3) QPOOL(2, 3) QPOOL(1, 4)
#else /* AVX-VNNI's */
        QTILE(1, 1) QTILE(2, 1) QTILE(3, 1) QTILE(4, 1) QTILE(5, 1) QTILE(1, 2) QTILE(2, 2)
        QPOOL(1, 1)
#endif
    default:
        return 0;
    }
}
#endif

void nn_k_q8_conv(const nn_q8_conv *s, const uint8_t *x, const int8_t *wp, const int32_t *wsum, const float *scale,
                  const float *bias, int relu, int portable, float *y)
{
    int nvec = s->ocp / QL, max_nv = group_width(s->dense), rows = s->pool2 ? 2 : 1;
    int32_t acc[Q_MAX_ACC * QL];
    (void)portable;
    const int8_t *w = wp;
    for (int g = 0; g < q_groups(nvec, max_nv); g++) {
        int v0, v1;
        q_span(nvec, max_nv, g, &v0, &v1);
        int nv = v1 - v0, pmax = Q_MAX_ACC / nv < Q_MAX_P ? Q_MAX_ACC / nv : Q_MAX_P;
        /* tiles over the output columns (pooled: of pooled outputs, 2 x 2
         * positions each, at most 3) */
        int per_tile = s->pool2 ? (pmax / 4 < 3 ? pmax / 4 : 3) : pmax;
        int cols = s->pool2 ? s->cols / 2 : s->cols, tiles = (cols + per_tile - 1) / per_tile;
        for (int oy = 0; oy < s->rows / rows; oy++)
            for (int t = 0; t < tiles; t++) {
                int c0 = cols * t / tiles, c1 = cols * (t + 1) / tiles;
                int Q = (c1 - c0) * (s->pool2 ? 2 : 1), P = Q * rows;
                const uint8_t *xt = x + ((size_t)oy * rows * s->stride * s->iw + (size_t)c0 * (P / Q == 2 ? 2 : 1) * s->stride) * s->cq;
                int o0 = v0 * QL, done = 0;
                tile_out to = {wsum + o0, scale + o0, bias + o0, relu, y + ((size_t)oy * s->ow + c0) * s->ocp + o0,
                               (size_t)s->ocp};
#if NN_HAVE_VNNI
                done = !portable && tile_vnni_any(P, Q, nv, s, xt, w, &to);
#endif
                if (done) continue;
                tile_c(P, Q, nv, s, xt, w, acc);
                if (s->pool2) pool_sums(Q, nv * QL, acc);
                for (int p = 0; p < (s->pool2 ? Q / 2 : P); p++)
                    dequantize(nv * QL, acc + p * nv * QL, to.wsum, to.scale, to.bias, relu, to.y + p * to.ystride);
            }
        int runs, run;
        window_runs(s->k, s->cq, s->row_runs, &runs, &run);
        w += (size_t)nv * QL * s->k * runs * run;
    }
}
