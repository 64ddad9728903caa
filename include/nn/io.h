/* libnn: saving and loading tensors in the safetensors format.
 *
 * File layout (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length, a JSON header mapping each tensor name to
 * {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
 * data section) plus an optional "__metadata__" object of strings, then the
 * raw little-endian data. Files written here can be read by Python's
 * safetensors / PyTorch and the other way round.
 *
 * Reading is strict: the header length, JSON syntax (UTF-8, nesting depth),
 * dtypes, shapes and offsets (in range, sized to match the shape, no
 * overlaps, no duplicate names) are all checked before any data is used, and
 * every problem is an error naming the file. Writing is atomic: data goes to
 * a temporary file in the same folder, is fsync'ed and renamed over the
 * target, so a crash leaves either the old file or the new one. */
#ifndef NN_IO_H
#define NN_IO_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"
#include "layers.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NN_ST_MAX_DIMS 8

/* One tensor of a safetensors file. */
typedef struct nn_st_tensor {
    char *name;
    char dtype[8];              /* e.g. "F32" */
    int ndim;                   /* 0..NN_ST_MAX_DIMS */
    uint64_t shape[NN_ST_MAX_DIMS];
    size_t begin, end;          /* byte range within the data section */
} nn_st_tensor;

/* A whole safetensors file read into memory and validated. */
typedef struct nn_safetensors {
    char *path;
    uint8_t *file;              /* the file's bytes */
    const uint8_t *data;        /* start of the data section within file */
    size_t data_len;
    nn_st_tensor *tensors;
    int count;
    char **meta_keys, **meta_values; /* "__metadata__" entries */
    int meta_count;
} nn_safetensors;

/* Read and validate path. On success the caller frees with
 * nn_safetensors_free; on failure nothing needs freeing. */
nn_status nn_safetensors_read(const char *path, nn_safetensors *out, nn_error *err);

/* The same from a buffer already in memory (copied); name is used in
 * messages in place of a path. */
nn_status nn_safetensors_parse(const uint8_t *buf, size_t len, const char *name,
                               nn_safetensors *out, nn_error *err);

/* The tensor called name, or NULL. */
const nn_st_tensor *nn_safetensors_find(const nn_safetensors *st, const char *name);

/* The metadata value for key, or NULL. */
const char *nn_safetensors_meta(const nn_safetensors *st, const char *key);

/* Copy every tensor of params from st by name. Each must exist with dtype
 * F32 and exactly the tensor's shape; otherwise nothing is partially
 * trusted: an error names the file, the tensor and the problem (params may
 * have been partly overwritten). Extra tensors in the file are ignored. */
nn_status nn_safetensors_load_params(const nn_safetensors *st, const nn_params *params,
                                     nn_error *err);

void nn_safetensors_free(nn_safetensors *st);

/* Write params (F32) and meta_count key/value string pairs (meta_kv holds
 * key0, value0, key1, value1, ...; may be NULL when meta_count is 0) to path,
 * atomically. */
nn_status nn_safetensors_write(const char *path, const nn_params *params,
                               const char *const *meta_kv, int meta_count, nn_error *err);

/* Convenience: write / read just the parameters of a model. */
nn_status nn_save_params(const char *path, const nn_params *params, nn_error *err);
nn_status nn_load_params(const char *path, const nn_params *params, nn_error *err);

#ifdef __cplusplus
}
#endif
#endif
