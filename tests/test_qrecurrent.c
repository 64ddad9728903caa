/* int8 recurrent layers (nn_quantize_recurrent): against the float layer,
 * carried state, layouts, VNNI == plain C, files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/infer/quant_internal.h"
#include "nn.h"
#include "test.h"

/* Smooth inputs in [-1.5, 1.5], different per step and row. */
static float *inputs(int T, int B, int F, uint64_t seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    float *x = malloc(sizeof(float) * (size_t)T * B * F);
    for (size_t i = 0; i < (size_t)T * B * F; i++) x[i] = 3.0f * nn_rng_uniform(&r) - 1.5f;
    return x;
}

/* The float layer's outputs (T, B, H) and final state, time-major. */
static void float_run(nn_layer *l, int T, int B, int F, const float *x, nn_tensor *h, nn_tensor *c, float *out)
{
    nn_graph *g = nn_graph_new();
    nn_graph_set_grad_enabled(g, 0);
    nn_tensor *in = nn_graph_tensor(g, 3, (int[]){T, B, F});
    memcpy(in->data, x, in->size * sizeof(float));
    nn_tensor *y = nn_recurrent_forward(l, g, in, h, c, h, c);
    memcpy(out, y->data, y->size * sizeof(float));
    nn_graph_free(g);
}

static float max_diff(size_t n, const float *a, const float *b)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) m = fabsf(a[i] - b[i]) > m ? fabsf(a[i] - b[i]) : m;
    return m;
}

/* Quantized LSTM and RNN layers follow the float layer (outputs and the
 * carried state) to within int8's resolution; running in two halves with
 * the state carried is the same as running whole, bit for bit. */
static void test_qrecurrent_close_to_float(void)
{
    enum { T = 24, B = 3, F = 7, H = 13, L = 2 };
    for (int lstm = 0; lstm < 2; lstm++) {
        nn_rng r;
        nn_rng_seed(&r, 5);
        nn_layer *l = lstm ? nn_lstm_new(F, H, L, &r) : nn_rnn_new(F, H, L, &r);
        float *x = inputs(T, B, F, 9), *want = malloc(sizeof(float) * T * B * H);
        float *got = malloc(sizeof(float) * T * B * H), *half = malloc(sizeof(float) * T * B * H);
        nn_tensor *h = nn_tensor_new3(L, B, H), *c = nn_tensor_new3(L, B, H);
        float_run(l, T, B, F, x, h, c, want);
        nn_error err;
        nn_qrecurrent *q = nn_quantize_recurrent(l, T, B, x, &err);
        CHECK_MSG(q, "%s", err.msg);
        CHECK(nn_qrecurrent_hidden_size(q) == H);
        float qh[L * B * H] = {0}, qc[L * B * H] = {0};
        CHECK(nn_qrecurrent_run(q, T, B, x, qh, qc, got, &err) == NN_OK);
        float d = max_diff((size_t)T * B * H, want, got);
        CHECK_MSG(d < 0.03f && d > 0.0f, "%s: outputs differ by %g from float", lstm ? "lstm" : "rnn", (double)d);
        CHECK_MSG(max_diff((size_t)L * B * H, h->data, qh) < 0.03f, "final h differs");
        if (lstm) CHECK_MSG(max_diff((size_t)L * B * H, c->data, qc) < 0.06f, "final c differs");
        /* two halves, state carried */
        float sh[L * B * H] = {0}, sc[L * B * H] = {0};
        CHECK(nn_qrecurrent_run(q, T / 2, B, x, sh, sc, half, &err) == NN_OK);
        CHECK(nn_qrecurrent_run(q, T - T / 2, B, x + (size_t)(T / 2) * B * F, sh, sc, half + (size_t)(T / 2) * B * H,
                                &err) == NN_OK);
        CHECK_MSG(!memcmp(half, got, sizeof(float) * T * B * H) && !memcmp(sh, qh, sizeof sh),
                  "carrying the state across two calls changes the result");
        /* NULL state: from zeros, as above */
        CHECK(nn_qrecurrent_run(q, T, B, x, NULL, NULL, half, &err) == NN_OK);
        CHECK(!memcmp(half, got, sizeof(float) * T * B * H));
        nn_qrecurrent_free(q);
        nn_tensor_free(h);
        nn_tensor_free(c);
        free(x);
        free(want);
        free(got);
        free(half);
        nn_layer_free(l);
    }
}

/* A batch-first layer reads and writes (B, T, F): the same numbers as the
 * time-major layer on the transposed data. The VNNI kernels (where built)
 * give the plain C path's bits. */
static void test_qrecurrent_batch_first_and_portable_path(void)
{
    enum { T = 9, B = 4, F = 21, H = 20, L = 1 };
    nn_rng r;
    nn_rng_seed(&r, 8);
    nn_layer *l = nn_lstm_new(F, H, L, &r);
    float *x = inputs(T, B, F, 3), *xb = malloc(sizeof(float) * T * B * F);
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++)
            memcpy(xb + ((size_t)b * T + t) * F, x + ((size_t)t * B + b) * F, sizeof(float) * F);
    nn_error err;
    nn_qrecurrent *q = nn_quantize_recurrent(l, T, B, x, &err);
    CHECK(nn_recurrent_set_batch_first(l, 1) == NN_OK);
    nn_qrecurrent *qb = nn_quantize_recurrent(l, T, B, xb, &err);
    CHECK_MSG(q && qb, "%s", err.msg);
    float y[T * B * H], yb[T * B * H], yc[T * B * H];
    CHECK(nn_qrecurrent_run(q, T, B, x, NULL, NULL, y, &err) == NN_OK);
    CHECK(nn_qrecurrent_run(qb, T, B, xb, NULL, NULL, yb, &err) == NN_OK);
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++)
            CHECK_MSG(!memcmp(y + ((size_t)t * B + b) * H, yb + ((size_t)b * T + t) * H, sizeof(float) * H),
                      "step %d row %d differs batch-first", t, b);
    CHECK(nn__qrecurrent_run(q, T, B, x, NULL, NULL, yc, 1, &err) == NN_OK);
    CHECK_MSG(!memcmp(y, yc, sizeof y), "the plain C path differs from the built one");
    nn_qrecurrent_free(q);
    nn_qrecurrent_free(qb);
    free(x);
    free(xb);
    nn_layer_free(l);
}

static void test_qrecurrent_errors(void)
{
    nn_rng r;
    nn_rng_seed(&r, 1);
    nn_layer *d = nn_dense_new(4, 4, NN_INIT_XAVIER, &r), *l = nn_lstm_new(4, 4, 1, &r);
    float x[8] = {0}, y[8];
    nn_error err;
    CHECK(!nn_quantize_recurrent(d, 2, 1, x, &err) && strstr(err.msg, "LSTM or RNN") && strstr(err.msg, "dense"));
    CHECK(!nn_quantize_recurrent(l, 0, 1, x, &err) && err.code == NN_ERR_ARG);
    CHECK(!nn_quantize_recurrent(l, 2, 1, NULL, &err) && err.code == NN_ERR_ARG);
    x[5] = NAN;
    CHECK(!nn_quantize_recurrent(l, 2, 1, x, &err) && err.code == NN_ERR_NUMERIC);
    x[5] = 0.5f;
    nn_qrecurrent *q = nn_quantize_recurrent(l, 2, 1, x, &err);
    CHECK_MSG(q, "%s", err.msg);
    CHECK(nn_qrecurrent_run(q, 0, 1, x, NULL, NULL, y, &err) == NN_ERR_ARG);
    CHECK(nn_qrecurrent_run(q, 2, 1, NULL, NULL, NULL, y, &err) == NN_ERR_ARG);
    CHECK(nn_qrecurrent_run(NULL, 2, 1, x, NULL, NULL, y, &err) == NN_ERR_ARG);
    CHECK(nn_qrecurrent_hidden_size(NULL) == 0);
    nn_qrecurrent_free(q);
    nn_qrecurrent_free(NULL);
    nn_layer_free(d);
    nn_layer_free(l);
}

static void write_bytes(const char *path, const char *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, n, f);
    fclose(f);
}

/* Saved and loaded: the same bits; hostile files refused, naming the
 * file, the tensor and the problem. */
static void test_qrecurrent_file_round_trip_and_hostile_files(void)
{
    enum { T = 6, B = 2, F = 5, H = 8, L = 2 };
    nn_rng r;
    nn_rng_seed(&r, 4);
    nn_layer *l = nn_lstm_new(F, H, L, &r);
    float *x = inputs(T, B, F, 2);
    nn_error err;
    nn_qrecurrent *q = nn_quantize_recurrent(l, T, B, x, &err);
    CHECK_MSG(q, "%s", err.msg);
    char path[512], bad[512];
    snprintf(path, sizeof path, "%s/qlstm.safetensors", test_tmpdir());
    snprintf(bad, sizeof bad, "%s/qlstm-bad.safetensors", test_tmpdir());
    CHECK_MSG(nn_qrecurrent_save(q, path, &err) == NN_OK, "%s", err.msg);
    nn_qrecurrent *back = nn_qrecurrent_load(path, &err);
    CHECK_MSG(back, "%s", err.msg);
    float y[T * B * H], y2[T * B * H];
    CHECK(nn_qrecurrent_run(q, T, B, x, NULL, NULL, y, &err) == NN_OK);
    CHECK(back && nn_qrecurrent_run(back, T, B, x, NULL, NULL, y2, &err) == NN_OK);
    CHECK_MSG(!memcmp(y, y2, sizeof y), "the loaded layer gives other outputs");
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *bytes = malloc(size), *copy = malloc(size);
    CHECK(fread(bytes, 1, size, f) == size);
    fclose(f);
    size_t data_at = 8;
    for (int i = 0; i < 8; i++) data_at += (size_t)(unsigned char)bytes[i] << (8 * i);
    nn_safetensors st;
    CHECK(nn_safetensors_read(path, &st, &err) == NN_OK);
    const nn_st_tensor *w = nn_safetensors_find(&st, "weight_hh_l1");
    CHECK(w && !strcmp(w->dtype, "I8") && w->ndim == 2 && w->shape[0] == 4 * H && w->shape[1] == H);
    CHECK(nn_safetensors_find(&st, "hidden_scale_l0") && nn_safetensors_find(&st, "weight_ih_l0_scale"));
    size_t scale_at = data_at + nn_safetensors_find(&st, "weight_hh_l0_scale")->begin;
    size_t weight_at = data_at + nn_safetensors_find(&st, "weight_ih_l1")->begin + 3;
    nn_safetensors_free(&st);
    struct {
        const char *find, *replace, *expect;
    } edits[] = {
        {"\"int8\"", "\"int4\"", "not an int8 recurrent layer file"},
        {"\"lstm\"", "\"gru0\"", "not an int8 recurrent layer file"},
        {"\"5,8,2,0\"", "\"5,8,3,0\"", "'weight_ih_l2' is missing"},
        {"\"5,8,2,0\"", "\"5,8,2,7\"", "nn.recurrent_sizes"},
        {"\"5,8,2,0\"", "\"5,9,2,0\"", "expected I8 [36, 5]"},
        {"\"bias_l1\"", "\"bias_x1\"", "'bias_l1' is missing"},
    };
    for (size_t e = 0; e < sizeof edits / sizeof edits[0]; e++) {
        memcpy(copy, bytes, size);
        char *at = NULL;
        for (char *p = copy + 8; p + strlen(edits[e].find) <= copy + data_at; p++)
            if (!memcmp(p, edits[e].find, strlen(edits[e].find))) {
                at = p;
                break;
            }
        CHECK_MSG(at, "edit %zu: '%s' not in the header", e, edits[e].find);
        if (!at) continue;
        memcpy(at, edits[e].replace, strlen(edits[e].replace));
        write_bytes(bad, copy, size);
        nn_qrecurrent *h = nn_qrecurrent_load(bad, &err);
        CHECK_MSG(!h && strstr(err.msg, edits[e].expect) && strstr(err.msg, "qlstm-bad"), "edit %zu: %s", e,
                  h ? "loaded" : err.msg);
        nn_qrecurrent_free(h);
    }
    memcpy(copy, bytes, size);
    memset(copy + scale_at, 0, 4);
    write_bytes(bad, copy, size);
    CHECK(!nn_qrecurrent_load(bad, &err) && strstr(err.msg, "weight_hh_l0_scale") && strstr(err.msg, "positive"));
    memcpy(copy, bytes, size);
    copy[weight_at] = (char)0x80;
    write_bytes(bad, copy, size);
    CHECK(!nn_qrecurrent_load(bad, &err) && strstr(err.msg, "weight_ih_l1") && strstr(err.msg, "-128"));
    write_bytes(bad, bytes, size / 2);
    CHECK(!nn_qrecurrent_load(bad, &err) && strstr(err.msg, "qlstm-bad"));
    CHECK(!nn_qrecurrent_load(NULL, &err) && err.code == NN_ERR_ARG);
    CHECK(nn_qrecurrent_save(NULL, path, &err) == NN_ERR_ARG);
    free(bytes);
    free(copy);
    free(x);
    nn_qrecurrent_free(q);
    nn_qrecurrent_free(back);
    nn_layer_free(l);
}

const test_case qrecurrent_tests[] = {
    {"qrecurrent_close_to_float", test_qrecurrent_close_to_float},
    {"qrecurrent_batch_first_and_portable_path", test_qrecurrent_batch_first_and_portable_path},
    {"qrecurrent_errors", test_qrecurrent_errors},
    {"qrecurrent_file_round_trip_and_hostile_files", test_qrecurrent_file_round_trip_and_hostile_files},
    {NULL, NULL}};
