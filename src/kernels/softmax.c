/* Softmax, log-softmax and fused softmax cross-entropy over rows. All of them
 * subtract the row maximum first so large logits cannot overflow exp. */
#include <math.h>

#include "fastmath.h"
#include "kernels.h"
#include "simd.h"

static float row_max(int cols, const float *x)
{
    float m = x[0];
    for (int j = 1; j < cols; j++) m = x[j] > m ? x[j] : m;
    return m;
}

void nn_k_softmax_rows(int rows, int cols, const float *x, float *y)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols;
        float *yr = y + (size_t)r * cols;
        float m = row_max(cols, xr), s = 0.0f;
        for (int j = 0; j < cols; j++) s += (yr[j] = expf(xr[j] - m));
        float inv = 1.0f / s;
        for (int j = 0; j < cols; j++) yr[j] *= inv;
    }
}

void nn_k_log_softmax_rows(int rows, int cols, const float *x, float *y)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols;
        float *yr = y + (size_t)r * cols;
        float m = row_max(cols, xr), s = 0.0f;
        for (int j = 0; j < cols; j++) s += expf(xr[j] - m);
        float lse = m + logf(s);
        for (int j = 0; j < cols; j++) yr[j] = xr[j] - lse;
    }
}

void nn_k_softmax_bwd_acc(int rows, int cols, const float *y, const float *dy, float *dx)
{
    for (int r = 0; r < rows; r++) {
        size_t o = (size_t)r * cols;
        float dot = 0.0f;
        for (int j = 0; j < cols; j++) dot += dy[o + j] * y[o + j];
        for (int j = 0; j < cols; j++) dx[o + j] += y[o + j] * (dy[o + j] - dot);
    }
}

void nn_k_log_softmax_bwd_acc(int rows, int cols, const float *y, const float *dy, float *dx)
{
    for (int r = 0; r < rows; r++) {
        size_t o = (size_t)r * cols;
        float s = 0.0f;
        for (int j = 0; j < cols; j++) s += dy[o + j];
        for (int j = 0; j < cols; j++) dx[o + j] += dy[o + j] - expf(y[o + j]) * s;
    }
}

/* Sum and maximum of n floats in a fixed order whatever the vector width:
 * 16 running lanes (element j goes to lane j mod 16) combined in order at
 * the end, so every build and thread count gets the same bits. */
enum { LANES = 16, LANE_VECS = LANES / VEC };

static float sum_16_lanes(const float *x, int n)
{
    vf acc[LANE_VECS] = {{0}};
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int v = 0; v < LANE_VECS; v++) acc[v] += vload(x + j + v * VEC);
    float lane[LANES];
    for (int v = 0; v < LANE_VECS; v++) vstore(lane + v * VEC, acc[v]);
    for (int l = 0; j + l < n; l++) lane[l] += x[j + l];
    float s = 0.0f;
    for (int l = 0; l < LANES; l++) s += lane[l];
    return s;
}

static inline vf vmax(vf a, vf b)
{
    vi a_bigger = a > b;
    return (vf)(((vi)a & a_bigger) | ((vi)b & ~a_bigger));
}

static float max_16_lanes(const float *x, int n)
{
    if (n < LANES) return row_max(n, x);
    vf acc[LANE_VECS];
    for (int v = 0; v < LANE_VECS; v++) acc[v] = vload(x + v * VEC);
    int j = LANES;
    for (; j + LANES <= n; j += LANES)
        for (int v = 0; v < LANE_VECS; v++) acc[v] = vmax(acc[v], vload(x + j + v * VEC));
    float lane[LANES];
    for (int v = 0; v < LANE_VECS; v++) vstore(lane + v * VEC, acc[v]);
    float m = row_max(LANES, lane);
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* One row: probabilities into pr, and the row's loss term. The exponentials
 * are fastmath.h's vectorizable ones (within 2e-7 of libm's expf, which
 * took 0.66 ms of a char-rnn step for 2500 rows of 65 on one thread). */
static double xent_row(int cols, const float *restrict xr, int label, float smoothing,
                       float *restrict pr)
{
    float m = max_16_lanes(xr, cols);
    for (int j = 0; j < cols; j++) pr[j] = nn_fast_expf(xr[j] - m);
    float s = sum_16_lanes(pr, cols), inv = 1.0f / s;
    for (int j = 0; j < cols; j++) pr[j] *= inv;
    /* -log p from the logits, not from p, so it stays finite */
    double lse = (double)m + log((double)s);
    double term = (1.0 - smoothing) * (lse - xr[label]);
    if (smoothing != 0.0f) {
        double mean_x = 0.0;
        for (int j = 0; j < cols; j++) mean_x += xr[j];
        term += smoothing * (lse - mean_x / cols);
    }
    return term;
}

double nn_k_softmax_xent(int rows, int cols, const float *x, const int *labels, float smoothing,
                         float *prob, double *row_loss)
{
    /* Rows in parallel, their terms summed in row order: the same result
     * for any thread count. */
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 32768)
    for (int r = 0; r < rows; r++)
        row_loss[r] = xent_row(cols, x + (size_t)r * cols, labels[r], smoothing, prob + (size_t)r * cols);
    double total = 0.0;
    for (int r = 0; r < rows; r++) total += row_loss[r];
    return rows > 0 ? total / rows : 0.0;
}

void nn_k_softmax_xent_bwd_acc(int rows, int cols, const float *prob, const int *labels,
                               float smoothing, float scale, float *dx)
{
    float uniform = scale * smoothing / (float)cols;
    for (int r = 0; r < rows; r++) {
        size_t o = (size_t)r * cols;
        for (int j = 0; j < cols; j++) dx[o + j] += scale * prob[o + j] - uniform;
        dx[o + labels[r]] -= scale * (1.0f - smoothing);
    }
}
