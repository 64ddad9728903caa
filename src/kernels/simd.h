/* Vector type for hand-blocked kernels: GCC/clang vector extensions sized
 * to the target's registers (16 floats with AVX-512, 8 with AVX, else 4:
 * SSE, NEON), so the same code compiles everywhere and keeps its
 * accumulators in registers, where arrays of floats would go through
 * memory. */
#ifndef NN_KERNELS_SIMD_H
#define NN_KERNELS_SIMD_H

#include <string.h>

#if defined(__AVX512F__)
#define VEC 16
#elif defined(__AVX__)
#define VEC 8
#else
#define VEC 4
#endif

typedef float vf __attribute__((vector_size(VEC * sizeof(float))));

/* Unaligned load and store (memcpy compiles to one vector move). */
static inline vf vload(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

#endif
