/* Softmax, log-softmax and the losses. */
#include "nn/ops.h"

#include "../autograd/graph_internal.h"
#include "../kernels/kernels.h"

/* Rows and columns of x seen as a matrix over its last dimension. */
static void as_rows(const nn_tensor *x, int *rows, int *cols)
{
    *cols = x->shape[x->ndim - 1];
    *rows = (int)(x->size / (size_t)*cols);
}

static void softmax_backward(nn_graph *g, const nn_node *n)
{
    float *dx = nn__grad(g, n->in[0]);
    int rows, cols;
    as_rows(n->out, &rows, &cols);
    if (dx) nn_k_softmax_bwd_acc(rows, cols, n->out->data, n->out->grad, dx);
}

static void log_softmax_backward(nn_graph *g, const nn_node *n)
{
    float *dx = nn__grad(g, n->in[0]);
    int rows, cols;
    as_rows(n->out, &rows, &cols);
    if (dx) nn_k_log_softmax_bwd_acc(rows, cols, n->out->data, n->out->grad, dx);
}

nn_tensor *nn_softmax(nn_graph *g, nn_tensor *x)
{
    if (!nn__inputs_ok(g, "nn_softmax", &x, 1)) return NULL;
    nn_tensor *y = nn__new_output(g, x->ndim, x->shape);
    if (!y) return NULL;
    int rows, cols;
    as_rows(x, &rows, &cols);
    nn_k_softmax_rows(rows, cols, x->data, y->data);
    nn__record(g, softmax_backward, y, &x, 1);
    return y;
}

nn_tensor *nn_log_softmax(nn_graph *g, nn_tensor *x)
{
    if (!nn__inputs_ok(g, "nn_log_softmax", &x, 1)) return NULL;
    nn_tensor *y = nn__new_output(g, x->ndim, x->shape);
    if (!y) return NULL;
    int rows, cols;
    as_rows(x, &rows, &cols);
    nn_k_log_softmax_rows(rows, cols, x->data, y->data);
    nn__record(g, log_softmax_backward, y, &x, 1);
    return y;
}

static void xent_backward(nn_graph *g, const nn_node *n)
{
    nn_tensor *x = n->in[0];
    float *dx = nn__grad(g, x);
    if (dx)
        nn_k_softmax_xent_bwd_acc(x->shape[0], x->shape[1], n->aux, n->ptr, n->farg[0],
                                  n->out->grad[0] / (float)x->shape[0], dx);
}

nn_tensor *nn_softmax_cross_entropy(nn_graph *g, nn_tensor *logits, const int *labels)
{
    return nn_softmax_cross_entropy_smoothed(g, logits, labels, 0.0f);
}

nn_tensor *nn_softmax_cross_entropy_smoothed(nn_graph *g, nn_tensor *logits, const int *labels,
                                             float smoothing)
{
    if (!nn__inputs_ok(g, "nn_softmax_cross_entropy", &logits, 1)) return NULL;
    nn__shape_buf s;
    if (logits->ndim != 2)
        return nn__fail(g, "nn_softmax_cross_entropy", "logits must be 2-D (N, C), got %s",
                        nn__shape(logits, &s));
    if (!labels) return nn__fail(g, "nn_softmax_cross_entropy", "labels is NULL");
    if (!(smoothing >= 0.0f && smoothing < 1.0f))
        return nn__fail(g, "nn_softmax_cross_entropy", "smoothing %g is outside [0, 1)",
                        (double)smoothing);
    int N = logits->shape[0], C = logits->shape[1];
    for (int i = 0; i < N; i++)
        if (labels[i] < 0 || labels[i] >= C)
            return nn__fail(g, "nn_softmax_cross_entropy",
                            "label %d of example %d is outside [0, %d) for logits %s", labels[i],
                            i, C, nn__shape(logits, &s));
    float *prob = nn__arena_alloc(g, logits->size * sizeof(float));
    double *row_loss = nn__arena_alloc(g, (size_t)N * sizeof(double));
    nn_tensor *loss = nn__new_output(g, 1, (int[]){1});
    if (!prob || !row_loss || !loss) return NULL;
    loss->data[0] = (float)nn_k_softmax_xent(N, C, logits->data, labels, smoothing, prob, row_loss);
    nn_node *n = nn__record(g, xent_backward, loss, &logits, 1);
    if (n) {
        n->aux = prob;
        n->ptr = labels;
        n->farg[0] = smoothing;
    }
    return loss;
}

static void mse_backward(nn_graph *g, const nn_node *n)
{
    nn_tensor *p = n->in[0], *t = n->in[1];
    float s = 2.0f * n->out->grad[0] / (float)p->size;
    float *dp = nn__grad(g, p), *dt = nn__grad(g, t);
    if (dp) nn_k_diff_scaled_acc(p->size, s, p->data, t->data, dp);
    if (dt) nn_k_diff_scaled_acc(p->size, -s, p->data, t->data, dt);
}

nn_tensor *nn_mse(nn_graph *g, nn_tensor *pred, nn_tensor *target)
{
    nn_tensor *in[2] = {pred, target};
    if (!nn__inputs_ok(g, "nn_mse", in, 2)) return NULL;
    if (!nn_tensor_same_shape(pred, target)) {
        nn__shape_buf a, b;
        return nn__fail(g, "nn_mse", "shapes must be equal: pred %s vs target %s",
                        nn__shape(pred, &a), nn__shape(target, &b));
    }
    nn_tensor *loss = nn__new_output(g, 1, (int[]){1});
    if (!loss) return NULL;
    loss->data[0] = (float)(nn_k_sq_diff_sum(pred->size, pred->data, target->data) / pred->size);
    nn__record(g, mse_backward, loss, in, 2);
    return loss;
}

static void bce_backward(nn_graph *g, const nn_node *n)
{
    nn_tensor *x = n->in[0], *t = n->in[1];
    float *dx = nn__grad(g, x), *dt = nn__grad(g, t);
    nn_k_bce_logits_bwd_acc(x->size, n->out->grad[0] / (float)x->size, x->data, t->data, dx, dt);
}

nn_tensor *nn_bce_with_logits(nn_graph *g, nn_tensor *logits, nn_tensor *targets)
{
    nn_tensor *in[2] = {logits, targets};
    if (!nn__inputs_ok(g, "nn_bce_with_logits", in, 2)) return NULL;
    if (!nn_tensor_same_shape(logits, targets)) {
        nn__shape_buf a, b;
        return nn__fail(g, "nn_bce_with_logits", "shapes must be equal: logits %s vs targets %s",
                        nn__shape(logits, &a), nn__shape(targets, &b));
    }
    nn_tensor *loss = nn__new_output(g, 1, (int[]){1});
    if (!loss) return NULL;
    loss->data[0] = (float)(nn_k_bce_logits(logits->size, logits->data, targets->data) / logits->size);
    nn__record(g, bce_backward, loss, in, 2);
    return loss;
}
