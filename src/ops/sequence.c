/* Sequence layout ops: swapping the time and batch axes, and picking one
 * time step. Both only move rows (memcpy); no float arithmetic. */
#include <string.h>

#include "nn/ops.h"

#include "../autograd/graph_internal.h"
#include "../kernels/kernels.h"

/* Rows of x (A, B, R) copied to y (B, A, R), or added when add is set. */
static void swap01_rows(const float *x, float *y, int a_dim, int b_dim, size_t row, int add)
{
    for (int a = 0; a < a_dim; a++)
        for (int b = 0; b < b_dim; b++) {
            const float *src = x + ((size_t)a * b_dim + b) * row;
            float *dst = y + ((size_t)b * a_dim + a) * row;
            if (add)
                nn_k_axpy(row, 1.0f, src, dst);
            else
                memcpy(dst, src, row * sizeof(float));
        }
}

static void transpose01_backward(nn_graph *g, const nn_node *n)
{
    float *dx = nn__grad(g, n->in[0]);
    if (dx) swap01_rows(n->out->grad, dx, n->out->shape[0], n->out->shape[1], (size_t)n->iarg[0], 1);
}

nn_tensor *nn_transpose01(nn_graph *g, nn_tensor *x)
{
    if (!nn__inputs_ok(g, "nn_transpose01", &x, 1)) return NULL;
    if (x->ndim < 2) {
        nn__shape_buf sx;
        return nn__fail(g, "nn_transpose01", "input needs at least 2 dims, got %s", nn__shape(x, &sx));
    }
    int shape[NN_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] = x->shape[1];
    shape[1] = x->shape[0];
    size_t row = x->size / ((size_t)x->shape[0] * x->shape[1]);
    nn_tensor *y = nn__new_output(g, x->ndim, shape);
    if (!y) return NULL;
    swap01_rows(x->data, y->data, x->shape[0], x->shape[1], row, 0);
    nn_node *n = nn__record(g, transpose01_backward, y, &x, 1);
    if (n) n->iarg[0] = (int)row;
    return y;
}

/* Row r of the selected step: x's row (step, r) time-major or (r, step)
 * batch-first. */
static size_t step_row(const nn_tensor *x, int step, int r, int time_axis)
{
    return time_axis == 0 ? (size_t)step * x->shape[1] + r : (size_t)r * x->shape[1] + step;
}

static void select_step_backward(nn_graph *g, const nn_node *n)
{
    float *dx = nn__grad(g, n->in[0]);
    if (!dx) return;
    const nn_tensor *x = n->in[0];
    int rows = n->out->shape[0], width = n->out->shape[1];
    for (int r = 0; r < rows; r++)
        nn_k_axpy((size_t)width, 1.0f, n->out->grad + (size_t)r * width,
                  dx + step_row(x, n->iarg[0], r, n->iarg[1]) * width);
}

nn_tensor *nn_select_step(nn_graph *g, nn_tensor *x, int step, int time_axis)
{
    if (!nn__inputs_ok(g, "nn_select_step", &x, 1)) return NULL;
    nn__shape_buf sx;
    if (x->ndim != 3 || (time_axis != 0 && time_axis != 1))
        return nn__fail(g, "nn_select_step", "input must be 3-D with time axis 0 or 1, got %s, axis %d",
                        nn__shape(x, &sx), time_axis);
    int steps = x->shape[time_axis];
    int t = step < 0 ? steps + step : step;
    if (t < 0 || t >= steps)
        return nn__fail(g, "nn_select_step", "step %d out of range for %d steps in %s", step, steps,
                        nn__shape(x, &sx));
    int rows = x->shape[1 - time_axis], width = x->shape[2];
    nn_tensor *y = nn__new_output(g, 2, (int[]){rows, width});
    if (!y) return NULL;
    for (int r = 0; r < rows; r++)
        memcpy(y->data + (size_t)r * width, x->data + step_row(x, t, r, time_axis) * width,
               (size_t)width * sizeof(float));
    nn_node *n = nn__record(g, select_step_backward, y, &x, 1);
    if (n) {
        n->iarg[0] = t;
        n->iarg[1] = time_axis;
    }
    return y;
}
