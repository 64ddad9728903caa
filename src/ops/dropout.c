/* Inverted dropout with a saved mask. */
#include "nn/ops.h"

#include "../autograd/graph_internal.h"
#include "../kernels/kernels.h"

static void dropout_backward(nn_graph *g, const nn_node *n)
{
    float *dx = nn__grad(g, n->in[0]);
    if (dx) nn_k_mul_acc(n->out->size, n->out->grad, n->aux, dx);
}

nn_tensor *nn_dropout(nn_graph *g, nn_tensor *x, float p, nn_rng *rng)
{
    if (!nn__inputs_ok(g, "nn_dropout", &x, 1)) return NULL;
    if (!(p >= 0.0f && p < 1.0f) || !rng)
        return nn__fail(g, "nn_dropout", "p must be in [0, 1) and rng given, got p = %g", (double)p);
    nn_tensor *y = nn__new_output(g, x->ndim, x->shape);
    float *mask = nn__arena_alloc(g, x->size * sizeof(float));
    if (!y || !mask) return NULL;
    nn_k_dropout_mask(x->size, p, rng, mask);
    nn_k_mul(x->size, x->data, mask, y->data);
    nn_node *n = nn__record(g, dropout_backward, y, &x, 1);
    if (n) n->aux = mask;
    return y;
}
