/* y = W x for one vector: the step of generation, where a GEMM's packing
 * of W would cost more than the product. */
#include "kernels.h"
#include "lanes.h"
#include "simd.h"

void nn_k_matvec(int n, int k, const float *w, const float *x, float *y)
{
    for (int i = 0; i < n; i++) y[i] = nn_lane_dot(k, w + (size_t)i * k, x);
}

/* A dense layer for one example from its weights packed transposed: y is
 * the sum over inputs of x[i] times row i of W^T, in blocks of up to
 * DENSE_NB output vectors, so the weights stream from memory once, in
 * order, into independent accumulators (two chains per vector: even and
 * odd inputs). */
#if VEC == 16
enum { DENSE_NB = 8 };
#else
enum { DENSE_NB = 4 };
#endif

static int dense_blocks(int nvec) { return (nvec + DENSE_NB - 1) / DENSE_NB; }

size_t nn_k_dense_packed_floats(int n, int k) { return (size_t)((n + VEC - 1) / VEC * VEC) * k; }

void nn_k_dense_pack(int n, int k, const float *w, int w_cols, const int *source, float *dst)
{
    int nvec = (n + VEC - 1) / VEC, blocks = dense_blocks(nvec);
    for (int b = 0; b < blocks; b++) {
        int v0 = nvec * b / blocks, v1 = nvec * (b + 1) / blocks;
        for (int i = 0; i < k; i++) {
            int col = source ? source[i] : i;
            for (int o = v0 * VEC; o < v1 * VEC; o++) *dst++ = o < n && col >= 0 ? w[(size_t)o * w_cols + col] : 0.0f;
        }
    }
}

static inline __attribute__((always_inline)) void
dense_block(int NB, int k, const float *restrict wt, const float *restrict x, const float *restrict bias,
            int relu, float *restrict y)
{
    vf even[DENSE_NB], odd[DENSE_NB];
    for (int v = 0; v < NB; v++) even[v] = odd[v] = (vf){0};
    int i = 0;
    for (; i + 2 <= k; i += 2, wt += 2 * NB * VEC) {
        for (int v = 0; v < NB; v++) even[v] += VS(x[i]) * vload(wt + v * VEC);
        for (int v = 0; v < NB; v++) odd[v] += VS(x[i + 1]) * vload(wt + (NB + v) * VEC);
    }
    if (i < k)
        for (int v = 0; v < NB; v++) even[v] += VS(x[i]) * vload(wt + v * VEC);
    for (int v = 0; v < NB; v++) {
        vf r = even[v] + odd[v] + vload(bias + v * VEC);
        if (relu) r = (vf)((vi)r & (vi)(r > 0.0f));
        vstore(y + v * VEC, r);
    }
}

#define DENSE_CASE(NB)                                                                             \
    case NB:                                                                                       \
        dense_block(NB, k, wp, x, bias + v0 * VEC, relu, y + v0 * VEC);                            \
        break;

void nn_k_dense_packed(int n, int k, const float *wp, const float *x, const float *bias, int relu, float *y)
{
    int nvec = (n + VEC - 1) / VEC, blocks = dense_blocks(nvec);
    for (int b = 0; b < blocks; b++) {
        int v0 = nvec * b / blocks, v1 = nvec * (b + 1) / blocks;
        switch (v1 - v0) {
            DENSE_CASE(1) DENSE_CASE(2) DENSE_CASE(3) DENSE_CASE(4)
#if VEC == 16 /* DENSE_NB 8 */
            DENSE_CASE(5) DENSE_CASE(6) DENSE_CASE(7) DENSE_CASE(8)
#endif
        default:
            break;
        }
        wp += (size_t)(v1 - v0) * VEC * k;
    }
}
