/* libnn: the reverse-mode autodiff engine.
 *
 * An nn_graph records every differentiable op of a training step on a tape as
 * the ops run (define-by-run). nn_backward(g, loss) walks the tape in reverse
 * and accumulates gradients into every tensor that requires them; a tensor
 * used by several ops receives the sum of all contributions.
 *
 * Op outputs (and their gradients) live in the graph's arena. nn_graph_reset
 * rewinds the arena and the tape without freeing them, so once a step has run
 * once, later steps of the same shape call malloc zero times. Parameters are
 * persistent tensors outside the arena; their gradients accumulate across
 * backward passes until the optimizer (or the caller) zeroes them.
 *
 * API misuse inside an op (shape mismatch, wrong rank) is reported with the
 * op name and both shapes. By default the message goes to stderr and the
 * program aborts; with nn_graph_set_abort_on_error(g, 0) the op instead
 * returns NULL, later ops given NULL return NULL, and nn_graph_error(g) holds
 * the first message. */
#ifndef NN_GRAPH_H
#define NN_GRAPH_H

#include <stddef.h>
#include "error.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nn_graph nn_graph;

/* New empty graph; NULL if out of memory. */
nn_graph *nn_graph_new(void);

/* Free the graph, its arena and every op output it made (NULL allowed). */
void nn_graph_free(nn_graph *g);

/* Forget the recorded ops and rewind the arena: every tensor an op returned
 * since the last reset becomes invalid. Keeps the memory for the next step. */
void nn_graph_reset(nn_graph *g);

/* With enabled = 0, ops compute forward values only and record nothing
 * (inference). Default: enabled. */
void nn_graph_set_grad_enabled(nn_graph *g, int enabled);
int nn_graph_grad_enabled(const nn_graph *g);

/* Choose what API misuse does: abort (default, 1) or return NULL (0). */
void nn_graph_set_abort_on_error(nn_graph *g, int abort_on_error);

/* First misuse message since the last reset, or NULL if none. */
const char *nn_graph_error(const nn_graph *g);

/* Run the tape backward from loss, which must be a 1-element tensor produced
 * by ops on this graph. Seeds d(loss)/d(loss) = 1 and accumulates gradients
 * into every tensor that requires them and is not an op's output: inputs,
 * parameters and nn_graph_tensor scratch inputs. An op's output keeps no
 * gradient afterwards (its grad is NULL, as PyTorch keeps none for
 * non-leaf tensors): once its op's backward has run, its buffer is reused
 * for the next gradient of the same size, so the pass touches a few buffers
 * that stay in cache. Calling it again on the same graph
 * (without a reset) is allowed: intermediate gradients restart from zero and
 * the parameters' gradients accumulate a second contribution, as with
 * PyTorch's retain_graph=True. Returns NN_ERR_ARG (with a message in
 * err) if g or loss is NULL, loss is not a scalar or not recorded on this
 * graph (e.g. on another graph), and
 * NN_ERR_NUMERIC without touching any gradient if the loss is NaN or
 * infinite. */
nn_status nn_backward(nn_graph *g, nn_tensor *loss, nn_error *err);

/* New zero-filled tensor in the graph's arena (valid until the next reset);
 * for scratch inputs built during a step. NULL on bad shape or no memory. */
nn_tensor *nn_graph_tensor(nn_graph *g, int ndim, const int *shape);

/* Counters that show the engine's memory behaviour. */
typedef struct nn_graph_stats {
    size_t arena_bytes;     /* bytes reserved by the arena */
    size_t arena_used;      /* bytes in use since the last reset */
    size_t mallocs;         /* heap allocations the graph has made, ever */
    size_t tape_len;        /* ops recorded since the last reset */
} nn_graph_stats;

nn_graph_stats nn_graph_get_stats(const nn_graph *g);

#ifdef __cplusplus
}
#endif
#endif
