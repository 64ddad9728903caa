/* libFuzzer harness: raw DEFLATE streams (RFC 1951) into a bounded buffer. */
#include <stdint.h>
#include <stdlib.h>

#include "nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[1 << 18];
    size_t used, out_len;
    nn_error err;
    /* the first byte picks the output limit, to reach the overflow checks */
    size_t cap = size ? ((size_t)data[0] << 10) + 1 : 1;
    if (cap > sizeof out) cap = sizeof out;
    nn_inflate(size ? data + 1 : data, size ? size - 1 : 0, out, cap, &used, &out_len, "fuzz", &err);
    return 0;
}
