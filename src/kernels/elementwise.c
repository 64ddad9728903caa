/* Elementwise arithmetic, reductions, bias and activations. */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "nn/tensor.h"

/* Above this many elements additions split between threads (static
 * halves): a transformer's residual stream (768 x 128) is read next by
 * threaded ops that split its rows the same way. */
#define ADD_PAR_MIN 65536

void nn_k_add(size_t n, const float *a, const float *b, float *out)
{
#pragma omp parallel for schedule(static) if (n > ADD_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void nn_k_copy(size_t n, const float *x, float *out)
{
    if (n <= ADD_PAR_MIN) {
        memcpy(out, x, n * sizeof(float));
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = x[i];
}

void nn_k_sub(size_t n, const float *a, const float *b, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = a[i] - b[i];
}

void nn_k_mul(size_t n, const float *a, const float *b, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

void nn_k_scale(size_t n, float s, const float *a, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = s * a[i];
}

void nn_k_axpy(size_t n, float alpha, const float *x, float *y)
{
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

void nn_k_mul_acc(size_t n, const float *a, const float *b, float *y)
{
    for (size_t i = 0; i < n; i++) y[i] += a[i] * b[i];
}

/* Reductions accumulate in double: losses and norms are read by people and
 * compared across runs, so they should not depend on summation luck. */
double nn_k_sum(size_t n, const float *x)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}

float nn_k_row_sum(size_t n, const float *x)
{
    /* eight interleaved partial sums: vectorizable, in a fixed order */
    float part[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) part[l] += x[i + l];
    float t = 0.0f;
    for (; i < n; i++) t += x[i];
    for (int l = 0; l < 8; l++) t += part[l];
    return t;
}

double nn_k_sum_sq(size_t n, const float *x)
{
    /* 16 interleaved partial sums added in order at the end: the same on
     * every build, and vectorizable, where one running sum waits out an
     * add's latency per element (0.27 ms of a char-rnn step's gradient
     * clipping, for 240k gradients) */
    double part[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) part[l] += (double)x[i + l] * x[i + l];
    for (int l = 0; i + l < n; l++) part[l] += (double)x[i + l] * x[i + l];
    double s = 0.0;
    for (int l = 0; l < 16; l++) s += part[l];
    return s;
}

void nn_k_fill(size_t n, float v, float *out)
{
    /* whole gradient buffers between steps: split between threads */
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) out[i] = v;
}

void nn_k_add_scalar(size_t n, float c, float *y)
{
    for (size_t i = 0; i < n; i++) y[i] += c;
}

double nn_k_sq_diff_sum(size_t n, const float *a, const float *b)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    return s;
}

void nn_k_diff_scaled_acc(size_t n, float s, const float *a, const float *b, float *y)
{
    for (size_t i = 0; i < n; i++) y[i] += s * (a[i] - b[i]);
}

void nn_k_u8_to_float(size_t n, const unsigned char *in, float scale, float shift, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = scale * (float)in[i] + shift;
}

void nn_k_u8_image_shifted(int rows, int cols, int dy, int dx, const unsigned char *in, float scale,
                           float shift, float *out)
{
    /* Columns [c0, c1) of each row come from the image, the rest (and rows
     * shifted in from outside) are the background: straight loops the
     * compiler vectorizes, where a bounds test per pixel would not. */
    int c0 = dx > 0 ? dx : 0, c1 = cols + (dx < 0 ? dx : 0);
    if (c0 > cols) c0 = cols;
    if (c1 < c0) c1 = c0;
    for (int r = 0; r < rows; r++) {
        int sr = r - dy;
        float *o = out + (size_t)r * cols;
        if (sr < 0 || sr >= rows) {
            for (int c = 0; c < cols; c++) o[c] = shift;
            continue;
        }
        const unsigned char *src = in + (size_t)sr * cols;
        for (int c = 0; c < c0; c++) o[c] = shift;
        for (int c = c0; c < c1; c++) o[c] = scale * (float)src[c - dx] + shift;
        for (int c = c1; c < cols; c++) o[c] = shift;
    }
}

/* Images are read in shuffled order, each a cache (and TLB) miss: each
 * thread prefetches the image this many ahead of the one it converts (a
 * batch of 64 MNIST images on one thread: 54-62 -> 38-42 us). */
#define U8_PREFETCH_AHEAD 16

typedef struct u8_images {
    int rows, cols;
    const unsigned char *images;
    const int *index, *shifts;
    float scale, shift;
    float *out;
} u8_images;

static void u8_images_range(void *ctx, int i0, int i1, int slot)
{
    (void)slot;
    const u8_images *t = ctx;
    size_t pixels = (size_t)t->rows * t->cols;
    for (int i = i0; i < i1; i++) {
        if (i + U8_PREFETCH_AHEAD < i1) {
            const char *next = (const char *)(t->images + (size_t)t->index[i + U8_PREFETCH_AHEAD] * pixels);
            for (size_t at = 0; at < pixels; at += 64) __builtin_prefetch(next + at);
        }
        const unsigned char *src = t->images + (size_t)t->index[i] * pixels;
        float *dst = t->out + (size_t)i * pixels;
        if (t->shifts)
            nn_k_u8_image_shifted(t->rows, t->cols, t->shifts[2 * i], t->shifts[2 * i + 1], src, t->scale,
                                  t->shift, dst);
        else
            nn_k_u8_to_float(pixels, src, t->scale, t->shift, dst);
    }
}

void nn_k_u8_images(int count, int rows, int cols, const unsigned char *images, const int *index,
                    const int *shifts, float scale, float shift, float *out)
{
    u8_images t = {rows, cols, images, index, shifts, scale, shift, out};
    nn_k_parallel_rows(count, 1, (size_t)count * rows * cols > 32768, u8_images_range, &t);
}

void nn_k_add_bias(int N, int C, size_t inner, const float *x, const float *bias, float *out)
{
    if (inner == 1) { /* dense layout (N, C): vectorize along C */
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C;
            float *yr = out + (size_t)n * C;
            for (int c = 0; c < C; c++) yr[c] = xr[c] + bias[c];
        }
        return;
    }
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            size_t off = ((size_t)n * C + c) * inner;
            float b = bias[c];
            for (size_t i = 0; i < inner; i++) out[off + i] = x[off + i] + b;
        }
}

void nn_k_bias_grad_acc(int N, int C, size_t inner, const float *dy, float *db)
{
    if (inner == 1) {
        /* dense layout (N, C): sum rows, vectorizable along C */
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) db[c] += dy[(size_t)n * C + c];
        return;
    }
    /* each (n, c) row summed in float lanes, the rows in double */
#pragma omp parallel for schedule(static) if ((size_t)N * C * inner > 100000)
    for (int c = 0; c < C; c++) {
        double s = 0.0;
        for (int n = 0; n < N; n++) s += nn_k_row_sum(inner, dy + ((size_t)n * C + c) * inner);
        db[c] += (float)s;
    }
}

#define TWO_BIAS_PAR_MIN 100000 /* elements below which threads cost more than they save */

void nn_k_add_two_biases(int N, int C, const float *x, const float *b1, const float *b2, float *out)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C > TWO_BIAS_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *yr = out + (size_t)n * C;
        for (int c = 0; c < C; c++) yr[c] = (xr[c] + b1[c]) + b2[c];
    }
}

void nn_k_row_block_sums_acc(int rows, int cols, const float *x, int block, float *sums)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols;
        float *s = sums + (size_t)(r / block) * cols;
        for (int c = 0; c < cols; c++) s[c] += xr[c];
    }
}

typedef struct two_bias_grads {
    int N, C;
    const float *dy;
    float *db1, *db2;
} two_bias_grads;

/* Columns [c0, c1) of both sums, rows in order. */
static void two_bias_grads_cols(void *ctx, int c0, int c1, int slot)
{
    (void)slot;
    const two_bias_grads *t = ctx;
    for (int n = 0; n < t->N; n++) {
        const float *d = t->dy + (size_t)n * t->C;
        if (t->db1)
            for (int c = c0; c < c1; c++) t->db1[c] += d[c];
        if (t->db2)
            for (int c = c0; c < c1; c++) t->db2[c] += d[c];
    }
}

void nn_k_two_bias_grads_acc(int N, int C, const float *dy, float *db1, float *db2)
{
    two_bias_grads t = {N, C, dy, db1, db2};
    /* columns split 16 at a time: whole cache lines per thread */
    nn_k_parallel_rows(C, 16, (size_t)N * C > TWO_BIAS_PAR_MIN, two_bias_grads_cols, &t);
}

void nn_k_relu(size_t n, const float *x, float *y)
{
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void nn_k_relu_bwd_acc(size_t n, const float *y, const float *dy, float *dx)
{
    for (size_t i = 0; i < n; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
}

void nn_k_sigmoid(size_t n, const float *x, float *y)
{
    /* Written so exp never overflows: for x < 0 use e^x / (1 + e^x). */
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (v >= 0.0f) {
            y[i] = 1.0f / (1.0f + expf(-v));
        } else {
            float e = expf(v);
            y[i] = e / (1.0f + e);
        }
    }
}

void nn_k_sigmoid_bwd_acc(size_t n, const float *y, const float *dy, float *dx)
{
    for (size_t i = 0; i < n; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
}

void nn_k_tanh(size_t n, const float *x, float *y)
{
    for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

void nn_k_tanh_bwd_acc(size_t n, const float *y, const float *dy, float *dx)
{
    for (size_t i = 0; i < n; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

void nn_k_dropout_mask(size_t n, float p, nn_rng *rng, float *mask)
{
    float keep = 1.0f / (1.0f - p);
    nn_rng_uniform_fill(rng, n, mask); /* the draws first, then a vector pass */
    for (size_t i = 0; i < n; i++) mask[i] = mask[i] < p ? 0.0f : keep;
}

void nn_k_leaky_relu(size_t n, float slope, const float *x, float *y)
{
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : slope * x[i];
}

void nn_k_leaky_relu_bwd_acc(size_t n, float slope, const float *x, const float *dy, float *dx)
{
    for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dy[i] : slope * dy[i];
}

double nn_k_bce_logits(size_t n, const float *x, const float *t)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)(fmaxf(x[i], 0.0f) - x[i] * t[i] + log1pf(expf(-fabsf(x[i]))));
    return s;
}

void nn_k_bce_logits_bwd_acc(size_t n, float scale, const float *x, const float *t, float *dx,
                             float *dt)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i], sig = v >= 0.0f ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
        if (dx) dx[i] += scale * (sig - t[i]);
        if (dt) dt[i] -= scale * v;
    }
}
