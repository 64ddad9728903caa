/* int8 LSTM / Elman RNN layers: the matrix products of every step in
 * int8 with int32 sums, the gates and the cell state in float. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/graph.h"
#include "nn/ops.h"
#include "nn/quant.h"
#include "../io/safetensors_internal.h"
#include "../kernels/kernels.h"
#include "quant_internal.h"

#define META_KIND "nn.recurrent"
#define META_SIZES "nn.recurrent_sizes" /* "input,hidden,layers,batch_first" */

/* One stacked layer. Weights per gate row (G rows): int8 values (G, in)
 * and (G, H) as saved, and packed for the kernels (rows rounded up to
 * Gp, a multiple of 16). */
typedef struct qlayer {
    int in;
    int8_t *w_ih, *w_hh;
    float *s_ih, *s_hh;      /* per-row weight scales (Gp each) */
    float *bias, *zero;      /* b_ih + b_hh, and zeros (Gp each) */
    float in_scale, h_scale; /* the input's and the previous hidden state's */
    float *dq_ih, *dq_hh;    /* a product's scale: weight row scale x activation scale (Gp) */
    int8_t *p_ih, *p_hh;
    int32_t *ws_ih, *ws_hh;
} qlayer;

struct nn_qrecurrent {
    int lstm, input, hidden, layers, batch_first, G, Gp;
    qlayer *l;
    /* working memory, grown to the largest T x B seen */
    size_t cap_rows;
    uint8_t *xq;       /* quantized inputs of a layer (T*B rows) */
    float *zin, *seq;  /* input products (T*B, Gp); a layer's outputs (T*B, H) */
    size_t cap_b;
    uint8_t *hq;
    float *zh, *z, *h, *c, *c2; /* per step (B, ...) */
};

static int round4(int n) { return (n + 3) / 4 * 4; }

/* ---- building ------------------------------------------------------------- */

static void free_layer(qlayer *l)
{
    free(l->w_ih);
    free(l->w_hh);
    free(l->s_ih);
    free(l->s_hh);
    free(l->bias);
    free(l->zero);
    free(l->dq_ih);
    free(l->dq_hh);
    free(l->p_ih);
    free(l->p_hh);
    free(l->ws_ih);
    free(l->ws_hh);
}

/* Scratch sized by the positions of a call, and by its batch. */
static void free_row_scratch(nn_qrecurrent *q)
{
    free(q->xq);
    free(q->zin);
    free(q->seq);
}

static void free_batch_scratch(nn_qrecurrent *q)
{
    free(q->hq);
    free(q->zh);
    free(q->z);
    free(q->h);
    free(q->c);
    free(q->c2);
}

void nn_qrecurrent_free(nn_qrecurrent *q)
{
    if (!q) return;
    for (int k = 0; q->l && k < q->layers; k++) free_layer(&q->l[k]);
    free(q->l);
    free_row_scratch(q);
    free_batch_scratch(q);
    free(q);
}

static nn_qrecurrent *qrecurrent_new(int lstm, int input, int hidden, int layers, int batch_first)
{
    nn_qrecurrent *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->lstm = lstm;
    q->input = input;
    q->hidden = hidden;
    q->layers = layers;
    q->batch_first = batch_first;
    q->G = (lstm ? 4 : 1) * hidden;
    q->Gp = (q->G + 15) / 16 * 16;
    q->l = calloc((size_t)layers, sizeof *q->l);
    if (!q->l) goto fail;
    for (int k = 0; k < layers; k++) {
        qlayer *l = &q->l[k];
        l->in = k ? hidden : input;
        size_t gp = (size_t)q->Gp;
        l->w_ih = calloc((size_t)q->G * l->in, 1);
        l->w_hh = calloc((size_t)q->G * hidden, 1);
        l->s_ih = calloc(gp, sizeof(float));
        l->s_hh = calloc(gp, sizeof(float));
        l->bias = calloc(gp, sizeof(float));
        l->zero = calloc(gp, sizeof(float));
        l->dq_ih = calloc(gp, sizeof(float));
        l->dq_hh = calloc(gp, sizeof(float));
        l->p_ih = malloc(nn_k_q8_packed_bytes(q->G, l->in, 1, 0));
        l->p_hh = malloc(nn_k_q8_packed_bytes(q->G, hidden, 1, 0));
        l->ws_ih = malloc(gp * sizeof(int32_t));
        l->ws_hh = malloc(gp * sizeof(int32_t));
        if (!l->w_ih || !l->w_hh || !l->s_ih || !l->s_hh || !l->bias || !l->zero || !l->dq_ih || !l->dq_hh || !l->p_ih || !l->p_hh ||
            !l->ws_ih || !l->ws_hh)
            goto fail;
    }
    return q;
fail:
    nn_qrecurrent_free(q);
    return NULL;
}

/* Pack int8 weights for the kernel: from their exact float values with
 * unit scales, so packing adds no second rounding (a loaded file packs
 * the same bytes). */
static int pack_rows(int rows, int cols, const int8_t *qw, int8_t *dst, int32_t *wsum)
{
    float *wf = malloc(sizeof(float) * (size_t)rows * cols), *ones = malloc(sizeof(float) * (size_t)rows);
    if (!wf || !ones) {
        free(wf);
        free(ones);
        return 0;
    }
    for (size_t i = 0; i < (size_t)rows * cols; i++) wf[i] = qw[i];
    for (int r = 0; r < rows; r++) ones[r] = 1.0f;
    nn_k_q8_pack(rows, cols, 1, 0, wf, ones, dst, wsum);
    free(wf);
    free(ones);
    return 1;
}

/* Packed weights and product scales, once the int8 weights and all
 * scales are set (quantized or loaded). */
static int finish_layers(nn_qrecurrent *q)
{
    for (int k = 0; k < q->layers; k++) {
        qlayer *l = &q->l[k];
        for (int j = 0; j < q->G; j++) {
            l->dq_ih[j] = l->s_ih[j] * l->in_scale;
            l->dq_hh[j] = l->s_hh[j] * l->h_scale;
        }
        if (!pack_rows(q->G, l->in, l->w_ih, l->p_ih, l->ws_ih) ||
            !pack_rows(q->G, q->hidden, l->w_hh, l->p_hh, l->ws_hh))
            return 0;
    }
    return 1;
}

/* ---- calibration -------------------------------------------------------------- */

/* The float weights of one layer, looked up by their PyTorch names. */
typedef struct float_layer {
    nn_tensor *w_ih, *w_hh, *b_ih, *b_hh;
} float_layer;

static int find_weights(nn_layer *rnn, int layers, float_layer *fl)
{
    nn_params p;
    nn_params_init(&p);
    if (nn_layer_params(rnn, &p) != NN_OK) return 0;
    int found = 0;
    for (int k = 0; k < layers; k++) {
        const char *base[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
        nn_tensor **dst[4] = {&fl[k].w_ih, &fl[k].w_hh, &fl[k].b_ih, &fl[k].b_hh};
        for (int j = 0; j < 4; j++) {
            char name[64];
            snprintf(name, sizeof name, "%s_l%d", base[j], k);
            for (int i = 0; i < p.count; i++)
                if (!strcmp(p.names[i], name)) {
                    *dst[j] = p.tensors[i];
                    found++;
                }
        }
    }
    nn_params_free(&p);
    return found == 4 * layers;
}

/* Scales from running the float layers (nn_recurrent, one layer at a
 * time, from a zero state) over calib in the layer's layout: each layer's
 * largest |input| and largest |h| a step reads (the outputs of steps 0 to
 * T - 2). 0 if memory ran out, -1 on a NaN or infinity. */
static int calibrate(nn_qrecurrent *q, const float_layer *fl, int T, int B, const float *calib)
{
    nn_graph *g = nn_graph_new();
    if (!g) return 0;
    nn_graph_set_grad_enabled(g, 0);
    nn_graph_set_abort_on_error(g, 0);
    int F = q->input, H = q->hidden, ok = 1;
    size_t rows = (size_t)T * B;
    nn_tensor *x = nn_graph_tensor(g, 3, (int[]){T, B, F});
    if (!x) ok = 0;
    for (int b = 0; ok && b < B; b++) /* time-major, as nn_recurrent reads it */
        for (int t = 0; t < T; t++) {
            size_t from = q->batch_first ? (size_t)b * T + t : (size_t)t * B + b;
            memcpy(x->data + ((size_t)t * B + b) * F, calib + from * F, sizeof(float) * (size_t)F);
        }
    for (int k = 0; ok && k < q->layers; k++) {
        qlayer *l = &q->l[k];
        nn_tensor *y = nn_recurrent(g, q->lstm ? NN_CELL_LSTM : NN_CELL_RNN, x, fl[k].w_ih, fl[k].w_hh, fl[k].b_ih,
                                    fl[k].b_hh, NULL, NULL, 0, NULL, NULL);
        if (!y) {
            ok = 0;
            break;
        }
        float x_max = nn_k_max_abs((int)rows, l->in, l->in, x->data);
        float h_max = T > 1 ? nn_k_max_abs((T - 1) * B, H, H, y->data) : 0.0f;
        if (!isfinite(x_max) || !isfinite(nn_k_max_abs((int)rows, H, H, y->data))) {
            ok = -1;
            break;
        }
        l->in_scale = x_max > 0.0f ? x_max / 127.0f : 1.0f;
        l->h_scale = h_max > 0.0f ? h_max / 127.0f : 1.0f;
        x = y;
    }
    nn_graph_free(g);
    return ok;
}

nn_qrecurrent *nn_quantize_recurrent(nn_layer *rnn, int T, int B, const float *calib, nn_error *err)
{
    const char *who = "nn_quantize_recurrent";
    const char *kind = rnn ? nn_layer_kind(rnn) : "";
    if (!rnn || (strcmp(kind, "lstm") && strcmp(kind, "rnn"))) {
        nn_error_set(err, NN_ERR_ARG, "%s: need an LSTM or RNN layer (nn_lstm_new, nn_rnn_new), got %s", who,
                     rnn ? kind : "NULL");
        return NULL;
    }
    if (!calib || T < 1 || B < 1 || (double)T * B > 1e8) {
        nn_error_set(err, NN_ERR_ARG, "%s: need calibration inputs of T x B sequence steps with T, B >= 1 "
                                      "(and T*B at most 1e8), got T %d, B %d%s", who, T, B,
                     calib ? "" : ", calib NULL");
        return NULL;
    }
    nn_layer_config cfg = nn_layer_get_config(rnn);
    nn_qrecurrent *q = qrecurrent_new(!strcmp(kind, "lstm"), cfg.in, cfg.out, cfg.num_layers, cfg.batch_first);
    float_layer *fl = q ? calloc((size_t)q->layers, sizeof *fl) : NULL;
    int ok = fl && find_weights(rnn, q->layers, fl) ? calibrate(q, fl, T, B, calib) : 0;
    for (int k = 0; ok > 0 && k < q->layers; k++) {
        qlayer *l = &q->l[k];
        size_t G = (size_t)q->G, H = (size_t)q->hidden;
        nn_k_q8_weight_scales(q->G, (size_t)l->in, fl[k].w_ih->data, l->s_ih);
        nn_k_q8_round_weights(G * l->in, (size_t)l->in, fl[k].w_ih->data, l->s_ih, l->w_ih);
        nn_k_q8_weight_scales(q->G, H, fl[k].w_hh->data, l->s_hh);
        nn_k_q8_round_weights(G * H, H, fl[k].w_hh->data, l->s_hh, l->w_hh);
        nn_k_add(G, fl[k].b_ih->data, fl[k].b_hh->data, l->bias);
    }
    if (ok > 0 && !finish_layers(q)) ok = 0;
    free(fl);
    if (ok <= 0) {
        nn_qrecurrent_free(q);
        if (ok < 0)
            nn_error_set(err, NN_ERR_NUMERIC, "%s: the calibration inputs give a NaN or infinite value inside "
                                              "the layer; no scale can be calibrated", who);
        else
            nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", who);
        return NULL;
    }
    return q;
}

/* ---- running ---------------------------------------------------------------- */

static int reserve(nn_qrecurrent *q, int T, int B)
{
    size_t rows = (size_t)T * B, wmax = (size_t)round4(q->input > q->hidden ? q->input : q->hidden);
    if (rows > q->cap_rows) {
        free_row_scratch(q);
        q->xq = malloc(rows * wmax + 4);
        q->zin = malloc(sizeof(float) * rows * q->Gp);
        q->seq = malloc(sizeof(float) * rows * q->hidden);
        q->cap_rows = q->xq && q->zin && q->seq ? rows : 0;
        if (!q->cap_rows) return 0;
    }
    if ((size_t)B > q->cap_b) {
        size_t b = (size_t)B, H = (size_t)q->hidden;
        free_batch_scratch(q);
        q->hq = malloc(b * round4(q->hidden) + 4);
        q->zh = malloc(sizeof(float) * b * q->Gp);
        q->z = malloc(sizeof(float) * b * q->G);
        q->h = malloc(sizeof(float) * b * H);
        q->c = malloc(sizeof(float) * b * H);
        q->c2 = malloc(sizeof(float) * b * H);
        q->cap_b = q->hq && q->zh && q->z && q->h && q->c && q->c2 ? b : 0;
        if (!q->cap_b) return 0;
    }
    return 1;
}

/* y (P, Gp) = dequantized products of P positions' bytes xq (P, cq)
 * with packed weights, plus bias. */
static void products(int P, int cq, const uint8_t *xq, const int8_t *wp, const int32_t *wsum, int Gp,
                     const float *scale, const float *bias, int portable, float *y)
{
    nn_q8_conv s = {.iw = P, .cq = cq, .k = 1, .stride = 1, .ocp = Gp, .ow = P, .rows = 1, .cols = P};
    nn_k_q8_conv(&s, xq, wp, wsum, scale, bias, 0, portable, y);
}

/* Layer k over x (T*B rows of l->in; batch-first rows if in_bf), from
 * state h/c (B, H; updated), outputs to out (batch-first rows if out_bf).
 * out may be x: x is read whole before the first output is written. */
static void layer_run(nn_qrecurrent *q, int k, int T, int B, const float *x, int in_bf, float *h, float *c,
                      float *out, int out_bf, int portable)
{
    qlayer *l = &q->l[k];
    int H = q->hidden, G = q->G, Gp = q->Gp, cq = round4(l->in), hq = round4(H);
    nn_k_q8_quantize(T * B, l->in, l->in, x, 1.0f / l->in_scale, cq, q->xq);
    products(T * B, cq, q->xq, l->p_ih, l->ws_ih, Gp, l->dq_ih, l->bias, portable, q->zin);
    for (int t = 0; t < T; t++) {
        nn_k_q8_quantize(B, H, H, h, 1.0f / l->h_scale, hq, q->hq);
        products(B, hq, q->hq, l->p_hh, l->ws_hh, Gp, l->dq_hh, l->zero, portable, q->zh);
        for (int b = 0; b < B; b++) {
            size_t row = in_bf ? (size_t)b * T + t : (size_t)t * B + b;
            const float *zi = q->zin + row * Gp, *zh = q->zh + (size_t)b * Gp;
            nn_k_add((size_t)G, zi, zh, q->z + (size_t)b * G);
        }
        if (q->lstm) {
            nn_k_lstm_cell(B, H, q->z, c, q->c2, h);
            memcpy(c, q->c2, sizeof(float) * (size_t)B * H);
        } else {
            nn_k_tanh((size_t)B * H, q->z, h);
        }
        for (int b = 0; b < B; b++) {
            size_t row = out_bf ? (size_t)b * T + t : (size_t)t * B + b;
            memcpy(out + row * H, h + (size_t)b * H, sizeof(float) * (size_t)H);
        }
    }
}

nn_status nn__qrecurrent_run(nn_qrecurrent *q, int T, int B, const float *x, float *h, float *c, float *out,
                             int portable, nn_error *err)
{
    const char *who = "nn_qrecurrent_run";
    if (!q || !x || !out)
        return nn_error_set(err, NN_ERR_ARG, "%s: %s is NULL", who, !q ? "the model" : !x ? "x" : "out");
    if (T < 1 || B < 1 || (double)T * B * (q->Gp > q->input ? q->Gp : q->input) > 2e9)
        return nn_error_set(err, NN_ERR_ARG, "%s: need T, B >= 1 (and T*B rows that fit in memory), got T %d, B %d",
                            who, T, B);
    if (!reserve(q, T, B)) return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory for T %d, B %d", who, T, B);
    size_t state = (size_t)B * q->hidden;
    for (int k = 0; k < q->layers; k++) {
        float *hk = h ? h + k * state : q->h, *ck = c && q->lstm ? c + k * state : q->c;
        if (!h) memset(hk, 0, sizeof(float) * state);
        if (!(c && q->lstm)) memset(ck, 0, sizeof(float) * state);
        int last = k == q->layers - 1;
        layer_run(q, k, T, B, k ? q->seq : x, k ? 0 : q->batch_first, hk, ck, last ? out : q->seq,
                  last ? q->batch_first : 0, portable);
    }
    return NN_OK;
}

nn_status nn_qrecurrent_run(nn_qrecurrent *q, int T, int B, const float *x, float *h, float *c, float *out,
                            nn_error *err)
{
    return nn__qrecurrent_run(q, T, B, x, h, c, out, 0, err);
}

/* ---- files ------------------------------------------------------------------ */

enum { ITEMS_PER_LAYER = 7 };
static const char *const item_names[ITEMS_PER_LAYER] = {"weight_ih_l%d", "weight_ih_l%d_scale", "weight_hh_l%d",
                                                        "weight_hh_l%d_scale", "bias_l%d", "input_scale_l%d",
                                                        "hidden_scale_l%d"};

nn_status nn_qrecurrent_save(const nn_qrecurrent *q, const char *path, nn_error *err)
{
    if (!q || !path)
        return nn_error_set(err, NN_ERR_ARG, "nn_qrecurrent_save: %s is NULL", q ? "path" : "the model");
    int n = ITEMS_PER_LAYER * q->layers;
    nn__st_item *items = calloc((size_t)n, sizeof *items);
    char *names = calloc((size_t)n, 32);
    if (!items || !names) {
        free(items);
        free(names);
        return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
    }
    for (int k = 0; k < q->layers; k++) {
        const qlayer *l = &q->l[k];
        const void *data[ITEMS_PER_LAYER] = {l->w_ih, l->s_ih, l->w_hh, l->s_hh, l->bias, &l->in_scale, &l->h_scale};
        int cols[ITEMS_PER_LAYER] = {l->in, 0, q->hidden, 0, 0, 0, 0};
        for (int j = 0; j < ITEMS_PER_LAYER; j++) {
            nn__st_item *it = &items[ITEMS_PER_LAYER * k + j];
            char *name = names + (size_t)(ITEMS_PER_LAYER * k + j) * 32;
            snprintf(name, 32, item_names[j], k);
            it->name = name;
            it->f32 = !cols[j];
            it->ndim = cols[j] ? 2 : 1;
            it->shape[0] = j >= 5 ? 1 : q->G;
            it->shape[1] = cols[j];
            it->data = data[j];
        }
    }
    char sizes[64];
    snprintf(sizes, sizeof sizes, "%d,%d,%d,%d", q->input, q->hidden, q->layers, q->batch_first);
    const char *meta[] = {"nn.quantized", "int8", META_KIND, q->lstm ? "lstm" : "rnn", META_SIZES, sizes};
    nn_status s = nn__safetensors_write_items(path, items, n, meta, 3, err);
    free(items);
    free(names);
    return s;
}

/* Layer k's tensors from st; 0 with err set if one is missing or wrong. */
static int load_layer(const nn_safetensors *st, nn_qrecurrent *q, int k, nn_error *err)
{
    qlayer *l = &q->l[k];
    int G = q->G;
    char name[ITEMS_PER_LAYER][32];
    for (int j = 0; j < ITEMS_PER_LAYER; j++) snprintf(name[j], 32, item_names[j], k);
    int8_t *w[2] = {l->w_ih, l->w_hh};
    int cols[2] = {l->in, q->hidden};
    for (int m = 0; m < 2; m++) {
        const uint8_t *b = nn__q8_tensor_of(st, name[2 * m], "I8", 2, (int[]){G, cols[m]}, err);
        if (!b) return 0;
        for (size_t i = 0; i < (size_t)G * cols[m]; i++) {
            if (b[i] == 0x80) {
                nn_error_set(err, NN_ERR_FORMAT, "%s: tensor '%s' element %zu is -128 (int8 weights are in "
                                                 "[-127, 127])", st->path, name[2 * m], i);
                return 0;
            }
            w[m][i] = (int8_t)b[i];
        }
    }
    float *f[5] = {l->s_ih, l->s_hh, l->bias, &l->in_scale, &l->h_scale};
    int idx[5] = {1, 3, 4, 5, 6}, count[5] = {G, G, G, 1, 1}, positive[5] = {1, 1, 0, 1, 1};
    for (int m = 0; m < 5; m++) {
        const uint8_t *b = nn__q8_tensor_of(st, name[idx[m]], "F32", 1, &count[m], err);
        if (!b || !nn__q8_floats_of(st, name[idx[m]], b, count[m], positive[m], f[m], err)) return 0;
    }
    return 1;
}

nn_qrecurrent *nn_qrecurrent_load(const char *path, nn_error *err)
{
    if (!path) {
        nn_error_set(err, NN_ERR_ARG, "nn_qrecurrent_load: path is NULL");
        return NULL;
    }
    nn_safetensors st;
    if (nn_safetensors_read(path, &st, err)) return NULL;
    nn_qrecurrent *q = NULL;
    const char *format = nn_safetensors_meta(&st, "nn.quantized"), *kind = nn_safetensors_meta(&st, META_KIND);
    const char *sizes = nn_safetensors_meta(&st, META_SIZES);
    int in = 0, hidden = 0, layers = 0, bf = -1, used = 0;
    if (!format || strcmp(format, "int8") || !kind || (strcmp(kind, "lstm") && strcmp(kind, "rnn"))) {
        nn_error_set(err, NN_ERR_FORMAT, "%s: not an int8 recurrent layer file (metadata nn.quantized must be "
                                         "\"int8\" and %s \"lstm\" or \"rnn\")", path, META_KIND);
    } else if (!sizes || sscanf(sizes, "%d,%d,%d,%d%n", &in, &hidden, &layers, &bf, &used) != 4 ||
               sizes[used] || in < 1 || hidden < 1 || layers < 1 || (bf != 0 && bf != 1) || in > (1 << 20) ||
               hidden > (1 << 16) || layers > 1024) {
        nn_error_set(err, NN_ERR_FORMAT, "%s: metadata %s is %s%s%s, expected \"input,hidden,layers,batch_first\" "
                                         "(sizes >= 1 within limits, batch_first 0 or 1)", path, META_SIZES,
                     sizes ? "\"" : "", sizes ? sizes : "missing", sizes ? "\"" : "");
    } else if (!(q = qrecurrent_new(!strcmp(kind, "lstm"), in, hidden, layers, bf))) {
        nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
    } else {
        int ok = 1;
        for (int k = 0; ok && k < layers; k++) ok = load_layer(&st, q, k, err);
        if (ok && !finish_layers(q)) {
            nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
            ok = 0;
        }
        if (!ok) {
            nn_qrecurrent_free(q);
            q = NULL;
        }
    }
    nn_safetensors_free(&st);
    return q;
}

int nn_qrecurrent_hidden_size(const nn_qrecurrent *q) { return q ? q->hidden : 0; }
