/* Per-channel affine map over (N, C, S): y = x * scale[c] + shift[c], and
 * its gradients. */
#include "kernels.h"

void nn_k_channel_affine(int n, int c, size_t s, const float *x, const float *scale,
                         const float *shift, float *y)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            const float *xr = x + ((size_t)i * c + j) * s;
            float *yr = y + ((size_t)i * c + j) * s;
            for (size_t k = 0; k < s; k++) yr[k] = xr[k] * scale[j] + shift[j];
        }
}

void nn_k_channel_affine_backward(int n, int c, size_t s, const float *x, const float *scale,
                                  const float *dy, float *dx, float *dscale, float *dshift)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            size_t off = ((size_t)i * c + j) * s;
            double sx = 0.0, sd = 0.0;
            for (size_t k = 0; k < s; k++) {
                if (dx) dx[off + k] += dy[off + k] * scale[j];
                sx += (double)dy[off + k] * x[off + k];
                sd += dy[off + k];
            }
            if (dscale) dscale[j] += (float)sx;
            if (dshift) dshift[j] += (float)sd;
        }
}
