/* Fused LSTM / RNN cell math: one pass over the gates per time step. */
#include <math.h>

#include "kernels.h"

static inline float sigmoidf(float x)
{
    return x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
}

void nn_k_lstm_cell(int B, int H, float *z, const float *c_prev, float *c, float *h)
{
    for (int b = 0; b < B; b++) {
        float *zi = z + (size_t)b * 4 * H, *zf = zi + H, *zg = zf + H, *zo = zg + H;
        const float *cp = c_prev ? c_prev + (size_t)b * H : NULL;
        float *cb = c + (size_t)b * H, *hb = h + (size_t)b * H;
        for (int j = 0; j < H; j++) {
            float i = sigmoidf(zi[j]), f = sigmoidf(zf[j]), g = tanhf(zg[j]), o = sigmoidf(zo[j]);
            zi[j] = i;
            zf[j] = f;
            zg[j] = g;
            zo[j] = o;
            float cv = i * g + (cp ? f * cp[j] : 0.0f);
            cb[j] = cv;
            hb[j] = o * tanhf(cv);
        }
    }
}

void nn_k_lstm_cell_bwd(int B, int H, const float *gates, const float *c_prev, const float *c,
                        const float *dh, float *dc, float *dz)
{
    for (int b = 0; b < B; b++) {
        const float *gi = gates + (size_t)b * 4 * H, *gf = gi + H, *gg = gf + H, *go = gg + H;
        const float *cp = c_prev ? c_prev + (size_t)b * H : NULL;
        const float *cb = c + (size_t)b * H, *dhb = dh + (size_t)b * H;
        float *dcb = dc + (size_t)b * H;
        float *di = dz + (size_t)b * 4 * H, *df = di + H, *dg = df + H, *dox = dg + H;
        for (int j = 0; j < H; j++) {
            float tc = tanhf(cb[j]);
            float i = gi[j], f = gf[j], g = gg[j], o = go[j];
            float dcv = dhb[j] * o * (1.0f - tc * tc) + dcb[j];
            float cpv = cp ? cp[j] : 0.0f;
            dox[j] = dhb[j] * tc * o * (1.0f - o);
            di[j] = dcv * g * i * (1.0f - i);
            dg[j] = dcv * i * (1.0f - g * g);
            df[j] = dcv * cpv * f * (1.0f - f);
            dcb[j] = dcv * f;
        }
    }
}

void nn_k_rnn_cell_bwd(size_t n, const float *h, const float *dh, float *dz)
{
    for (size_t i = 0; i < n; i++) dz[i] = dh[i] * (1.0f - h[i] * h[i]);
}
