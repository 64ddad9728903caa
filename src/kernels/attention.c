/* Causal multi-head self-attention over a fused Q|K|V tensor (B, T, 3C),
 * C = H * D: per batch item and head, S = Q K^T * scale, a causal softmax
 * (row i sees columns 0..i) and Y = P V, written straight into the heads'
 * columns of y (B, T, C) and read straight from qkv's: no split, transpose
 * or mask tensor. Each (batch, head) pair is one thread's work from start
 * to end, so results do not depend on the thread count. */
#include <math.h>

#include "kernels.h"
#include "lanes.h"
#include "simd.h"
#include "transpose.h"
#include "vmath.h"

typedef struct attn_ctx {
    int T, H, D;
    float scale;
    const float *qkv, *probs, *dy;
    float *p_out, *y, *scratch, *dqkv;
    int fresh;
} attn_ctx;

/* Lanes of a row's maxima combined as a fixed tree, like its sums
 * (nn_lane_total): a chain of 15 dependent steps per row was a fifth of
 * the attention's time. */
static inline float tree_max16(const float *l)
{
    float a[8];
    for (int i = 0; i < 8; i++) a[i] = l[i] > l[i + 8] ? l[i] : l[i + 8];
    for (int i = 0; i < 4; i++) a[i] = a[i] > a[i + 4] ? a[i] : a[i + 4];
    float x = a[0] > a[2] ? a[0] : a[2], y = a[1] > a[3] ? a[1] : a[3];
    return x > y ? x : y;
}

enum { LANES = 16, GROUP_VECS = LANES / VEC }; /* a group of 16 lanes is GROUP_VECS vectors */

/* Row i of p (length T): softmax of s[0..i], zeros after. s and p may alias.
 * Element j runs in lane j mod 16 whatever the vector width (the lanes'
 * maxima and sums meet in a fixed tree), so results do not depend on it. */
static void causal_softmax_row(int T, int i, const float *s, float *p)
{
    int n = i + 1, groups = (n + LANES - 1) / LANES;
    vf lane_max[GROUP_VECS], lane_sum[GROUP_VECS];
    for (int v = 0; v < GROUP_VECS; v++) {
        lane_max[v] = (vf){0} + VS(-INFINITY);
        lane_sum[v] = (vf){0};
    }
    for (int g = 0; g < groups; g++)
        for (int v = 0; v < GROUP_VECS; v++) {
            vf x = vload_head(s, (size_t)(g * LANES + v * VEC), (size_t)n, (size_t)T, -INFINITY);
            lane_max[v] = vselect(x > lane_max[v], x, lane_max[v]);
        }
    float lanes[LANES];
    memcpy(lanes, lane_max, sizeof lanes);
    float m = tree_max16(lanes);
    for (int g = 0; g < groups; g++)
        for (int v = 0; v < GROUP_VECS; v++) {
            size_t j = (size_t)(g * LANES + v * VEC);
            vf x = vload_head(s, j, (size_t)n, (size_t)T, -INFINITY);
            vf e = vselect(lanes_below(n - (int)j), vexp_le88(x - VS(m)), (vf){0});
            lane_sum[v] += e;
            vstore_head(p, j, (size_t)T, e);
        }
    memcpy(lanes, lane_sum, sizeof lanes);
    float inv = 1.0f / nn_lane_total(lanes);
    int j = 0;
    for (; j + VEC <= T; j += VEC) vstore(p + j, vselect(lanes_below(n - j), vload(p + j) * VS(inv), (vf){0}));
    for (; j < T; j++) p[j] = j < n ? p[j] * inv : 0.0f;
}

/* Row i of dS from row i of dP (in d, overwritten) and of P: P * (dP -
 * sum over j <= i of P dP) * scale up to column i, zeros after; the sum
 * in lanes as above. */
static void causal_softmax_grad_row(int T, int i, const float *p, float *d, float scale)
{
    int n = i + 1, groups = (n + LANES - 1) / LANES;
    vf lane_sum[GROUP_VECS];
    for (int v = 0; v < GROUP_VECS; v++) lane_sum[v] = (vf){0};
    for (int g = 0; g < groups; g++)
        for (int v = 0; v < GROUP_VECS; v++) {
            int j = g * LANES + v * VEC;
            lane_sum[v] += vload_head(p, (size_t)j, (size_t)n, (size_t)T, 0.0f) *
                           vload_head(d, (size_t)j, (size_t)n, (size_t)T, 0.0f);
        }
    float lanes[LANES];
    memcpy(lanes, lane_sum, sizeof lanes);
    float dot = nn_lane_total(lanes);
    int j = 0;
    for (; j + VEC <= T; j += VEC)
        vstore(d + j, vselect(lanes_below(n - j), vload(p + j) * (vload(d + j) - VS(dot)) * VS(scale), (vf){0}));
    for (; j < T; j++) d[j] = j < n ? p[j] * (d[j] - dot) * scale : 0.0f;
}

/* The products of a (batch, head) pair are small (T x T x D, 64 x 64 x 32
 * for the character GPT): through nn_sgemm each paid its packing and
 * dispatch, about as much as the arithmetic. Here they run in one
 * register-blocked loop that reads its scalar operand in place (any
 * strides, so transposes are free) and its vector operand from contiguous
 * rows (K and V as stored, or K^T and V^T packed once per pair):
 *   c[r][0..n) (+)= alpha * sum over k in [k0, k1) of a(r, k) * b[k][0..n)
 * with a(r, k) = a[r * a_rs + k * a_ks]. Each element sums its k in order,
 * so results do not depend on the blocking or the thread count. */
static inline __attribute__((always_inline)) void
mm_tile(int R, int NVT, int k0, int k1, const float *a, int a_rs, int a_ks, const float *b, int ldb,
        float alpha, int accumulate, float *c, int ldc)
{
    vf acc[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NVT; v++) acc[r][v] = (vf){0};
    const float *ak = a + (size_t)k0 * a_ks, *bk = b + (size_t)k0 * ldb;
    for (int k = k0; k < k1; k++, ak += a_ks, bk += ldb) {
        vf bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NVT; v++) bv[v] = vload(bk + v * VEC);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            float ar = ak[(size_t)r * a_rs];
#pragma GCC unroll 4
            for (int v = 0; v < NVT; v++) acc[r][v] += VS(ar) * bv[v];
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NVT; v++) {
            float *cr = c + (size_t)r * ldc + v * VEC;
            vf out = VS(alpha) * acc[r][v];
            vstore(cr, accumulate ? vload(cr) + out : out);
        }
}

/* Rows [0, rows) by vectors [v0, v0 + NVT) of columns: R-row tiles, then
 * single rows. */
static inline __attribute__((always_inline)) void
mm_column(int R, int NVT, int rows, int k0, int k1, const float *a, int a_rs, int a_ks, const float *b,
          int ldb, float alpha, int accumulate, float *c, int ldc)
{
    int r = 0;
    for (; r + R <= rows; r += R)
        mm_tile(R, NVT, k0, k1, a + (size_t)r * a_rs, a_rs, a_ks, b, ldb, alpha, accumulate, c + (size_t)r * ldc, ldc);
    for (; r < rows; r++)
        mm_tile(1, NVT, k0, k1, a + (size_t)r * a_rs, a_rs, a_ks, b, ldb, alpha, accumulate, c + (size_t)r * ldc, ldc);
}

/* Columns [0, n) of `rows` rows: tiles of 4 rows x 4 vectors, then what is
 * left (up to 3 vectors) in tiles of 8 rows x 2 vectors or 4 x 3, and a
 * scalar loop for the last n % VEC columns. */
static void small_product(int rows, int n, int k0, int k1, const float *a, int a_rs, int a_ks,
                          const float *b, int ldb, float alpha, int accumulate, float *c, int ldc)
{
    int nvec = n / VEC, v = 0;
    for (; v + 4 <= nvec; v += 4)
        mm_column(4, 4, rows, k0, k1, a, a_rs, a_ks, b + v * VEC, ldb, alpha, accumulate, c + v * VEC, ldc);
    if (nvec - v == 3)
        mm_column(4, 3, rows, k0, k1, a, a_rs, a_ks, b + v * VEC, ldb, alpha, accumulate, c + v * VEC, ldc);
    else if (nvec - v == 2)
        mm_column(8, 2, rows, k0, k1, a, a_rs, a_ks, b + v * VEC, ldb, alpha, accumulate, c + v * VEC, ldc);
    else if (nvec - v == 1)
        mm_column(8, 1, rows, k0, k1, a, a_rs, a_ks, b + v * VEC, ldb, alpha, accumulate, c + v * VEC, ldc);
    for (int r = 0; r < rows; r++) /* the last n % VEC columns */
        for (int j = nvec * VEC; j < n; j++) {
            float sum = 0.0f;
            for (int k = k0; k < k1; k++) sum += a[(size_t)r * a_rs + (size_t)k * a_ks] * b[(size_t)k * ldb + j];
            float *cj = c + (size_t)r * ldc + j;
            *cj = accumulate ? *cj + alpha * sum : alpha * sum;
        }
}

/* Rows go in blocks of ROW_BLOCK: rows [i0, i1) attend to columns [0, i1)
 * only (with T = 64 and blocks of 8, 56% of the full squares). */
enum { ROW_BLOCK = 8 };

/* Columns of a block's scores computed: [0, i1) rounded up to whole
 * vectors where the row has room (the softmax zeroes what lies past i). */
static int score_cols(int i1, int T)
{
    int n = (i1 + VEC - 1) / VEC * VEC;
    return n < T ? n : T;
}

static void attn_fwd_pairs(void *p, int r0, int r1, int slot)
{
    const attn_ctx *c = p;
    int T = c->T, D = c->D, C = c->H * D, ld = 3 * C;
    float *kt = c->scratch + (size_t)slot * T * D;
    for (int pair = r0; pair < r1; pair++) {
        int b = pair / c->H, h = pair % c->H;
        const float *q = c->qkv + (size_t)b * T * ld + (size_t)h * D, *k = q + C, *v = q + 2 * C;
        float *pr = c->p_out + (size_t)pair * T * T, *y = c->y + (size_t)b * T * C + (size_t)h * D;
        transpose_block(T, D, k, ld, kt, T); /* K^T: D x T */
        for (int i0 = 0; i0 < T; i0 += ROW_BLOCK) {
            int i1 = i0 + ROW_BLOCK < T ? i0 + ROW_BLOCK : T;
            float *pb = pr + (size_t)i0 * T;
            small_product(i1 - i0, score_cols(i1, T), 0, D, q + (size_t)i0 * ld, ld, 1, kt, T, c->scale, 0,
                          pb, T);
            for (int i = i0; i < i1; i++) causal_softmax_row(T, i, pr + (size_t)i * T, pr + (size_t)i * T);
            small_product(i1 - i0, D, 0, i1, pb, T, 1, v, ld, 1.0f, 0, y + (size_t)i0 * C, C);
        }
    }
}

#define ATTN_PAR_MIN 32768 /* multiply-adds per call below which threads cost more than they save */

void nn_k_causal_attention(int B, int T, int H, int D, const float *qkv, float scale, float *probs,
                           float *y, float *scratch)
{
    attn_ctx c = {T, H, D, scale, qkv, NULL, NULL, probs, y, scratch, NULL, 0};
    nn_k_parallel_rows(B * H, 1, (long)B * H * T * T * D >= ATTN_PAR_MIN, attn_fwd_pairs, &c);
}

/* dP = dY V^T; dS = P * (dP - rowsum(P * dP)) * scale; dQ = dS K; dK = dS^T Q;
 * dV = P^T dY. */
static void attn_bwd_pairs(void *p, int r0, int r1, int slot)
{
    const attn_ctx *c = p;
    int T = c->T, D = c->D, C = c->H * D, ld = 3 * C;
    int acc = !c->fresh;
    float *ds = c->scratch + (size_t)slot * T * (T + D), *vt = ds + (size_t)T * T;
    for (int pair = r0; pair < r1; pair++) {
        int b = pair / c->H, h = pair % c->H;
        size_t off = (size_t)b * T * ld + (size_t)h * D;
        const float *q = c->qkv + off, *k = q + C, *v = q + 2 * C;
        float *dq = c->dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
        const float *pr = c->probs + (size_t)pair * T * T;
        const float *dy = c->dy + (size_t)b * T * C + (size_t)h * D;
        transpose_block(T, D, v, ld, vt, T); /* V^T */
        for (int i0 = 0; i0 < T; i0 += ROW_BLOCK) { /* dP, dS and dQ by blocks of rows */
            int i1 = i0 + ROW_BLOCK < T ? i0 + ROW_BLOCK : T;
            small_product(i1 - i0, score_cols(i1, T), 0, D, dy + (size_t)i0 * C, C, 1, vt, T, 1.0f, 0,
                          ds + (size_t)i0 * T, T);
            for (int i = i0; i < i1; i++)
                causal_softmax_grad_row(T, i, pr + (size_t)i * T, ds + (size_t)i * T, c->scale);
            small_product(i1 - i0, D, 0, i1, ds + (size_t)i0 * T, T, 1, k, ld, 1.0f, acc, dq + (size_t)i0 * ld, ld);
        }
        for (int j0 = 0; j0 < T; j0 += ROW_BLOCK) { /* dK and dV by blocks of rows j: i from j0 on */
            int j1 = j0 + ROW_BLOCK < T ? j0 + ROW_BLOCK : T;
            small_product(j1 - j0, D, j0, T, ds + j0, 1, T, q, ld, 1.0f, acc, dk + (size_t)j0 * ld, ld);
            small_product(j1 - j0, D, j0, T, pr + j0, 1, T, dy, C, 1.0f, acc, dv + (size_t)j0 * ld, ld);
        }
    }
}

void nn_k_causal_attention_bwd(int B, int T, int H, int D, const float *qkv, float scale,
                               const float *probs, const float *dy, float *scratch, int fresh,
                               float *dqkv)
{
    attn_ctx c = {T, H, D, scale, qkv, probs, dy, NULL, NULL, scratch, dqkv, fresh};
    nn_k_parallel_rows(B * H, 1, (long)B * H * T * T * D >= ATTN_PAR_MIN, attn_bwd_pairs, &c);
}

void nn_k_attention_query(int t, int D, const float *q, const float *k, const float *v, int ld,
                          float scale, float *scores, float *out)
{
    for (int j = 0; j < t; j++) {
        const float *kj = k + (size_t)j * ld;
        float s = 0.0f;
        for (int d = 0; d < D; d++) s += q[d] * kj[d];
        scores[j] = s * scale;
    }
    causal_softmax_row(t, t - 1, scores, scores);
    for (int d = 0; d < D; d++) out[d] = 0.0f;
    for (int j = 0; j < t; j++) {
        const float *vj = v + (size_t)j * ld;
        for (int d = 0; d < D; d++) out[d] += scores[j] * vj[d];
    }
}
