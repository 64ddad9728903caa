/* Per-channel affine map (standardisation layers). */
#include "nn/ops.h"

#include "../autograd/graph_internal.h"
#include "../kernels/kernels.h"

static void channel_affine_backward(nn_graph *g, const nn_node *n)
{
    const nn_tensor *x = n->in[0];
    int c = x->shape[1];
    nn_k_channel_affine_backward(x->shape[0], c, x->size / ((size_t)x->shape[0] * c), x->data,
                                 n->in[1]->data, n->out->grad, nn__grad(g, n->in[0]),
                                 nn__grad(g, n->in[1]), nn__grad(g, n->in[2]));
}

nn_tensor *nn_channel_affine(nn_graph *g, nn_tensor *x, nn_tensor *scale, nn_tensor *shift)
{
    nn_tensor *in[3] = {x, scale, shift};
    if (!nn__inputs_ok(g, "nn_channel_affine", in, 3)) return NULL;
    if (x->ndim < 2 || scale->size != (size_t)x->shape[1] || shift->size != (size_t)x->shape[1]) {
        nn__shape_buf sx, ss, sb;
        return nn__fail(g, "nn_channel_affine", "x must be (N, C, ...) with C-element scale and shift, "
                        "got x %s, scale %s, shift %s", nn__shape(x, &sx), nn__shape(scale, &ss),
                        nn__shape(shift, &sb));
    }
    nn_tensor *y = nn__new_output(g, x->ndim, x->shape);
    if (!y) return NULL;
    int c = x->shape[1];
    nn_k_channel_affine(x->shape[0], c, x->size / ((size_t)x->shape[0] * c), x->data, scale->data,
                        shift->data, y->data);
    nn__record(g, channel_affine_backward, y, in, 3);
    return y;
}
