/* Softmax, log-softmax and fused softmax cross-entropy over rows. All of them
 * subtract the row maximum first so large logits cannot overflow exp. */
#include <math.h>

#include "kernels.h"

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

double nn_k_softmax_xent(int rows, int cols, const float *x, const int *labels, float smoothing,
                         float *prob)
{
    double total = 0.0;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols;
        float *pr = prob + (size_t)r * cols;
        float m = row_max(cols, xr), s = 0.0f;
        for (int j = 0; j < cols; j++) s += (pr[j] = expf(xr[j] - m));
        float inv = 1.0f / s;
        for (int j = 0; j < cols; j++) pr[j] *= inv;
        /* -log p from the logits, not from p, so it stays finite */
        double lse = (double)m + log((double)s);
        total += (1.0 - smoothing) * (lse - xr[labels[r]]);
        if (smoothing != 0.0f) {
            double mean_x = 0.0;
            for (int j = 0; j < cols; j++) mean_x += xr[j];
            total += smoothing * (lse - mean_x / cols);
        }
    }
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
