/* nn_inflate with one more result: whether decoding stopped because the
 * output would exceed out_cap (so gzip can report a bomb precisely). */
#ifndef NN_INFLATE_INTERNAL_H
#define NN_INFLATE_INTERNAL_H

#include "nn/data.h"

nn_status nn__inflate(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                      size_t *in_used, size_t *out_len, int *overflowed, const char *name,
                      nn_error *err);

#endif
