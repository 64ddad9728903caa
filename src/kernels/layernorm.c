/* Layer normalisation over the last dimension: y = (x - mean) / sqrt(var +
 * eps) * w + b per row, with the biased variance (PyTorch's LayerNorm).
 * Reductions run in fixed-order lanes (lanes.h): the same results on every
 * build and thread count. */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "nn/threads.h"
#include "lanes.h"
#include "simd.h"

static float lane_sq_dev(int n, const float *x, float mean)
{
    float lane[NN_LANES] = {0};
    int j = 0;
    for (; j + NN_LANES <= n; j += NN_LANES)
        for (int l = 0; l < NN_LANES; l++) lane[l] += (x[j + l] - mean) * (x[j + l] - mean);
    for (int l = 0; j + l < n; l++) lane[l] += (x[j + l] - mean) * (x[j + l] - mean);
    return nn_lane_total(lane);
}

typedef struct ln_ctx {
    int cols;
    float eps;
    const float *x, *w, *b, *dy;
    float *y, *stats, *dx, *scratch, *partials;
} ln_ctx;

/* Rows of whole 16-lane groups (the usual widths) run in vectors with the
 * same lanes: element j in lane j mod 16 as in lanes.h, so both paths give
 * the same sums; through arrays of lanes the compiler kept the lanes in
 * memory. */
enum { GROUP_VECS = NN_LANES / VEC };

static inline float vec_lanes_total(const vf *acc)
{
    float lane[NN_LANES];
    memcpy(lane, acc, sizeof lane);
    return nn_lane_total(lane);
}

static void ln_row_vec(int n, const float *xr, const float *w, const float *b, float eps, float *yr,
                       float *stats)
{
    vf acc[GROUP_VECS];
    for (int v = 0; v < GROUP_VECS; v++) acc[v] = (vf){0};
    for (int j = 0; j < n; j += NN_LANES)
        for (int v = 0; v < GROUP_VECS; v++) acc[v] += vload(xr + j + v * VEC);
    float mean = vec_lanes_total(acc) / (float)n;
    for (int v = 0; v < GROUP_VECS; v++) acc[v] = (vf){0};
    for (int j = 0; j < n; j += NN_LANES)
        for (int v = 0; v < GROUP_VECS; v++) {
            vf d = vload(xr + j + v * VEC) - VS(mean);
            acc[v] += d * d;
        }
    float rstd = 1.0f / sqrtf(vec_lanes_total(acc) / (float)n + eps);
    stats[0] = mean;
    stats[1] = rstd;
    for (int j = 0; j < n; j += VEC) {
        vf y = (vload(xr + j) - VS(mean)) * VS(rstd);
        if (w) y *= vload(w + j);
        if (b) y += vload(b + j);
        vstore(yr + j, y);
    }
}

static void ln_rows(void *p, int r0, int r1, int slot)
{
    const ln_ctx *c = p;
    (void)slot;
    int n = c->cols;
    for (int r = r0; r < r1; r++) {
        const float *xr = c->x + (size_t)r * n;
        float *yr = c->y + (size_t)r * n;
        if (n % NN_LANES == 0) {
            ln_row_vec(n, xr, c->w, c->b, c->eps, yr, c->stats + 2 * (size_t)r);
            continue;
        }
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

/* One row of whole 16-lane groups in vectors (lanes as in ln_row_vec): g
 * and xhat recomputed where needed rather than stored. */
static void ln_bwd_row_vec(int n, const float *xr, const float *dyr, const float *w, float mean, float rstd,
                           float *dw, float *db, float *dxr)
{
    vf g_acc[GROUP_VECS], gx_acc[GROUP_VECS];
    for (int v = 0; v < GROUP_VECS; v++) g_acc[v] = gx_acc[v] = (vf){0};
    for (int j = 0; j < n; j += NN_LANES)
        for (int v = 0; v < GROUP_VECS; v++) {
            int k = j + v * VEC;
            vf dy = vload(dyr + k), xh = (vload(xr + k) - VS(mean)) * VS(rstd), g = w ? dy * vload(w + k) : dy;
            g_acc[v] += g;
            gx_acc[v] += g * xh;
            if (dw) {
                vstore(dw + k, vload(dw + k) + dy * xh);
                vstore(db + k, vload(db + k) + dy);
            }
        }
    if (!dxr) return;
    float g_mean = vec_lanes_total(g_acc) / (float)n, gx_mean = vec_lanes_total(gx_acc) / (float)n;
    for (int k = 0; k < n; k += VEC) {
        vf dy = vload(dyr + k), xh = (vload(xr + k) - VS(mean)) * VS(rstd), g = w ? dy * vload(w + k) : dy;
        vstore(dxr + k, vload(dxr + k) + VS(rstd) * (g - VS(g_mean) - xh * VS(gx_mean)));
    }
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
        float *dw = NULL, *db = NULL;
        if (c->partials) {
            dw = c->partials + (size_t)(r / LN_PARAM_ROWS) * 2 * n;
            db = dw + n;
            if (r % LN_PARAM_ROWS == 0) memset(dw, 0, 2 * (size_t)n * sizeof(float)); /* the block's first row */
        }
        float *dxr = c->dx ? c->dx + (size_t)r * n : NULL;
        if (n % NN_LANES == 0) {
            ln_bwd_row_vec(n, xr, dyr, c->w, mean, rstd, dw, db, dxr);
            continue;
        }
        for (int j = 0; j < n; j++) {
            xhat[j] = (xr[j] - mean) * rstd;
            g[j] = c->w ? dyr[j] * c->w[j] : dyr[j];
        }
        if (dw)
            for (int j = 0; j < n; j++) {
                dw[j] += dyr[j] * xhat[j];
                db[j] += dyr[j];
            }
        if (!dxr) continue;
        float g_mean = nn_lane_sum(n, g) / (float)n, gx_mean = nn_lane_dot(n, g, xhat) / (float)n;
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
    /* the blocks' partials added in block order, into block 0's */
    for (int b = 1; b < blocks; b++)
        for (int j = 0; j < 2 * cols; j++) partials[j] += partials[(size_t)b * 2 * cols + j];
    for (int j = 0; j < cols; j++) {
        if (dw) dw[j] += partials[j];
        if (db) db[j] += partials[cols + j];
    }
}
