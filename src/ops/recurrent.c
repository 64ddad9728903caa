/* LSTM and Elman RNN layers over a sequence, with backprop through time. */
#include <string.h>

#include "nn/ops.h"

#include "../autograd/graph_internal.h"
#include "../kernels/kernels.h"

typedef struct rnn_info {
    nn_cell cell;
    int T, B, I, H, G;
    size_t offset; /* of this layer's state inside h0/c0 */
    float *cs;     /* LSTM cell states (T, B, H) */
    /* Copies of the initial state (NULL: zeros), taken before the forward
     * pass may overwrite it: callers carrying state pass the same tensor as
     * h0 and h_n. */
    float *h_init, *c_init;
    const int *one_hot; /* each input row's column when x is one-hot, else NULL */
    float *one_hot_scratch; /* I x GH floats: W_ih^T in the forward, row sums in the backward */
} rnn_info;

/* Arena copy of n floats of t at offset, or NULL when t is NULL. */
static float *snapshot(nn_graph *g, const nn_tensor *t, size_t offset, size_t n, int *oom)
{
    if (!t) return NULL;
    float *p = nn__arena_alloc(g, n * sizeof(float));
    if (!p) {
        *oom = 1;
        return NULL;
    }
    memcpy(p, t->data + offset, n * sizeof(float));
    return p;
}

/* The time loops run each batch row's recurrence on its own (rows never
 * mix), so for a large enough batch the threads split it and run all T
 * steps without synchronizing, with W_hh packed once for every step's GEMM;
 * every row's result is the same whatever the split. Rows are split at
 * multiples of the GEMM's 8-row tile. A small batch runs whole, each step's
 * GEMM threaded by itself. */
#define ROW_ALIGN 8

typedef struct bptt_ctx {
    const rnn_info *r;
    const float *w_hh, *w_packed; /* W_hh as the GEMM's B, packed once (or NULL) */
    float *gates, *hs; /* activated gates and hidden states: the forward writes them */
    const float *dhs;  /* the backward's incoming gradient */
    float *dz, *dh_next, *dc, *dh;
    float *dz_block_sums; /* (B / ROW_ALIGN rounded up) x G*H: dz summed per block of batch rows, or NULL */
} bptt_ctx;

/* 1: split the batch (and pack W_hh once); chosen by shape alone, so that
 * the path, and the bits, do not depend on the thread count. */
static int split_rows(const rnn_info *r)
{
    return (double)r->T * r->B * r->G * r->H * r->H >= 4e6 && r->B >= 2 * ROW_ALIGN;
}

/* C (M x N) = A op(W_hh) + beta C for a block of rows: from the packed
 * W_hh when there is one (tb as it was packed with), else packing itself. */
static void w_hh_gemm(const bptt_ctx *x, int tb, int M, int N, int K, const float *A, int lda,
                      float beta, float *C, int ldc)
{
    if (x->w_packed)
        nn_sgemm_packed_b(tb, M, N, K, 1.0f, A, lda, x->w_hh, x->r->H, x->w_packed, beta, C, ldc);
    else
        nn_sgemm(0, tb, M, N, K, 1.0f, A, lda, x->w_hh, x->r->H, beta, C, ldc);
}

/* W_hh packed once as op(W_hh) (K x N) for the split path; NULL when the
 * batch is not split. *ok is 0 if memory ran out. */
static const float *pack_w_hh(nn_graph *g, const rnn_info *r, int tb, int K, int N, const float *w,
                              int *ok)
{
    *ok = 1;
    if (!split_rows(r)) return NULL;
    float *wp = nn__arena_alloc(g, nn_k_packed_b_floats(K, N) * sizeof(float));
    if (!wp) {
        *ok = 0;
        return NULL;
    }
    nn_k_pack_b(tb, K, N, w, r->H, wp);
    return wp;
}

/* Forward steps 0..T-1 for batch rows [b0, b1): z += h_{t-1} W_hh^T, then
 * the cell. */
static void forward_rows(void *p, int b0, int b1, int slot)
{
    (void)slot;
    const bptt_ctx *x = p;
    const rnn_info *r = x->r;
    int B = r->B, H = r->H, GH = r->G * r->H, nb = b1 - b0;
    size_t bh = (size_t)B * H, bgh = (size_t)B * GH;
    for (int t = 0; t < r->T; t++) {
        const float *hprev = t ? x->hs + (size_t)(t - 1) * bh : r->h_init;
        float *z = x->gates + (size_t)t * bgh + (size_t)b0 * GH;
        float *ht = x->hs + (size_t)t * bh + (size_t)b0 * H;
        if (hprev) w_hh_gemm(x, 1, nb, GH, H, hprev + (size_t)b0 * H, H, 1.0f, z, GH);
        if (r->cell == NN_CELL_LSTM) {
            const float *c_prev = t ? r->cs + (size_t)(t - 1) * bh : r->c_init;
            nn_k_lstm_cell(nb, H, z, c_prev ? c_prev + (size_t)b0 * H : NULL,
                           r->cs + (size_t)t * bh + (size_t)b0 * H, ht);
        } else {
            nn_k_tanh((size_t)nb * H, z, ht);
        }
    }
}

/* Backward steps T-1..0 for batch rows [b0, b1): the cell's gradient into
 * dz, then the gradient reaching h_{t-1} through W_hh. */
static void bptt_rows(void *p, int b0, int b1, int slot)
{
    (void)slot;
    const bptt_ctx *x = p;
    const rnn_info *r = x->r;
    int B = r->B, H = r->H, GH = r->G * r->H, nb = b1 - b0;
    size_t bh = (size_t)B * H, bgh = (size_t)B * GH, rh = (size_t)b0 * H;
    float *dh = x->dh + rh, *dh_next = x->dh_next + rh, *dc = x->dc + rh;
    for (int t = r->T - 1; t >= 0; t--) {
        nn_k_add((size_t)nb * H, x->dhs + (size_t)t * bh + rh, dh_next, dh);
        float *dzt = x->dz + (size_t)t * bgh + (size_t)b0 * GH;
        if (r->cell == NN_CELL_LSTM) {
            const float *c_prev = t ? r->cs + (size_t)(t - 1) * bh : r->c_init;
            nn_k_lstm_cell_bwd(nb, H, x->gates + (size_t)t * bgh + (size_t)b0 * GH,
                               c_prev ? c_prev + rh : NULL, r->cs + (size_t)t * bh + rh, dh, dc,
                               dzt);
        } else {
            nn_k_rnn_cell_bwd((size_t)nb * H, x->hs + (size_t)t * bh + rh, dh, dzt);
        }
        /* the bias gradients' sums, while dz's rows are in cache */
        if (x->dz_block_sums)
            nn_k_row_block_sums_acc(nb, GH, dzt, ROW_ALIGN, x->dz_block_sums + (size_t)(b0 / ROW_ALIGN) * GH);
        w_hh_gemm(x, 0, nb, H, GH, dzt, GH, 0.0f, dh_next, H);
    }
}

static void recurrent_backward(nn_graph *g, const nn_node *n)
{
    const rnn_info *r = n->ptr;
    nn_tensor *x = n->in[0], *w_ih = n->in[1], *w_hh = n->in[2], *b_ih = n->in[3],
              *b_hh = n->in[4], *h0 = n->in[5], *c0 = n->in[6];
    int T = r->T, B = r->B, I = r->I, H = r->H, GH = r->G * r->H;
    size_t bh = (size_t)B * H, bgh = (size_t)B * GH;
    float *gates = n->aux, *hs = n->out->data;
    const float *dhs = n->out->grad;
    float *dz = nn__arena_alloc(g, (size_t)T * bgh * sizeof(float));
    float *dh_next = nn__arena_alloc(g, bh * sizeof(float));
    float *dc = nn__arena_alloc(g, bh * sizeof(float));
    float *dh = nn__arena_alloc(g, bh * sizeof(float));
    if (!dz || !dh_next || !dc || !dh) return;
    memset(dh_next, 0, bh * sizeof(float));
    memset(dc, 0, bh * sizeof(float));
    float *g_bih = nn__grad(g, b_ih), *g_bhh = nn__grad(g, b_hh);
    int blocks = (B + ROW_ALIGN - 1) / ROW_ALIGN;
    float *dz_sums = NULL;
    if (g_bih || g_bhh) {
        if (!(dz_sums = nn__arena_alloc(g, (size_t)blocks * GH * sizeof(float)))) return;
        memset(dz_sums, 0, (size_t)blocks * GH * sizeof(float));
    }
    int ok;
    const float *wp = pack_w_hh(g, r, 0, GH, H, w_hh->data, &ok);
    if (!ok) return;
    bptt_ctx ctx = {.r = r, .w_hh = w_hh->data, .w_packed = wp, .gates = gates, .hs = hs,
                    .dhs = dhs, .dz = dz, .dh_next = dh_next, .dc = dc, .dh = dh,
                    .dz_block_sums = dz_sums};
    nn_k_parallel_rows(B, ROW_ALIGN, wp != NULL, bptt_rows, &ctx);
    float *g_wih = nn__grad(g, w_ih), *g_whh = nn__grad(g, w_hh), *g_x = nn__grad(g, x);
    if (g_whh) {
        if (T > 1) /* steps 1..T-1 see h_0..h_{T-2}: one GEMM */
            nn_sgemm(1, 0, GH, H, (T - 1) * B, 1.0f, dz + bgh, GH, hs, H, 1.0f, g_whh, H);
        if (r->h_init) nn_sgemm(1, 0, GH, H, B, 1.0f, dz, GH, r->h_init, H, 1.0f, g_whh, H);
    }
    if (g_wih) {
        if (!r->one_hot || !nn_k_one_hot_grad_acc(T * B, GH, I, dz, r->one_hot, r->one_hot_scratch, g_wih))
            nn_sgemm(1, 0, GH, I, T * B, 1.0f, dz, GH, x->data, I, 1.0f, g_wih, I);
    }
    if (dz_sums) nn_k_two_bias_grads_acc(blocks, GH, dz_sums, g_bih, g_bhh); /* blocks in order */
    if (g_x) nn_sgemm(0, 0, T * B, I, GH, 1.0f, dz, GH, w_ih->data, I, 1.0f, g_x, I);
    float *g_h0 = nn__grad(g, h0), *g_c0 = r->cell == NN_CELL_LSTM ? nn__grad(g, c0) : NULL;
    if (g_h0) nn_k_axpy(bh, 1.0f, dh_next, g_h0 + r->offset);
    if (g_c0) nn_k_axpy(bh, 1.0f, dc, g_c0 + r->offset);
}

nn_tensor *nn_recurrent(nn_graph *g, nn_cell cell, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh,
                        nn_tensor *b_ih, nn_tensor *b_hh, nn_tensor *h0, nn_tensor *c0,
                        size_t state_offset, nn_tensor *h_n, nn_tensor *c_n)
{
    const char *op = cell == NN_CELL_LSTM ? "lstm" : "rnn";
    nn_tensor *in[7] = {x, w_ih, w_hh, b_ih, b_hh, h0, cell == NN_CELL_LSTM ? c0 : NULL};
    if (!nn__inputs_ok(g, op, in, 5)) return NULL;
    nn__shape_buf sx, sw, sh;
    int G = cell == NN_CELL_LSTM ? 4 : 1;
    if (x->ndim != 3)
        return nn__fail(g, op, "input must be (T, B, features), got %s", nn__shape(x, &sx));
    int T = x->shape[0], B = x->shape[1], I = x->shape[2];
    if (w_ih->ndim != 2 || w_ih->shape[1] != I || w_ih->shape[0] % G)
        return nn__fail(g, op, "weight_ih must be (%d*H, %d): x %s vs weight_ih %s", G, I,
                        nn__shape(x, &sx), nn__shape(w_ih, &sw));
    int H = w_ih->shape[0] / G, GH = G * H;
    if (w_hh->ndim != 2 || w_hh->shape[0] != GH || w_hh->shape[1] != H)
        return nn__fail(g, op, "weight_hh must be (%d, %d): weight_ih %s vs weight_hh %s", GH, H,
                        nn__shape(w_ih, &sw), nn__shape(w_hh, &sh));
    if (b_ih->size != (size_t)GH || b_hh->size != (size_t)GH)
        return nn__fail(g, op, "biases must have %d elements: bias_ih %s, bias_hh %s", GH,
                        nn__shape(b_ih, &sw), nn__shape(b_hh, &sh));
    size_t bh = (size_t)B * H, bgh = (size_t)B * GH;
    nn_tensor *states[4] = {h0, in[6], h_n, cell == NN_CELL_LSTM ? c_n : NULL};
    for (int k = 0; k < 4; k++)
        if (states[k] && (states[k]->size < state_offset || states[k]->size - state_offset < bh))
            return nn__fail(g, op, "state tensor %s too small for %d x %d at offset %zu",
                            nn__shape(states[k], &sx), B, H, state_offset);

    rnn_info *r = nn__arena_alloc(g, sizeof *r);
    float *gates = nn__arena_alloc(g, (size_t)T * bgh * sizeof(float));
    nn_tensor *hs = nn__new_output(g, 3, (int[]){T, B, H});
    if (!r || !gates || !hs) return NULL;
    int oom = 0;
    *r = (rnn_info){cell, T, B, I, H, G, state_offset, NULL, snapshot(g, h0, state_offset, bh, &oom),
                    snapshot(g, in[6], state_offset, bh, &oom), NULL, NULL};
    if (oom) return NULL;
    if (cell == NN_CELL_LSTM && !(r->cs = nn__arena_alloc(g, (size_t)T * bh * sizeof(float))))
        return NULL;

    /* Input projections of every step at once, then the biases. For
     * one-hot inputs (a character model's) the projection is a copy of a
     * column of W_ih per row, and W_ih's gradient sums of rows of the gates'
     * gradient: the GEMMs' results, at a fraction of their cost. */
    int *one_hot = nn__arena_alloc(g, (size_t)T * B * sizeof(int));
    float *wt = one_hot && nn_k_one_hot_rows((size_t)T * B, I, x->data, one_hot)
                    ? nn__arena_alloc(g, (size_t)I * GH * sizeof(float))
                    : NULL;
    if (wt) { /* the biases go into the copied rows */
        r->one_hot = one_hot;
        r->one_hot_scratch = wt;
        nn_k_one_hot_times_wt(T * B, GH, I, one_hot, w_ih->data, b_ih->data, b_hh->data, wt, gates);
    } else {
        nn_sgemm(0, 1, T * B, GH, I, 1.0f, x->data, I, w_ih->data, I, 0.0f, gates, GH);
        nn_k_add_two_biases(T * B, GH, gates, b_ih->data, b_hh->data, gates);
    }
    int ok;
    const float *wp = pack_w_hh(g, r, 1, H, GH, w_hh->data, &ok);
    if (!ok) return NULL;
    bptt_ctx ctx = {.r = r, .w_hh = w_hh->data, .w_packed = wp, .gates = gates, .hs = hs->data};
    nn_k_parallel_rows(B, ROW_ALIGN, wp != NULL, forward_rows, &ctx);
    if (h_n) memcpy(h_n->data + state_offset, hs->data + (size_t)(T - 1) * bh, bh * sizeof(float));
    if (c_n && cell == NN_CELL_LSTM)
        memcpy(c_n->data + state_offset, r->cs + (size_t)(T - 1) * bh, bh * sizeof(float));
    nn_node *n = nn__record(g, recurrent_backward, hs, in, 7);
    if (n) {
        n->ptr = r;
        n->aux = gates;
    }
    return hs;
}
