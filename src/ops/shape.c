/* reshape/flatten and whole-tensor reductions. */
#include <string.h>

#include "nn/ops.h"

#include "../autograd/graph_internal.h"
#include "../kernels/kernels.h"
#include "../tensor/tensor_internal.h"

static void reshape_backward(nn_graph *g, const nn_node *n)
{
    if (nn__grad_adopt(n->in[0], n->out->grad)) return; /* the same values: no copy */
    float *dx = nn__grad(g, n->in[0]);
    if (dx) nn_k_axpy(n->out->size, 1.0f, n->out->grad, dx);
}

nn_tensor *nn_reshape(nn_graph *g, nn_tensor *x, int ndim, const int *shape)
{
    if (!nn__inputs_ok(g, "nn_reshape", &x, 1)) return NULL;
    size_t size = 0;
    if (!nn__shape_size(ndim, shape, &size) || size != x->size) {
        nn__shape_buf sx;
        char want[64] = "(invalid)";
        if (ndim >= 1 && ndim <= NN_MAX_DIMS && shape) {
            nn_tensor tmp = {0};
            tmp.ndim = ndim;
            for (int i = 0; i < ndim; i++) tmp.shape[i] = shape[i];
            nn_tensor_shape_str(&tmp, want, sizeof want);
        }
        return nn__fail(g, "nn_reshape", "cannot view %s (%zu elements) as %s",
                        nn__shape(x, &sx), x->size, want);
    }
    nn_tensor *y = nn__new_alias(g, x, ndim, shape);
    if (!y) return NULL;
    nn__record(g, reshape_backward, y, &x, 1);
    return y;
}

nn_tensor *nn_flatten(nn_graph *g, nn_tensor *x)
{
    if (!nn__inputs_ok(g, "nn_flatten", &x, 1)) return NULL;
    int shape[2] = {x->shape[0], (int)(x->size / (size_t)x->shape[0])};
    return nn_reshape(g, x, 2, shape);
}

static void sum_backward(nn_graph *g, const nn_node *n)
{
    float *dx = nn__grad(g, n->in[0]);
    if (dx) nn_k_add_scalar(n->in[0]->size, n->out->grad[0] * n->farg[0], dx);
}

static nn_tensor *reduce(nn_graph *g, const char *name, nn_tensor *x, int mean)
{
    if (!nn__inputs_ok(g, name, &x, 1)) return NULL;
    nn_tensor *y = nn__new_output(g, 1, (int[]){1});
    if (!y) return NULL;
    float scale = mean ? 1.0f / (float)x->size : 1.0f;
    y->data[0] = (float)(nn_k_sum(x->size, x->data) * scale);
    nn_node *n = nn__record(g, sum_backward, y, &x, 1);
    if (n) n->farg[0] = scale;
    return y;
}

nn_tensor *nn_sum(nn_graph *g, nn_tensor *x) { return reduce(g, "nn_sum", x, 0); }
nn_tensor *nn_mean(nn_graph *g, nn_tensor *x) { return reduce(g, "nn_mean", x, 1); }
