/* Data-parallel training on threads: replicas of a model, one thread each,
 * their gradients added into replica 0's and its values copied back. */
#include "nn/replicas.h"

#include <stdlib.h>
#include <string.h>

#include "nn/threads.h"
#include "../kernels/kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

struct nn_replicas {
    int n;
    nn_params **params; /* the n lists (this array is a copy), params[0] the model's */
    nn_graph **graphs;
    nn_status *status;
    size_t total; /* floats in one list */
};

static nn_replicas *replicas_fail(nn_replicas *r, nn_error *err, nn_status code, const char *fmt,
                                  const char *name, int list)
{
    nn_error_set(err, code, fmt, name, list);
    nn_replicas_free(r);
    return NULL;
}

nn_replicas *nn_replicas_new(int n, nn_params *const *params, nn_error *err)
{
    if (n < 1 || !params)
        return replicas_fail(NULL, err, NN_ERR_ARG, "nn_replicas_new: %s (%d)", "need at least one parameter list", n);
    for (int i = 0; i < n; i++) {
        if (!params[i])
            return replicas_fail(NULL, err, NN_ERR_ARG, "nn_replicas_new: %s %d is NULL", "parameter list", i);
        if (params[i]->count != params[0]->count)
            return replicas_fail(NULL, err, NN_ERR_SHAPE, "nn_replicas_new: %s %d has another number of tensors",
                                 "parameter list", i);
        for (int t = 0; t < params[0]->count; t++) {
            const nn_tensor *a = params[0]->tensors[t], *b = params[i]->tensors[t];
            if (strcmp(params[0]->names[t], params[i]->names[t]) != 0 || !nn_tensor_same_shape(a, b))
                return replicas_fail(NULL, err, NN_ERR_SHAPE,
                                     "nn_replicas_new: tensor %s differs in name or shape in parameter list %d",
                                     params[0]->names[t], i);
        }
    }
    nn_replicas *r = calloc(1, sizeof *r);
    if (!r) return replicas_fail(NULL, err, NN_ERR_MEMORY, "nn_replicas_new: %s (%d replicas)", "out of memory", n);
    r->n = n;
    r->params = malloc((size_t)n * sizeof *r->params);
    r->graphs = calloc((size_t)n, sizeof *r->graphs);
    r->status = calloc((size_t)n, sizeof *r->status);
    if (!r->params || !r->graphs || !r->status)
        return replicas_fail(r, err, NN_ERR_MEMORY, "nn_replicas_new: %s (%d replicas)", "out of memory", n);
    memcpy(r->params, params, (size_t)n * sizeof *r->params);
    for (int i = 0; i < n; i++)
        if (!(r->graphs[i] = nn_graph_new()))
            return replicas_fail(r, err, NN_ERR_MEMORY, "nn_replicas_new: %s for replica %d", "no graph", i);
    for (int t = 0; t < params[0]->count; t++) r->total += params[0]->tensors[t]->size;
    nn_replicas_sync(r);
    return r;
}

void nn_replicas_free(nn_replicas *r)
{
    if (!r) return;
    for (int i = 0; r->graphs && i < r->n; i++) nn_graph_free(r->graphs[i]);
    free(r->graphs);
    free(r->status);
    free(r->params);
    free(r);
}

int nn_replicas_count(const nn_replicas *r) { return r ? r->n : 0; }

nn_graph *nn_replicas_graph(nn_replicas *r, int i) { return r && i >= 0 && i < r->n ? r->graphs[i] : NULL; }

nn_status nn_replicas_run(nn_replicas *r, nn_replica_fn fn, void *ctx)
{
    if (!r || !fn) return NN_ERR_ARG;
    int threads = nn_get_threads() < r->n ? nn_get_threads() : r->n;
    if (threads <= 1) { /* one after another, each with every thread the kernels have */
        for (int i = 0; i < r->n; i++) {
            nn_graph_reset(r->graphs[i]);
            r->status[i] = fn(ctx, i, r->graphs[i]);
        }
    } else {
#pragma omp parallel num_threads(threads)
        {
            int me = 0, nt = 1;
#ifdef _OPENMP
            me = omp_get_thread_num();
            nt = omp_get_num_threads();
            omp_set_num_threads(1); /* this thread's kernels on it alone (the setting ends with the region) */
#endif
            for (int i = me; i < r->n; i += nt) {
                nn_graph_reset(r->graphs[i]);
                r->status[i] = fn(ctx, i, r->graphs[i]);
            }
        }
    }
    for (int i = 0; i < r->n; i++)
        if (r->status[i] != NN_OK) return r->status[i];
    return NN_OK;
}

/* The parameters' concatenation in chunks of this many floats, dealt out
 * to the threads (a transformer's tensors differ in size by 500x). */
#define REPLICA_CHUNK 4096
#define REPLICA_PAR_MIN 32768 /* floats below which threads cost more than they save */

typedef struct chunk_job {
    const nn_replicas *r;
    float scale;
    int reduce; /* else sync */
} chunk_job;

/* Elements [lo, hi) of tensor t of every list. */
static void reduce_span(const nn_replicas *r, int t, size_t lo, size_t hi, float scale)
{
    float *acc = r->params[0]->tensors[t]->grad;
    if (!acc) return;
    for (int i = 1; i < r->n; i++) {
        float *g = r->params[i]->tensors[t]->grad;
        if (!g) continue;
        nn_k_axpy(hi - lo, 1.0f, g + lo, acc + lo);
        memset(g + lo, 0, (hi - lo) * sizeof(float));
    }
    if (scale != 1.0f) nn_k_scale(hi - lo, scale, acc + lo, acc + lo);
}

static void sync_span(const nn_replicas *r, int t, size_t lo, size_t hi)
{
    const float *src = r->params[0]->tensors[t]->data;
    for (int i = 1; i < r->n; i++) memcpy(r->params[i]->tensors[t]->data + lo, src + lo, (hi - lo) * sizeof(float));
}

static void chunks(void *ctx, int c0, int c1, int slot)
{
    const chunk_job *job = ctx;
    const nn_replicas *r = job->r;
    size_t lo = (size_t)c0 * REPLICA_CHUNK, hi = (size_t)c1 * REPLICA_CHUNK, at = 0;
    (void)slot;
    for (int t = 0; t < r->params[0]->count && at < hi; t++) {
        size_t size = r->params[0]->tensors[t]->size;
        size_t from = lo > at ? lo - at : 0, to = hi - at < size ? hi - at : size;
        if (from < to) {
            if (job->reduce)
                reduce_span(r, t, from, to, job->scale);
            else
                sync_span(r, t, from, to);
        }
        at += size;
    }
}

static void over_chunks(const nn_replicas *r, int reduce, float scale)
{
    if (!r || r->n < 2) {
        if (r && reduce && scale != 1.0f)
            for (int t = 0; t < r->params[0]->count; t++) reduce_span(r, t, 0, r->params[0]->tensors[t]->size, scale);
        return;
    }
    chunk_job job = {r, scale, reduce};
    int n_chunks = (int)((r->total + REPLICA_CHUNK - 1) / REPLICA_CHUNK);
    nn_k_parallel_rows(n_chunks, 1, r->total > REPLICA_PAR_MIN, chunks, &job);
}

void nn_replicas_reduce(nn_replicas *r, float scale) { over_chunks(r, 1, scale); }

void nn_replicas_sync(nn_replicas *r) { over_chunks(r, 0, 1.0f); }
