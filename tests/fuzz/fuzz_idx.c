/* libFuzzer harness: IDX files, raw or gzip-compressed (covers gunzip and
 * inflate), and the MNIST data set checks built on them. */
#include <stdint.h>
#include <stdlib.h>

#include "nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nn_error err;
    const uint8_t *buf = data;
    size_t len = size;
    uint8_t *plain = NULL;
    if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
        if (nn_gunzip(data, size, (size_t)1 << 24, &plain, &len, "fuzz.gz", &err)) return 0;
        buf = plain;
    }
    nn_idx idx;
    if (nn_idx_parse(buf, len, "fuzz.idx", &idx, &err) == NN_OK) {
        /* pair the array with itself as labels to run the data set checks */
        nn_idx labels = {0};
        if (idx.ndim == 3 && (labels.data = calloc((size_t)idx.dims[0], 1))) {
            labels.ndim = 1;
            labels.dims[0] = idx.dims[0];
            labels.size = (size_t)idx.dims[0];
            for (size_t i = 0; i < labels.size; i++) labels.data[i] = idx.data[i % idx.size];
            nn_dataset d;
            if (nn_dataset_from_idx(&idx, &labels, "img", "lbl", &d, &err) == NN_OK)
                nn_dataset_free(&d);
        }
        nn_idx_free(&labels);
        nn_idx_free(&idx);
    }
    free(plain);
    return 0;
}
