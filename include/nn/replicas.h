/* libnn: data-parallel training on threads.
 *
 * Replicas are copies of one model, built the same way by the caller, that
 * train on slices of every batch at the same time, one thread each, each
 * with its own graph and gradients. After their backward passes
 * nn_replicas_reduce adds their gradients into replica 0's (the model the
 * optimizer steps), and after the step nn_replicas_sync copies its values
 * into the others:
 *
 *     nn_optim_zero_grad(opt);
 *     nn_replicas_run(r, slice_step, &ctx);   // forward + backward per slice
 *     nn_replicas_reduce(r, 1.0f);             // losses scaled by slice / batch
 *     nn_clip_grad_norm(&params0, 1.0f);
 *     nn_optim_step(opt);
 *     nn_replicas_sync(r);
 *
 * Against splitting every kernel between the threads, each thread keeps its
 * slice's activations in its own core's caches and meets the others twice a
 * step instead of at every op: on 2 cores the character GPT's step is
 * about 8% faster. Results depend on the number of replicas, never on the
 * threads: 2 replicas give the same bits on 1 or 2 threads. The summed
 * gradient equals the whole batch's up to rounding. */
#ifndef NN_REPLICAS_H
#define NN_REPLICAS_H

#include "error.h"
#include "graph.h"
#include "layers.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nn_replicas nn_replicas;

/* n >= 1 replicas from n parameter lists (nn_layer_params of n models of
 * the same structure); params[0] is the model the optimizer steps. The
 * lists must hold tensors of the same names and shapes in the same order;
 * every tensor's values are copied from params[0] into the other lists.
 * The array is copied, the lists and their models are not: keep those
 * until nn_replicas_free. NULL with the reason in err (may be NULL) on a
 * mismatch, bad arguments or no memory. */
nn_replicas *nn_replicas_new(int n, nn_params *const *params, nn_error *err);

/* Free the replicas' graphs and state (not the models; NULL allowed). */
void nn_replicas_free(nn_replicas *r);

int nn_replicas_count(const nn_replicas *r);

/* Replica i's graph (for its settings; nn_replicas_run resets it). */
nn_graph *nn_replicas_graph(nn_replicas *r, int i);

/* One replica's share of a step, typically its slice's forward pass, loss
 * (scaled by the slice's share of the batch) and nn_backward on g. */
typedef nn_status (*nn_replica_fn)(void *ctx, int replica, nn_graph *g);

/* Reset each replica's graph and call fn for it, up to nn_get_threads()
 * replicas at the same time on their own threads; inside fn the kernels
 * run on the calling thread only (so use as many replicas as threads to
 * keep every core busy), and fn must touch only replica i's model and
 * data. One replica, or one thread, runs them one after another with the
 * kernels' usual thread count. Returns NN_OK, or the status of the
 * lowest-numbered replica whose fn failed. */
nn_status nn_replicas_run(nn_replicas *r, nn_replica_fn fn, void *ctx);

/* params[0]'s gradients = scale * (the sum of every replica's gradients,
 * in replica order), and the other replicas' gradients are zeroed for the
 * next step (tensors without a gradient buffer are skipped). */
void nn_replicas_reduce(nn_replicas *r, float scale);

/* Every tensor's values in the other lists = params[0]'s (after the
 * optimizer step, or after loading a checkpoint into replica 0). */
void nn_replicas_sync(nn_replicas *r);

#ifdef __cplusplus
}
#endif
#endif
