/* Shared by the int8 models (quantize.c, qrecurrent.c) and their tests. */
#ifndef NN_INFER_QUANT_INTERNAL_H
#define NN_INFER_QUANT_INTERNAL_H

#include <stdint.h>

#include "nn/io.h"
#include "nn/quant.h"

/* nn_qrecurrent_run; portable: the plain C kernels even where VNNI is
 * built (the tests compare the two). */
nn_status nn__qrecurrent_run(nn_qrecurrent *q, int T, int B, const float *x, float *h, float *c, float *out,
                             int portable, nn_error *err);

/* Tensor name of st as dtype ("F32" or "I8") with exactly this shape, or
 * NULL with err naming the file, the tensor and the problem. */
const uint8_t *nn__q8_tensor_of(const nn_safetensors *st, const char *name, const char *dtype, int ndim,
                                const int *shape, nn_error *err);

/* n little-endian floats from bytes into out; 0 (reported) unless all are
 * finite and, if positive, > 0. */
int nn__q8_floats_of(const nn_safetensors *st, const char *name, const uint8_t *bytes, int n, int positive,
                     float *out, nn_error *err);

#endif
