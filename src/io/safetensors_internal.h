/* Writing tensors other than a parameter list's float32 ones (the int8
 * model files of src/infer/quantize.c). */
#ifndef NN_IO_SAFETENSORS_INTERNAL_H
#define NN_IO_SAFETENSORS_INTERNAL_H

#include "nn/io.h"

typedef struct nn__st_item {
    const char *name;
    int f32;        /* 1: F32 (written little-endian), 0: I8 */
    int ndim;
    int shape[4];
    const void *data;
} nn__st_item;

/* nn_safetensors_write for count items of either dtype. */
nn_status nn__safetensors_write_items(const char *path, const nn__st_item *items, int count,
                                     const char *const *meta_kv, int meta_count, nn_error *err);

#endif
