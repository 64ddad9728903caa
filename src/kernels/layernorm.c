/* Layer normalisation over the last dimension: y = (x - mean) / sqrt(var +
 * eps) * w + b per row, with the biased variance (PyTorch's LayerNorm).
 * Reductions run in fixed-order lanes (lanes.h): the same results on every
 * build and thread count. */
#include <math.h>

#include "kernels.h"
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
    float *y, *stats, *dx, *scratch;
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

void nn_k_layernorm(int rows, int cols, const float *x, const float *w, const float *b, float eps,
                    float *y, float *stats)
{
    ln_ctx c = {cols, eps, x, w, b, NULL, y, stats, NULL, NULL};
    nn_k_parallel_rows(rows, 1, (size_t)rows * cols >= LN_PAR_MIN, ln_rows, &c);
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w. */
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
        float g_mean = nn_lane_sum(n, g) / (float)n, gx_mean = nn_lane_dot(n, g, xhat) / (float)n;
        float *dxr = c->dx + (size_t)r * n;
        for (int j = 0; j < n; j++) dxr[j] += rstd * (g[j] - g_mean - xhat[j] * gx_mean);
    }
}

void nn_k_layernorm_bwd_x_acc(int rows, int cols, const float *x, const float *w, const float *stats,
                              const float *dy, float *scratch, float *dx)
{
    ln_ctx c = {cols, 0.0f, x, w, NULL, dy, NULL, (float *)stats, dx, scratch};
    nn_k_parallel_rows(rows, 1, (size_t)rows * cols >= LN_PAR_MIN, ln_bwd_rows, &c);
}

void nn_k_layernorm_bwd_params_acc(int rows, int cols, const float *x, const float *stats,
                                   const float *dy, float *dw, float *db)
{
    /* rows in order: each column's sum is the same whatever the thread count */
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols, *dyr = dy + (size_t)r * cols;
        float mean = stats[2 * (size_t)r], rstd = stats[2 * (size_t)r + 1];
        if (dw)
            for (int j = 0; j < cols; j++) dw[j] += dyr[j] * ((xr[j] - mean) * rstd);
        if (db)
            for (int j = 0; j < cols; j++) db[j] += dyr[j];
    }
}
