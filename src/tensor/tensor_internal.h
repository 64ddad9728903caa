/* Shape helpers shared inside the library. */
#ifndef NN_TENSOR_INTERNAL_H
#define NN_TENSOR_INTERNAL_H

#include "nn/tensor.h"

/* No tensor may hold more floats than this (keeps byte sizes far from
 * overflow and ints valid as element indices within one dimension). */
#if SIZE_MAX > 0xffffffffu
#define NN__MAX_ELEMENTS ((size_t)1 << 34)
#else /* a 32-bit address space: at most 1 GiB of floats per tensor */
#define NN__MAX_ELEMENTS ((size_t)1 << 28)
#endif

/* Validate a shape and compute its size; 0 if invalid or too large. */
int nn__shape_size(int ndim, const int *shape, size_t *size);

/* Write shape and size into t (trailing dims set to 1). */
void nn__set_shape(nn_tensor *t, int ndim, const int *shape, size_t size);

#endif
