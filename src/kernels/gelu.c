/* GELU in its exact form, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (PyTorch's
 * default, not the tanh approximation). libm's erff is an opaque call per
 * element, so erf is Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7,
 * below float rounding of 1 + erf) over the vectorizable exp of fastmath.h. */
#include "fastmath.h"
#include "kernels.h"

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

/* 1 + erf(z) and exp(-z^2) (the latter is reused by the derivative). */
static inline float one_plus_erf(float z, float *gauss)
{
    float a = z < 0.0f ? -z : z;
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t +
                  0.254829592f) * t;
    float e = nn_fast_expf(-a * a);
    *gauss = e;
    float tail = poly * e; /* 1 - erf(|z|) */
    return z < 0.0f ? tail : 2.0f - tail;
}

#define GELU_PAR_MIN 32768 /* elements below which threads cost more than they save */

void nn_k_gelu(size_t n, const float *x, float *y, float *deriv)
{
    if (!deriv) {
#pragma omp parallel for schedule(static) if (n > GELU_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float e;
            y[i] = 0.5f * x[i] * one_plus_erf(x[i] * INV_SQRT2, &e);
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n > GELU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float e; /* exp(-x^2 / 2) */
        float cdf = 0.5f * one_plus_erf(x[i] * INV_SQRT2, &e);
        y[i] = x[i] * cdf;
        deriv[i] = cdf + x[i] * e * INV_SQRT_2PI;
    }
}

void nn_k_gelu_bwd(size_t n, const float *deriv, const float *dy, int accumulate, float *dx)
{
#pragma omp parallel for schedule(static) if (n > GELU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = dy[i] * deriv[i];
        dx[i] = accumulate ? dx[i] + g : g;
    }
}
