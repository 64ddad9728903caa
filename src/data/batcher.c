/* Mini-batches over a data set: seeded shuffling, uint8 -> float per batch
 * into buffers allocated once. */
#include <stdlib.h>
#include <string.h>

#include "nn/data.h"
#include "../kernels/kernels.h"

nn_status nn_batcher_init(nn_batcher *b, const nn_dataset *d, int batch_size, nn_layout layout,
                          int shuffle, uint64_t seed, nn_error *err)
{
    memset(b, 0, sizeof *b);
    if (batch_size < 1 || d->count < 1)
        return nn_error_set(err, NN_ERR_ARG, "nn_batcher_init: batch size %d, %d examples",
                            batch_size, d->count);
    if (batch_size > d->count) batch_size = d->count;
    b->data = d;
    b->batch_size = batch_size;
    b->shuffle = shuffle;
    b->scale = 1.0f / 255.0f;
    b->shift = 0.0f;
    nn_rng_seed(&b->rng, seed);
    b->x = layout == NN_LAYOUT_NCHW ? nn_tensor_new4(batch_size, 1, d->rows, d->cols)
                                    : nn_tensor_new2(batch_size, d->rows * d->cols);
    b->labels = malloc((size_t)batch_size * sizeof *b->labels);
    b->order = malloc((size_t)d->count * sizeof *b->order);
    if (!b->x || !b->labels || !b->order) {
        nn_batcher_free(b);
        return nn_error_set(err, NN_ERR_MEMORY, "nn_batcher_init: out of memory");
    }
    for (int i = 0; i < d->count; i++) b->order[i] = i;
    nn_batcher_start_epoch(b);
    return NN_OK;
}

void nn_batcher_normalize(nn_batcher *b, float mean, float std)
{
    if (!(std > 0.0f)) return;
    b->scale = 1.0f / (255.0f * std);
    b->shift = -mean / std;
}

void nn_batcher_augment_shift(nn_batcher *b, int max_shift)
{
    b->max_shift = max_shift > 0 ? max_shift : 0;
}

void nn_batcher_start_epoch(nn_batcher *b)
{
    b->pos = 0;
    if (b->shuffle) nn_rng_shuffle(&b->rng, b->order, (size_t)b->data->count);
}

/* Images are read in shuffled order, each a cache (and TLB) miss: the one
 * this many ahead is prefetched while the current one is converted (a batch
 * of 64 MNIST images: 54-62 -> 38-42 us). */
#define PREFETCH_AHEAD 16

int nn_batcher_next(nn_batcher *b)
{
    const nn_dataset *d = b->data;
    int n = d->count - b->pos;
    if (n <= 0) return 0;
    if (n > b->batch_size) n = b->batch_size;
    size_t pixels = (size_t)d->rows * d->cols;
    for (int i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n) {
            const char *next = (const char *)(d->images + (size_t)b->order[b->pos + i + PREFETCH_AHEAD] * pixels);
            for (size_t at = 0; at < pixels; at += 64) __builtin_prefetch(next + at);
        }
        int idx = b->order[b->pos + i];
        const uint8_t *src = d->images + (size_t)idx * pixels;
        float *dst = b->x->data + (size_t)i * pixels;
        if (b->max_shift > 0) {
            int span = 2 * b->max_shift + 1;
            int dy = (int)nn_rng_below(&b->rng, (uint64_t)span) - b->max_shift;
            int dx = (int)nn_rng_below(&b->rng, (uint64_t)span) - b->max_shift;
            nn_k_u8_image_shifted(d->rows, d->cols, dy, dx, src, b->scale, b->shift, dst);
        } else {
            nn_k_u8_to_float(pixels, src, b->scale, b->shift, dst);
        }
        b->labels[i] = d->labels[idx];
    }
    b->pos += n;
    int shape[4] = {n, b->x->shape[1], b->x->shape[2], b->x->shape[3]};
    nn_tensor_reshape(b->x, b->x->ndim, shape, NULL);
    return n;
}

int nn_batcher_num_batches(const nn_batcher *b)
{
    return (b->data->count + b->batch_size - 1) / b->batch_size;
}

void nn_batcher_free(nn_batcher *b)
{
    if (!b) return;
    nn_tensor_free(b->x);
    free(b->labels);
    free(b->order);
    memset(b, 0, sizeof *b);
}
