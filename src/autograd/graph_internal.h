/* What ops need from the engine: arena tensors, tape records, gradients and
 * misuse reporting. Not part of the public API. */
#ifndef NN_GRAPH_INTERNAL_H
#define NN_GRAPH_INTERNAL_H

#include "nn/graph.h"

#define NN__MAX_INPUTS 8

typedef struct nn_node nn_node;
typedef void (*nn__backward_fn)(nn_graph *g, const nn_node *n);

/* One recorded op: its output, inputs and what its backward step needs. */
struct nn_node {
    nn__backward_fn backward;
    nn_tensor *out;
    nn_tensor *in[NN__MAX_INPUTS];
    int n_in;
    int iarg[4];      /* op-specific integers (e.g. transpose flags) */
    float farg[2];    /* op-specific floats (e.g. a scale) */
    const void *ptr;  /* op-specific pointer (e.g. labels) */
    float *aux;       /* op-specific saved buffer in the arena */
};

/* Bytes from the arena, 64-byte aligned and valid until the next reset;
 * NULL on out of memory (reported through the graph's error). */
void *nn__arena_alloc(nn_graph *g, size_t bytes);

/* A point in the arena to return to: everything allocated after the mark
 * is released by nn__arena_rewind (only safe when nothing recorded on the
 * tape since refers to it: forward passes without gradients). */
typedef struct nn__arena_mark {
    void *block;
    size_t used, total;
} nn__arena_mark;
nn__arena_mark nn__arena_mark_now(nn_graph *g);
void nn__arena_rewind(nn_graph *g, nn__arena_mark m);

/* A new arena tensor of the given shape: zeroed (nn__new_zeroed) or with
 * undefined contents (nn__new_output, for ops that write every element). */
nn_tensor *nn__new_output(nn_graph *g, int ndim, const int *shape);
nn_tensor *nn__new_zeroed(nn_graph *g, int ndim, const int *shape);

/* An arena tensor that shares x's data under a new shape of equal size. */
nn_tensor *nn__new_alias(nn_graph *g, nn_tensor *x, int ndim, const int *shape);

/* 1 if gradients are enabled on g and any of the n inputs requires one. */
int nn__wants_grad(const nn_graph *g, nn_tensor *const *in, int n);

/* Record an op producing out from inputs in[0..n_in) with its backward
 * step, if any input requires a gradient; marks out as requiring one.
 * Returns the node to fill with op arguments, or NULL if nothing was
 * recorded (no gradient needed, or out of memory - then out is NULL too). */
nn_node *nn__record(nn_graph *g, nn__backward_fn backward, nn_tensor *out, nn_tensor *const *in,
                    int n_in);

/* The gradient buffer of t for accumulation, allocated zeroed in the arena
 * on first use; NULL if t does not require a gradient. */
float *nn__grad(nn_graph *g, nn_tensor *t);

/* The same, for an op that can write the whole gradient itself: when the
 * buffer is new, it is not zeroed and *fresh is set (the caller must then
 * write every element instead of adding); else *fresh is 0. */
float *nn__grad_fresh(nn_graph *g, nn_tensor *t, int *fresh);

/* For an op whose input's gradient equals its output's (a reshape, an
 * addition's first input): if t has no gradient buffer yet, take buf (the
 * output's arena gradient, which no later step reads) as it and return 1;
 * else 0 and the caller adds as usual. Saves a zeroing and a copy. */
int nn__grad_adopt(nn_tensor *t, float *buf);

/* Report API misuse in op: abort with the message, or record it (first one
 * wins) and return NULL, depending on the graph's mode. */
nn_tensor *nn__fail(nn_graph *g, const char *op, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prefix later misuse messages with context (e.g. "layer 3 (dense)"); ""
 * or NULL clears it. */
void nn__set_context(nn_graph *g, const char *context);

/* 1 if all n inputs are non-NULL. A NULL input either continues an earlier
 * failure (returns 0 quietly) or is itself misuse (reported against op). */
int nn__inputs_ok(nn_graph *g, const char *op, nn_tensor *const *in, int n);

/* Shorthand used by ops to print shapes in messages. */
typedef struct {
    char s[64];
} nn__shape_buf;
const char *nn__shape(const nn_tensor *t, nn__shape_buf *b);

#endif
