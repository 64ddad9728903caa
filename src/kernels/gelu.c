/* GELU in its exact form, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (PyTorch's
 * default, not the tanh approximation). libm's erff is an opaque call per
 * element, so erf is Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7,
 * below float rounding of 1 + erf) over vmath.h's exp, in whole vectors
 * (the tail through a padded copy, so every element takes the same path). */
#include "kernels.h"
#include "vmath.h"

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

/* Phi(x) and exp(-x^2 / 2) (the latter is reused by the derivative). */
static inline vf normal_cdf(vf x, vf *gauss)
{
    vf z = x * VS(INV_SQRT2);
    vi neg = z < VS(0.0f);
    vf a = vselect(neg, -z, z);
    vf t = VS(1.0f) / (VS(1.0f) + VS(0.3275911f) * a);
    vf poly = ((((VS(1.061405429f) * t - VS(1.453152027f)) * t + VS(1.421413741f)) * t - VS(0.284496736f)) * t +
               VS(0.254829592f)) * t;
    vf e = vexp_le88(-a * a);
    *gauss = e;
    vf tail = poly * e; /* 1 - erf(|z|) */
    return VS(0.5f) * vselect(neg, tail, VS(2.0f) - tail);
}

#define GELU_PAR_MIN 32768 /* elements below which threads cost more than they save */

void nn_k_gelu(size_t n, const float *x, float *y, float *deriv)
{
    long vectors = (long)((n + VEC - 1) / VEC);
#pragma omp parallel for schedule(static) if (n > GELU_PAR_MIN)
    for (long v = 0; v < vectors; v++) {
        size_t i = (size_t)v * VEC;
        vf xv = vload_head(x, i, n, n, 0.0f), e;
        vf cdf = normal_cdf(xv, &e);
        vstore_head(y, i, n, xv * cdf);
        if (deriv) vstore_head(deriv, i, n, cdf + xv * e * VS(INV_SQRT_2PI));
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
