/* Elementwise arithmetic and activations. */
#include <string.h>

#include "nn/ops.h"

#include "../autograd/graph_internal.h"
#include "../kernels/kernels.h"
#include "ops_internal.h"

enum { OP_ADD, OP_SUB, OP_MUL };

static void binary_backward(nn_graph *g, const nn_node *n)
{
    nn_tensor *a = n->in[0], *b = n->in[1];
    const float *dy = n->out->grad;
    size_t len = n->out->size;
    if (n->iarg[0] == OP_ADD && a != b) { /* a new gradient buffer is written, not zeroed and added to */
        nn_tensor *in[2] = {a, b};
        for (int i = 0; i < 2; i++) {
            int fresh;
            if (i == 0 && nn__grad_adopt(a, n->out->grad)) continue;
            float *d = nn__grad_fresh(g, in[i], &fresh);
            if (d && fresh) nn_k_copy(len, dy, d);
            else if (d) nn_k_axpy(len, 1.0f, dy, d);
        }
        return;
    }
    float *da = nn__grad(g, a), *db = nn__grad(g, b);
    switch (n->iarg[0]) {
    case OP_ADD:
        if (da) nn_k_axpy(len, 1.0f, dy, da);
        if (db) nn_k_axpy(len, 1.0f, dy, db);
        break;
    case OP_SUB:
        if (da) nn_k_axpy(len, 1.0f, dy, da);
        if (db) nn_k_axpy(len, -1.0f, dy, db);
        break;
    default:
        if (da) nn_k_mul_acc(len, dy, b->data, da);
        if (db) nn_k_mul_acc(len, dy, a->data, db);
        break;
    }
}

/* a op b, in a new tensor or (over_b: addition only) in b's buffer. */
static nn_tensor *binary(nn_graph *g, const char *name, int op, nn_tensor *a, nn_tensor *b, int over_b)
{
    nn_tensor *in[2] = {a, b};
    if (!nn__inputs_ok(g, name, in, 2)) return NULL;
    if (!nn_tensor_same_shape(a, b)) {
        nn__shape_buf sa, sb;
        return nn__fail(g, name, "shapes must be equal: a %s vs b %s", nn__shape(a, &sa),
                        nn__shape(b, &sb));
    }
    nn_tensor *y = over_b ? nn__new_alias(g, b, b->ndim, b->shape) : nn__new_output(g, a->ndim, a->shape);
    if (!y) return NULL;
    if (op == OP_ADD)
        nn_k_add(a->size, a->data, b->data, y->data);
    else if (op == OP_SUB)
        nn_k_sub(a->size, a->data, b->data, y->data);
    else
        nn_k_mul(a->size, a->data, b->data, y->data);
    nn_node *n = nn__record(g, binary_backward, y, in, 2);
    if (n) n->iarg[0] = op;
    return y;
}

nn_tensor *nn_add(nn_graph *g, nn_tensor *a, nn_tensor *b) { return binary(g, "nn_add", OP_ADD, a, b, 0); }
nn_tensor *nn_sub(nn_graph *g, nn_tensor *a, nn_tensor *b) { return binary(g, "nn_sub", OP_SUB, a, b, 0); }
nn_tensor *nn_mul(nn_graph *g, nn_tensor *a, nn_tensor *b) { return binary(g, "nn_mul", OP_MUL, a, b, 0); }
/* the addition's backward reads neither input: b's buffer is free to take the sum */
nn_tensor *nn__add_over(nn_graph *g, nn_tensor *a, nn_tensor *b) { return binary(g, "nn_add", OP_ADD, a, b, 1); }

static void scale_backward(nn_graph *g, const nn_node *n)
{
    float *da = nn__grad(g, n->in[0]);
    if (da) nn_k_axpy(n->out->size, n->farg[0], n->out->grad, da);
}

nn_tensor *nn_scale(nn_graph *g, nn_tensor *a, float s)
{
    if (!nn__inputs_ok(g, "nn_scale", &a, 1)) return NULL;
    nn_tensor *y = nn__new_output(g, a->ndim, a->shape);
    if (!y) return NULL;
    nn_k_scale(a->size, s, a->data, y->data);
    nn_node *n = nn__record(g, scale_backward, y, &a, 1);
    if (n) n->farg[0] = s;
    return y;
}

/* Activations keep their output; each derivative is a function of it. */
typedef void (*act_fwd)(size_t, const float *, float *);

static void relu_backward(nn_graph *g, const nn_node *n)
{
    float *dx = nn__grad(g, n->in[0]);
    if (dx) nn_k_relu_bwd_acc(n->out->size, n->out->data, n->out->grad, dx);
}

static void sigmoid_backward(nn_graph *g, const nn_node *n)
{
    float *dx = nn__grad(g, n->in[0]);
    if (dx) nn_k_sigmoid_bwd_acc(n->out->size, n->out->data, n->out->grad, dx);
}

static void tanh_backward(nn_graph *g, const nn_node *n)
{
    float *dx = nn__grad(g, n->in[0]);
    if (dx) nn_k_tanh_bwd_acc(n->out->size, n->out->data, n->out->grad, dx);
}

static nn_tensor *activation(nn_graph *g, const char *name, nn_tensor *x, act_fwd fwd,
                             nn__backward_fn bwd)
{
    if (!nn__inputs_ok(g, name, &x, 1)) return NULL;
    nn_tensor *y = nn__new_output(g, x->ndim, x->shape);
    if (!y) return NULL;
    fwd(x->size, x->data, y->data);
    nn__record(g, bwd, y, &x, 1);
    return y;
}

nn_tensor *nn_relu(nn_graph *g, nn_tensor *x)
{
    return activation(g, "nn_relu", x, nn_k_relu, relu_backward);
}

nn_tensor *nn_sigmoid(nn_graph *g, nn_tensor *x)
{
    return activation(g, "nn_sigmoid", x, nn_k_sigmoid, sigmoid_backward);
}

nn_tensor *nn_tanh(nn_graph *g, nn_tensor *x)
{
    return activation(g, "nn_tanh", x, nn_k_tanh, tanh_backward);
}

static void leaky_relu_backward(nn_graph *g, const nn_node *n)
{
    float *dx = nn__grad(g, n->in[0]);
    if (dx) nn_k_leaky_relu_bwd_acc(n->out->size, n->farg[0], n->in[0]->data, n->out->grad, dx);
}

nn_tensor *nn_leaky_relu(nn_graph *g, nn_tensor *x, float slope)
{
    if (!nn__inputs_ok(g, "nn_leaky_relu", &x, 1)) return NULL;
    if (!(slope >= 0.0f && slope < 1.0f))
        return nn__fail(g, "nn_leaky_relu", "slope %g is outside [0, 1)", (double)slope);
    nn_tensor *y = nn__new_output(g, x->ndim, x->shape);
    if (!y) return NULL;
    nn_k_leaky_relu(x->size, slope, x->data, y->data);
    nn_node *n = nn__record(g, leaky_relu_backward, y, &x, 1);
    if (n) n->farg[0] = slope;
    return y;
}

nn_tensor *nn_detach(nn_graph *g, nn_tensor *x)
{
    if (!nn__inputs_ok(g, "nn_detach", &x, 1)) return NULL;
    return nn__new_alias(g, x, x->ndim, x->shape); /* never recorded: no gradient path */
}
