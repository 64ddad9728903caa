/* libnn: reading data sets.
 *
 * IDX files (the MNIST format) raw or gzip-compressed, decompressed by a
 * small built-in inflate (RFC 1951/1952, no zlib); the MNIST / Fashion-MNIST
 * data set; and a mini-batch iterator with seeded shuffling.
 *
 * Every loader validates what it reads (magic numbers, dimensions, sizes,
 * gzip CRC-32 and length) and returns NN_ERR_IO / NN_ERR_FORMAT with a
 * message naming the file and the problem; it never reads out of bounds. */
#ifndef NN_DATA_H
#define NN_DATA_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- compression ------------------------------------------------------- */

/* CRC-32 (IEEE, as in gzip) of n bytes, continuing from crc (start with 0). */
uint32_t nn_crc32(uint32_t crc, const void *buf, size_t n);

/* Decompress a raw DEFLATE stream (RFC 1951) from in[0..in_len) into
 * out[0..out_cap). On success sets *in_used and *out_len. Output that would
 * exceed out_cap is an error (NN_ERR_FORMAT), as is any malformed stream.
 * name is used in messages. */
nn_status nn_inflate(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                     size_t *in_used, size_t *out_len, const char *name, nn_error *err);

/* Decompress a gzip file image (RFC 1952; one or more members) into a newly
 * malloc'd buffer (*out, *out_len; free with free()). Checks the header, the
 * CRC-32 and length of every member, and refuses output larger than the
 * members' trailers declare or than max_out bytes (gzip bombs). */
nn_status nn_gunzip(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
                    size_t *out_len, const char *name, nn_error *err);

/* Read a whole file into a malloc'd buffer, refusing files larger than
 * max_bytes. Directories and unreadable files are NN_ERR_IO. */
nn_status nn_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *out_len,
                       nn_error *err);

/* ---- IDX --------------------------------------------------------------- */

/* An IDX array of unsigned bytes (type code 0x08), 1 to 4 dimensions. */
typedef struct nn_idx {
    uint8_t *data;
    int ndim;
    int dims[4];
    size_t size; /* product of dims */
} nn_idx;

/* Parse an IDX image held in memory (data is copied). name is for messages. */
nn_status nn_idx_parse(const uint8_t *buf, size_t len, const char *name, nn_idx *out,
                       nn_error *err);

/* Load an IDX file, gzip-compressed (detected by its magic bytes) or raw. */
nn_status nn_idx_load(const char *path, nn_idx *out, nn_error *err);

void nn_idx_free(nn_idx *idx);

/* ---- MNIST-style data sets --------------------------------------------- */

/* count images of rows x cols bytes and their labels in [0, 10). */
typedef struct nn_dataset {
    uint8_t *images; /* count * rows * cols, row-major */
    uint8_t *labels; /* count */
    int count, rows, cols;
} nn_dataset;

/* Build a data set from an images IDX (3-D) and a labels IDX (1-D). Checks
 * that counts match and every label is below 10. Takes ownership of both
 * IDX arrays' data on success; names are the files, for messages. */
nn_status nn_dataset_from_idx(nn_idx *images, nn_idx *labels, const char *images_name,
                              const char *labels_name, nn_dataset *out, nn_error *err);

/* Load the training (train = 1) or test (train = 0) split of MNIST or
 * Fashion-MNIST from dir, which holds the canonical file names
 * (train-images-idx3-ubyte, ...), each either raw or with a .gz suffix. */
nn_status nn_mnist_load(const char *dir, int train, nn_dataset *out, nn_error *err);

/* Keep only the first n examples (no-op if n <= 0 or n >= count). */
void nn_dataset_truncate(nn_dataset *d, int n);

void nn_dataset_free(nn_dataset *d);

/* ---- mini-batches ------------------------------------------------------ */

typedef enum nn_layout {
    NN_LAYOUT_FLAT, /* batches of shape (N, rows*cols) for dense networks */
    NN_LAYOUT_NCHW  /* batches of shape (N, 1, rows, cols) for conv networks */
} nn_layout;

/* Walks a data set in mini-batches. Pixels are converted from uint8 per
 * batch, into a tensor allocated once: to p / 255 in [0, 1] by default, or
 * standardised as (p / 255 - mean) / std after nn_batcher_normalize. */
typedef struct nn_batcher {
    const nn_dataset *data;
    nn_tensor *x;   /* the current batch; its first dimension is the batch's size */
    int *labels;    /* the current batch's labels */
    int batch_size;
    int shuffle;
    int pos;        /* examples consumed this epoch */
    int *order;     /* example order of this epoch */
    float scale, shift; /* pixel -> float: scale * p + shift */
    int max_shift;      /* augmentation: random translation in pixels */
    int *shifts;        /* the current batch's translations (dy, dx per example) */
    nn_rng rng;
    int shard_rank, shard_count; /* data-parallel sharding (nn_batcher_shard); 0 and 1 by default */
    int global_n;                /* examples in the whole batch the current shard came from */
} nn_batcher;

/* Prepare batches of batch_size examples in the given layout; with shuffle
 * nonzero each epoch visits examples in a new order drawn from seed. */
nn_status nn_batcher_init(nn_batcher *b, const nn_dataset *d, int batch_size, nn_layout layout,
                          int shuffle, uint64_t seed, nn_error *err);

/* Standardise pixels: x = (p / 255 - mean) / std (std > 0), e.g. MNIST's
 * NN_MNIST_MEAN / NN_MNIST_STD. */
void nn_batcher_normalize(nn_batcher *b, float mean, float std);

/* Augment each image with a random translation of up to max_shift pixels in
 * each direction (uncovered pixels read as 0), drawn from the batcher's
 * seeded RNG. 0 (the default) turns it off. */
void nn_batcher_augment_shift(nn_batcher *b, int max_shift);

/* Data-parallel sharding (e.g. across MPI ranks, see dist.h): every
 * process walks the same global batches (the same seed gives the same
 * order) and takes examples [n * rank / count, n * (rank + 1) / count) of
 * each batch of n; nn_batcher_next then returns the shard's size and sets
 * b->global_n to n. Shifts (augmentation) are drawn for the whole batch,
 * so each example gets the one it gets in a single process. A batch of
 * fewer than count examples (a short last batch) is skipped. NN_ERR_ARG
 * unless 0 <= rank < count <= batch size. */
nn_status nn_batcher_shard(nn_batcher *b, int rank, int count, nn_error *err);

/* Mean and standard deviation of MNIST training pixels scaled to [0, 1]. */
#define NN_MNIST_MEAN 0.1307f
#define NN_MNIST_STD 0.3081f

/* Rewind to the start of a new epoch (reshuffling if enabled). */
void nn_batcher_start_epoch(nn_batcher *b);

/* Fill b->x and b->labels with the next batch (or this process's shard of
 * it); returns its size (the last batch may be short) or 0 when the epoch
 * is done. */
int nn_batcher_next(nn_batcher *b);

/* Number of batches in one epoch. */
int nn_batcher_num_batches(const nn_batcher *b);

void nn_batcher_free(nn_batcher *b);

#ifdef __cplusplus
}
#endif
#endif
