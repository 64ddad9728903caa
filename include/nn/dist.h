/* libnn: data-parallel training across processes and machines over MPI.
 *
 * Built only by `make MPI=1` (with mpicc; Debian: openmpi-bin
 * libopenmpi-dev), which compiles src/dist/ into libnn.a and defines
 * NN_HAVE_MPI; the default build has neither this module nor any MPI
 * dependency. Not included by nn.h: include "nn/dist.h" yourself.
 *
 * The recipe: every rank builds the same model, nn_dist_broadcast makes
 * rank 0's parameters everyone's, nn_batcher_shard (data.h) gives each
 * rank its slice of every global batch, and after each backward pass
 * nn_dist_average_grads turns every rank's gradients into the gradient of
 * the whole global batch (allreduces over a flat buffer, in buckets),
 * so the same optimizer step keeps every rank's parameters identical.
 * Metrics are summed with nn_dist_sum; rank 0 alone prints and saves.
 *
 * Determinism: for a given number of processes a run repeats bit for bit
 * (MPI_Allreduce of a fixed size over a fixed communicator runs the same
 * reduction order; the batches, shards and shifts are fixed by the seed).
 * What changes with the process count is how the global batch's gradient
 * is summed (per shard, then across shards), which moves results by
 * rounding, like a change of thread count in other frameworks; the
 * micro-batch tree sum below removes that too.
 *
 * Failures: MPI's default error handler stays in place, so a rank that
 * dies makes mpirun stop the whole job with its own message; the last
 * checkpoint (written by rank 0) is an ordinary one and resumes in a
 * single process. */
#ifndef NN_DIST_H
#define NN_DIST_H

#include <mpi.h>

#include "error.h"
#include "layers.h"
#include "train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nn_dist {
    MPI_Comm comm;
    int rank, size;
    int owns_mpi;       /* 1 if nn_dist_init called MPI_Init (nn_dist_finalize ends MPI) */
    float *buf;         /* the flat gradient buffer */
    size_t cap;         /* its capacity in floats */
    size_t bucket;      /* floats per allreduce bucket (0: the default) */
    double comm_seconds; /* time spent in gradient allreduces, summed */
    long allreduces;     /* nn_dist_average_grads calls */
} nn_dist;

/* MPI_Init (unless MPI is already initialised) and MPI_COMM_WORLD. */
nn_status nn_dist_init(nn_dist *d, int *argc, char ***argv, nn_error *err);

/* Use a communicator the caller made (MPI already initialised). */
nn_status nn_dist_init_comm(nn_dist *d, MPI_Comm comm, nn_error *err);

/* Free the buffer; MPI_Finalize if nn_dist_init started MPI. */
void nn_dist_finalize(nn_dist *d);

/* Every tensor of p set to rank 0's values (one broadcast per tensor,
 * at start-up or after loading a checkpoint on rank 0). */
nn_status nn_dist_broadcast(nn_dist *d, const nn_params *p, nn_error *err);

/* Replace every gradient of p by the sum over ranks of weight * gradient:
 * with weight = this rank's examples / the global batch's (its shard's
 * share, b->x's size / b->global_n), a mean-reduced loss's gradients
 * become the global batch's mean gradient on every rank. Gradients are
 * packed into one flat buffer and summed by one allreduce per bucket of
 * d->bucket floats (0: 1 MB, the fastest measured; see dist.c); parameters
 * without a gradient count as zeros. The time spent (waiting for the
 * slowest rank included) is added to d->comm_seconds. */
nn_status nn_dist_average_grads(nn_dist *d, const nn_params *p, float weight, nn_error *err);

/* ---- results independent of the process count ----------------------------
 * Split every global batch into M micro-batches (M a power of two, a
 * multiple of the rank count), examples [n * j / M, n * (j + 1) / M) for
 * micro-batch j; each rank runs its M / size consecutive ones (its
 * nn_batcher_shard slice) one at a time and keeps each one's gradient,
 * weighted by its share of the batch. nn_dist_tree_sum adds the M
 * gradients in one fixed binary tree (pairs of neighbours, then pairs of
 * pairs), each rank its subtree, then across ranks, so every process
 * count gives the same bits as one process adding the M micro-batches
 * (mpirun -np 1), provided each micro-batch's gradient is itself
 * reproducible (libnn's kernels give the same bits for any thread count;
 * seed dropout per micro-batch, not per rank). */

/* The gradients of p as one flat buffer (P floats, p's order), times
 * weight; a parameter without a gradient gives zeros. */
void nn_dist_flat_grads(const nn_params *p, float weight, float *flat);

/* micro[0..local) (flat gradients of this rank's micro-batches, in
 * order; local = M / size, both powers of two) summed in the fixed tree
 * over all M, written to every gradient of p on every rank. micro's
 * buffers are overwritten. NN_ERR_ARG if local or size is not a power of
 * two. */
nn_status nn_dist_tree_sum(nn_dist *d, const nn_params *p, float *const *micro, int local, nn_error *err);

/* values[0..n) summed over ranks, in place (losses, correct counts). */
nn_status nn_dist_sum(nn_dist *d, double *values, int n, nn_error *err);

/* Make nn_fit data-parallel over d: sets o's shard_rank / shard_count and
 * its reductions (nn_dist_average_grads, nn_dist_sum). Broadcast the
 * model's parameters first; on ranks other than 0 turn o->verbose off
 * (or send stdout elsewhere) so that one process prints. */
void nn_dist_fit_opts(nn_dist *d, nn_fit_opts *o);

/* 1 if every rank's parameters p are bit for bit rank 0's (a check for
 * tests and long runs: compares a hash of the bytes). */
int nn_dist_params_equal(nn_dist *d, const nn_params *p);

#ifdef __cplusplus
}
#endif
#endif
