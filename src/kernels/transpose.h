/* An 8 x 8 transpose in registers, for packing and transposing operands:
 * a scalar loop costs a cycle per element. HAVE_SHUFFLEVECTOR is 0 where
 * the compiler lacks __builtin_shufflevector (gcc before 12); callers then
 * take their scalar loops. */
#ifndef NN_KERNELS_TRANSPOSE_H
#define NN_KERNELS_TRANSPOSE_H

#include <stddef.h>
#include <string.h>

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define HAVE_SHUFFLEVECTOR 1
typedef float v8f __attribute__((vector_size(8 * sizeof(float))));

/* dst[b][a] = src[a][b] for an 8 x 8 block (row strides lds, ldd): three
 * rounds of two-input shuffles, as with unpack / shuffle / permute2f128 on
 * AVX, where a scalar loop costs a cycle per element. */
static inline void transpose8(const float *src, int lds, float *dst, int ldd)
{
    v8f r[8], t[8], u[8];
    for (int a = 0; a < 8; a++) memcpy(&r[a], src + (size_t)a * lds, sizeof r[a]);
    for (int a = 0; a < 8; a += 2) {
        t[a] = __builtin_shufflevector(r[a], r[a + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[a + 1] = __builtin_shufflevector(r[a], r[a + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int a = 0; a < 8; a += 4)
        for (int h = 0; h < 2; h++) {
            u[a + h] = __builtin_shufflevector(t[a + h], t[a + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[a + h + 2] = __builtin_shufflevector(t[a + h], t[a + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    /* u[0..3] hold columns 0, 2, 1, 3 of rows 0-3 (and 4-7 of the same in
     * their upper halves); rows 4-7 likewise in u[4..7]. */
    static const int col_of[4] = {0, 2, 1, 3};
    for (int q = 0; q < 4; q++) {
        v8f lo = __builtin_shufflevector(u[q], u[q + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        v8f hi = __builtin_shufflevector(u[q], u[q + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        memcpy(dst + (size_t)col_of[q] * ldd, &lo, sizeof lo);
        memcpy(dst + (size_t)(col_of[q] + 4) * ldd, &hi, sizeof hi);
    }
}
#else
#define HAVE_SHUFFLEVECTOR 0
#endif

/* dst (cols x rows, rows dst_ld apart) = the rows x cols block src (rows
 * src_ld apart), transposed: 8 x 8 blocks in registers, the edges one
 * value at a time. */
static inline void transpose_block(int rows, int cols, const float *src, int src_ld, float *dst, int dst_ld)
{
    int r8 = 0, c8 = 0;
#if HAVE_SHUFFLEVECTOR
    r8 = rows / 8 * 8;
    c8 = cols / 8 * 8;
    for (int r = 0; r < r8; r += 8)
        for (int c = 0; c < c8; c += 8)
            transpose8(src + (size_t)r * src_ld + c, src_ld, dst + (size_t)c * dst_ld + r, dst_ld);
#endif
    for (int r = 0; r < rows; r++)
        for (int c = r < r8 ? c8 : 0; c < cols; c++) dst[(size_t)c * dst_ld + r] = src[(size_t)r * src_ld + c];
}

#endif
