/* Vector type for hand-blocked kernels: GCC/clang vector extensions sized
 * to the target's registers (16 floats with AVX-512, 8 with AVX, else 4:
 * SSE, NEON), so the same code compiles everywhere and keeps its
 * accumulators in registers, where arrays of floats would go through
 * memory. */
#ifndef NN_KERNELS_SIMD_H
#define NN_KERNELS_SIMD_H

#include <float.h>
#include <string.h>

#if defined(__AVX512F__)
#define VEC 16
#elif defined(__AVX__)
#define VEC 8
#else
#define VEC 4
#endif

typedef float vf __attribute__((vector_size(VEC * sizeof(float))));
typedef int vi __attribute__((vector_size(VEC * sizeof(int)))); /* masks: -1 true, 0 false */

/* Unaligned load and store (memcpy compiles to one vector move). */
/* A float scalar as a vector operand: VS(x) * v. Where float arithmetic
 * runs in double (FLT_EVAL_METHOD != 0: gcc on s390x, x87 on i686), gcc
 * refuses to mix the scalar with a float vector, so it is splatted
 * explicitly there; elsewhere it is the scalar itself (the same code). */
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
static inline vf vsplat(float x)
{
    vf v;
    for (int i = 0; i < VEC; i++) v[i] = x;
    return v;
}
#define VS(x) vsplat(x)
#else
#define VS(x) (x)
#endif

static inline vf vload(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* Mask of the lanes below n. */
static inline vi lanes_below(int n)
{
    static const int index[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    _Static_assert(VEC <= 16, "lane indices cover a vector");
    vi i;
    memcpy(&i, index, sizeof i);
    return i < n;
}

#if defined(__AVX512F__)
/* The AVX-512 kernels (intrinsics, each with a plain C path beside it for
 * other targets): a mask of the first n of 16 lanes (none if n <= 0). */
#include <immintrin.h>

static inline __mmask16 first_lanes(int n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}
#endif

#endif
