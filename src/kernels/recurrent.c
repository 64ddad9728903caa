/* Fused LSTM / RNN cell math: one pass over the gates per time step. */
#include "fastmath.h"
#include "kernels.h"

/* The gate nonlinearities use the vectorizable approximations of
 * fastmath.h (within 2e-7 of libm): with libm calls they took a third of a
 * char-rnn training step. */
/* One batch row; restrict parameters (not locals) let the loops vectorize.
 * cp may be NULL (zero initial cell state). */
static void lstm_row(int H, float *restrict zi, float *restrict zf, float *restrict zg,
                     float *restrict zo, const float *restrict cp, float *restrict c,
                     float *restrict h)
{
    for (int j = 0; j < H; j++) {
        float i = nn_fast_sigmoidf(zi[j]), f = nn_fast_sigmoidf(zf[j]);
        float g = nn_fast_tanhf(zg[j]), o = nn_fast_sigmoidf(zo[j]);
        zi[j] = i;
        zf[j] = f;
        zg[j] = g;
        zo[j] = o;
        float cv = i * g + (cp ? f * cp[j] : 0.0f);
        c[j] = cv;
        h[j] = o * nn_fast_tanhf(cv);
    }
}

void nn_k_lstm_cell(int B, int H, float *z, const float *c_prev, float *c, float *h)
{
    for (int b = 0; b < B; b++) {
        float *zi = z + (size_t)b * 4 * H;
        lstm_row(H, zi, zi + H, zi + 2 * H, zi + 3 * H, c_prev ? c_prev + (size_t)b * H : NULL,
                 c + (size_t)b * H, h + (size_t)b * H);
    }
}

static void lstm_row_bwd(int H, const float *restrict gi, const float *restrict gf,
                         const float *restrict gg, const float *restrict go,
                         const float *restrict cp, const float *restrict c,
                         const float *restrict dh, float *restrict dc, float *restrict di,
                         float *restrict df, float *restrict dg, float *restrict dox)
{
    for (int j = 0; j < H; j++) {
        float tc = nn_fast_tanhf(c[j]);
        float i = gi[j], f = gf[j], g = gg[j], o = go[j];
        float dcv = dh[j] * o * (1.0f - tc * tc) + dc[j];
        float cpv = cp ? cp[j] : 0.0f;
        dox[j] = dh[j] * tc * o * (1.0f - o);
        di[j] = dcv * g * i * (1.0f - i);
        dg[j] = dcv * i * (1.0f - g * g);
        df[j] = dcv * cpv * f * (1.0f - f);
        dc[j] = dcv * f;
    }
}

void nn_k_lstm_cell_bwd(int B, int H, const float *gates, const float *c_prev, const float *c,
                        const float *dh, float *dc, float *dz)
{
    for (int b = 0; b < B; b++) {
        const float *gi = gates + (size_t)b * 4 * H;
        float *di = dz + (size_t)b * 4 * H;
        size_t o = (size_t)b * H;
        lstm_row_bwd(H, gi, gi + H, gi + 2 * H, gi + 3 * H, c_prev ? c_prev + o : NULL, c + o,
                     dh + o, dc + o, di, di + H, di + 2 * H, di + 3 * H);
    }
}

void nn_k_rnn_cell_bwd(size_t n, const float *h, const float *dh, float *dz)
{
    for (size_t i = 0; i < n; i++) dz[i] = dh[i] * (1.0f - h[i] * h[i]);
}
