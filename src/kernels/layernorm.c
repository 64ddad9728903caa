/* Layer normalisation over the last dimension: y = (x - mean) / sqrt(var +
 * eps) * w + b per row, with the biased variance (PyTorch's LayerNorm).
 * Reductions run in fixed-order lanes (lanes.h): the same results on every
 * build and thread count. */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "nn/threads.h"
#include "lanes.h"

static float lane_sq_dev(int n, const float *x, float mean)
{
    float lane[NN_LANES] = {0};
    int j = 0;
    for (; j + NN_LANES <= n; j += NN_LANES)
        for (int l = 0; l < NN_LANES; l++) lane[l] += (x[j + l] - mean) * (x[j + l] - mean);
    for (int l = 0; j + l < n; l++) lane[l] += (x[j + l] - mean) * (x[j + l] - mean);
    float s = 0.0f;
    for (int l = 0; l < NN_LANES; l++) s += lane[l];
    return s;
}

typedef struct ln_ctx {
    int cols;
    float eps;
    const float *x, *w, *b, *dy;
    float *y, *stats, *dx, *scratch, *partials;
} ln_ctx;

static void ln_rows(void *p, int r0, int r1, int slot)
{
    const ln_ctx *c = p;
    (void)slot;
    int n = c->cols;
    for (int r = r0; r < r1; r++) {
        const float *xr = c->x + (size_t)r * n;
        float *yr = c->y + (size_t)r * n;
        float mean = nn_lane_sum(n, xr) / (float)n;
        float rstd = 1.0f / sqrtf(lane_sq_dev(n, xr, mean) / (float)n + c->eps);
        c->stats[2 * (size_t)r] = mean;
        c->stats[2 * (size_t)r + 1] = rstd;
        for (int j = 0; j < n; j++) {
            float v = (xr[j] - mean) * rstd;
            if (c->w) v *= c->w[j];
            if (c->b) v += c->b[j];
            yr[j] = v;
        }
    }
}

#define LN_PAR_MIN 65536 /* elements below which threads cost more than they save */
/* Rows whose parameter-gradient sums are made together (fixed: the sums,
 * and so the bits, do not depend on the thread count). */
#define LN_PARAM_ROWS 16

void nn_k_layernorm(int rows, int cols, const float *x, const float *w, const float *b, float eps,
                    float *y, float *stats)
{
    ln_ctx c = {cols, eps, x, w, b, NULL, y, stats, NULL, NULL, NULL};
    nn_k_parallel_rows(rows, 1, (size_t)rows * cols >= LN_PAR_MIN, ln_rows, &c);
}

/* dx += rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w, and
 * each LN_PARAM_ROWS-row block's sums of dy * xhat and dy (the weight's and
 * bias's gradients) into its own partials, rows in order. */
static void ln_bwd_rows(void *p, int r0, int r1, int slot)
{
    const ln_ctx *c = p;
    int n = c->cols;
    float *g = c->scratch + (size_t)slot * 2 * n, *xhat = g + n;
    for (int r = r0; r < r1; r++) {
        const float *xr = c->x + (size_t)r * n, *dyr = c->dy + (size_t)r * n;
        float mean = c->stats[2 * (size_t)r], rstd = c->stats[2 * (size_t)r + 1];
        for (int j = 0; j < n; j++) {
            xhat[j] = (xr[j] - mean) * rstd;
            g[j] = c->w ? dyr[j] * c->w[j] : dyr[j];
        }
        if (c->partials) {
            float *dw = c->partials + (size_t)(r / LN_PARAM_ROWS) * 2 * n, *db = dw + n;
            if (r % LN_PARAM_ROWS == 0) memset(dw, 0, 2 * (size_t)n * sizeof(float)); /* the block's first row */
            for (int j = 0; j < n; j++) {
                dw[j] += dyr[j] * xhat[j];
                db[j] += dyr[j];
            }
        }
        if (!c->dx) continue;
        float g_mean = nn_lane_sum(n, g) / (float)n, gx_mean = nn_lane_dot(n, g, xhat) / (float)n;
        float *dxr = c->dx + (size_t)r * n;
        for (int j = 0; j < n; j++) dxr[j] += rstd * (g[j] - g_mean - xhat[j] * gx_mean);
    }
}

size_t nn_k_layernorm_bwd_scratch(int rows, int cols, int threads)
{
    size_t blocks = ((size_t)rows + LN_PARAM_ROWS - 1) / LN_PARAM_ROWS;
    return ((size_t)threads + blocks) * 2 * (size_t)cols;
}

void nn_k_layernorm_bwd_acc(int rows, int cols, const float *x, const float *w, const float *stats,
                            const float *dy, float *scratch, float *dx, float *dw, float *db)
{
    if (!dx && !dw && !db) return;
    int threads = nn_get_threads(), blocks = (rows + LN_PARAM_ROWS - 1) / LN_PARAM_ROWS;
    float *partials = dw || db ? scratch + (size_t)threads * 2 * cols : NULL;
    ln_ctx c = {cols, 0.0f, x, w, NULL, dy, NULL, (float *)stats, dx, scratch, partials};
    /* whole blocks to each thread: every block's partials made by one thread */
    nn_k_parallel_rows(rows, LN_PARAM_ROWS, (size_t)rows * cols >= LN_PAR_MIN, ln_bwd_rows, &c);
    if (!partials) return;
    for (int j = 0; j < cols; j++) { /* the blocks' partials added in block order */
        float sw = 0.0f, sb = 0.0f;
        for (int b = 0; b < blocks; b++) {
            sw += partials[(size_t)b * 2 * cols + j];
            sb += partials[(size_t)b * 2 * cols + cols + j];
        }
        if (dw) dw[j] += sw;
        if (db) db[j] += sb;
    }
}
