/* Mini-batches over a data set: seeded shuffling, uint8 -> float per batch
 * into buffers allocated once. */
#include <stdlib.h>
#include <string.h>

#include "nn/data.h"
#include "../kernels/kernels.h"
#include "shard.h"

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
    b->shard_count = 1;
    nn_rng_seed(&b->rng, seed);
    b->x = layout == NN_LAYOUT_NCHW ? nn_tensor_new4(batch_size, 1, d->rows, d->cols)
                                    : nn_tensor_new2(batch_size, d->rows * d->cols);
    b->labels = malloc((size_t)batch_size * sizeof *b->labels);
    b->order = malloc((size_t)d->count * sizeof *b->order);
    b->shifts = malloc((size_t)batch_size * 2 * sizeof *b->shifts);
    if (!b->x || !b->labels || !b->order || !b->shifts) {
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

nn_status nn_batcher_shard(nn_batcher *b, int rank, int count, nn_error *err)
{
    if (!b || count < 1 || rank < 0 || rank >= count || count > b->batch_size)
        return nn_error_set(err, NN_ERR_ARG, "nn_batcher_shard: need 0 <= rank < count <= batch size (%d), "
                                             "got rank %d of %d", b ? b->batch_size : 0, rank, count);
    b->shard_rank = rank;
    b->shard_count = count;
    return NN_OK;
}

int nn_batcher_next(nn_batcher *b)
{
    const nn_dataset *d = b->data;
    int n = nn__shard_next_batch(d->count, b->batch_size, b->shard_count, &b->pos);
    if (!n) return 0;
    const int *index = b->order + b->pos;
    if (b->max_shift > 0) { /* drawn in order here for the whole batch, applied by the threads below */
        int span = 2 * b->max_shift + 1;
        for (int i = 0; i < 2 * n; i++) b->shifts[i] = (int)nn_rng_below(&b->rng, (uint64_t)span) - b->max_shift;
    }
    int lo, m = nn__shard_slice(n, b->shard_rank, b->shard_count, &lo);
    for (int i = 0; i < m; i++) b->labels[i] = d->labels[index[lo + i]];
    nn_k_u8_images(m, d->rows, d->cols, d->images, index + lo, b->max_shift > 0 ? b->shifts + 2 * lo : NULL,
                   b->scale, b->shift, b->x->data);
    b->pos += n;
    b->global_n = n;
    int shape[4] = {m, b->x->shape[1], b->x->shape[2], b->x->shape[3]};
    nn_tensor_reshape(b->x, b->x->ndim, shape, NULL);
    return m;
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
    free(b->shifts);
    memset(b, 0, sizeof *b);
}
