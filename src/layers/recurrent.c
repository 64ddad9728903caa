/* Stacked LSTM / Elman RNN layers (PyTorch parameter layout). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "nn/ops.h"
#include "layer_internal.h"
#include "../autograd/graph_internal.h"

typedef struct recurrent {
    nn_layer base;
    nn_cell cell;
    int input, hidden, layers;
    int batch_first; /* input and output (B, T, F) instead of (T, B, F) */
    nn_tensor **w_ih, **w_hh, **b_ih, **b_hh; /* one per layer */
} recurrent;

static int is_recurrent(const nn_layer *l);

nn_tensor *nn_recurrent_forward(nn_layer *l, nn_graph *g, nn_tensor *x, nn_tensor *h0,
                                nn_tensor *c0, nn_tensor *h_n, nn_tensor *c_n)
{
    const char *op = "recurrent layer";
    if (!is_recurrent(l)) return nn__fail(g, op, "not an LSTM or RNN layer");
    recurrent *r = (recurrent *)l;
    op = r->cell == NN_CELL_LSTM ? "lstm" : "rnn";
    if (!nn__inputs_ok(g, op, &x, 1)) return NULL;
    nn__shape_buf sx, ss;
    if (x->ndim != 3 || x->shape[2] != r->input)
        return nn__fail(g, op, "input must be (T, B, %d), got %s", r->input, nn__shape(x, &sx));
    size_t want = (size_t)r->layers * x->shape[1] * r->hidden;
    nn_tensor *states[4] = {h0, c0, h_n, c_n};
    for (int k = 0; k < 4; k++)
        if (states[k] && states[k]->size != want)
            return nn__fail(g, op, "state must be (%d, %d, %d) for input %s, got %s", r->layers,
                            x->shape[1], r->hidden, nn__shape(x, &sx), nn__shape(states[k], &ss));
    size_t per_layer = (size_t)x->shape[1] * r->hidden;
    for (int k = 0; k < r->layers && x; k++)
        x = nn_recurrent(g, r->cell, x, r->w_ih[k], r->w_hh[k], r->b_ih[k], r->b_hh[k], h0, c0,
                         k * per_layer, h_n, c_n);
    return x;
}

static nn_tensor *recurrent_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    if (!((recurrent *)l)->batch_first) return nn_recurrent_forward(l, g, x, NULL, NULL, NULL, NULL);
    return nn_transpose01(g, nn_recurrent_forward(l, g, nn_transpose01(g, x), NULL, NULL, NULL, NULL));
}

static void recurrent_config(const nn_layer *l, nn_layer_config *c)
{
    const recurrent *r = (const recurrent *)l;
    c->in = r->input;
    c->out = r->hidden;
    c->num_layers = r->layers;
    c->batch_first = r->batch_first;
}

static nn_status recurrent_params(nn_layer *l, const char *prefix, nn_params *out)
{
    recurrent *r = (recurrent *)l;
    for (int k = 0; k < r->layers; k++) {
        char name[64];
        nn_tensor *t[4] = {r->w_ih[k], r->w_hh[k], r->b_ih[k], r->b_hh[k]};
        const char *base[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
        for (int j = 0; j < 4; j++) {
            snprintf(name, sizeof name, "%s_l%d", base[j], k);
            nn_status s = nn__params_add_prefixed(out, prefix, name, t[j]);
            if (s) return s;
        }
    }
    return NN_OK;
}

static void recurrent_destroy(nn_layer *l)
{
    recurrent *r = (recurrent *)l;
    for (int k = 0; k < r->layers; k++) {
        if (r->w_ih) nn_tensor_free(r->w_ih[k]);
        if (r->w_hh) nn_tensor_free(r->w_hh[k]);
        if (r->b_ih) nn_tensor_free(r->b_ih[k]);
        if (r->b_hh) nn_tensor_free(r->b_hh[k]);
    }
    free(r->w_ih);
    free(r->w_hh);
    free(r->b_ih);
    free(r->b_hh);
    free(r);
}

static const nn_layer_vtable lstm_vt = {"lstm", recurrent_forward, recurrent_params, NULL,
                                        recurrent_destroy, recurrent_config};
static const nn_layer_vtable rnn_vt = {"rnn", recurrent_forward, recurrent_params, NULL,
                                       recurrent_destroy, recurrent_config};

static int is_recurrent(const nn_layer *l) { return l && (l->vt == &lstm_vt || l->vt == &rnn_vt); }

static nn_layer *recurrent_new(nn_cell cell, int input, int hidden, int layers, nn_rng *rng)
{
    const char *fn = cell == NN_CELL_LSTM ? "nn_lstm_new" : "nn_rnn_new";
    if (input < 1 || hidden < 1 || layers < 1 || !rng)
        return nn__layer_fail("%s: need input_size, hidden_size, num_layers >= 1 and an rng, got %d, "
                              "%d, %d%s", fn, input, hidden, layers, rng ? "" : ", rng NULL");
    recurrent *r = calloc(1, sizeof *r);
    if (!r) return nn__layer_fail("%s: out of memory", fn);
    r->base.vt = cell == NN_CELL_LSTM ? &lstm_vt : &rnn_vt;
    r->base.training = 1;
    r->cell = cell;
    r->input = input;
    r->hidden = hidden;
    r->layers = layers;
    r->w_ih = calloc((size_t)layers, sizeof *r->w_ih);
    r->w_hh = calloc((size_t)layers, sizeof *r->w_hh);
    r->b_ih = calloc((size_t)layers, sizeof *r->b_ih);
    r->b_hh = calloc((size_t)layers, sizeof *r->b_hh);
    if (!r->w_ih || !r->w_hh || !r->b_ih || !r->b_hh) goto fail;
    int gh = (cell == NN_CELL_LSTM ? 4 : 1) * hidden;
    float a = 1.0f / sqrtf((float)hidden);
    for (int k = 0; k < layers; k++) {
        r->w_ih[k] = nn__param_new(2, (int[]){gh, k ? hidden : input});
        r->w_hh[k] = nn__param_new(2, (int[]){gh, hidden});
        r->b_ih[k] = nn__param_new(1, (int[]){gh});
        r->b_hh[k] = nn__param_new(1, (int[]){gh});
        if (!r->w_ih[k] || !r->w_hh[k] || !r->b_ih[k] || !r->b_hh[k]) goto fail;
        nn_tensor_uniform(r->w_ih[k], rng, -a, a);
        nn_tensor_uniform(r->w_hh[k], rng, -a, a);
        nn_tensor_uniform(r->b_ih[k], rng, -a, a);
        nn_tensor_uniform(r->b_hh[k], rng, -a, a);
        if (cell == NN_CELL_LSTM)
            for (int j = hidden; j < 2 * hidden; j++) { /* forget gate block */
                r->b_ih[k]->data[j] = 1.0f;
                r->b_hh[k]->data[j] = 0.0f;
            }
    }
    return &r->base;
fail:
    recurrent_destroy(&r->base);
    return nn__layer_fail("%s: out of memory", fn);
}

nn_layer *nn_lstm_new(int input_size, int hidden_size, int num_layers, nn_rng *rng)
{
    return recurrent_new(NN_CELL_LSTM, input_size, hidden_size, num_layers, rng);
}

nn_layer *nn_rnn_new(int input_size, int hidden_size, int num_layers, nn_rng *rng)
{
    return recurrent_new(NN_CELL_RNN, input_size, hidden_size, num_layers, rng);
}

int nn_recurrent_hidden_size(const nn_layer *l)
{
    return is_recurrent(l) ? ((const recurrent *)l)->hidden : 0;
}

int nn_recurrent_num_layers(const nn_layer *l)
{
    return is_recurrent(l) ? ((const recurrent *)l)->layers : 0;
}

nn_status nn_recurrent_set_batch_first(nn_layer *l, int batch_first)
{
    if (!is_recurrent(l)) return NN_ERR_ARG;
    ((recurrent *)l)->batch_first = batch_first != 0;
    return NN_OK;
}

/* ---- select_step: one time step of a sequence --------------------------- */

typedef struct select_step {
    nn_layer base;
    int step, batch_first;
} select_step;

static nn_tensor *select_step_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    select_step *s = (select_step *)l;
    return nn_select_step(g, x, s->step, s->batch_first);
}

static void select_step_config(const nn_layer *l, nn_layer_config *c)
{
    c->step = ((const select_step *)l)->step;
    c->batch_first = ((const select_step *)l)->batch_first;
}

static void select_step_destroy(nn_layer *l) { free(l); }

static const nn_layer_vtable select_step_vt = {"select_step", select_step_forward, NULL, NULL,
                                               select_step_destroy, select_step_config};

nn_layer *nn_select_step_new(int step, int batch_first)
{
    select_step *s = calloc(1, sizeof *s);
    if (!s) return nn__layer_fail("nn_select_step_new: out of memory");
    s->base.vt = &select_step_vt;
    s->base.training = 1;
    s->step = step;
    s->batch_first = batch_first != 0;
    return &s->base;
}
