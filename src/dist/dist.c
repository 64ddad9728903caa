/* Data-parallel training over MPI (built by make MPI=1 only). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/dist.h"
#include "../kernels/kernels.h"

/* 1 MB buckets, one blocking allreduce each. Measured with Open MPI 4.1
 * on one machine, 2 ranks (run_dist_tests --bench): 8M floats take 12 ms
 * in 1 MB buckets against 107 ms as one message (its algorithm for large
 * messages), and non-blocking allreduces of the buckets in flight together
 * (to overlap them with packing) took 14.5 ms for 1M floats against 1.05
 * ms one after the other. */
enum { DEFAULT_BUCKET_FLOATS = 1 << 18 };

static nn_status mpi_fail(nn_error *err, const char *who, int rc)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return nn_error_set(err, NN_ERR_IO, "%s: MPI error: %.*s", who, len, msg);
}

static nn_status init_comm(nn_dist *d, MPI_Comm comm, int owns_mpi, nn_error *err)
{
    memset(d, 0, sizeof *d);
    d->owns_mpi = owns_mpi;
    d->comm = comm;
    int rc = MPI_Comm_rank(comm, &d->rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(comm, &d->size);
    return rc == MPI_SUCCESS ? NN_OK : mpi_fail(err, "nn_dist_init", rc);
}

nn_status nn_dist_init_comm(nn_dist *d, MPI_Comm comm, nn_error *err)
{
    int ready = 0;
    if (!d) return nn_error_set(err, NN_ERR_ARG, "nn_dist_init_comm: d is NULL");
    MPI_Initialized(&ready);
    if (!ready) return nn_error_set(err, NN_ERR_ARG, "nn_dist_init_comm: MPI is not initialised");
    return init_comm(d, comm, 0, err);
}

nn_status nn_dist_init(nn_dist *d, int *argc, char ***argv, nn_error *err)
{
    if (!d) return nn_error_set(err, NN_ERR_ARG, "nn_dist_init: d is NULL");
    int ready = 0;
    MPI_Initialized(&ready);
    if (!ready) {
        int rc = MPI_Init(argc, argv);
        if (rc != MPI_SUCCESS) return mpi_fail(err, "nn_dist_init", rc);
    }
    return init_comm(d, MPI_COMM_WORLD, !ready, err);
}

void nn_dist_finalize(nn_dist *d)
{
    if (!d) return;
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
    if (d->owns_mpi) {
        int done = 0;
        MPI_Finalized(&done);
        if (!done) MPI_Finalize();
        d->owns_mpi = 0;
    }
}

/* MPI counts are ints: tensors are sent in pieces of at most this. */
enum { MAX_COUNT = 1 << 30 };

nn_status nn_dist_broadcast(nn_dist *d, const nn_params *p, nn_error *err)
{
    if (!d || !p) return nn_error_set(err, NN_ERR_ARG, "nn_dist_broadcast: %s is NULL", d ? "p" : "d");
    for (int i = 0; i < p->count; i++) {
        nn_tensor *t = p->tensors[i];
        for (size_t at = 0; at < t->size; at += MAX_COUNT) {
            size_t n = t->size - at < MAX_COUNT ? t->size - at : MAX_COUNT;
            int rc = MPI_Bcast(t->data + at, (int)n, MPI_FLOAT, 0, d->comm);
            if (rc != MPI_SUCCESS) return mpi_fail(err, "nn_dist_broadcast", rc);
        }
    }
    return NN_OK;
}

/* Copy the gradients' floats [lo, hi) of the flat order into or out of
 * buf (scaled by weight on the way in); a missing gradient reads as 0. */
static void pack(const nn_params *p, float *buf, size_t lo, size_t hi, float weight, int out)
{
    size_t at = 0;
    for (int i = 0; i < p->count && at < hi; i++) {
        nn_tensor *t = p->tensors[i];
        size_t b = lo > at ? lo - at : 0, e = hi - at < t->size ? hi - at : t->size;
        for (size_t j = b; j < e; j++) {
            if (out) {
                if (t->grad) t->grad[j] = buf[at + j - lo];
            } else {
                buf[at + j - lo] = t->grad ? weight * t->grad[j] : 0.0f;
            }
        }
        at += t->size;
    }
}

/* d->buf holding at least floats (grown once, then reused every step). */
static int reserve(nn_dist *d, size_t floats)
{
    if (floats <= d->cap) return 1;
    free(d->buf);
    d->buf = malloc(floats * sizeof(float));
    d->cap = d->buf ? floats : 0;
    return d->buf != NULL;
}

static size_t numel(const nn_params *p)
{
    size_t total = 0;
    for (int i = 0; i < p->count; i++) total += p->tensors[i]->size;
    return total;
}

/* Floats per allreduce bucket or gathered piece (each rank's share). */
static size_t bucket_floats(const nn_dist *d)
{
    size_t bucket = d->bucket ? d->bucket : DEFAULT_BUCKET_FLOATS;
    return bucket > MAX_COUNT / (size_t)d->size ? MAX_COUNT / (size_t)d->size : bucket;
}

nn_status nn_dist_average_grads(nn_dist *d, const nn_params *p, float weight, nn_error *err)
{
    if (!d || !p) return nn_error_set(err, NN_ERR_ARG, "nn_dist_average_grads: %s is NULL", d ? "p" : "d");
    size_t total = numel(p);
    if (!total) return NN_OK;
    if (!reserve(d, total)) return nn_error_set(err, NN_ERR_MEMORY, "nn_dist_average_grads: out of memory");
    double t0 = MPI_Wtime();
    size_t bucket = bucket_floats(d);
    int rc = MPI_SUCCESS;
    for (size_t lo = 0; lo < total && rc == MPI_SUCCESS; lo += bucket) {
        size_t hi = lo + bucket < total ? lo + bucket : total;
        pack(p, d->buf + lo, lo, hi, weight, 0);
        rc = MPI_Allreduce(MPI_IN_PLACE, d->buf + lo, (int)(hi - lo), MPI_FLOAT, MPI_SUM, d->comm);
        if (rc == MPI_SUCCESS) pack(p, d->buf + lo, lo, hi, 0.0f, 1);
    }
    d->comm_seconds += MPI_Wtime() - t0;
    d->allreduces++;
    return rc == MPI_SUCCESS ? NN_OK : mpi_fail(err, "nn_dist_average_grads", rc);
}

nn_status nn_dist_sum(nn_dist *d, double *values, int n, nn_error *err)
{
    if (!d || (!values && n > 0) || n < 0)
        return nn_error_set(err, NN_ERR_ARG, "nn_dist_sum: need d and n >= 0 values");
    if (!n) return NN_OK;
    int rc = MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, MPI_SUM, d->comm);
    return rc == MPI_SUCCESS ? NN_OK : mpi_fail(err, "nn_dist_sum", rc);
}

/* FNV-1a over the parameters' bytes. */
static uint64_t params_hash(const nn_params *p)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < p->count; i++) {
        const unsigned char *b = (const unsigned char *)p->tensors[i]->data;
        for (size_t j = 0; j < p->tensors[i]->size * sizeof(float); j++) h = (h ^ b[j]) * 1099511628211ull;
    }
    return h;
}

int nn_dist_params_equal(nn_dist *d, const nn_params *p)
{
    if (!d || !p) return 0;
    unsigned long long mine = params_hash(p), root = mine;
    if (MPI_Bcast(&root, 1, MPI_UNSIGNED_LONG_LONG, 0, d->comm) != MPI_SUCCESS) return 0;
    int same = root == mine, all = 0;
    if (MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_MIN, d->comm) != MPI_SUCCESS) return 0;
    return all;
}

static nn_status fit_reduce_grads(const nn_params *p, float weight, void *ctx, nn_error *err)
{
    return nn_dist_average_grads(ctx, p, weight, err);
}

static nn_status fit_reduce_sums(double *values, int n, void *ctx, nn_error *err)
{
    return nn_dist_sum(ctx, values, n, err);
}

void nn_dist_fit_opts(nn_dist *d, nn_fit_opts *o)
{
    if (!d || !o) return;
    o->shard_rank = d->rank;
    o->shard_count = d->size;
    o->reduce_grads = fit_reduce_grads;
    o->reduce_sums = fit_reduce_sums;
    o->reduce_ctx = d;
}

void nn_dist_flat_grads(const nn_params *p, float weight, float *flat)
{
    pack(p, flat, 0, numel(p), weight, 0);
}

static int power_of_two(int n) { return n > 0 && !(n & (n - 1)); }

/* count leaves (a power of two) of n floats summed pairwise, level by
 * level, into the first: leaves[k], or base + k * stride if leaves is NULL. */
static void tree_sum(float *const *leaves, float *base, size_t stride, int count, size_t n)
{
    for (int width = 1; width < count; width *= 2)
        for (int k = 0; k + width < count; k += 2 * width) {
            float *a = leaves ? leaves[k] : base + (size_t)k * stride;
            const float *b = leaves ? leaves[k + width] : base + (size_t)(k + width) * stride;
            nn_k_add(n, a, b, a);
        }
}

nn_status nn_dist_tree_sum(nn_dist *d, const nn_params *p, float *const *micro, int local, nn_error *err)
{
    if (!d || !p || !micro) return nn_error_set(err, NN_ERR_ARG, "nn_dist_tree_sum: an argument is NULL");
    if (!power_of_two(local) || !power_of_two(d->size))
        return nn_error_set(err, NN_ERR_ARG, "nn_dist_tree_sum: %d micro-batches per rank over %d ranks: both must "
                                             "be powers of two", local, d->size);
    size_t total = numel(p), size = (size_t)d->size, chunk = bucket_floats(d);
    tree_sum(micro, NULL, 0, local, total);
    if (size == 1) {
        pack(p, micro[0], 0, total, 0.0f, 1);
        return NN_OK;
    }
    /* every rank's subtree root (gathered in pieces the size of the
     * allreduce's buckets), then the same tree over them on every rank */
    if (!reserve(d, size * total + size * chunk))
        return nn_error_set(err, NN_ERR_MEMORY, "nn_dist_tree_sum: out of memory");
    float *roots = d->buf, *piece = d->buf + size * total;
    double t0 = MPI_Wtime();
    int rc = MPI_SUCCESS;
    for (size_t lo = 0; lo < total && rc == MPI_SUCCESS; lo += chunk) {
        size_t n = total - lo < chunk ? total - lo : chunk;
        rc = MPI_Allgather(micro[0] + lo, (int)n, MPI_FLOAT, piece, (int)n, MPI_FLOAT, d->comm);
        for (size_t r = 0; rc == MPI_SUCCESS && r < size; r++)
            memcpy(roots + r * total + lo, piece + r * n, n * sizeof(float));
    }
    d->comm_seconds += MPI_Wtime() - t0;
    d->allreduces++;
    if (rc != MPI_SUCCESS) return mpi_fail(err, "nn_dist_tree_sum", rc);
    tree_sum(NULL, roots, total, d->size, total);
    pack(p, roots, 0, total, 0.0f, 1);
    return NN_OK;
}
