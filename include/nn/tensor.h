/* libnn: float32 tensors of 1 to 4 dimensions, a seeded RNG and initializers.
 *
 * A tensor is contiguous and row-major; for images the layout is (N, C, H, W).
 * Tensors made with nn_tensor_new* are persistent: the caller owns them and
 * frees them with nn_tensor_free. Tensors produced by ops live in a graph's
 * arena (see graph.h) and must not be freed by the caller. */
#ifndef NN_TENSOR_H
#define NN_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NN_MAX_DIMS 4

/* Flags in nn_tensor.flags. */
enum {
    NN_REQUIRES_GRAD = 1u << 0, /* gradients flow into this tensor */
    NN_OWNS_DATA = 1u << 1,     /* data/grad were malloc'd by nn_tensor_new */
    NN_IN_ARENA = 1u << 2       /* lives in a graph arena (op output) */
};

typedef struct nn_tensor {
    float *data;   /* size floats, row-major */
    float *grad;   /* same size as data, or NULL when no gradient is kept */
    int ndim;      /* 1..NN_MAX_DIMS */
    int shape[NN_MAX_DIMS]; /* unused trailing entries are 1 */
    size_t size;   /* product of shape */
    size_t capacity; /* floats allocated in data (>= size) */
    unsigned flags;
} nn_tensor;

/* New zero-filled tensor with the given shape; NULL if a dimension is < 1,
 * ndim is outside 1..4, the size overflows or memory runs out. */
nn_tensor *nn_tensor_new(int ndim, const int *shape);
nn_tensor *nn_tensor_new1(int d0);
nn_tensor *nn_tensor_new2(int d0, int d1);
nn_tensor *nn_tensor_new3(int d0, int d1, int d2);
nn_tensor *nn_tensor_new4(int d0, int d1, int d2, int d3);

/* Free a persistent tensor and its gradient (NULL is allowed). Never call it
 * on a tensor returned by an op: those belong to the graph. */
void nn_tensor_free(nn_tensor *t);

/* Set every element to zero / to value. */
void nn_tensor_zero(nn_tensor *t);
void nn_tensor_fill(nn_tensor *t, float value);

/* Zero the gradient (no-op if t has none). */
void nn_tensor_zero_grad(nn_tensor *t);

/* Copy src's data into dst. Shapes must be equal: otherwise returns
 * NN_ERR_SHAPE with both shapes in the message and copies nothing. */
nn_status nn_tensor_copy(nn_tensor *dst, const nn_tensor *src, nn_error *err);

/* Give a persistent tensor a gradient buffer (zeroed) so that ops record
 * gradients for it; parameters are made this way. Returns NN_ERR_MEMORY on
 * allocation failure. Passing 0 freezes the tensor: ops stop computing its
 * gradient and optimizers leave it unchanged (the buffer is kept, so
 * passing 1 again thaws it). */
nn_status nn_tensor_requires_grad(nn_tensor *t, int on);

/* Change the shape of a persistent tensor in place. The new size may be
 * anything up to the capacity allocated at creation (so a batch tensor can
 * shrink for the last, short batch). Returns NN_ERR_SHAPE otherwise. */
nn_status nn_tensor_reshape(nn_tensor *t, int ndim, const int *shape, nn_error *err);

/* Shape queries. nn_tensor_dim returns 1 for i >= ndim. */
int nn_tensor_dim(const nn_tensor *t, int i);
int nn_tensor_same_shape(const nn_tensor *a, const nn_tensor *b);

/* Write the shape as "[2x3x4]" into buf (always NUL-terminated); returns buf. */
char *nn_tensor_shape_str(const nn_tensor *t, char *buf, size_t n);

/* Debug print: name, shape and up to max_items values (and gradient values
 * when present) to out. */
void nn_tensor_print(const nn_tensor *t, const char *name, int max_items, FILE *out);

/* ---- random numbers ---------------------------------------------------- */

/* A small, fast, seeded generator (xoshiro256**). No global state: every
 * user of randomness takes an nn_rng the caller owns. */
typedef struct nn_rng {
    uint64_t s[4];
} nn_rng;

void nn_rng_seed(nn_rng *r, uint64_t seed);
uint64_t nn_rng_u64(nn_rng *r);
/* Uniform float in [0, 1). */
float nn_rng_uniform(nn_rng *r);
/* out[0..n) = n uniforms, the same as n calls of nn_rng_uniform (faster). */
void nn_rng_uniform_fill(nn_rng *r, size_t n, float *out);
/* Standard normal float (Box-Muller). */
float nn_rng_normal(nn_rng *r);
/* Uniform integer in [0, n); n must be > 0. */
uint64_t nn_rng_below(nn_rng *r, uint64_t n);
/* Shuffle idx[0..n) in place (Fisher-Yates). */
void nn_rng_shuffle(nn_rng *r, int *idx, size_t n);

/* The generator's state as text ("s0:s1:s2:s3", 16 hex digits each) for
 * checkpoints, and back: nn_rng_from_string returns 0 on malformed text or
 * an all-zero state and then leaves r unchanged. */
#define NN_RNG_STRING_MAX 72
void nn_rng_to_string(const nn_rng *r, char out[NN_RNG_STRING_MAX]);
int nn_rng_from_string(nn_rng *r, const char *text);

/* ---- initializers ------------------------------------------------------ */

/* Fill with uniform values in [lo, hi). */
void nn_tensor_uniform(nn_tensor *t, nn_rng *r, float lo, float hi);
/* Fill with normal values of the given mean and standard deviation. */
void nn_tensor_normal(nn_tensor *t, nn_rng *r, float mean, float std);
/* He (Kaiming) normal init for layers followed by ReLU: std = sqrt(2/fan_in). */
void nn_init_he(nn_tensor *t, int fan_in, nn_rng *r);
/* Xavier (Glorot) uniform init: U(-a, a), a = sqrt(6 / (fan_in + fan_out)). */
void nn_init_xavier(nn_tensor *t, int fan_in, int fan_out, nn_rng *r);

/* Orthogonal init of a (rows, cols) matrix, in square blocks of cols rows
 * (rows must be a multiple of cols): each block is a random orthogonal
 * matrix times gain (Gram-Schmidt on normal samples). Suits recurrent
 * weights, one block per gate. Returns NN_ERR_SHAPE if the shape does not
 * fit. */
nn_status nn_init_orthogonal(nn_tensor *t, float gain, nn_rng *r);

#ifdef __cplusplus
}
#endif
#endif
