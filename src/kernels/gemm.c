/* SGEMM in the GotoBLAS/BLIS shape. The tiles of C are split between the
 * threads along M or N (whichever spares duplicating the larger operand and
 * balances best), and each thread packs privately what its rectangle needs:
 * its rows of op(A) in MR-tall panels (alpha folded in, edges zero-padded)
 * and, one KC-deep slice at a time, NR-wide panels of op(B) into a small
 * buffer that stays in L1; a register-tiled MR x NR micro-kernel sweeps the
 * tiles. No barriers, no data packed by one core and read by the other.
 * Each C tile belongs to one thread and accumulates its K blocks in order,
 * so results are identical for any thread count.
 *
 * The micro-kernel uses the vector type of simd.h (16 floats with AVX-512,
 * 8 with AVX, else 4). */
#if !defined(__STDC_VERSION__) || __STDC_VERSION__ < 201112L
#error "libnn is C11: build it with -std=c11 (this file uses _Thread_local or aligned_alloc)"
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"
#include "simd.h"
#include "transpose.h"

#define MR 8
#define NV 3 /* vectors per row of the C tile: 8 x 3 accumulators */
#define NR (NV * VEC)
#define KC 256
#define RESIDENT_A_BYTES (512 << 10) /* a thread's op(A) rows packed whole: half an L2 */
#define A_IN_PLACE_MAX_TILES 4 /* columns of C tiles up to which A is read unpacked */

_Static_assert(sizeof(vf[MR][NV]) == sizeof(float[MR][NR]), "a row of accumulators is one NR-wide row of C");

/* Each thread's packed A only grows, so repeated GEMMs of the same shapes
 * (a training step) do not allocate. The B slice buffer is fixed. */
static _Thread_local float *pack_a;
static _Thread_local size_t pack_a_cap;
static _Thread_local float pack_b_local[KC * NR] __attribute__((aligned(64)));
/* A K block's panels of op(B) for all of a thread's (few) columns of tiles
 * when A is read in place a K block at a time; only grows. */
static _Thread_local float *pack_b_row;
static _Thread_local size_t pack_b_row_cap;

static float *grow(float **buf, size_t *cap, size_t n)
{
    if (n > *cap) {
        free(*buf);
        *buf = aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
        *cap = *buf ? n : 0;
    }
    return *buf;
}

/* Length of the tile (or K block) of the given size starting at index
 * `start` of a dimension of length `total`: size, or less at the end. */
static inline int span(int total, int start, int size) { return total - start < size ? total - start : size; }

/* c[0..mr) x [0..nr) += a-panel (kc x MR; read in place when a_mode is
 * A_ROWS: MR rows of the stored A, lda apart, or A_COLS: MR consecutive
 * columns of the stored K x M A^T, its rows lda apart) times the first nv vectors of
 * each row of a b-panel (kc x NR), or = when overwrite is set (C's old
 * contents are not read; 2: the tile's only write, by streaming stores
 * where the tile is whole and aligned, see STREAM_C_BYTES). Only the
 * first `rows` rows (mr <= rows <= MR) are computed: an edge tile of one or
 * two rows costs a quarter of a full one, not all of it (each row's sums
 * are the same either way). The accumulators start at zero and are added
 * to C once, so C's value does not depend on how K is split between calls
 * beyond the KC blocking. Inlined with nv, rows and a_mode constant, so
 * acc stays in registers. */
enum { A_PACKED, A_ROWS, A_COLS };

static inline __attribute__((always_inline)) void
micro_tile(int nv, int rows, int a_mode, int kc, const float *restrict a, int lda,
           const float *restrict b, float *restrict c, int ldc, int mr, int nr, int overwrite)
{
    /* Fetch the C tile for writing while the k loop runs: C is often far
     * bigger than the caches (a convolution's output), and its loads - or,
     * when it is only written, the ownership requests of its stores - would
     * stall at the end. */
    if (overwrite != 2)
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < nr; j += 16) __builtin_prefetch(c + (size_t)r * ldc + j, 1, 3);
    vf acc[MR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[r][v] = (vf){0};
    for (int k = 0; k < kc; k++) {
        vf bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) bv[v] = vload(b + v * VEC);
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[r][v] += VS(a_mode == A_ROWS ? a[(size_t)r * lda + k] : a[r]) * bv[v];
        if (a_mode != A_ROWS) a += a_mode == A_COLS ? (size_t)lda : MR;
        b += NR;
    }
#if defined(__AVX512F__)
    if (overwrite == 2 && mr == rows && nr == nv * VEC && ((uintptr_t)c & 63) == 0 && (ldc & 15) == 0) {
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) _mm512_stream_ps(c + (size_t)r * ldc + v * VEC, (__m512)acc[r][v]);
        return;
    }
#endif
    if (mr == rows && nr == nv * VEC) {
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            float *cr = c + (size_t)r * ldc;
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                vstore(cr + v * VEC, overwrite ? acc[r][v] : vload(cr + v * VEC) + acc[r][v]);
        }
        return;
    }
    float tile[MR][NR];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++) vstore(&tile[r][v * VEC], acc[r][v]);
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++)
            c[(size_t)r * ldc + j] = overwrite ? tile[r][j] : c[(size_t)r * ldc + j] + tile[r][j];
}

/* Edge tiles narrower than NR use fewer vectors instead of multiplying
 * zero padding (a 128-wide layer is 48 + 48 + 32). */
static inline __attribute__((always_inline)) void
micro_tile_cols(int rows, int kc, const float *restrict a, const float *restrict b,
                float *restrict c, int ldc, int mr, int nr, int overwrite)
{
    if (nr > 2 * VEC)
        micro_tile(NV, rows, A_PACKED, kc, a, 0, b, c, ldc, mr, nr, overwrite);
    else if (nr > VEC)
        micro_tile(2, rows, A_PACKED, kc, a, 0, b, c, ldc, mr, nr, overwrite);
    else
        micro_tile(1, rows, A_PACKED, kc, a, 0, b, c, ldc, mr, nr, overwrite);
}

/* ... and edge tiles of one or two rows (a thread's 26 of a 50-row LSTM
 * batch are 8 + 8 + 8 + 2) compute two rows, of three or four, four. */
static void micro_kernel(int kc, const float *restrict a, const float *restrict b,
                         float *restrict c, int ldc, int mr, int nr, int overwrite)
{
    if (mr > 4)
        micro_tile_cols(MR, kc, a, b, c, ldc, mr, nr, overwrite);
    else if (mr > 2)
        micro_tile_cols(4, kc, a, b, c, ldc, mr, nr, overwrite);
    else
        micro_tile_cols(2, kc, a, b, c, ldc, mr, nr, overwrite);
}

/* The same for a full tile whose A is read in place (a_mode A_ROWS or
 * A_COLS, lda apart). */
static inline __attribute__((always_inline)) void
micro_kernel_in_place(int a_mode, int kc, const float *restrict a, int lda, const float *restrict b,
                      float *restrict c, int ldc, int nr, int overwrite)
{
    if (nr > 2 * VEC)
        micro_tile(NV, MR, a_mode, kc, a, lda, b, c, ldc, MR, nr, overwrite);
    else if (nr > VEC)
        micro_tile(2, MR, a_mode, kc, a, lda, b, c, ldc, MR, nr, overwrite);
    else
        micro_tile(1, MR, a_mode, kc, a, lda, b, c, ldc, MR, nr, overwrite);
}

static void micro_kernel_a_rows(int kc, const float *restrict a, int lda, const float *restrict b,
                                float *restrict c, int ldc, int nr, int overwrite)
{
    micro_kernel_in_place(A_ROWS, kc, a, lda, b, c, ldc, nr, overwrite);
}

static void micro_kernel_a_cols(int kc, const float *restrict a, int lda, const float *restrict b,
                                float *restrict c, int ldc, int nr, int overwrite)
{
    micro_kernel_in_place(A_COLS, kc, a, lda, b, c, ldc, nr, overwrite);
}


/* Pack rows [i0, i0+mr) x cols [p0, p0+kc) of A (stored M x K), scaled by
 * alpha, as kc groups of MR values (zero-padded rows past mr). A full
 * panel goes through 8 x 8 in-register transposes, where a scalar loop
 * would store one value at a time down the panel. */
static void pack_a_panel(const float *A, int lda, int i0, int mr, int p0, int kc, float alpha,
                         float *dst)
{
    if (mr < MR) memset(dst, 0, (size_t)kc * MR * sizeof(float));
    int k_done = 0;
#if HAVE_SHUFFLEVECTOR
    if (mr == MR && MR == 8 && alpha == 1.0f)
        for (; k_done + 8 <= kc; k_done += 8)
            transpose8(A + (size_t)i0 * lda + p0 + k_done, lda, dst + (size_t)k_done * MR, MR);
#endif
    for (int r = 0; r < mr; r++) {
        const float *src = A + (size_t)(i0 + r) * lda + p0;
        for (int k = k_done; k < kc; k++) dst[(size_t)k * MR + r] = alpha * src[k];
    }
}

/* The same packing for M tiles [t0, t1) when A is stored K x M (ta). The
 * full tiles go in groups of A_T_GROUP: each of the kc rows of the stored A
 * gives the group 8 values per tile from consecutive memory, and each
 * tile's panel fills in order. Walking one tile's 8 columns down 256 rows
 * would touch a new page per value; one pass per row across all tiles
 * would write 8 KB apart every 32 bytes, which evicts the half-written
 * panel lines from L1 (the same cache sets): 40% of a 512 x 128 x 768
 * product's time on one thread. */
#define A_T_GROUP 8

static void pack_a_rows_t(const float *A, int lda, int M, int t0, int t1, int p0, int kc,
                          float alpha, float *pa)
{
    int full = t1 * MR <= M ? t1 : M / MR; /* tiles [t0, full) are MR wide */
    size_t panel = (size_t)MR * kc;
    int t = t0;
    for (; t + A_T_GROUP <= full; t += A_T_GROUP) /* fixed widths: vector moves */
        for (int k = 0; k < kc; k++) {
            const float *src = A + (size_t)(p0 + k) * lda + (size_t)t * MR;
            float *d = pa + (size_t)(t - t0) * panel + (size_t)k * MR;
            for (int j = 0; j < A_T_GROUP; j++)
                for (int r = 0; r < MR; r++) d[j * panel + r] = alpha * src[j * MR + r];
        }
    for (int k = 0; k < kc; k++) { /* the remaining tiles, full or not */
        const float *src = A + (size_t)(p0 + k) * lda;
        float *d = pa + (size_t)(t - t0) * panel + (size_t)k * MR;
        for (int u = t; u < t1; u++, d += panel) {
            int mr = span(M, u * MR, MR);
            for (int r = 0; r < mr; r++) d[r] = alpha * src[u * MR + r];
            for (int r = mr; r < MR; r++) d[r] = 0.0f;
        }
    }
}

/* Pack M tiles [t0, t1) of op(A) for the K block [p0, p0+kc). */
static void pack_a_block(int ta, const float *A, int lda, int M, int t0, int t1, int p0, int kc,
                         float alpha, float *pa)
{
    if (ta) {
        pack_a_rows_t(A, lda, M, t0, t1, p0, kc, alpha, pa);
        return;
    }
    for (int t = t0; t < t1; t++) {
        int mr = span(M, t * MR, MR);
        pack_a_panel(A, lda, t * MR, mr, p0, kc, alpha, pa + (size_t)(t - t0) * MR * kc);
    }
}

/* Columns [0, w) (w <= 8) of a B panel (dst, rows NR apart) from w rows of
 * the stored B^T (src, rows lds apart), each holding one column along k:
 * 8 x 8 blocks transposed in registers, the rest one value at a time. */
static void pack_b_cols_t(const float *src, int lds, int kc, int w, float *dst)
{
    int k_done = 0;
#if HAVE_SHUFFLEVECTOR
    if (w == 8)
        for (; k_done + 8 <= kc; k_done += 8)
            transpose8(src + k_done, lds, dst + (size_t)k_done * NR, NR);
#endif
    for (int q = 0; q < w; q++)
        for (int k = k_done; k < kc; k++) dst[(size_t)k * NR + q] = src[(size_t)q * lds + k];
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
    for (int j = 0; j < nr; j += 8)
        pack_b_cols_t(B + (size_t)(j0 + j) * ldb + p0, ldb, kc, span(nr, j, 8), dst + j);
}

/* The same panel of an op(B) that g produces on demand. */
static void pack_b_generated(const nn_k_b_source *g, int p0, int kc, int j0, int nr, float *dst)
{
    g->block(g->ctx, p0, kc, j0, nr, dst, NR);
    if (nr < NR)
        for (int k = 0; k < kc; k++)
            memset(dst + (size_t)k * NR + nr, 0, (size_t)(NR - nr) * sizeof(float));
}

/* op(B) as the packed loops see it: stored (B, ldb, tb), or produced by a
 * generator, or already packed whole (packed, with B as the fallback);
 * (k0, j0) is the element of op(B) that element (0, 0) of the product reads
 * (a K chunk, a thread's columns). */
typedef struct b_operand {
    int tb;
    const float *B;
    int ldb;
    const nn_k_b_source *gen;
    const float *packed;
    int k0, j0;
} b_operand;

static void pack_b(const b_operand *b, int p0, int kc, int j0, int nr, float *dst)
{
    if (b->gen)
        pack_b_generated(b->gen, b->k0 + p0, kc, b->j0 + j0, nr, dst);
    else
        pack_b_panel(b->tb, b->B, b->ldb, b->k0 + p0, kc, b->j0 + j0, nr, dst);
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

/* Per-chunk partial products of the long-K paths below; each thread's
 * buffer only grows. */
static _Thread_local float *part_buf;
static _Thread_local size_t part_cap;

/* C = beta * C + alpha * each of the chunks' partial products (M x N each,
 * consecutive in part), added in chunk order: each element is summed by one
 * thread in the same order whatever the thread count. */
static void sum_partials(int M, int N, int chunks, const float *part, float alpha, float beta,
                         float *C, int ldc)
{
    size_t mn = (size_t)M * N;
#pragma omp parallel for schedule(static) if (mn * chunks > 65536)
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < N; j++) {
            float v = beta == 0.0f ? 0.0f : beta * c[j];
            for (int ch = 0; ch < chunks; ch++) v += alpha * part[(size_t)ch * mn + (size_t)i * N + j];
            c[j] = v;
        }
    }
}

/* C (tiny M x N) = alpha * A B^T + beta * C with a long K, both operands
 * contiguous along K (e.g. a 1-channel convolution's weight gradient):
 * fixed-size K chunks of dot products in parallel, summed in chunk order. */
#define DOT_KCHUNK 2048

static int gemm_dot_nt(int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                       int ldb, float beta, float *C, int ldc)
{
    int chunks = (K + DOT_KCHUNK - 1) / DOT_KCHUNK;
    size_t mn = (size_t)M * N;
    float *part = grow(&part_buf, &part_cap, (size_t)chunks * mn);
    if (!part) return 0;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int ch = 0; ch < chunks; ch++) {
        int k0 = ch * DOT_KCHUNK, kn = span(K, k0, DOT_KCHUNK);
        float *p = part + (size_t)ch * mn;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                p[(size_t)i * N + j] = dot(A + (size_t)i * lda + k0, B + (size_t)j * ldb + k0, kn);
    }
    sum_partials(M, N, chunks, part, alpha, beta, C, ldc);
    return 1;
}

/* Share of the work the busiest thread gets when `tiles` tiles of width
 * `width` covering `dim` are dealt out to p threads, relative to an even
 * split (1 = perfectly balanced). */
static double balance(int dim, int width, int p)
{
    int tiles = (dim + width - 1) / width, most = (tiles + p - 1) / p * width;
    if (most > dim) most = dim;
    return (double)dim / p / most;
}

/* Split C between threads by rows when op(A) is the larger operand (so it
 * is not packed by every thread) unless that balances clearly worse.
 * Columns are dealt out a vector's width at a time (a thread's last tile
 * may be narrower), rows a tile at a time. */
static int split_along_m(int M, int N, int p)
{
    if (p <= 1) return 0; /* both operands are K deep: compare M and N */
    double bm = balance(M, MR, p), bn = balance(N, VEC, p);
    int prefer_m = M > N;
    if (prefer_m ? bm < 0.8 && bn > bm : bn < 0.8 && bm > bn) prefer_m = !prefer_m;
    return prefer_m;
}

/* Where op(A)'s element (tile t's row 0, p0) is in the stored A, counted
 * from the tiles' first (lda apart; stored K x M when ta). */
static inline size_t a_offset(int ta, int lda, int t, int p0)
{
    return ta ? (size_t)t * MR + (size_t)p0 * lda : (size_t)t * MR * lda + p0;
}

/* One C tile's K block: A read in place (a_in: row 0 of op(A)'s tile at
 * its K block, lda apart; stored transposed when ta) when it is given and
 * the tile is full, else its packed tile at pa. */
static inline void tile_product(int kc, int ta, const float *a_in, int lda, const float *pa, const float *panel,
                                float *c, int ldc, int mr, int nr, int overwrite)
{
    if (a_in && mr == MR && ta)
        micro_kernel_a_cols(kc, a_in, lda, panel, c, ldc, nr, overwrite);
    else if (a_in && mr == MR)
        micro_kernel_a_rows(kc, a_in, lda, panel, c, ldc, nr, overwrite);
    else
        micro_kernel(kc, pa, panel, c, ldc, mr, nr, overwrite);
}

/* The K block [p0, p0+kc) for C tiles [it0, it1) x column jt: pack that
 * slice of op(B) (unless panel holds it packed already) and run the
 * micro-kernel down the column, whose tile it0 is at c_top. pa holds the
 * block's packed A tiles from it0 on, except the full tiles read in place
 * when a_in is set (op(A)'s element (row 0 of tile it0, 0) in the stored
 * A, transposed when ta, lda apart). */
static void sweep_column(const b_operand *b, int M, int N, const float *panel, float *c_top, int ldc,
                         int p0, int kc, int jt, int it0, int it1, const float *pa, int overwrite,
                         int ta, const float *a_in, int lda)
{
    int nr = span(N, jt * NR, NR);
    if (!panel) {
        pack_b(b, p0, kc, jt * NR, nr, pack_b_local);
        panel = pack_b_local;
    }
    for (int it = it0; it < it1; it++)
        tile_product(kc, ta, a_in ? a_in + a_offset(ta, lda, it - it0, p0) : NULL, lda,
                     pa + (size_t)(it - it0) * MR * kc, panel, c_top + (size_t)(it - it0) * MR * ldc, ldc,
                     span(M, it * MR, MR), nr, overwrite);
}

/* One K block (kc deep) for C tile row it across columns [jt0, jt1),
 * whose panels are packed in panels (kc x NR each, in order), the tile
 * (it, jt0) at c_left; A as in tile_product. */
static void sweep_row(int M, int N, const float *panels, float *c_left, int ldc, int kc, int it,
                      int jt0, int jt1, const float *pa, int overwrite, int ta, const float *a_in, int lda)
{
    for (int jt = jt0; jt < jt1; jt++)
        tile_product(kc, ta, a_in, lda, pa, panels + (size_t)(jt - jt0) * kc * NR,
                     c_left + (size_t)(jt - jt0) * NR, ldc, span(M, it * MR, MR), span(N, jt * NR, NR),
                     overwrite);
}

/* K blocks of equal depth (288 = 2 x 144, not 256 + 32). */
static void k_blocking(int K, int *kblocks, int *kc_max)
{
    *kblocks = (K + KC - 1) / KC;
    *kc_max = (K + *kblocks - 1) / *kblocks;
}

/* 1 if `rows` rows of op(A), K deep, packed whole fit the cache share that
 * lets them stay resident while every column of tiles runs through them. */
static int a_resident(int rows, int K)
{
    int kblocks, kc_max;
    k_blocking(K, &kblocks, &kc_max);
    return (size_t)rows * kc_max * kblocks * sizeof(float) <= RESIDENT_A_BYTES;
}

/* Where the panel of K block kb, column tile jt sits in a fully packed B. */
static const float *packed_panel(const float *bp, int N, int kc_max, int kb, int jt)
{
    if (!bp) return NULL;
    int n_tiles = (N + NR - 1) / NR;
    return bp + ((size_t)kb * n_tiles + jt) * kc_max * NR;
}

size_t nn_k_packed_b_floats(int K, int N)
{
    int kblocks, kc_max;
    k_blocking(K, &kblocks, &kc_max);
    return (size_t)kblocks * ((N + NR - 1) / NR) * kc_max * NR;
}

void nn_k_pack_b(int tb, int K, int N, const float *B, int ldb, float *dst)
{
    int kblocks, kc_max;
    k_blocking(K, &kblocks, &kc_max);
    for (int kb = 0; kb < kblocks; kb++)
        for (int jt = 0; jt * NR < N; jt++) {
            int p0 = kb * kc_max, kc = span(K, p0, kc_max);
            int nr = span(N, jt * NR, NR);
            pack_b_panel(tb, B, ldb, p0, kc, jt * NR, nr,
                         (float *)packed_panel(dst, N, kc_max, kb, jt));
        }
}

/* Column panels of C handed to a sink (see nn_sgemm_to_sink) are made in
 * this per-thread buffer. */
static _Thread_local float *sink_buf;
static _Thread_local size_t sink_cap;

/* A C of more than this many bytes, written once (beta 0, one K block),
 * is stored by streaming stores: ordinary stores first read each of its
 * lines from memory, and most of it would not be in cache when the caller
 * reads it anyway. Below it (four times a core's 2 MB L2 here) enough of C
 * is still cached to pay: an LSTM's 5 MB gates, read right after they are
 * written, made a char-rnn step 4-6% slower streamed (on 1 and 2 threads),
 * where an 8.9 MB C (conv2 dX) is written 5-15% faster. */
#define STREAM_C_BYTES ((size_t)8 << 20)
#define STREAM_MIN_K 32 /* below, tiles are stored faster than streamed lines drain */

/* One thread's share: C tiles [it0, it1) x [jt0, jt1), or with a sink (C
 * unused, beta 0, A resident: nn_sgemm_to_sink checks) each column of tiles
 * made in sink_buf and handed over whole. 0 if memory ran out and op(B) is
 * generated or C goes to a sink (otherwise a plain loop over the stored B
 * stands in). stream (never with a sink): C is big enough for streaming
 * stores where it is written once (see STREAM_C_BYTES). */
static int gemm_rect(int ta, int M, int N, int K, float alpha, const float *A, int lda,
                     const b_operand *b, float beta, float *C, int ldc, const nn_k_c_sink *sink,
                     int stream, int it0, int it1, int jt0, int jt1)
{
    int kblocks, kc_max;
    k_blocking(K, &kblocks, &kc_max);
    /* beta = 0: the first K block stores instead of adding (C is not read,
     * so NaNs in it do not propagate), by streaming stores when they are
     * also the last; other betas scale C first. */
    int first_store = beta != 0.0f ? 0 : stream && kblocks == 1 ? 2 : 1;
    int rows = (it1 - it0) * MR;
    size_t a_block = (size_t)rows * kc_max;
    /* Rows of A that fit in cache are packed for every K block at once, and
     * each column of tiles then runs through all K blocks while its C tiles
     * stay in L1. Larger ones are packed a K block at a time and swept by
     * every column of tiles while they stay in L2. */
    int resident = a_resident(rows, K);
    float *pa = grow(&pack_a, &pack_a_cap, resident ? a_block * kblocks : a_block);
    if (!pa && (b->gen || sink)) return 0;
    int i0 = it0 * MR, j0 = jt0 * NR;
    int m = M - i0 < rows ? M - i0 : rows, n = N - j0 < (jt1 - jt0) * NR ? N - j0 : (jt1 - jt0) * NR;
    float *cb = NULL;
    if (sink) {
        cb = grow(&sink_buf, &sink_cap, (size_t)rows * NR);
        if (!cb || !resident) return 0;
    } else {
        if (!first_store || !pa) scale_c(m, n, beta, C + (size_t)i0 * ldc + j0, ldc);
        if (!pa) { /* out of memory: the unpacked loop, same result to rounding */
            int jb = b->j0 + j0;
            const float *B = b->tb ? b->B + (size_t)jb * b->ldb + b->k0 : b->B + (size_t)b->k0 * b->ldb + jb;
            gemm_small(ta, b->tb, m, n, K, alpha, ta ? A + i0 : A + (size_t)i0 * lda, lda, B, b->ldb,
                       C + (size_t)i0 * ldc + j0, ldc);
            return 1;
        }
    }
    /* An unscaled A that meets only a few columns of tiles is read in
     * place, row-major or transposed (a weight gradient's dC^T: each k's
     * MR values of a tile are consecutive): packing its full tiles would
     * cost about as much as the products they serve (an edge tile is still
     * packed). Transposed, 2 threads: 384 x 128 x 768 ~280 -> ~330 GFLOP/s.
     * Measured on 2 threads, one process alternating: 64 x 128 x 1600
     * (A.B^T, A in L2, 2 columns of tiles per thread) +15% (+7% on 1
     * thread), 256^3 +9%, and with A streamed from memory 2500 x 65 x 128
     * +15%, 2500 x 128 x 512 +5% (an LSTM's output layer and input
     * gradient); with many columns (conv2 fwd, 81) packed tiles stream
     * better (4% faster, and 12% for 1024^3). */
    const float *a_in = alpha == 1.0f && jt1 - jt0 <= A_IN_PLACE_MAX_TILES ? A + a_offset(ta, lda, it0, 0) : NULL;
    int pack_from = a_in ? (m < rows ? it1 - 1 : it1) : it0; /* the tiles packed: an edge tile */
    if (resident) { /* all of A's K blocks, then each column through them */
        for (int kb = 0; kb < kblocks; kb++) {
            int p0 = kb * kc_max, kc = span(K, p0, kc_max);
            pack_a_block(ta, A, lda, M, pack_from, it1, p0, kc, alpha,
                         pa + kb * a_block + (size_t)(pack_from - it0) * MR * kc);
        }
        for (int jt = jt0; jt < jt1; jt++) {
            float *c_top = cb ? cb : C + (size_t)i0 * ldc + (size_t)jt * NR;
            for (int kb = 0; kb < kblocks; kb++) {
                int p0 = kb * kc_max, kc = span(K, p0, kc_max);
                sweep_column(b, M, N, packed_panel(b->packed, N, kc_max, kb, jt), c_top,
                             cb ? NR : ldc, p0, kc, jt, it0, it1, pa + kb * a_block,
                             kb == 0 ? first_store : 0, ta, a_in, lda);
            }
            if (cb) sink->store(sink->ctx, i0, m, b->j0 + jt * NR, span(N, jt * NR, NR), cb, NR);
        }
    } else if (a_in && !b->packed && grow(&pack_b_row, &pack_b_row_cap, (size_t)(jt1 - jt0) * kc_max * NR)) {
        /* A read in place from memory, across a few columns of tiles: each K
         * block's panels of op(B) are packed first and then each row of
         * tiles runs across them, so that A's rows stream in once per K
         * block instead of once per column of tiles. 2 threads, one process
         * alternating: 7744 x 64 x 288 (A.B^T) 255 -> 293 GFLOP/s, 2500 x
         * 128 x 512 (the char-rnn's input gradient) 295 -> 322. A packed
         * whole K blocks at a time stays in L2 and keeps the loop below
         * (this order was 1-2% slower for the LSTM's 512 x 128 x 2500
         * weight gradients). */
        for (int kb = 0; kb < kblocks; kb++) {
            int p0 = kb * kc_max, kc = span(K, p0, kc_max);
            pack_a_block(ta, A, lda, M, pack_from, it1, p0, kc, alpha, pa + (size_t)(pack_from - it0) * MR * kc);
            for (int jt = jt0; jt < jt1; jt++)
                pack_b(b, p0, kc, jt * NR, span(N, jt * NR, NR), pack_b_row + (size_t)(jt - jt0) * kc * NR);
            for (int it = it0; it < it1; it++)
                sweep_row(M, N, pack_b_row, C + (size_t)it * MR * ldc + (size_t)jt0 * NR, ldc, kc, it, jt0,
                          jt1, pa + (size_t)(it - it0) * MR * kc, kb == 0 ? first_store : 0,
                          ta, a_in + a_offset(ta, lda, it - it0, p0), lda);
        }
    } else {
        for (int kb = 0; kb < kblocks; kb++) { /* each K block through every column */
            int p0 = kb * kc_max, kc = span(K, p0, kc_max);
            pack_a_block(ta, A, lda, M, pack_from, it1, p0, kc, alpha, pa + (size_t)(pack_from - it0) * MR * kc);
            for (int jt = jt0; jt < jt1; jt++)
                sweep_column(b, M, N, packed_panel(b->packed, N, kc_max, kb, jt),
                             C + (size_t)i0 * ldc + (size_t)jt * NR, ldc, p0, kc, jt, it0, it1, pa,
                             kb == 0 ? first_store : 0, ta, a_in, lda);
        }
    }
#if defined(__AVX512F__)
    if (first_store == 2) _mm_sfence(); /* the streamed lines are visible before the threads join */
#endif
    return 1;
}

/* A small C with a long K (a convolution's weight gradient: 64 x 288 with
 * K = 7744): split between threads along M or N, every thread would pack
 * the whole of one operand. Instead K is cut into chunks, each computed
 * whole by one thread into its own partial C, and the partials are summed
 * in chunk order. The chunks depend on K only, so results do not depend on
 * the thread count; their number is a multiple of 4 so that 2 or 4 threads
 * get equal shares (7 chunks left one of 2 threads a chunk behind: the
 * seed CNN's conv2 weight gradient, K = 6400, ran at 222 GFLOP/s on 2
 * threads in 7 chunks and 258 in 8, one process alternating). */
#define KSPLIT_CHUNK 1024 /* about this many values of K per chunk */
#define KSPLIT_MIN_CHUNKS 6
#define KSPLIT_CHUNK_MULTIPLE 4
#define KSPLIT_MAX_C 65536 /* elements of C */

static int is_ksplit_shape(int M, int N, int K)
{
    return K >= KSPLIT_MIN_CHUNKS * KSPLIT_CHUNK && (size_t)M * N <= KSPLIT_MAX_C;
}

static int gemm_ksplit(int ta, int M, int N, int K, float alpha, const float *A, int lda,
                       const b_operand *b, float beta, float *C, int ldc)
{
    int chunks = (K + KSPLIT_CHUNK - 1) / KSPLIT_CHUNK;
    chunks = (chunks + KSPLIT_CHUNK_MULTIPLE - 1) / KSPLIT_CHUNK_MULTIPLE * KSPLIT_CHUNK_MULTIPLE;
    size_t mn = (size_t)M * N;
    float *part = grow(&part_buf, &part_cap, (size_t)chunks * mn);
    if (!part) return 0;
    int m_tiles = (M + MR - 1) / MR, n_tiles = (N + NR - 1) / NR, ok = 1;
#pragma omp parallel for schedule(static) reduction(&& : ok)
    for (int ch = 0; ch < chunks; ch++) {
        int k0 = (int)((long)K * ch / chunks), k1 = (int)((long)K * (ch + 1) / chunks);
        b_operand chunk_b = *b;
        chunk_b.k0 += k0;
        ok = gemm_rect(ta, M, N, k1 - k0, alpha, ta ? A + (size_t)k0 * lda : A + k0, lda, &chunk_b,
                       0.0f, part + (size_t)ch * mn, N, NULL, 0, 0, m_tiles, 0, n_tiles) && ok;
    }
    if (!ok) return 0;
    sum_partials(M, N, chunks, part, 1.0f, beta, C, ldc); /* alpha is in the partials */
    return 1;
}

/* Thread me of nthreads: its share of C's tiles, by rows or by columns. */
static int gemm_share(int ta, int M, int N, int K, float alpha, const float *A, int lda,
                      const b_operand *b, float beta, float *C, int ldc, const nn_k_c_sink *sink,
                      int stream, int nthreads, int me)
{
    int m_tiles = (M + MR - 1) / MR, n_tiles = (N + NR - 1) / NR;
    if (split_along_m(M, N, nthreads)) {
        int lo = (int)((long)m_tiles * me / nthreads), hi = (int)((long)m_tiles * (me + 1) / nthreads);
        return lo < hi ? gemm_rect(ta, M, N, K, alpha, A, lda, b, beta, C, ldc, sink, stream, lo, hi, 0, n_tiles)
                       : 1;
    }
    /* columns [c0, c1): the product of those columns of op(B) */
    int vecs = (N + VEC - 1) / VEC;
    int c0 = (int)((long)vecs * me / nthreads) * VEC, c1 = (int)((long)vecs * (me + 1) / nthreads) * VEC;
    if (c1 > N) c1 = N;
    b_operand cols = *b;
    cols.j0 += c0;
    if (c0 >= c1) return 1;
    return gemm_rect(ta, M, c1 - c0, K, alpha, A, lda, &cols, beta, sink ? NULL : C + c0, ldc, sink, stream, 0,
                     m_tiles, 0, (c1 - c0 + NR - 1) / NR);
}

/* The packed paths of a product big enough to repay packing: K chunks (by
 * shape alone: the same path, and bits, on any thread count) or C's tiles
 * split between the threads. 0 if out of memory (C partly written). */
static int gemm_packed(int ta, int M, int N, int K, float alpha, const float *A, int lda,
                       const b_operand *b, float beta, float *C, int ldc, const nn_k_c_sink *sink)
{
    int ok = 1;
    /* Called from inside a parallel region (even a one-thread team), the
     * caller's threads already share the work. */
    int threaded = 2.0 * M * N * K >= 4e6;
#ifdef _OPENMP
    threaded = threaded && omp_get_level() == 0 && omp_get_max_threads() > 1;
#endif
    if (!sink && is_ksplit_shape(M, N, K) && gemm_ksplit(ta, M, N, K, alpha, A, lda, b, beta, C, ldc))
        return 1;
    int stream = !sink && (size_t)M * N * sizeof(float) > STREAM_C_BYTES && K >= STREAM_MIN_K;
    if (!threaded) /* no parallel region at all: entering one costs more than these products */
        return gemm_share(ta, M, N, K, alpha, A, lda, b, beta, C, ldc, sink, stream, 1, 0);
#pragma omp parallel reduction(&& : ok)
    {
        int nthreads = 1, me = 0;
#ifdef _OPENMP
        nthreads = omp_get_num_threads();
        me = omp_get_thread_num();
#endif
        ok = gemm_share(ta, M, N, K, alpha, A, lda, b, beta, C, ldc, sink, stream, nthreads, me);
    }
    return ok;
}

int nn_k_gemm_k_blocks(int M, int N, int K, int *kblocks, int *kc_max)
{
    if (K <= 0 || 2.0 * M * N * K < 65536.0 || is_ksplit_shape(M, N, K)) return 0;
    k_blocking(K, kblocks, kc_max);
    return 1;
}

void nn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    double flops = 2.0 * M * N * K;
    int dot_shape = !ta && tb && (size_t)M * N <= 4096 && K >= 4 * DOT_KCHUNK && alpha != 0.0f;
    if (dot_shape && gemm_dot_nt(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
    if (K <= 0 || alpha == 0.0f || flops < 65536.0 || dot_shape) {
        scale_c(M, N, beta, C, ldc);
        if (K <= 0 || alpha == 0.0f) return;
        gemm_small(ta, tb, M, N, K, alpha, A, lda, B, ldb, C, ldc); /* also the no-memory path */
        return;
    }
    b_operand b = {tb, B, ldb, NULL, NULL, 0, 0};
    gemm_packed(ta, M, N, K, alpha, A, lda, &b, beta, C, ldc, NULL); /* stored B: cannot fail */
}

int nn_sgemm_generated_b(int M, int N, int K, float alpha, const float *A, int lda,
                         const nn_k_b_source *gen, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return 1;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return 1;
    }
    b_operand b = {0, NULL, 0, gen, NULL, 0, 0};
    return gemm_packed(0, M, N, K, alpha, A, lda, &b, beta, C, ldc, NULL);
}

int nn_sgemm_to_sink(int M, int N, int K, float alpha, const float *A, int lda,
                     const nn_k_b_source *gen, const nn_k_c_sink *sink)
{
    if (M <= 0 || N <= 0 || K <= 0 || !a_resident((M + MR - 1) / MR * MR, K)) return 0;
    b_operand b = {0, NULL, 0, gen, NULL, 0, 0};
    return gemm_packed(0, M, N, K, alpha, A, lda, &b, 0.0f, NULL, 0, sink);
}

void nn_sgemm_packed_b(int tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, const float *bp, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    b_operand b = {tb, B, ldb, NULL, bp, 0, 0};
    gemm_rect(0, M, N, K, alpha, A, lda, &b, beta, C, ldc, NULL, 0, 0, (M + MR - 1) / MR, 0,
              (N + NR - 1) / NR);
}
