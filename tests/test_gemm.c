/* Kernels against references: the GEMM against double precision, for every
 * transpose variant, edge tiles, long K, alpha/beta; im2col blocks and max
 * pooling against their definitions. */
#include <stdlib.h>
#include <string.h>

#include "../src/kernels/fastmath.h"
#include "../src/kernels/kernels.h"
#include "nn.h"
#include "test.h"

/* max(a, b) written out: Debian 12's aarch64 gcc 12.2 crashes (an internal
 * compiler error) vectorizing fmax reductions at -O3. */
static inline double larger(double a, double b) { return a > b ? a : b; }

static float *random_matrix(nn_rng *r, size_t n)
{
    float *m = malloc(n * sizeof *m);
    for (size_t i = 0; i < n; i++) m[i] = nn_rng_uniform(r) * 2.0f - 1.0f;
    return m;
}

/* Returns the largest error relative to sqrt(K) (the error scale of a sum
 * of K products of unit-sized numbers). */
static double gemm_error(int ta, int tb, int M, int N, int K, float alpha, float beta)
{
    nn_rng r;
    nn_rng_seed(&r, (uint64_t)(M * 131 + N * 17 + K + ta * 7 + tb));
    float *A = random_matrix(&r, (size_t)M * K), *B = random_matrix(&r, (size_t)K * N);
    float *C = random_matrix(&r, (size_t)M * N);
    double *ref = malloc((size_t)M * N * sizeof *ref);
    int lda = ta ? M : K, ldb = tb ? K : N;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
            }
            ref[(size_t)i * N + j] = alpha * s + (beta == 0.0f ? 0.0 : beta * C[(size_t)i * N + j]);
        }
    nn_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
    double worst = 0;
    for (size_t i = 0; i < (size_t)M * N; i++) {
        double e = fabs(C[i] - ref[i]);
        worst = e > worst ? e : worst;
    }
    free(A);
    free(B);
    free(C);
    free(ref);
    return worst / sqrt((double)K);
}

static void test_gemm_all_transposes_and_edges(void)
{
    static const int shapes[][3] = {{1, 1, 1},   {3, 5, 7},    {8, 32, 16},  {9, 33, 17},
                                    {64, 128, 300}, {37, 70, 513}, {100, 10, 64}, {10, 100, 1},
                                    {16, 9, 9000} /* long K: the chunked dot path for A B^T */,
                                    {20, 50, 6500} /* long K, small C: K split in chunks */};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                double e = gemm_error(ta, tb, M, N, K, 1.0f, 0.0f);
                CHECK_MSG(e < 1e-5, "ta=%d tb=%d M=%d N=%d K=%d error %g", ta, tb, M, N, K, e);
            }
}

static void test_gemm_alpha_beta(void)
{
    CHECK(gemm_error(0, 0, 40, 50, 60, 0.5f, 1.0f) < 1e-5);
    CHECK(gemm_error(1, 1, 40, 50, 60, -2.0f, 0.25f) < 1e-5);
    CHECK(gemm_error(0, 1, 3, 4, 5, 1.0f, 1.0f) < 1e-5);
    CHECK(gemm_error(1, 0, 20, 50, 6500, -0.5f, 0.75f) < 1e-5); /* K split in chunks */
}

static void test_gemm_wide_n_spans_panels(void)
{
    CHECK(gemm_error(0, 0, 16, 4100, 20, 1.0f, 0.0f) < 1e-5); /* N > NC */
}

/* A C too big for the caches, written once (beta 0, one K block), goes
 * out by streaming stores (above 8 MB): the same bits as the product
 * computed in column chunks small enough for ordinary stores, on 1
 * and 2 threads, with NaNs in C's old contents ignored, edge tiles (M, N
 * not multiples of the tile), and rows that are not 64-byte aligned
 * (stored as usual). */
static void test_gemm_streamed_c_same_bits(void)
{
    enum { M = 139, N = 15990, K = 33, LDC = 16000, CHUNK = 4000 };
    nn_rng r;
    nn_rng_seed(&r, 17);
    float *A = random_matrix(&r, (size_t)M * K), *B = random_matrix(&r, (size_t)K * N);
    float *c = aligned_alloc(64, sizeof(float) * M * LDC), *want = malloc(sizeof(float) * M * LDC);
    int saved = nn_get_threads();
    for (int j = 0; j < N; j += CHUNK) /* each chunk's C stays under 8 MB */
        nn_sgemm(1, 0, M, N - j < CHUNK ? N - j : CHUNK, K, 1.0f, A, M, B + j, N, 0.0f, want + j, LDC);
    const int ldcs[2] = {LDC, N + 1}; /* rows on cache lines (streamed), and not */
    for (int l = 0; l < 2; l++)
        for (int threads = 1; threads <= 2; threads++) {
            int ldc = ldcs[l];
            nn_set_threads(threads);
            for (size_t i = 0; i < (size_t)M * LDC; i++) c[i] = NAN;
            nn_sgemm(1, 0, M, N, K, 1.0f, A, M, B, N, 0.0f, c, ldc);
            int bad = 0;
            for (int i = 0; i < M; i++)
                bad += memcmp(c + (size_t)i * ldc, want + (size_t)i * LDC, N * sizeof(float)) != 0;
            CHECK_MSG(bad == 0, "ldc %d, %d threads: %d rows differ", ldc, threads, bad);
        }
    nn_set_threads(saved);
    free(A), free(B), free(c), free(want);
}

/* A product with few columns reads A's full row tiles in place; with many
 * columns A is packed. Both must give the same bits: the first columns of
 * a wide product equal the narrow product of those columns of B (an edge
 * row tile, B stored and transposed, accumulating into C and overwriting a
 * C of NaNs, 1 and 2 threads; A kept in cache whole, 61 rows, or a K block
 * at a time, 500 rows (250 x 700 floats per thread, more than the resident
 * share), where the narrow product runs each row of tiles across all its
 * columns per K block; the wide product has more than 4 columns of tiles
 * per thread, so its A is packed). */
static void gemm_a_in_place_case(int M);
static void test_gemm_a_in_place_same_bits(void)
{
    for (int big = 0; big <= 1; big++)
        gemm_a_in_place_case(big ? 500 : 61);
}

static void gemm_a_in_place_case(int M)
{
    enum { K = 700, WIDE = 600, NARROW = 100 };
    nn_rng r;
    nn_rng_seed(&r, 23);
    float *A = random_matrix(&r, (size_t)M * K), *B = random_matrix(&r, (size_t)K * WIDE);
    float *C0 = random_matrix(&r, (size_t)M * WIDE);
    float *wide = malloc(sizeof(float) * M * WIDE), *narrow = malloc(sizeof(float) * M * WIDE);
    int saved = nn_get_threads();
    for (int overwrite = 0; overwrite <= 1; overwrite++)
        for (int tb = 0; tb <= 1; tb++)
            for (int threads = 1; threads <= 2; threads++) {
                nn_set_threads(threads);
                int ldb = tb ? K : WIDE;
                float beta = overwrite ? 0.0f : 0.5f;
                if (overwrite)
                    for (size_t i = 0; i < (size_t)M * WIDE; i++) wide[i] = narrow[i] = NAN;
                else
                    memcpy(wide, C0, sizeof(float) * M * WIDE), memcpy(narrow, C0, sizeof(float) * M * WIDE);
                nn_sgemm(0, tb, M, WIDE, K, 1.0f, A, K, B, ldb, beta, wide, WIDE);
                nn_sgemm(0, tb, M, NARROW, K, 1.0f, A, K, B, ldb, beta, narrow, WIDE);
                int bad = 0;
                for (int i = 0; i < M; i++)
                    bad += memcmp(wide + (size_t)i * WIDE, narrow + (size_t)i * WIDE, NARROW * sizeof(float)) != 0;
                CHECK_MSG(bad == 0, "%d rows, tb %d, beta %g, %d threads: %d rows differ", M, tb, beta, threads,
                          bad);
            }
    nn_set_threads(saved);
    free(A), free(B), free(C0), free(wide), free(narrow);
}

/* A bottom edge tile of 1-7 rows is computed by a shorter micro-kernel
 * (two, four or eight rows): its rows must equal, bit for bit, the same
 * rows computed inside a full tile (A stored and transposed, B stored and
 * transposed, the three tile widths, two K blocks, accumulating and
 * overwriting, 1 and 2 threads). */
static void test_gemm_short_edge_tiles_same_bits(void)
{
    enum { FULL = 32, N = 112, K = 300 };
    nn_rng r;
    nn_rng_seed(&r, 29);
    float *A = random_matrix(&r, (size_t)FULL * K), *B = random_matrix(&r, (size_t)K * N);
    float *C0 = random_matrix(&r, (size_t)FULL * N);
    float *full = malloc(sizeof(float) * FULL * N), *part = malloc(sizeof(float) * FULL * N);
    int saved = nn_get_threads(), bad_cases = 0;
    for (int ta = 0; ta <= 1; ta++)
        for (int tb = 0; tb <= 1; tb++)
            for (int threads = 1; threads <= 2; threads++)
                for (int beta_one = 0; beta_one <= 1; beta_one++)
                    for (int M = FULL - 7; M < FULL; M++) {
                        nn_set_threads(threads);
                        float beta = beta_one ? 1.0f : 0.0f;
                        int lda = ta ? FULL : K, ldb = tb ? K : N;
                        memcpy(full, C0, sizeof(float) * FULL * N);
                        memcpy(part, C0, sizeof(float) * FULL * N);
                        nn_sgemm(ta, tb, FULL, N, K, 1.0f, A, lda, B, ldb, beta, full, N);
                        nn_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, part, N);
                        int bad = memcmp(full, part, sizeof(float) * M * N) != 0 ||
                                  memcmp(C0 + (size_t)M * N, part + (size_t)M * N,
                                         sizeof(float) * (FULL - M) * N) != 0;
                        CHECK_MSG(!bad, "ta %d tb %d, %d threads, beta %g, %d rows: differ", ta, tb,
                                  threads, beta, M);
                        bad_cases += bad;
                    }
    CHECK(bad_cases == 0);
    nn_set_threads(saved);
    free(A), free(B), free(C0), free(full), free(part);
}

/* One-hot products against nn_sgemm, bit for bit: detection (a second 1,
 * a 2, a NaN or an empty row is not one-hot), X W^T as row copies, and
 * dW += dY^T X as block sums on 1 and 2 threads (a char-rnn layer's 2500
 * rows, and 700 rows in 3 blocks); the gradient declines the shapes
 * nn_sgemm sums otherwise (tiny, long K in chunks). */
static void test_one_hot_products_match_gemm(void)
{
    enum { ROWS = 2500, N = 512, K = 65 };
    nn_rng r;
    nn_rng_seed(&r, 31);
    float *x = calloc((size_t)ROWS * K, sizeof(float));
    int *idx = malloc(sizeof(int) * ROWS);
    for (int i = 0; i < ROWS; i++) x[(size_t)i * K + nn_rng_below(&r, K)] = 1.0f;
    CHECK(nn_k_one_hot_rows(ROWS, K, x, idx));
    int ok = 1;
    for (int i = 0; i < ROWS; i++) ok &= x[(size_t)i * K + idx[i]] == 1.0f;
    CHECK_MSG(ok, "one-hot columns found wrong");
    const float not_one_hot[4][3] = {{1, 0, 1}, {0, 2, 0}, {NAN, 1, 0}, {0, 0, 0}};
    for (int c = 0; c < 4; c++) CHECK_MSG(!nn_k_one_hot_rows(1, 3, not_one_hot[c], idx), "case %d", c);
    CHECK(nn_k_one_hot_rows(ROWS, K, x, idx));

    float *w = random_matrix(&r, (size_t)N * K), *wt = malloc(sizeof(float) * N * K);
    float *want = malloc(sizeof(float) * ROWS * N), *got = malloc(sizeof(float) * ROWS * N);
    nn_sgemm(0, 1, ROWS, N, K, 1.0f, x, K, w, K, 0.0f, want, N);
    nn_k_one_hot_times_wt(ROWS, N, K, idx, w, NULL, NULL, wt, got);
    CHECK_MSG(memcmp(want, got, sizeof(float) * ROWS * N) == 0, "X W^T differs from nn_sgemm");
    float *b1 = random_matrix(&r, N), *b2 = random_matrix(&r, N);
    nn_k_add_two_biases(ROWS, N, want, b1, b2, want);
    nn_k_one_hot_times_wt(ROWS, N, K, idx, w, b1, b2, wt, got);
    CHECK_MSG(memcmp(want, got, sizeof(float) * ROWS * N) == 0, "X W^T + biases differs");
    free(b1), free(b2);

    float *dy = random_matrix(&r, (size_t)ROWS * N), *dw0 = random_matrix(&r, (size_t)N * K);
    float *dw_want = malloc(sizeof(float) * N * K), *dw_got = malloc(sizeof(float) * N * K);
    int saved = nn_get_threads();
    const int rows[2] = {ROWS, 700};
    for (int s = 0; s < 2; s++)
        for (int threads = 1; threads <= 2; threads++) {
            nn_set_threads(threads);
            memcpy(dw_want, dw0, sizeof(float) * N * K);
            memcpy(dw_got, dw0, sizeof(float) * N * K);
            nn_sgemm(1, 0, N, K, rows[s], 1.0f, dy, N, x, K, 1.0f, dw_want, K);
            CHECK(nn_k_one_hot_grad_acc(rows[s], N, K, dy, idx, wt, dw_got));
            CHECK_MSG(memcmp(dw_want, dw_got, sizeof(float) * N * K) == 0,
                      "dW += dY^T X differs from nn_sgemm: %d rows, %d threads", rows[s], threads);
        }
    nn_set_threads(saved);
    CHECK(!nn_k_one_hot_grad_acc(4, 8, 3, dy, idx, wt, dw_got)); /* tiny */
    CHECK(!nn_k_one_hot_grad_acc(7000, 16, 3, dy, idx, wt, dw_got)); /* K in chunks: not read */
    free(x), free(idx), free(w), free(wt), free(want), free(got), free(dy), free(dw0), free(dw_want), free(dw_got);
}

static void test_gemm_beta_zero_ignores_nan(void)
{
    float A[4] = {1, 2, 3, 4}, B[4] = {1, 0, 0, 1}, C[4] = {NAN, NAN, NAN, NAN};
    nn_sgemm(0, 0, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    CHECK(C[0] == 1 && C[1] == 2 && C[2] == 3 && C[3] == 4);
    /* the packed path stores the first K block instead of adding to C */
    enum { M = 40, N = 50, K = 600 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N),
          *c = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) a[i] = 1.0f;
    for (int i = 0; i < K * N; i++) b[i] = 0.5f;
    for (int i = 0; i < M * N; i++) c[i] = NAN;
    nn_sgemm(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
    int ok = 1;
    for (int i = 0; i < M * N; i++) ok &= c[i] == 300.0f;
    CHECK_MSG(ok, "beta = 0 on the packed path: c[0] = %g, want 300", c[0]);
    free(a);
    free(b);
    free(c);
}

/* Every GEMM path must give bit-identical results with 1 and 2 threads. */
static void test_gemm_same_bits_for_any_thread_count(void)
{
    /* conv shapes (split along N; the weight gradient's long K in chunks),
     * a dense layer and a recurrent weight gradient (split along M, with
     * op(A) packed whole / per K block), the long-K dot path, a tiny
     * product, K in chunks with beta 0 */
    static const int shapes[][5] = {{64, 7744, 288, 0, 0}, {64, 288, 7744, 0, 1},
                                    {288, 7744, 64, 1, 0}, {64, 128, 1600, 0, 1},
                                    {512, 128, 2450, 1, 0}, {50, 512, 128, 0, 0},
                                    {32, 9, 43264, 0, 1},  {5, 7, 3, 0, 0},
                                    {40, 100, 7000, 1, 1}};
    nn_rng r;
    nn_rng_seed(&r, 3);
    int saved = nn_get_threads();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ta = shapes[s][3], tb = shapes[s][4];
        float *A = random_matrix(&r, (size_t)M * K), *B = random_matrix(&r, (size_t)K * N);
        float *C1 = random_matrix(&r, (size_t)M * N), *C2 = malloc((size_t)M * N * sizeof(float));
        memcpy(C2, C1, (size_t)M * N * sizeof(float));
        float beta = s % 2 ? 1.0f : 0.0f; /* accumulate into C, or overwrite it */
        nn_set_threads(1);
        nn_sgemm(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, beta, C1, N);
        nn_set_threads(2);
        nn_sgemm(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, beta, C2, N);
        int same = memcmp(C1, C2, (size_t)M * N * sizeof(float)) == 0;
        free(A);
        free(B);
        free(C1);
        free(C2);
        nn_set_threads(saved);
        CHECK_MSG(same, "M=%d N=%d K=%d differs between 1 and 2 threads", M, N, K);
    }
}

/* The fused softmax cross-entropy (rows in parallel, fast exponentials, sums
 * in 16 fixed lanes) against double precision, and bit for bit on 1 and 2
 * threads: row lengths under, at and past 16 lanes with a tail, label
 * smoothing on and off, logits in [-20, 20). */
static void test_softmax_xent_matches_reference(void)
{
    static const int cols_cases[] = {10, 16, 65};
    enum { ROWS = 3000 };
    nn_rng r;
    nn_rng_seed(&r, 41);
    int saved = nn_get_threads();
    for (size_t c = 0; c < sizeof cols_cases / sizeof cols_cases[0]; c++)
        for (int smooth = 0; smooth <= 1; smooth++) {
            int cols = cols_cases[c];
            float smoothing = smooth ? 0.1f : 0.0f;
            size_t n = (size_t)ROWS * cols;
            float *x = random_matrix(&r, n), *p1 = malloc(n * sizeof(float)), *p2 = malloc(n * sizeof(float));
            double *row_loss = malloc(ROWS * sizeof(double));
            int *labels = malloc(ROWS * sizeof(int));
            for (size_t i = 0; i < n; i++) x[i] *= 20.0f;
            for (int i = 0; i < ROWS; i++) labels[i] = (int)nn_rng_below(&r, (uint32_t)cols);
            nn_set_threads(1);
            double l1 = nn_k_softmax_xent(ROWS, cols, x, labels, smoothing, p1, row_loss);
            nn_set_threads(2);
            double l2 = nn_k_softmax_xent(ROWS, cols, x, labels, smoothing, p2, row_loss);
            double want = 0.0, worst_p = 0.0;
            for (int i = 0; i < ROWS; i++) {
                const float *xr = x + (size_t)i * cols;
                double m = xr[0], s = 0.0, mean = 0.0;
                for (int j = 1; j < cols; j++) m = xr[j] > m ? xr[j] : m;
                for (int j = 0; j < cols; j++) s += exp((double)xr[j] - m), mean += xr[j] / (double)cols;
                double lse = m + log(s);
                want += (1.0 - smoothing) * (lse - xr[labels[i]]) + smoothing * (lse - mean);
                for (int j = 0; j < cols; j++) {
                    double e = fabs(p1[(size_t)i * cols + j] - exp((double)xr[j] - lse));
                    worst_p = e > worst_p ? e : worst_p;
                }
            }
            want /= ROWS;
            CHECK_MSG(fabs(l1 - want) < 1e-6 * fabs(want), "cols %d smoothing %g: loss %.9g, want %.9g",
                      cols, smoothing, l1, want);
            CHECK_MSG(worst_p < 1e-6, "cols %d smoothing %g: probability off by %g", cols, smoothing, worst_p);
            CHECK_MSG(l1 == l2 && memcmp(p1, p2, n * sizeof(float)) == 0,
                      "cols %d smoothing %g: 1 and 2 threads differ", cols, smoothing);
            free(x), free(p1), free(p2), free(row_loss), free(labels);
        }
    nn_set_threads(saved);
}

/* The vectorizable exp/sigmoid/tanh of the recurrent kernels against libm. */
static void test_fast_math_matches_libm(void)
{
    double worst_exp = 0, worst_sig = 0, worst_tanh = 0;
    for (float x = -80.0f; x < 80.0f; x += 0.00731f) {
        double e = exp((double)x), s = 1.0 / (1.0 + exp(-(double)x)), t = tanh((double)x);
        double de = fabs(nn_fast_expf(x) - e) / e, ds = fabs(nn_fast_sigmoidf(x) - s) / s;
        double dt = fabs(nn_fast_tanhf(x) - t) / (fabs(t) > 1e-30 ? fabs(t) : 1.0);
        worst_exp = de > worst_exp ? de : worst_exp;
        worst_sig = ds > worst_sig ? ds : worst_sig;
        worst_tanh = dt > worst_tanh ? dt : worst_tanh;
    }
    CHECK_MSG(worst_exp < 3e-7 && worst_sig < 3e-7 && worst_tanh < 3e-7,
              "relative errors exp %g sigmoid %g tanh %g", worst_exp, worst_sig, worst_tanh);
    /* a float variable, not the constant: where FLT_EVAL_METHOD is 1 (s390x)
     * the constant 1e-20f is evaluated as the double 1e-20 */
    volatile float tiny = 1e-20f;
    CHECK(nn_fast_tanhf(tiny) == tiny && nn_fast_tanhf(-30.0f) == -1.0f);
    CHECK(nn_fast_sigmoidf(-200.0f) < 1e-37f && nn_fast_sigmoidf(200.0f) == 1.0f);
    CHECK(isnan(nn_fast_expf(NAN)) && isnan(nn_fast_tanhf(NAN)) && isnan(nn_fast_sigmoidf(NAN)));
}

/* col[tap][position] of an NCHW input, straight from the definition. */
static float naive_col(const float *x, const nn_conv_shape *s, int tap, int pos)
{
    int kk = s->kh * s->kw, c = tap / kk, ki = tap % kk / s->kw, kj = tap % s->kw;
    int ohw = s->oh * s->ow, n = pos / ohw, oh = pos % ohw / s->ow, ow = pos % s->ow;
    int ih = oh * s->sh - s->pt + ki, iw = ow * s->sw - s->pl + kj;
    if (ih < 0 || ih >= s->h || iw < 0 || iw >= s->w) return 0.0f;
    return x[(((size_t)n * s->c + c) * s->h + ih) * s->w + iw];
}

/* Output size from a window and total padding, as the conv op computes it. */
static nn_conv_shape conv_shape(int n, int c, int h, int w, int kh, int kw, int sh, int sw, int pt,
                                int pl, int pad_h, int pad_w)
{
    nn_conv_shape s = {n, c, h, w, kh, kw, sh, sw, pt, pl, 0, 0};
    s.oh = (h + pad_h - kh) / sh + 1;
    s.ow = (w + pad_w - kw) / sw + 1;
    return s;
}

/* Blocks of the im2col matrix and of its transpose, at unaligned offsets,
 * for unpadded, padded (top/left and implied bottom/right) and strided
 * windows: every entry as the definition gives it, padding as 0. */
static void test_im2col_block_matches_definition(void)
{
    const nn_conv_shape shapes[] = {
        conv_shape(3, 2, 7, 6, 3, 3, 1, 1, 0, 0, 0, 0), conv_shape(2, 3, 6, 7, 3, 2, 1, 1, 1, 1, 2, 1),
        conv_shape(2, 2, 9, 8, 3, 3, 2, 2, 1, 0, 1, 1), conv_shape(4, 1, 5, 5, 5, 5, 1, 1, 2, 2, 4, 4),
        conv_shape(2, 2, 5, 30, 3, 3, 1, 1, 0, 0, 0, 0)}; /* rows of 28: copied, not gathered */
    nn_rng r;
    nn_rng_seed(&r, 11);
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const nn_conv_shape *s = &shapes[t];
        float *x = random_matrix(&r, (size_t)s->n * s->c * s->h * s->w);
        for (int x_i = 0; x_i < s->n * s->c * s->h * s->w; x_i++) x[x_i] += 2.0f; /* no zeros */
        int taps = s->c * s->kh * s->kw, positions = s->n * s->oh * s->ow, bad = 0;
        for (int transposed = 0; transposed <= 1; transposed++) {
            int rows = transposed ? positions : taps, cols = transposed ? taps : positions;
            int blocks[][4] = {{0, rows, 0, cols}, {1, rows - 2, 3, cols - 5 < 48 ? cols - 5 : 48},
                               {rows / 2, rows - rows / 2, cols / 3, cols - cols / 3}};
            for (int b = 0; b < 3; b++) {
                int r0 = blocks[b][0], nr = blocks[b][1], c0 = blocks[b][2], nc = blocks[b][3];
                int ldd = nc + 3;
                float *d = malloc((size_t)nr * ldd * sizeof *d);
                nn_k_im2col_block(x, s, transposed, r0, nr, c0, nc, d, ldd);
                for (int i = 0; i < nr; i++)
                    for (int j = 0; j < nc; j++) {
                        int tap = transposed ? c0 + j : r0 + i, pos = transposed ? r0 + i : c0 + j;
                        bad += d[(size_t)i * ldd + j] != naive_col(x, s, tap, pos);
                    }
                free(d);
            }
        }
        CHECK_MSG(bad == 0, "shape %zu: %d entries differ from the definition", t, bad);
        free(x);
    }
}

/* The convolution GEMMs that build their columns panel by panel give the
 * bits of nn_sgemm over the stored columns: the forward (split between
 * threads by columns) and the weight gradient (a short K, and a K long
 * enough to be cut into chunks). */
static void test_conv_gemm_equals_stored_columns(void)
{
    const nn_conv_shape shapes[] = {conv_shape(4, 8, 9, 9, 3, 3, 1, 1, 1, 1, 2, 2),
                                    conv_shape(64, 4, 12, 12, 3, 3, 1, 1, 0, 0, 0, 0)};
    nn_rng r;
    nn_rng_seed(&r, 12);
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const nn_conv_shape *s = &shapes[t];
        int oc = 16, taps = s->c * s->kh * s->kw, positions = s->n * s->oh * s->ow;
        float *x = random_matrix(&r, (size_t)s->n * s->c * s->h * s->w);
        float *w = random_matrix(&r, (size_t)oc * taps), *dyt = random_matrix(&r, (size_t)oc * positions);
        float *col = malloc((size_t)taps * positions * sizeof *col);
        float *y_gen = malloc((size_t)oc * positions * sizeof *y_gen);
        float *y_ref = malloc((size_t)oc * positions * sizeof *y_ref);
        float *dw_gen = random_matrix(&r, (size_t)oc * taps), *dw_ref = malloc((size_t)oc * taps * sizeof *dw_ref);
        memcpy(dw_ref, dw_gen, (size_t)oc * taps * sizeof *dw_ref);
        nn_k_im2col_block(x, s, 0, 0, taps, 0, positions, col, positions);
        nn_sgemm(0, 0, oc, positions, taps, 1.0f, w, taps, col, positions, 0.0f, y_ref, positions);
        nn_sgemm(0, 1, oc, taps, positions, 1.0f, dyt, positions, col, positions, 1.0f, dw_ref, taps);
        CHECK(nn_k_conv_gemm(w, oc, x, s, y_gen) && nn_k_conv_dw_acc(dyt, oc, x, s, dw_gen));
        CHECK_MSG(!memcmp(y_gen, y_ref, (size_t)oc * positions * sizeof *y_gen), "shape %zu: forward", t);
        CHECK_MSG(!memcmp(dw_gen, dw_ref, (size_t)oc * taps * sizeof *dw_gen), "shape %zu: weight gradient", t);
        free(x), free(w), free(dyt), free(col), free(y_gen), free(y_ref), free(dw_gen), free(dw_ref);
    }
}

/* 2x2 stride-2 max pooling against the definition (the first maximum in
 * row-major window order, a NaN beating everything, then ReLU if asked),
 * on values with many ties and NaNs, for even and odd widths, rows wider
 * than one vector of outputs, and an odd height (last row unused); and its
 * backward, bit for bit. */
static void test_maxpool_2x2_matches_definition(void)
{
    const int sizes[][2] = {{26, 26}, {11, 11}, {7, 70}, {4, 33}};
    const float values[] = {-1.0f, 0.0f, 0.5f, 1.0f, 1.0f, NAN};
    nn_rng r;
    nn_rng_seed(&r, 13);
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++)
        for (int relu = 0; relu <= 1; relu++) {
            nn_conv_shape s = {3, 2, sizes[t][0], sizes[t][1], 2, 2, 2, 2, 0, 0, sizes[t][0] / 2,
                               sizes[t][1] / 2};
            size_t planes = (size_t)s.n * s.c, hw = (size_t)s.h * s.w, ohw = (size_t)s.oh * s.ow;
            float *x = malloc(planes * hw * sizeof *x), *y = malloc(planes * ohw * sizeof *y);
            int *am = malloc(planes * ohw * sizeof *am), bad = 0;
            for (size_t i = 0; i < planes * hw; i++) x[i] = values[nn_rng_below(&r, 6)];
            nn_k_maxpool(x, &s, relu, y, am);
            for (size_t p = 0; p < planes; p++)
                for (int oh = 0; oh < s.oh; oh++)
                    for (int ow = 0; ow < s.ow; ow++) {
                        const float *in = x + p * hw;
                        int best = -1;
                        for (int k = 0; k < 4; k++) {
                            int i = (2 * oh + k / 2) * s.w + 2 * ow + k % 2;
                            if (best < 0 || in[i] > in[best] || (isnan(in[i]) && !isnan(in[best]))) best = i;
                        }
                        float want = relu && !(in[best] > 0.0f) ? 0.0f : in[best];
                        size_t o = p * ohw + (size_t)oh * s.ow + ow;
                        float got = y[o];
                        bad += am[o] != best || !(got == want || (isnan(got) && isnan(want)));
                    }
            CHECK_MSG(bad == 0, "%dx%d relu %d: %d outputs differ", s.h, s.w, relu, bad);
            /* backward, overwriting and adding: each output's gradient (zero
             * where the ReLU'd output is not positive) at its argmax */
            float *dy = random_matrix(&r, planes * ohw), *dx = random_matrix(&r, planes * hw);
            float *want = malloc(planes * hw * sizeof *want);
            for (int overwrite = 1; overwrite >= 0; overwrite--) {
                for (size_t i = 0; i < planes * hw; i++) want[i] = overwrite ? 0.0f : dx[i];
                for (size_t p = 0; p < planes; p++)
                    for (size_t o = 0; o < ohw; o++)
                        want[p * hw + (size_t)am[p * ohw + o]] += relu && !(y[p * ohw + o] > 0.0f) ? 0.0f : dy[p * ohw + o];
                nn_k_maxpool_bwd(dy, am, &s, relu ? y : NULL, overwrite, dx);
                int wrong = 0;
                for (size_t i = 0; i < planes * hw; i++) wrong += memcmp(&dx[i], &want[i], sizeof(float)) != 0;
                CHECK_MSG(wrong == 0, "%dx%d relu %d overwrite %d: %d gradients differ", s.h, s.w, relu,
                          overwrite, wrong);
            }
            free(x), free(y), free(am), free(dy), free(dx), free(want);
        }
}

/* The convolution's input gradient, dx (+)= col2im(W^T dyt), against the
 * definition summed in the same order (taps in row-major order, each
 * column entry from nn_sgemm): bit for bit, for planes of one and several
 * register blocks, chunks of images that do not divide the batch, with and
 * without overwrite, unpadded (the in-register path) and padded/strided. */
static void test_conv_dx_matches_col2im_definition(void)
{
    const nn_conv_shape shapes[] = {conv_shape(5, 3, 13, 13, 3, 3, 1, 1, 0, 0, 0, 0),
                                    conv_shape(3, 2, 20, 19, 5, 5, 1, 1, 0, 0, 0, 0),
                                    conv_shape(3, 2, 9, 8, 3, 3, 2, 1, 1, 1, 1, 2)};
    nn_rng r;
    nn_rng_seed(&r, 14);
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++)
        for (int overwrite = 0; overwrite <= 1; overwrite++) {
            const nn_conv_shape *s = &shapes[t];
            int oc = 4, kk = s->kh * s->kw, taps = s->c * kk, ohw = s->oh * s->ow;
            int positions = s->n * ohw, chunk = 2, bad = 0;
            size_t xsize = (size_t)s->n * s->c * s->h * s->w;
            float *w = random_matrix(&r, (size_t)oc * taps), *dyt = random_matrix(&r, (size_t)oc * positions);
            float *dx = random_matrix(&r, xsize), *want = malloc(xsize * sizeof *want);
            float *dcol = malloc((size_t)taps * positions * sizeof *dcol);
            float *scratch = malloc((size_t)nn_get_threads() * taps * chunk * ohw * sizeof *scratch);
            nn_sgemm(1, 0, taps, positions, oc, 1.0f, w, taps, dyt, positions, 0.0f, dcol, positions);
            for (size_t i = 0; i < xsize; i++) want[i] = overwrite ? 0.0f : dx[i];
            for (int tap = 0; tap < taps; tap++)
                for (int pos = 0; pos < positions; pos++) {
                    int c = tap / kk, ki = tap % kk / s->kw, kj = tap % s->kw;
                    int n = pos / ohw, oh = pos % ohw / s->ow, ow = pos % s->ow;
                    int ih = oh * s->sh - s->pt + ki, iw = ow * s->sw - s->pl + kj;
                    if (ih >= 0 && ih < s->h && iw >= 0 && iw < s->w)
                        want[(((size_t)n * s->c + c) * s->h + ih) * s->w + iw] += dcol[(size_t)tap * positions + pos];
                }
            nn_k_conv_dx(w, oc, dyt, s, scratch, chunk, overwrite, dx);
            for (size_t i = 0; i < xsize; i++) bad += memcmp(&dx[i], &want[i], sizeof(float)) != 0;
            CHECK_MSG(bad == 0, "shape %zu overwrite %d: %d of %zu differ", t, overwrite, bad, xsize);
            free(w), free(dyt), free(dx), free(want), free(dcol), free(scratch);
        }
}

/* The direct convolution (the first-layer path) against double-precision
 * sums, forward and weight/bias gradients, with and without the fused
 * ReLU's mask, for the tap counts with a fast path (1x3x3, 1x5x5, 3x3x3)
 * and rows wider than one vector, and one without (2x3x3). */
static void test_conv_direct_matches_definition(void)
{
    const int shapes[][3] = {{1, 3, 3}, {1, 5, 5}, {3, 3, 3}, {2, 3, 3}}; /* c, kh, kw */
    nn_rng r;
    nn_rng_seed(&r, 15);
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++)
        for (int relu = 0; relu <= 1; relu++) {
            int c = shapes[t][0], k = shapes[t][1], oc = 3;
            nn_conv_shape s = conv_shape(2, c, 9, 21, k, k, 1, 1, 0, 0, 0, 0);
            int taps = c * k * k, ohw = s.oh * s.ow;
            size_t xs = (size_t)s.n * c * s.h * s.w, ys = (size_t)s.n * oc * ohw;
            float *x = random_matrix(&r, xs), *w = random_matrix(&r, (size_t)oc * taps);
            float *b = random_matrix(&r, oc), *y = malloc(ys * sizeof *y), *dy = random_matrix(&r, ys);
            float *dw = calloc((size_t)oc * taps, sizeof *dw), *db = calloc(oc, sizeof *db);
            nn_k_conv_direct(x, &s, oc, w, b, relu, y);
            nn_k_conv_direct_bwd(x, &s, oc, w, relu ? y : NULL, dy, NULL, dw, db);
            double worst = 0, want_dw[3 * 27] = {0}, want_db[3] = {0};
            for (int n = 0; n < s.n; n++)
                for (int o = 0; o < oc; o++)
                    for (int p = 0; p < ohw; p++) {
                        double v = b[o];
                        int oh = p / s.ow, ow = p % s.ow;
                        for (int q = 0; q < taps; q++) {
                            int ci = q / (k * k), ki = q % (k * k) / k, kj = q % k;
                            v += (double)w[o * taps + q] * x[(((size_t)n * c + ci) * s.h + oh + ki) * s.w + ow + kj];
                        }
                        if (relu && v <= 0) v = 0;
                        size_t at = ((size_t)n * oc + o) * ohw + p;
                        worst = larger(worst, fabs(y[at] - v));
                        double g = relu && !(y[at] > 0.0f) ? 0.0 : dy[at];
                        want_db[o] += g;
                        for (int q = 0; q < taps; q++) {
                            int ci = q / (k * k), ki = q % (k * k) / k, kj = q % k;
                            want_dw[o * taps + q] += g * x[(((size_t)n * c + ci) * s.h + oh + ki) * s.w + ow + kj];
                        }
                    }
            for (int i = 0; i < oc * taps; i++) worst = larger(worst, fabs(dw[i] - want_dw[i]) / 10);
            for (int o = 0; o < oc; o++) worst = larger(worst, fabs(db[o] - want_db[o]) / 10);
            CHECK_MSG(worst < 1e-4, "c %d kernel %d relu %d: off by %g", c, k, relu, worst);
            free(x), free(w), free(b), free(y), free(dy), free(dw), free(db);
        }
}

/* The two-bias kernels of the recurrent layers against two calls of the
 * one-bias kernels, bit for bit, on 1 and 2 threads: big enough to be
 * split, with a column count that is not a whole number of vectors. */
static void test_two_biases_equal_two_calls(void)
{
    const int N = 700, C = 181;
    nn_rng r;
    nn_rng_seed(&r, 16);
    float *x = random_matrix(&r, (size_t)N * C), *b1 = random_matrix(&r, C), *b2 = random_matrix(&r, C);
    float *want = malloc((size_t)N * C * sizeof *want), *got = malloc((size_t)N * C * sizeof *got);
    float *g1 = random_matrix(&r, C), *g2 = random_matrix(&r, C);
    float *w1 = malloc(C * sizeof *w1), *w2 = malloc(C * sizeof *w2), *h1 = malloc(C * sizeof *h1),
          *h2 = malloc(C * sizeof *h2);
    nn_k_add_bias(N, C, 1, x, b1, want);
    nn_k_add_bias(N, C, 1, want, b2, want);
    memcpy(w1, g1, C * sizeof *w1);
    memcpy(w2, g2, C * sizeof *w2);
    nn_k_bias_grad_acc(N, C, 1, x, w1);
    nn_k_bias_grad_acc(N, C, 1, x, w2);
    int saved = nn_get_threads();
    for (int threads = 1; threads <= 2; threads++) {
        nn_set_threads(threads);
        nn_k_add_two_biases(N, C, x, b1, b2, got);
        CHECK_MSG(memcmp(got, want, (size_t)N * C * sizeof *got) == 0, "add, %d threads", threads);
        memcpy(h1, g1, C * sizeof *h1);
        memcpy(h2, g2, C * sizeof *h2);
        nn_k_two_bias_grads_acc(N, C, x, h1, h2);
        CHECK_MSG(memcmp(h1, w1, C * sizeof *h1) == 0 && memcmp(h2, w2, C * sizeof *h2) == 0,
                  "sums, %d threads", threads);
        memcpy(h2, g2, C * sizeof *h2);
        nn_k_two_bias_grads_acc(N, C, x, NULL, h2); /* one of them absent */
        CHECK_MSG(memcmp(h2, w2, C * sizeof *h2) == 0, "second sum alone, %d threads", threads);
    }
    nn_set_threads(saved);
    free(x), free(b1), free(b2), free(want), free(got), free(g1), free(g2), free(w1), free(w2), free(h1),
        free(h2);
}

const test_case gemm_tests[] = {
    {"fast_math_matches_libm", test_fast_math_matches_libm},
    {"softmax_xent_matches_reference", test_softmax_xent_matches_reference},
    {"gemm_same_bits_any_thread_count", test_gemm_same_bits_for_any_thread_count},
    {"gemm_all_transposes_and_edges", test_gemm_all_transposes_and_edges},
    {"gemm_alpha_beta", test_gemm_alpha_beta},
    {"gemm_wide_n_spans_panels", test_gemm_wide_n_spans_panels},
    {"gemm_beta_zero_ignores_nan", test_gemm_beta_zero_ignores_nan},
    {"gemm_streamed_c_same_bits", test_gemm_streamed_c_same_bits},
    {"gemm_a_in_place_same_bits", test_gemm_a_in_place_same_bits},
    {"gemm_short_edge_tiles_same_bits", test_gemm_short_edge_tiles_same_bits},
    {"one_hot_products_match_gemm", test_one_hot_products_match_gemm},
    {"im2col_block_matches_definition", test_im2col_block_matches_definition},
    {"conv_gemm_equals_stored_columns", test_conv_gemm_equals_stored_columns},
    {"maxpool_2x2_matches_definition", test_maxpool_2x2_matches_definition},
    {"conv_dx_matches_col2im_definition", test_conv_dx_matches_col2im_definition},
    {"conv_direct_matches_definition", test_conv_direct_matches_definition},
    {"two_biases_equal_two_calls", test_two_biases_equal_two_calls},
    {NULL, NULL}};
