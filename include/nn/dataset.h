/* libnn: data sets from the caller's memory, and mini-batches over them.
 *
 * An nn_data is count examples of float32 features, each of the same shape
 * (1 to 3 dims: (F), (T, F) for sequences, (C, H, W) for images), with
 * targets that are class indices (any number of classes) or float vectors
 * (regression), or none (inputs to predict on). nn_data_from_arrays borrows
 * the caller's arrays (zero copy: they must outlive the nn_data); copies,
 * subsets, splits, CSV files (csv.h) and MNIST produce data that owns its
 * buffers. nn_data_free releases what an nn_data owns, never what it borrows.
 *
 * nn_data_batcher walks an nn_data in mini-batches: a seeded shuffle per
 * epoch, the short last batch, and optionally time-major (T, B, F) batches
 * for recurrent layers. Built on the public tensor API only. */
#ifndef NN_DATASET_H
#define NN_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include "data.h"
#include "error.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nn_target_kind {
    NN_TARGET_NONE,  /* features only */
    NN_TARGET_CLASS, /* one class index per example */
    NN_TARGET_VALUE  /* target_size floats per example (regression) */
} nn_target_kind;

typedef struct nn_data {
    int count;            /* examples */
    int ndim;             /* dims of one example's features, 1..3 */
    int shape[3];
    size_t example_size;  /* floats per example: the product of shape */
    const float *x;       /* count * example_size floats, example after example */
    nn_target_kind target;
    const int *labels;    /* NN_TARGET_CLASS: count labels in [0, num_classes) */
    int num_classes;
    const float *y;       /* NN_TARGET_VALUE: count * target_size floats */
    int target_size;
    char **class_names;   /* optional: num_classes names (CSV string targets) */
    char **feature_names; /* optional: example_size names (CSV columns) */
    void *owned[3];       /* buffers this nn_data owns (freed by nn_data_free) */
} nn_data;

/* A data set over the caller's arrays, without copying. x holds count
 * examples of the given shape (ndim 1-3). Pass labels (with num_classes >=
 * 1) for classification, or y (with target_size >= 1) for regression, or
 * neither. Checks every label is in range and every feature and target is
 * finite: NN_ERR_ARG naming the example otherwise. */
nn_status nn_data_from_arrays(nn_data *out, int count, int ndim, const int *shape, const float *x,
                              const int *labels, int num_classes, const float *y, int target_size,
                              nn_error *err);

/* A copy of src that owns all its buffers (class names included). */
nn_status nn_data_copy(const nn_data *src, nn_data *out, nn_error *err);

/* The n examples idx[0..n) of src, copied (indices checked). */
nn_status nn_data_subset(const nn_data *src, const int *idx, int n, nn_data *out, nn_error *err);

/* Split src at random (seeded) into train and val, val holding
 * round(val_fraction * count) examples (at least 1, and at least 1 left for
 * train); 0 < val_fraction < 1. Both are copies. */
nn_status nn_data_split(const nn_data *src, float val_fraction, uint64_t seed, nn_data *train,
                        nn_data *val, nn_error *err);

/* MNIST (or any nn_dataset of uint8 images) as an nn_data: pixels p become
 * (p / 255 - mean) / std (mean 0, std 1 for [0, 1]); shape (1, rows, cols)
 * for NN_LAYOUT_NCHW, (rows * cols) for NN_LAYOUT_FLAT; 10 classes. */
nn_status nn_data_from_mnist(const nn_dataset *m, nn_layout layout, float mean, float std,
                             nn_data *out, nn_error *err);

/* Per-feature mean and standard deviation over all examples (features
 * counted as example_size values; std of a constant feature is 1). */
nn_status nn_data_feature_stats(const nn_data *d, float *mean, float *std, nn_error *err);

/* Release what d owns and clear it (NULL allowed). */
void nn_data_free(nn_data *d);

/* ---- mini-batches ------------------------------------------------------ */

typedef struct nn_data_batcher {
    const nn_data *data;
    nn_tensor *x;       /* the current batch: (B, shape...) or (T, B, F) */
    int *labels;        /* NN_TARGET_CLASS: the batch's labels, else NULL */
    nn_tensor *y;       /* NN_TARGET_VALUE: (B, target_size), else NULL */
    int batch_size, shuffle, time_major;
    int pos;            /* examples consumed this epoch */
    int *order;         /* example order of this epoch */
    nn_tensor *buf_x;   /* owned batch buffer */
    nn_tensor view_x;   /* an unshuffled batch read in place from data->x */
    nn_rng rng;
    int shard_rank, shard_count; /* data-parallel sharding (nn_data_batcher_shard); 0 and 1 by default */
    int global_n;                /* examples in the whole batch the current shard came from */
} nn_data_batcher;

/* Batches of batch_size examples (the last may be short); with shuffle
 * nonzero each epoch visits examples in a new order drawn from seed.
 * Unshuffled, batch-major batches are views of the data (no copy). */
nn_status nn_data_batcher_init(nn_data_batcher *b, const nn_data *d, int batch_size, int shuffle,
                               uint64_t seed, nn_error *err);

/* Make batches time-major (T, B, F) instead of (B, T, F), for recurrent
 * layers that are not batch-first; needs 2-D examples (T, F). */
nn_status nn_data_batcher_time_major(nn_data_batcher *b, int on, nn_error *err);

/* Rewind to the start of a new epoch (reshuffling if enabled). */
void nn_data_batcher_start_epoch(nn_data_batcher *b);

/* Fill b->x and the targets with the next batch; returns its size or 0
 * when the epoch is done. */
int nn_data_batcher_next(nn_data_batcher *b);

/* Data-parallel sharding, as nn_batcher_shard (data.h): this process
 * takes examples [n * rank / count, n * (rank + 1) / count) of each batch
 * of n (the same batches on every process for the same seed), and
 * b->global_n holds n; a batch of fewer than count examples is skipped.
 * NN_ERR_ARG unless 0 <= rank < count <= batch size. */
nn_status nn_data_batcher_shard(nn_data_batcher *b, int rank, int count, nn_error *err);

/* Number of batches in one epoch. */
int nn_data_batcher_num_batches(const nn_data_batcher *b);

void nn_data_batcher_free(nn_data_batcher *b);

#ifdef __cplusplus
}
#endif
#endif
