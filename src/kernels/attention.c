/* Causal multi-head self-attention over a fused Q|K|V tensor (B, T, 3C),
 * C = H * D: per batch item and head, S = Q K^T * scale, a causal softmax
 * (row i sees columns 0..i) and Y = P V, written straight into the heads'
 * columns of y (B, T, C) and read straight from qkv's: no split, transpose
 * or mask tensor. Each (batch, head) pair is one thread's work from start
 * to end, so results do not depend on the thread count. */
#include "fastmath.h"
#include "kernels.h"
#include "lanes.h"

typedef struct attn_ctx {
    int T, H, D;
    float scale;
    const float *qkv, *probs, *dy;
    float *p_out, *y, *scratch, *dqkv;
    int fresh;
} attn_ctx;

/* Row i of p (length T): softmax of s[0..i], zeros after. s and p may alias.
 * Maximum and sum run in 16 lanes combined in a fixed order, so the loops
 * vectorize and the result does not depend on the vector width. */
static void causal_softmax_row(int T, int i, const float *s, float *p)
{
    int n = i + 1;
    float lane[NN_LANES];
    for (int l = 0; l < NN_LANES; l++) lane[l] = s[0];
    int j = 0;
    for (; j + NN_LANES <= n; j += NN_LANES)
        for (int l = 0; l < NN_LANES; l++) lane[l] = s[j + l] > lane[l] ? s[j + l] : lane[l];
    for (int l = 0; j + l < n; l++) lane[l] = s[j + l] > lane[l] ? s[j + l] : lane[l];
    float m = lane[0];
    for (int l = 1; l < NN_LANES; l++) m = lane[l] > m ? lane[l] : m;
    for (j = 0; j < n; j++) p[j] = nn_fast_expf(s[j] - m);
    float sum = nn_lane_sum(n, p);
    float inv = 1.0f / sum;
    for (j = 0; j < n; j++) p[j] *= inv;
    for (j = n; j < T; j++) p[j] = 0.0f;
}

/* Blocks of rows (and, backward, of columns) of a pair's T x T products:
 * rows [r0, r1) attend to columns [0, r1) only, so with blocks of 32 a
 * context of 64 computes 3/4 of the full squares. */
enum { ROW_BLOCK = 32 };

static void attn_fwd_pairs(void *p, int r0, int r1, int slot)
{
    const attn_ctx *c = p;
    (void)slot;
    int T = c->T, D = c->D, C = c->H * D, ld = 3 * C;
    for (int pair = r0; pair < r1; pair++) {
        int b = pair / c->H, h = pair % c->H;
        const float *q = c->qkv + (size_t)b * T * ld + (size_t)h * D, *k = q + C, *v = q + 2 * C;
        float *pr = c->p_out + (size_t)pair * T * T, *y = c->y + (size_t)b * T * C + (size_t)h * D;
        for (int i0 = 0; i0 < T; i0 += ROW_BLOCK) {
            int i1 = i0 + ROW_BLOCK < T ? i0 + ROW_BLOCK : T;
            float *pb = pr + (size_t)i0 * T;
            nn_sgemm(0, 1, i1 - i0, i1, D, c->scale, q + (size_t)i0 * ld, ld, k, ld, 0.0f, pb, T);
            for (int i = i0; i < i1; i++) causal_softmax_row(T, i, pr + (size_t)i * T, pr + (size_t)i * T);
            nn_sgemm(0, 0, i1 - i0, D, i1, 1.0f, pb, T, v, ld, 0.0f, y + (size_t)i0 * C, C);
        }
    }
}

#define ATTN_PAR_MIN 32768 /* multiply-adds per call below which threads cost more than they save */

void nn_k_causal_attention(int B, int T, int H, int D, const float *qkv, float scale, float *probs,
                           float *y)
{
    attn_ctx c = {T, H, D, scale, qkv, NULL, NULL, probs, y, NULL, NULL, 0};
    nn_k_parallel_rows(B * H, 1, (long)B * H * T * T * D >= ATTN_PAR_MIN, attn_fwd_pairs, &c);
}

/* dP = dY V^T; dS = P * (dP - rowsum(P * dP)) * scale; dQ = dS K; dK = dS^T Q;
 * dV = P^T dY. */
static void attn_bwd_pairs(void *p, int r0, int r1, int slot)
{
    const attn_ctx *c = p;
    int T = c->T, D = c->D, C = c->H * D, ld = 3 * C;
    float beta = c->fresh ? 0.0f : 1.0f;
    float *ds = c->scratch + (size_t)slot * T * T;
    for (int pair = r0; pair < r1; pair++) {
        int b = pair / c->H, h = pair % c->H;
        size_t off = (size_t)b * T * ld + (size_t)h * D;
        const float *q = c->qkv + off, *k = q + C, *v = q + 2 * C;
        float *dq = c->dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
        const float *pr = c->probs + (size_t)pair * T * T;
        const float *dy = c->dy + (size_t)b * T * C + (size_t)h * D;
        for (int i0 = 0; i0 < T; i0 += ROW_BLOCK) { /* dP, dS and dQ by blocks of rows */
            int i1 = i0 + ROW_BLOCK < T ? i0 + ROW_BLOCK : T;
            nn_sgemm(0, 1, i1 - i0, i1, D, 1.0f, dy + (size_t)i0 * C, C, v, ld, 0.0f, ds + (size_t)i0 * T, T);
            for (int i = i0; i < i1; i++) {
                const float *pi = pr + (size_t)i * T;
                float *di = ds + (size_t)i * T;
                float dot = nn_lane_dot(i + 1, pi, di);
                int j;
                for (j = 0; j <= i; j++) di[j] = pi[j] * (di[j] - dot) * c->scale;
                for (j = i + 1; j < T; j++) di[j] = 0.0f;
            }
            nn_sgemm(0, 0, i1 - i0, D, i1, 1.0f, ds + (size_t)i0 * T, T, k, ld, beta, dq + (size_t)i0 * ld, ld);
        }
        for (int j0 = 0; j0 < T; j0 += ROW_BLOCK) { /* dK and dV by blocks of columns: rows j0.. */
            int j1 = j0 + ROW_BLOCK < T ? j0 + ROW_BLOCK : T;
            size_t at = (size_t)j0 * T + (size_t)j0;
            nn_sgemm(1, 0, j1 - j0, D, T - j0, 1.0f, ds + at, T, q + (size_t)j0 * ld, ld, beta, dk + (size_t)j0 * ld, ld);
            nn_sgemm(1, 0, j1 - j0, D, T - j0, 1.0f, pr + at, T, dy + (size_t)j0 * C, C, beta, dv + (size_t)j0 * ld, ld);
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
