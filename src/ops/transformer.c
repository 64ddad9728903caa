/* The Transformer's ops: embedding lookup, layer normalisation, GELU and
 * causal multi-head self-attention. */
#include <math.h>
#include <string.h>

#include "nn/ops.h"
#include "nn/threads.h"

#include "../autograd/graph_internal.h"
#include "../kernels/kernels.h"
#include "ops_internal.h"

/* ---- embedding --------------------------------------------------------- */

static void embedding_backward(nn_graph *g, const nn_node *n)
{
    float *dt = nn__grad(g, n->in[0]);
    if (!dt) return;
    const int *ids = n->ptr;
    size_t width = (size_t)n->in[0]->shape[1];
    /* in order of position: rows hit twice sum the same way on any thread count */
    for (int r = 0; r < n->iarg[0]; r++)
        nn_k_axpy(width, 1.0f, n->out->grad + (size_t)r * width, dt + (size_t)ids[r] * width);
}

nn_tensor *nn_embedding(nn_graph *g, nn_tensor *table, const int *ids, int ndim, const int *shape)
{
    if (!nn__inputs_ok(g, "nn_embedding", &table, 1)) return NULL;
    nn__shape_buf st;
    if (table->ndim != 2)
        return nn__fail(g, "nn_embedding", "table must be 2-D (rows, width), got %s",
                        nn__shape(table, &st));
    if (!ids || !shape || ndim < 1 || ndim > NN_MAX_DIMS - 1)
        return nn__fail(g, "nn_embedding", "need ids and an index shape of 1 to %d dims, got %d%s",
                        NN_MAX_DIMS - 1, ndim, ids ? "" : " and NULL ids");
    int out_shape[NN_MAX_DIMS];
    long count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1)
            return nn__fail(g, "nn_embedding", "index dimension %d is %d, must be >= 1", i, shape[i]);
        count *= shape[i];
        if (count > (1L << 30)) return nn__fail(g, "nn_embedding", "too many indices");
        out_shape[i] = shape[i];
    }
    out_shape[ndim] = table->shape[1];
    int rows = table->shape[0];
    for (long r = 0; r < count; r++)
        if (ids[r] < 0 || ids[r] >= rows)
            return nn__fail(g, "nn_embedding", "index %d at position %ld is outside [0, %d) for table %s",
                            ids[r], r, rows, nn__shape(table, &st));
    nn_tensor *y = nn__new_output(g, ndim + 1, out_shape);
    if (!y) return NULL;
    size_t width = (size_t)table->shape[1];
    for (long r = 0; r < count; r++)
        memcpy(y->data + (size_t)r * width, table->data + (size_t)ids[r] * width, width * sizeof(float));
    nn_node *n = nn__record(g, embedding_backward, y, &table, 1);
    if (n) {
        n->ptr = ids;
        n->iarg[0] = (int)count;
    }
    return y;
}

/* ---- layer normalisation ----------------------------------------------- */

static void layernorm_backward(nn_graph *g, const nn_node *n)
{
    nn_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    int cols = x->shape[x->ndim - 1], rows = (int)(x->size / (size_t)cols);
    float *dx = nn__grad(g, x), *dw = w ? nn__grad(g, w) : NULL, *db = b ? nn__grad(g, b) : NULL;
    if (!dx && !dw && !db) return;
    float *scratch = nn__arena_alloc(g, nn_k_layernorm_bwd_scratch(rows, cols, nn_get_threads()) * sizeof(float));
    if (!scratch) return;
    nn_k_layernorm_bwd_acc(rows, cols, x->data, w ? w->data : NULL, n->aux, n->out->grad, scratch, dx, dw, db);
}

nn_tensor *nn_layernorm(nn_graph *g, nn_tensor *x, nn_tensor *weight, nn_tensor *bias, float eps)
{
    if (!nn__inputs_ok(g, "nn_layernorm", &x, 1)) return NULL;
    nn__shape_buf sx, sp;
    int cols = x->shape[x->ndim - 1];
    if (weight && weight->size != (size_t)cols)
        return nn__fail(g, "nn_layernorm", "weight %s must have %d elements (last dim of x %s)",
                        nn__shape(weight, &sp), cols, nn__shape(x, &sx));
    if (bias && bias->size != (size_t)cols)
        return nn__fail(g, "nn_layernorm", "bias %s must have %d elements (last dim of x %s)",
                        nn__shape(bias, &sp), cols, nn__shape(x, &sx));
    if (!(eps > 0.0f)) return nn__fail(g, "nn_layernorm", "eps must be > 0, got %g", (double)eps);
    if (!weight && bias) return nn__fail(g, "nn_layernorm", "a bias needs a weight");
    int rows = (int)(x->size / (size_t)cols);
    nn_tensor *y = nn__new_output(g, x->ndim, x->shape);
    float *stats = nn__arena_alloc(g, (size_t)rows * 2 * sizeof(float));
    if (!y || !stats) return NULL;
    nn_k_layernorm(rows, cols, x->data, weight ? weight->data : NULL, bias ? bias->data : NULL, eps,
                   y->data, stats);
    /* inputs x, weight, bias in that order; absent ones are left out */
    nn_tensor *in[3] = {x, weight, bias};
    int n_in = 1 + (weight != NULL) + (weight && bias);
    nn_node *n = nn__record(g, layernorm_backward, y, in, n_in);
    if (n) n->aux = stats;
    return y;
}

/* ---- GELU --------------------------------------------------------------- */

static void gelu_backward(nn_graph *g, const nn_node *n)
{
    int fresh;
    float *dx = nn__grad_fresh(g, n->in[0], &fresh);
    if (!dx) return;
    nn_k_gelu_bwd(n->out->size, n->aux, n->out->grad, !fresh, dx);
}

/* gelu(x) into a new tensor or (over_x) x's buffer: the backward reads only
 * the derivative kept in aux. */
static nn_tensor *gelu(nn_graph *g, nn_tensor *x, int over_x)
{
    if (!nn__inputs_ok(g, "nn_gelu", &x, 1)) return NULL;
    nn_tensor *y = over_x ? nn__new_alias(g, x, x->ndim, x->shape) : nn__new_output(g, x->ndim, x->shape);
    if (!y) return NULL;
    /* with a backward to come, the forward's erf and exp give the derivative too */
    float *deriv = nn__wants_grad(g, &x, 1) ? nn__arena_alloc(g, x->size * sizeof(float)) : NULL;
    if (nn__wants_grad(g, &x, 1) && !deriv) return NULL;
    nn_k_gelu(x->size, x->data, y->data, deriv);
    nn_node *n = nn__record(g, gelu_backward, y, &x, 1);
    if (n) n->aux = deriv;
    return y;
}

nn_tensor *nn_gelu(nn_graph *g, nn_tensor *x) { return gelu(g, x, 0); }

nn_tensor *nn__gelu_over(nn_graph *g, nn_tensor *x) { return gelu(g, x, 1); }

/* ---- causal self-attention --------------------------------------------- */

static void attention_backward(nn_graph *g, const nn_node *n)
{
    nn_tensor *qkv = n->in[0];
    int fresh;
    float *dqkv = nn__grad_fresh(g, qkv, &fresh);
    if (!dqkv) return;
    int B = qkv->shape[0], T = qkv->shape[1], H = n->iarg[0], D = qkv->shape[2] / 3 / H;
    float *scratch = nn__arena_alloc(g, (size_t)nn_get_threads() * T * (T + D) * sizeof(float));
    if (!scratch) return;
    nn_k_causal_attention_bwd(B, T, H, D, qkv->data, n->farg[0], n->aux, n->out->grad, scratch,
                              fresh, dqkv);
}

nn_tensor *nn_causal_attention(nn_graph *g, nn_tensor *qkv, int heads)
{
    if (!nn__inputs_ok(g, "nn_causal_attention", &qkv, 1)) return NULL;
    nn__shape_buf s;
    if (qkv->ndim != 3 || heads < 1 || qkv->shape[2] % (3 * heads) != 0)
        return nn__fail(g, "nn_causal_attention",
                        "qkv must be (B, T, 3C) with C a multiple of %d heads, got %s", heads,
                        nn__shape(qkv, &s));
    int B = qkv->shape[0], T = qkv->shape[1], C = qkv->shape[2] / 3, D = C / heads;
    float scale = 1.0f / sqrtf((float)D);
    nn_tensor *y = nn__new_output(g, 3, (int[]){B, T, C});
    float *probs = nn__arena_alloc(g, (size_t)B * heads * T * T * sizeof(float));
    float *scratch = nn__arena_alloc(g, (size_t)nn_get_threads() * T * D * sizeof(float));
    if (!y || !probs || !scratch) return NULL;
    nn_k_causal_attention(B, T, heads, D, qkv->data, scale, probs, y->data, scratch);
    nn_node *n = nn__record(g, attention_backward, y, &qkv, 1);
    if (n) {
        n->aux = probs;
        n->iarg[0] = heads;
        n->farg[0] = scale;
    }
    return y;
}
