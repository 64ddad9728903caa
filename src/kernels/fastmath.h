/* exp, sigmoid and tanh written so the compiler can vectorize loops that
 * call them (libm's expf/tanhf are opaque calls, one element at a time).
 * Cephes-style: exp by range reduction to [-ln2/2, ln2/2] and a degree-6
 * polynomial, scaled by 2^n through the exponent bits; relative error
 * about 2e-7 over the float range (checked against libm in the tests). */
#ifndef NN_FASTMATH_H
#define NN_FASTMATH_H

#include <stdint.h>
#include <string.h>

/* The polynomial for exp(r), |r| <= ln2/2, in place on p (which starts at
 * NN_EXP_P0) with r2 = r * r: one text for floats and for vectors
 * (vmath.h, whose S splats the constants; NN_EXP_SCALAR for floats). */
#define NN_EXP_P0 1.9875691500e-4f
#define NN_EXP_SCALAR(c) (c)
#define NN_EXP_POLY(p, r, r2, S)                                                               \
    ((p) = (p) * (r) + S(1.3981999507e-3f), (p) = (p) * (r) + S(8.3334519073e-3f),              \
     (p) = (p) * (r) + S(4.1665795894e-2f), (p) = (p) * (r) + S(1.6666665459e-1f),              \
     (p) = (p) * (r) + S(5.0000001201e-1f), (p) = (p) * (r2) + (r) + S(1.0f))

static inline float nn_fast_expf(float x)
{
    /* Clamp so 2^n stays a normal float; exp(-87.3) ~ 1.2e-38. */
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.3f ? -87.3f : x;
    float finite = x == x ? x : 0.0f; /* NaN must not reach the int conversion */
    float n = __builtin_floorf(finite * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f; /* ln2 split in two parts */
    float r2 = r * r;
    float p = NN_EXP_P0;
    NN_EXP_POLY(p, r, r2, NN_EXP_SCALAR);
    int32_t bits = ((int32_t)n + 127) << 23; /* 2^n, n in [-126, 127] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float nn_fast_sigmoidf(float x) { return 1.0f / (1.0f + nn_fast_expf(-x)); }

/* tanh: an odd polynomial near 0 (where 1 - 2/(e^2x + 1) would cancel),
 * the exponential form elsewhere. */
static inline float nn_fast_tanhf(float x)
{
    float ax = x < 0.0f ? -x : x;
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                    1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float big = 1.0f - 2.0f / (nn_fast_expf(2.0f * ax) + 1.0f);
    big = x < 0.0f ? -big : big;
    return ax < 0.625f ? small : big;
}

#endif
