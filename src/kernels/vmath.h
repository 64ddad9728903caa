/* exp for the vector type of simd.h, for kernels written in vectors: the
 * scalar nn_fast_expf in a loop compiles to a floor, two conversions and
 * clamps per vector, about three times the work of this. */
#ifndef NN_KERNELS_VMATH_H
#define NN_KERNELS_VMATH_H

#include "fastmath.h"
#include "simd.h"

typedef unsigned vu __attribute__((vector_size(VEC * sizeof(unsigned))));

/* a where mask is set, else b */
static inline vf vselect(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }

/* Elements [j, j + VEC) of a row of len floats of which the first n count
 * (n <= len): the others read as fill, and nothing past len is read. */
static inline vf vload_head(const float *s, size_t j, size_t n, size_t len, float fill)
{
    if (j + VEC <= n) return vload(s + j);
    if (j + VEC <= len) return vselect(lanes_below((int)(n - j)), vload(s + j), (vf){0} + VS(fill));
    float part[VEC];
    for (size_t l = 0; l < VEC; l++) part[l] = j + l < n ? s[j + l] : fill;
    return vload(part);
}

/* Stores v at [j, j + VEC) of a row of len floats, not past its end. */
static inline void vstore_head(float *p, size_t j, size_t len, vf v)
{
    if (j + VEC <= len) {
        vstore(p + j, v);
        return;
    }
    float part[VEC];
    vstore(part, v);
    for (size_t l = 0; j + l < len; l++) p[j + l] = part[l];
}

/* exp(x) for x <= 88 (larger x are not clamped: softmax and GELU pass
 * arguments <= 0), relative error about 2e-7; below -87.3 it is exp(-87.3)
 * (~1e-38, not 0); NaN stays NaN. The integer part n of x / ln 2 is
 * rounded to nearest by adding 1.5 * 2^23, which leaves n in the low bits
 * of the sum: those bits, shifted into the exponent field, are 2^n. The
 * polynomial is fastmath.h's. */
static inline vf vexp_le88(vf x)
{
    const float round_bias = 12582912.0f; /* 1.5 * 2^23 */
    x = vselect(x < VS(-87.3f), (vf){0} + VS(-87.3f), x);
    vf t = x * VS(1.44269504088896341f) + VS(round_bias);
    vf n = t - VS(round_bias);
    vf r = x - n * VS(0.693359375f) + n * VS(2.12194440e-4f); /* ln 2 split in two parts */
    vf r2 = r * r;
    vf p = (vf){0} + VS(NN_EXP_P0);
    NN_EXP_POLY(p, r, r2, VS);
    vu scale = ((vu)t - 0x4B400000u + 127u) << 23;
    return p * (vf)scale;
}

#endif
