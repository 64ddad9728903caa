/* Data sets over float arrays (borrowed or owned) and their batcher. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/dataset.h"
#include "shard.h"

static nn_status check_shape(int count, int ndim, const int *shape, size_t *example_size, nn_error *err)
{
    if (count < 1) return nn_error_set(err, NN_ERR_ARG, "nn_data: count must be >= 1, got %d", count);
    if (ndim < 1 || ndim > 3 || !shape)
        return nn_error_set(err, NN_ERR_ARG, "nn_data: examples must have 1-3 dims, got %d", ndim);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1)
            return nn_error_set(err, NN_ERR_ARG, "nn_data: dimension %d of an example is %d", i, shape[i]);
        n *= (size_t)shape[i];
        if (n > ((size_t)1 << 31))
            return nn_error_set(err, NN_ERR_ARG, "nn_data: an example of more than 2^31 values");
    }
    if ((size_t)count > (SIZE_MAX / 8) / n) /* count * n floats must be addressable */
        return nn_error_set(err, NN_ERR_ARG, "nn_data: %d examples of %zu values is too many", count, n);
    *example_size = n;
    return NN_OK;
}

nn_status nn_data_from_arrays(nn_data *out, int count, int ndim, const int *shape, const float *x,
                              const int *labels, int num_classes, const float *y, int target_size,
                              nn_error *err)
{
    if (!out) return nn_error_set(err, NN_ERR_ARG, "nn_data_from_arrays: out is NULL");
    memset(out, 0, sizeof *out);
    size_t n = 0;
    nn_status s = check_shape(count, ndim, shape, &n, err);
    if (s) return s;
    if (!x) return nn_error_set(err, NN_ERR_ARG, "nn_data_from_arrays: features are NULL");
    if (labels && y)
        return nn_error_set(err, NN_ERR_ARG, "nn_data_from_arrays: give class labels or float targets, not both");
    for (size_t i = 0; i < (size_t)count * n; i++)
        if (!isfinite(x[i]))
            return nn_error_set(err, NN_ERR_ARG, "nn_data_from_arrays: feature %zu of example %zu is %g",
                                i % n, i / n, (double)x[i]);
    if (labels) {
        if (num_classes < 1)
            return nn_error_set(err, NN_ERR_ARG, "nn_data_from_arrays: num_classes must be >= 1, got %d",
                                num_classes);
        for (int i = 0; i < count; i++)
            if (labels[i] < 0 || labels[i] >= num_classes)
                return nn_error_set(err, NN_ERR_ARG, "nn_data_from_arrays: label of example %d is %d, "
                                    "outside [0, %d)", i, labels[i], num_classes);
    }
    if (y) {
        if (target_size < 1)
            return nn_error_set(err, NN_ERR_ARG, "nn_data_from_arrays: target_size must be >= 1, got %d",
                                target_size);
        for (size_t i = 0; i < (size_t)count * (size_t)target_size; i++)
            if (!isfinite(y[i]))
                return nn_error_set(err, NN_ERR_ARG, "nn_data_from_arrays: target %zu of example %zu is %g",
                                    i % (size_t)target_size, i / (size_t)target_size, (double)y[i]);
    }
    out->count = count;
    out->ndim = ndim;
    for (int i = 0; i < 3; i++) out->shape[i] = i < ndim ? shape[i] : 1;
    out->example_size = n;
    out->x = x;
    out->target = labels ? NN_TARGET_CLASS : y ? NN_TARGET_VALUE : NN_TARGET_NONE;
    out->labels = labels;
    out->num_classes = labels ? num_classes : 0;
    out->y = y;
    out->target_size = y ? target_size : 0;
    return NN_OK;
}

static void free_names(char **names, int n)
{
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

void nn_data_free(nn_data *d)
{
    if (!d) return;
    for (int i = 0; i < 3; i++) free(d->owned[i]);
    free_names(d->class_names, d->num_classes);
    free_names(d->feature_names, (int)d->example_size);
    memset(d, 0, sizeof *d);
}

static char **copy_names(char *const *names, int n)
{
    char **c = calloc((size_t)n, sizeof *c);
    for (int i = 0; c && i < n; i++) {
        size_t len = strlen(names[i]) + 1;
        c[i] = malloc(len);
        if (!c[i]) {
            free_names(c, n);
            return NULL;
        }
        memcpy(c[i], names[i], len);
    }
    return c;
}

nn_status nn_data_subset(const nn_data *src, const int *idx, int n, nn_data *out, nn_error *err)
{
    if (!src || !out || (!idx && n > 0)) return nn_error_set(err, NN_ERR_ARG, "nn_data_subset: NULL argument");
    memset(out, 0, sizeof *out);
    if (n < 1) return nn_error_set(err, NN_ERR_ARG, "nn_data_subset: %d examples", n);
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= src->count)
            return nn_error_set(err, NN_ERR_ARG, "nn_data_subset: index %d is outside [0, %d)", idx[i],
                                src->count);
    size_t es = src->example_size, ts = (size_t)src->target_size;
    float *x = malloc((size_t)n * es * sizeof *x);
    int *labels = src->target == NN_TARGET_CLASS ? malloc((size_t)n * sizeof *labels) : NULL;
    float *y = src->target == NN_TARGET_VALUE ? malloc((size_t)n * ts * sizeof *y) : NULL;
    char **names = src->class_names ? copy_names(src->class_names, src->num_classes) : NULL;
    char **features = src->feature_names ? copy_names(src->feature_names, (int)es) : NULL;
    if (!x || (src->target == NN_TARGET_CLASS && !labels) || (src->target == NN_TARGET_VALUE && !y) ||
        (src->class_names && !names) || (src->feature_names && !features)) {
        free(x);
        free(labels);
        free(y);
        free_names(names, src->num_classes);
        free_names(features, (int)es);
        return nn_error_set(err, NN_ERR_MEMORY, "nn_data_subset: out of memory for %d examples", n);
    }
    for (int i = 0; i < n; i++) {
        memcpy(x + (size_t)i * es, src->x + (size_t)idx[i] * es, es * sizeof *x);
        if (labels) labels[i] = src->labels[idx[i]];
        if (y) memcpy(y + (size_t)i * ts, src->y + (size_t)idx[i] * ts, ts * sizeof *y);
    }
    *out = *src;
    out->count = n;
    out->x = x;
    out->labels = labels;
    out->y = y;
    out->class_names = names;
    out->feature_names = features;
    out->owned[0] = x;
    out->owned[1] = labels;
    out->owned[2] = y;
    return NN_OK;
}

nn_status nn_data_copy(const nn_data *src, nn_data *out, nn_error *err)
{
    if (!src) return nn_error_set(err, NN_ERR_ARG, "nn_data_copy: src is NULL");
    int *idx = malloc((size_t)src->count * sizeof *idx);
    if (!idx) return nn_error_set(err, NN_ERR_MEMORY, "nn_data_copy: out of memory");
    for (int i = 0; i < src->count; i++) idx[i] = i;
    nn_status s = nn_data_subset(src, idx, src->count, out, err);
    free(idx);
    return s;
}

nn_status nn_data_split(const nn_data *src, float val_fraction, uint64_t seed, nn_data *train,
                        nn_data *val, nn_error *err)
{
    if (!src || !train || !val) return nn_error_set(err, NN_ERR_ARG, "nn_data_split: NULL argument");
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    if (!(val_fraction > 0.0f && val_fraction < 1.0f))
        return nn_error_set(err, NN_ERR_ARG, "nn_data_split: the validation fraction must be in (0, 1), got %g",
                            (double)val_fraction);
    if (src->count < 2)
        return nn_error_set(err, NN_ERR_ARG, "nn_data_split: cannot split %d example(s)", src->count);
    int n_val = (int)lround((double)val_fraction * src->count);
    if (n_val < 1) n_val = 1;
    if (n_val > src->count - 1) n_val = src->count - 1;
    int *idx = malloc((size_t)src->count * sizeof *idx);
    if (!idx) return nn_error_set(err, NN_ERR_MEMORY, "nn_data_split: out of memory");
    for (int i = 0; i < src->count; i++) idx[i] = i;
    nn_rng rng;
    nn_rng_seed(&rng, seed);
    nn_rng_shuffle(&rng, idx, (size_t)src->count);
    nn_status s = nn_data_subset(src, idx, n_val, val, err);
    if (!s) s = nn_data_subset(src, idx + n_val, src->count - n_val, train, err);
    if (s) nn_data_free(val);
    free(idx);
    return s;
}

nn_status nn_data_from_mnist(const nn_dataset *m, nn_layout layout, float mean, float std, nn_data *out,
                             nn_error *err)
{
    if (!m || !out) return nn_error_set(err, NN_ERR_ARG, "nn_data_from_mnist: NULL argument");
    memset(out, 0, sizeof *out);
    if (!(std > 0.0f)) return nn_error_set(err, NN_ERR_ARG, "nn_data_from_mnist: std must be > 0");
    size_t es = (size_t)m->rows * m->cols;
    float *x = malloc((size_t)m->count * es * sizeof *x);
    int *labels = malloc((size_t)m->count * sizeof *labels);
    if (!x || !labels) {
        free(x);
        free(labels);
        return nn_error_set(err, NN_ERR_MEMORY, "nn_data_from_mnist: out of memory for %d images", m->count);
    }
    float scale = 1.0f / (255.0f * std), shift = -mean / std;
    for (size_t i = 0; i < (size_t)m->count * es; i++) x[i] = m->images[i] * scale + shift;
    for (int i = 0; i < m->count; i++) labels[i] = m->labels[i];
    int shape[3] = {1, m->rows, m->cols}, flat = (int)es;
    nn_status s = layout == NN_LAYOUT_NCHW
                      ? nn_data_from_arrays(out, m->count, 3, shape, x, labels, 10, NULL, 0, err)
                      : nn_data_from_arrays(out, m->count, 1, &flat, x, labels, 10, NULL, 0, err);
    if (s) {
        free(x);
        free(labels);
        return s;
    }
    out->owned[0] = x;
    out->owned[1] = labels;
    return NN_OK;
}

nn_status nn_data_feature_stats(const nn_data *d, float *mean, float *std, nn_error *err)
{
    if (!d || !mean || !std) return nn_error_set(err, NN_ERR_ARG, "nn_data_feature_stats: NULL argument");
    size_t es = d->example_size;
    double *sum = calloc(2 * es, sizeof *sum);
    if (!sum) return nn_error_set(err, NN_ERR_MEMORY, "nn_data_feature_stats: out of memory");
    for (int i = 0; i < d->count; i++)
        for (size_t j = 0; j < es; j++) sum[j] += d->x[(size_t)i * es + j];
    for (size_t j = 0; j < es; j++) sum[j] /= d->count;
    for (int i = 0; i < d->count; i++)
        for (size_t j = 0; j < es; j++) {
            double v = d->x[(size_t)i * es + j] - sum[j];
            sum[es + j] += v * v;
        }
    for (size_t j = 0; j < es; j++) {
        double sd = sqrt(sum[es + j] / d->count);
        mean[j] = (float)sum[j];
        std[j] = sd > 1e-12 * (fabs(sum[j]) + 1e-30) && sd > 0.0 ? (float)sd : 1.0f;
    }
    free(sum);
    return NN_OK;
}

/* ---- batcher ------------------------------------------------------------ */

nn_status nn_data_batcher_init(nn_data_batcher *b, const nn_data *d, int batch_size, int shuffle,
                               uint64_t seed, nn_error *err)
{
    if (!b) return nn_error_set(err, NN_ERR_ARG, "nn_data_batcher_init: batcher is NULL");
    memset(b, 0, sizeof *b);
    if (!d || d->count < 1 || batch_size < 1)
        return nn_error_set(err, NN_ERR_ARG, "nn_data_batcher_init: batch size %d over %d examples", batch_size,
                            d ? d->count : 0);
    if (batch_size > d->count) batch_size = d->count;
    b->data = d;
    b->batch_size = batch_size;
    b->shard_count = 1;
    b->shuffle = shuffle != 0;
    nn_rng_seed(&b->rng, seed);
    int shape[4] = {batch_size, d->shape[0], d->shape[1], d->shape[2]};
    b->buf_x = nn_tensor_new(d->ndim + 1, shape);
    b->order = malloc((size_t)d->count * sizeof *b->order);
    if (d->target == NN_TARGET_CLASS) b->labels = malloc((size_t)batch_size * sizeof *b->labels);
    if (d->target == NN_TARGET_VALUE) b->y = nn_tensor_new2(batch_size, d->target_size);
    if (!b->buf_x || !b->order || (d->target == NN_TARGET_CLASS && !b->labels) ||
        (d->target == NN_TARGET_VALUE && !b->y)) {
        nn_data_batcher_free(b);
        return nn_error_set(err, NN_ERR_MEMORY, "nn_data_batcher_init: out of memory");
    }
    b->view_x = *b->buf_x;
    b->view_x.flags = 0; /* borrowed data: never freed, never given a gradient */
    b->view_x.grad = NULL;
    for (int i = 0; i < d->count; i++) b->order[i] = i;
    nn_data_batcher_start_epoch(b);
    return NN_OK;
}

nn_status nn_data_batcher_time_major(nn_data_batcher *b, int on, nn_error *err)
{
    if (on && b->data->ndim != 2)
        return nn_error_set(err, NN_ERR_ARG, "nn_data_batcher_time_major: examples must be (T, F), got %d dims",
                            b->data->ndim);
    b->time_major = on != 0;
    return NN_OK;
}

void nn_data_batcher_start_epoch(nn_data_batcher *b)
{
    b->pos = 0;
    if (b->shuffle) nn_rng_shuffle(&b->rng, b->order, (size_t)b->data->count);
}

int nn_data_batcher_next(nn_data_batcher *b)
{
    const nn_data *d = b->data;
    int whole = nn__shard_next_batch(d->count, b->batch_size, b->shard_count, &b->pos);
    if (!whole) return 0;
    int lo, n = nn__shard_slice(whole, b->shard_rank, b->shard_count, &lo); /* this process's examples */
    const int *idx = b->order + b->pos + lo;
    size_t es = d->example_size;
    int shape[4] = {n, d->shape[0], d->shape[1], d->shape[2]};
    if (b->time_major) {
        int T = d->shape[0], F = d->shape[1];
        int tm[3] = {T, n, F};
        nn_tensor_reshape(b->buf_x, 3, tm, NULL);
        for (int i = 0; i < n; i++)
            for (int t = 0; t < T; t++)
                memcpy(b->buf_x->data + ((size_t)t * n + i) * F, d->x + (size_t)idx[i] * es + (size_t)t * F,
                       (size_t)F * sizeof(float));
        b->x = b->buf_x;
    } else if (!b->shuffle) {
        /* in place: consecutive examples are one contiguous block */
        b->view_x.data = (float *)(uintptr_t)(d->x + (size_t)(b->pos + lo) * es);
        b->view_x.ndim = d->ndim + 1;
        for (int i = 0; i < NN_MAX_DIMS; i++) b->view_x.shape[i] = i <= d->ndim ? shape[i] : 1;
        b->view_x.size = b->view_x.capacity = (size_t)n * es;
        b->x = &b->view_x;
    } else {
        nn_tensor_reshape(b->buf_x, d->ndim + 1, shape, NULL);
        for (int i = 0; i < n; i++)
            memcpy(b->buf_x->data + (size_t)i * es, d->x + (size_t)idx[i] * es, es * sizeof(float));
        b->x = b->buf_x;
    }
    if (b->labels)
        for (int i = 0; i < n; i++) b->labels[i] = d->labels[idx[i]];
    if (b->y) {
        size_t ts = (size_t)d->target_size;
        nn_tensor_reshape(b->y, 2, (int[]){n, d->target_size}, NULL);
        for (int i = 0; i < n; i++) memcpy(b->y->data + (size_t)i * ts, d->y + (size_t)idx[i] * ts, ts * sizeof(float));
    }
    b->pos += whole;
    b->global_n = whole;
    return n;
}

nn_status nn_data_batcher_shard(nn_data_batcher *b, int rank, int count, nn_error *err)
{
    if (!b || count < 1 || rank < 0 || rank >= count || count > b->batch_size)
        return nn_error_set(err, NN_ERR_ARG, "nn_data_batcher_shard: need 0 <= rank < count <= batch size (%d), "
                                             "got rank %d of %d", b ? b->batch_size : 0, rank, count);
    b->shard_rank = rank;
    b->shard_count = count;
    return NN_OK;
}

int nn_data_batcher_num_batches(const nn_data_batcher *b)
{
    return (b->data->count + b->batch_size - 1) / b->batch_size;
}

void nn_data_batcher_free(nn_data_batcher *b)
{
    if (!b) return;
    nn_tensor_free(b->buf_x);
    nn_tensor_free(b->y);
    free(b->labels);
    free(b->order);
    memset(b, 0, sizeof *b);
}
