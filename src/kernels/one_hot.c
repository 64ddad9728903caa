/* Products with a one-hot matrix (a character model's inputs: one 1 per
 * row, zeros elsewhere) as row copies and row sums instead of GEMMs, with
 * the same results as nn_sgemm: its sums run in the same K blocks, and a
 * zero term changes no sum (only, at most, the sign of a zero). */
#include <string.h>

#include "kernels.h"

int nn_k_one_hot_rows(size_t rows, int cols, const float *x, int *idx)
{
    for (size_t i = 0; i < rows; i++) {
        const float *row = x + i * (size_t)cols;
        int at = -1;
        for (int j = 0; j < cols; j++) {
            if (row[j] == 0.0f) continue;
            if (row[j] != 1.0f || at >= 0) return 0; /* NaN too */
            at = j;
        }
        if (at < 0) return 0;
        idx[i] = at;
    }
    return 1;
}

typedef struct one_hot_rows_ctx {
    const int *idx;
    const float *wt;
    int n;
    float *out;
} one_hot_rows_ctx;

static void copy_rows(void *p, int r0, int r1, int slot)
{
    (void)slot;
    const one_hot_rows_ctx *c = p;
    for (int i = r0; i < r1; i++)
        memcpy(c->out + (size_t)i * c->n, c->wt + (size_t)c->idx[i] * c->n, (size_t)c->n * sizeof(float));
}

void nn_k_one_hot_times_wt(int rows, int n, int k, const int *idx, const float *w, const float *b1,
                           const float *b2, float *wt, float *out)
{
    /* wt = w^T (so that each output row is one copy) plus the biases, added
     * as nn_k_add_two_biases adds them to each row */
    for (int j = 0; j < n; j++)
        for (int v = 0; v < k; v++) {
            float x = w[(size_t)j * k + v];
            wt[(size_t)v * n + j] = b1 ? (x + b1[j]) + b2[j] : x;
        }
    one_hot_rows_ctx c = {idx, wt, n, out};
    nn_k_parallel_rows(rows, 16, (size_t)rows * n > 65536, copy_rows, &c);
}

typedef struct one_hot_grad_ctx {
    int rows, n, k, kblocks, kc_max;
    const float *dy;
    const int *idx;
    float *sums, *dw;
} one_hot_grad_ctx;

/* Columns [j0, j1) of dw: per K block of nn_sgemm, the block's rows of dy
 * summed by their one-hot column into sums (k x n, this thread's columns),
 * then added to dw, as the GEMM adds each block's partial sums to C. */
static void grad_columns(void *p, int j0, int j1, int slot)
{
    (void)slot;
    const one_hot_grad_ctx *c = p;
    int kblocks = c->kblocks, kc_max = c->kc_max;
    size_t width = (size_t)(j1 - j0) * sizeof(float);
    for (int kb = 0; kb < kblocks; kb++) {
        int i0 = kb * kc_max, i1 = i0 + kc_max < c->rows ? i0 + kc_max : c->rows;
        for (int v = 0; v < c->k; v++) memset(c->sums + (size_t)v * c->n + j0, 0, width);
        for (int i = i0; i < i1; i++) {
            const float *src = c->dy + (size_t)i * c->n;
            float *dst = c->sums + (size_t)c->idx[i] * c->n;
            for (int j = j0; j < j1; j++) dst[j] += src[j];
        }
        for (int j = j0; j < j1; j++)
            for (int v = 0; v < c->k; v++) c->dw[(size_t)j * c->k + v] += c->sums[(size_t)v * c->n + j];
    }
}

int nn_k_one_hot_grad_acc(int rows, int n, int k, const float *dy, const int *idx, float *sums, float *dw)
{
    one_hot_grad_ctx c = {rows, n, k, 0, 0, dy, idx, sums, dw};
    if (!nn_k_gemm_k_blocks(n, k, rows, &c.kblocks, &c.kc_max)) return 0;
    nn_k_parallel_rows(n, 16, (size_t)rows * n > 65536, grad_columns, &c);
    return 1;
}
