/* SGEMM in the GotoBLAS/BLIS shape: for each KC-deep slice of K, pack op(A)
 * into MR-tall row panels (alpha folded in, edges zero-padded) shared by all
 * threads; each thread then packs the NR-wide panels of op(B) it needs, one
 * at a time into a small buffer that stays in cache, and sweeps a
 * register-tiled MR x NR micro-kernel over its tiles. Each C tile belongs to
 * exactly one thread and accumulates K in a fixed order, so results are
 * identical for any thread count.
 *
 * The micro-kernel uses GCC/clang vector extensions sized to the target's
 * registers: 16 floats with AVX-512, 8 with AVX, else 4 (SSE, NEON). */
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"

#if defined(__AVX512F__)
#define VEC 16
#elif defined(__AVX__)
#define VEC 8
#else
#define VEC 4
#endif
#define MR 8
#define NR (2 * VEC)
#define KC 256

typedef float vf __attribute__((vector_size(VEC * sizeof(float))));
_Static_assert(sizeof(vf[MR][2]) == sizeof(float[MR][NR]), "a row of accumulators is one NR-wide row of C");

/* The packed A block is kept per calling thread and only grows, so repeated
 * GEMMs of the same shapes (a training step) do not allocate. Each worker
 * packs the B micro-panel it is about to use into its own small buffer. */
static _Thread_local float *pack_a;
static _Thread_local size_t pack_a_cap;
static _Thread_local float pack_b_local[KC * NR] __attribute__((aligned(64)));

static float *grow(float **buf, size_t *cap, size_t n)
{
    if (n > *cap) {
        free(*buf);
        *buf = aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
        *cap = *buf ? n : 0;
    }
    return *buf;
}

static inline vf vload(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* c[0..mr) x [0..nr) += a-panel (kc x MR) times b-panel (kc x NR). */
static void micro_kernel(int kc, const float *restrict a, const float *restrict b,
                         float *restrict c, int ldc, int mr, int nr)
{
    vf acc[MR][2];
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < kc; k++) {
        vf b0 = vload(b), b1 = vload(b + VEC);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            acc[r][0] += a[r] * b0;
            acc[r][1] += a[r] * b1;
        }
        a += MR;
        b += NR;
    }
    if (mr == MR && nr == NR) {
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            float *cr = c + (size_t)r * ldc;
            vstore(cr, vload(cr) + acc[r][0]);
            vstore(cr + VEC, vload(cr + VEC) + acc[r][1]);
        }
        return;
    }
    float tile[MR][NR];
    memcpy(tile, acc, sizeof tile);
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) c[(size_t)r * ldc + j] += tile[r][j];
}

/* Pack rows [i0, i0+mr) x cols [p0, p0+kc) of op(A), scaled by alpha, as
 * kc groups of MR values (zero-padded rows past mr). */
static void pack_a_panel(int ta, const float *A, int lda, int i0, int mr, int p0, int kc,
                         float alpha, float *dst)
{
    if (mr < MR) memset(dst, 0, (size_t)kc * MR * sizeof(float));
    for (int r = 0; r < mr; r++) {
        if (!ta) { /* row i0+r is contiguous along k */
            const float *src = A + (size_t)(i0 + r) * lda + p0;
            for (int k = 0; k < kc; k++) dst[(size_t)k * MR + r] = alpha * src[k];
        } else {
            for (int k = 0; k < kc; k++) dst[(size_t)k * MR + r] = alpha * A[(size_t)(p0 + k) * lda + i0 + r];
        }
    }
}

/* Pack rows [p0, p0+kc) x cols [j0, j0+nr) of op(B) as kc groups of NR
 * values (zero-padded columns past nr). */
static void pack_b_panel(int tb, const float *B, int ldb, int p0, int kc, int j0, int nr,
                         float *dst)
{
    if (!tb) {
        for (int k = 0; k < kc; k++) {
            const float *src = B + (size_t)(p0 + k) * ldb + j0;
            float *d = dst + (size_t)k * NR;
            if (nr == NR) {
                memcpy(d, src, NR * sizeof(float));
            } else {
                memcpy(d, src, (size_t)nr * sizeof(float));
                memset(d + nr, 0, (size_t)(NR - nr) * sizeof(float));
            }
        }
        return;
    }
    if (nr < NR) memset(dst, 0, (size_t)kc * NR * sizeof(float));
    for (int j = 0; j < nr; j++) { /* column j0+j of op(B) is contiguous along k */
        const float *src = B + (size_t)(j0 + j) * ldb + p0;
        for (int k = 0; k < kc; k++) dst[(size_t)k * NR + j] = src[k];
    }
}

static void scale_c(int M, int N, float beta, float *C, int ldc)
{
    if (beta == 1.0f) return;
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f)
            memset(c, 0, (size_t)N * sizeof(float));
        else
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

/* Tiny products (e.g. a 10-wide output layer) do not repay packing. */
static void gemm_small(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        for (int k = 0; k < K; k++) {
            float a = alpha * (ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
            if (!tb) {
                const float *b = B + (size_t)k * ldb;
                for (int j = 0; j < N; j++) c[j] += a * b[j];
            } else {
                for (int j = 0; j < N; j++) c[j] += a * B[(size_t)j * ldb + k];
            }
        }
    }
}

/* Sum of a[i]*b[i] with independent vector accumulators. */
static float dot(const float *a, const float *b, int n)
{
    vf acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
    int i = 0;
    for (; i + 4 * VEC <= n; i += 4 * VEC) {
        acc0 += vload(a + i) * vload(b + i);
        acc1 += vload(a + i + VEC) * vload(b + i + VEC);
        acc2 += vload(a + i + 2 * VEC) * vload(b + i + 2 * VEC);
        acc3 += vload(a + i + 3 * VEC) * vload(b + i + 3 * VEC);
    }
    for (; i + VEC <= n; i += VEC) acc0 += vload(a + i) * vload(b + i);
    vf acc = (acc0 + acc1) + (acc2 + acc3);
    float s = 0.0f;
    for (int l = 0; l < VEC; l++) s += acc[l];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* C (small M x N) += alpha * A B^T with a long K, both operands contiguous
 * along K (e.g. a convolution's weight gradient). K is cut into fixed-size
 * chunks computed in parallel and summed in chunk order, so the result does
 * not depend on the thread count. */
#define DOT_KCHUNK 2048
static _Thread_local float *dot_part;
static _Thread_local size_t dot_part_cap;

static int gemm_dot_nt(int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                       int ldb, float *C, int ldc)
{
    int chunks = (K + DOT_KCHUNK - 1) / DOT_KCHUNK;
    size_t mn = (size_t)M * N;
    float *part = grow(&dot_part, &dot_part_cap, (size_t)chunks * mn);
    if (!part) return 0;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int ch = 0; ch < chunks; ch++) {
        int k0 = ch * DOT_KCHUNK, kn = K - k0 < DOT_KCHUNK ? K - k0 : DOT_KCHUNK;
        float *p = part + (size_t)ch * mn;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                p[(size_t)i * N + j] = dot(A + (size_t)i * lda + k0, B + (size_t)j * ldb + k0, kn);
    }
    for (int ch = 0; ch < chunks; ch++)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                C[(size_t)i * ldc + j] += alpha * part[(size_t)ch * mn + (size_t)i * N + j];
    return 1;
}

void nn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    scale_c(M, N, beta, C, ldc);
    if (K <= 0 || alpha == 0.0f) return;
    double flops = 2.0 * M * N * K;
    if (!ta && tb && (size_t)M * N <= 4096 && K >= 4 * DOT_KCHUNK &&
        gemm_dot_nt(M, N, K, alpha, A, lda, B, ldb, C, ldc))
        return;
    if (flops < 65536.0) {
        gemm_small(ta, tb, M, N, K, alpha, A, lda, B, ldb, C, ldc);
        return;
    }
    int m_tiles = (M + MR - 1) / MR, n_tiles = (N + NR - 1) / NR;
    /* K blocks of equal depth (288 = 2 x 144, not 256 + 32). */
    int kblocks = (K + KC - 1) / KC, kc_max = (K + kblocks - 1) / kblocks;
    float *pa = grow(&pack_a, &pack_a_cap, (size_t)m_tiles * MR * kc_max);
    if (!pa) {
        gemm_small(ta, tb, M, N, K, alpha, A, lda, B, ldb, C, ldc); /* no memory: slow path */
        return;
    }
    int threaded = flops >= 4e6;
    (void)threaded; /* read only by the OpenMP pragma */
#pragma omp parallel if (threaded)
    {
        int nthreads = 1, me = 0;
#ifdef _OPENMP
        nthreads = omp_get_num_threads();
        me = omp_get_thread_num();
#endif
        /* Work items: an N tile and a group of M tiles. Narrow products are
         * split along M too so that every thread has work. */
        int groups = n_tiles >= 8 * nthreads ? 1 : (8 * nthreads + n_tiles - 1) / n_tiles;
        if (groups > m_tiles) groups = m_tiles;
        int items = n_tiles * groups;
        int first = (int)((long)items * me / nthreads), last = (int)((long)items * (me + 1) / nthreads);
        float *pb = pack_b_local;
        for (int kb = 0; kb < kblocks; kb++) {
            int p0 = kb * kc_max, kc = K - p0 < kc_max ? K - p0 : kc_max;
#pragma omp for schedule(static)
            for (int t = 0; t < m_tiles; t++) {
                int mr = M - t * MR < MR ? M - t * MR : MR;
                pack_a_panel(ta, A, lda, t * MR, mr, p0, kc, alpha, pa + (size_t)t * MR * kc);
            }
            int packed_jt = -1;
            for (int w = first; w < last; w++) {
                int jt = w / groups, grp = w % groups;
                int nr = N - jt * NR < NR ? N - jt * NR : NR;
                if (jt != packed_jt) { /* B micro-panel, packed where it is used */
                    pack_b_panel(tb, B, ldb, p0, kc, jt * NR, nr, pb);
                    packed_jt = jt;
                }
                int it0 = (int)((long)m_tiles * grp / groups), it1 = (int)((long)m_tiles * (grp + 1) / groups);
                for (int it = it0; it < it1; it++) {
                    int mr = M - it * MR < MR ? M - it * MR : MR;
                    micro_kernel(kc, pa + (size_t)it * MR * kc, pb,
                                 C + (size_t)it * MR * ldc + (size_t)jt * NR, ldc, mr, nr);
                }
            }
#pragma omp barrier
        }
    }
}
