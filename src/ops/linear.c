/* matmul (all transpose variants) and bias addition. */
#include "nn/ops.h"

#include "../autograd/graph_internal.h"
#include "../kernels/kernels.h"

/* Backward of C = op(A) op(B) with op given by iarg[0] (ta), iarg[1] (tb). */
static void matmul_backward(nn_graph *g, const nn_node *n)
{
    nn_tensor *a = n->in[0], *b = n->in[1];
    int ta = n->iarg[0], tb = n->iarg[1];
    int M = n->out->shape[0], N = n->out->shape[1], K = ta ? a->shape[0] : a->shape[1];
    int lda = a->shape[1], ldb = b->shape[1];
    const float *dc = n->out->grad;
    /* a gradient buffer made here is written (beta 0) rather than zeroed
     * and added to */
    int fresh_a, fresh_b;
    float *da = nn__grad_fresh(g, a, &fresh_a), *db = nn__grad_fresh(g, b, &fresh_b);
    float beta_a = fresh_a ? 0.0f : 1.0f, beta_b = fresh_b ? 0.0f : 1.0f;
    if (da) {
        if (!ta) /* dA = dC op(B)^T */
            nn_sgemm(0, !tb, M, K, N, 1.0f, dc, N, b->data, ldb, beta_a, da, lda);
        else /* dA (stored K x M) = op(B) dC^T */
            nn_sgemm(tb, 1, K, M, N, 1.0f, b->data, ldb, dc, N, beta_a, da, lda);
    }
    if (db) {
        if (!tb) /* dB = op(A)^T dC */
            nn_sgemm(!ta, 0, K, N, M, 1.0f, a->data, lda, dc, N, beta_b, db, ldb);
        else /* dB (stored N x K) = dC^T op(A) */
            nn_sgemm(1, ta, N, K, M, 1.0f, dc, N, a->data, lda, beta_b, db, ldb);
    }
}

nn_tensor *nn_matmul_ex(nn_graph *g, nn_tensor *a, nn_tensor *b, int trans_a, int trans_b)
{
    nn_tensor *in[2] = {a, b};
    if (!nn__inputs_ok(g, "nn_matmul", in, 2)) return NULL;
    nn__shape_buf sa, sb;
    if (a->ndim != 2 || b->ndim != 2)
        return nn__fail(g, "nn_matmul", "inputs must be 2-D, got a %s and b %s",
                        nn__shape(a, &sa), nn__shape(b, &sb));
    int ta = trans_a != 0, tb = trans_b != 0;
    int M = ta ? a->shape[1] : a->shape[0], K = ta ? a->shape[0] : a->shape[1];
    int Kb = tb ? b->shape[1] : b->shape[0], N = tb ? b->shape[0] : b->shape[1];
    if (K != Kb)
        return nn__fail(g, "nn_matmul",
                        "inner dimensions differ: a %s%s vs b %s%s (%d vs %d)",
                        nn__shape(a, &sa), ta ? "^T" : "", nn__shape(b, &sb), tb ? "^T" : "", K,
                        Kb);
    nn_tensor *c = nn__new_output(g, 2, (int[]){M, N});
    if (!c) return NULL;
    nn_sgemm(ta, tb, M, N, K, 1.0f, a->data, a->shape[1], b->data, b->shape[1], 0.0f, c->data, N);
    nn_node *n = nn__record(g, matmul_backward, c, in, 2);
    if (n) {
        n->iarg[0] = ta;
        n->iarg[1] = tb;
    }
    return c;
}

nn_tensor *nn_matmul(nn_graph *g, nn_tensor *a, nn_tensor *b)
{
    return nn_matmul_ex(g, a, b, 0, 0);
}

static void bias_backward(nn_graph *g, const nn_node *n)
{
    nn_tensor *x = n->in[0], *bias = n->in[1];
    const float *dy = n->out->grad;
    float *dx = nn__grad(g, x), *db = nn__grad(g, bias);
    if (dx) nn_k_axpy(x->size, 1.0f, dy, dx);
    if (db) nn_k_bias_grad_acc(x->shape[0], x->shape[1], x->size / ((size_t)x->shape[0] * x->shape[1]), dy, db);
}

nn_tensor *nn_add_bias(nn_graph *g, nn_tensor *x, nn_tensor *bias)
{
    nn_tensor *in[2] = {x, bias};
    if (!nn__inputs_ok(g, "nn_add_bias", in, 2)) return NULL;
    nn__shape_buf sx, sb;
    if (x->ndim < 2 || bias->size != (size_t)x->shape[1])
        return nn__fail(g, "nn_add_bias",
                        "bias must have one element per channel (dim 1): x %s vs bias %s",
                        nn__shape(x, &sx), nn__shape(bias, &sb));
    nn_tensor *y = nn__new_output(g, x->ndim, x->shape);
    if (!y) return NULL;
    int N = x->shape[0], C = x->shape[1];
    nn_k_add_bias(N, C, x->size / ((size_t)N * C), x->data, bias->data, y->data);
    nn__record(g, bias_backward, y, in, 2);
    return y;
}
