/* Layers: shapes, padding modes, modes, names, misuse messages, and a small
 * CNN's training being reproducible and allocation-free after warm-up. */
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test.h"

static nn_tensor *forward_shape(nn_layer *l, int n, int c, int h, int w, nn_graph *g)
{
    nn_tensor *x = nn_graph_tensor(g, 4, (int[]){n, c, h, w});
    return nn_layer_forward(l, g, x);
}

static void test_conv_layer_padding_modes(void)
{
    nn_rng r;
    nn_rng_seed(&r, 1);
    nn_graph *g = nn_graph_new();
    static const struct { int k, stride, pad, h, oh; } cases[] = {
        {3, 1, 0, 10, 8}, {3, 1, NN_PAD_SAME, 10, 10}, {4, 1, NN_PAD_SAME, 10, 10},
        {3, 2, NN_PAD_SAME, 11, 6}, {5, 1, 2, 7, 7}, {3, 2, 1, 28, 14}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nn_layer *l = nn_conv2d_new(2, 5, cases[i].k, cases[i].stride, cases[i].pad, &r);
        CHECK(l);
        nn_tensor *y = forward_shape(l, 3, 2, cases[i].h, cases[i].h, g);
        CHECK_MSG(y && y->shape[0] == 3 && y->shape[1] == 5 && y->shape[2] == cases[i].oh &&
                      y->shape[3] == cases[i].oh,
                  "case %zu: got %d", i, y ? y->shape[2] : -1);
        nn_layer_free(l);
        nn_graph_reset(g);
    }
    CHECK(nn_conv2d_new(0, 5, 3, 1, 0, &r) == NULL);
    CHECK(nn_conv2d_new(1, 5, 3, 1, -7, &r) == NULL);
    nn_graph_free(g);
}

static void test_pool_dropout_flatten_layers(void)
{
    nn_graph *g = nn_graph_new();
    nn_layer *mp = nn_maxpool2d_new(2, 0, 0), *ap = nn_avgpool2d_new(3, 2, 1), *fl = nn_flatten_new();
    nn_tensor *y = forward_shape(mp, 2, 3, 7, 8, g);
    CHECK(y->shape[2] == 3 && y->shape[3] == 4);
    y = forward_shape(ap, 2, 3, 7, 8, g);
    CHECK(y->shape[2] == 4 && y->shape[3] == 4);
    y = nn_layer_forward(fl, g, y);
    CHECK(y->ndim == 2 && y->shape[1] == 48);
    CHECK(nn_maxpool2d_new(2, 2, 2) == NULL); /* padding over half the window */

    nn_layer *d = nn_dropout_new(0.5f, 9);
    nn_tensor *x = nn_graph_tensor(g, 2, (int[]){4, 100});
    for (size_t i = 0; i < x->size; i++) x->data[i] = 1.0f;
    y = nn_layer_forward(d, g, x);
    int zeros = 0;
    for (size_t i = 0; i < y->size; i++) zeros += y->data[i] == 0.0f;
    CHECK(y != x && zeros > 100 && zeros < 300);
    nn_layer_set_training(d, 0);
    CHECK(nn_layer_forward(d, g, x) == x); /* evaluation: identity */
    CHECK(nn_dropout_new(1.0f, 1) == NULL);
    nn_layer_free(mp);
    nn_layer_free(ap);
    nn_layer_free(fl);
    nn_layer_free(d);
    nn_graph_free(g);
}

static void test_layers_report_bad_inputs(void)
{
    nn_rng r;
    nn_rng_seed(&r, 1);
    nn_graph *g = nn_graph_new();
    nn_graph_set_abort_on_error(g, 0);
    nn_layer *c = nn_conv2d_new(3, 8, 3, 1, 0, &r);
    CHECK(forward_shape(c, 2, 1, 8, 8, g) == NULL);
    const char *e = nn_graph_error(g);
    CHECK_MSG(e && strstr(e, "conv2d") && strstr(e, "[2x1x8x8]") && strstr(e, "[8x3x3x3]"), "%s", e);
    nn_graph_reset(g);
    nn_layer *p = nn_maxpool2d_new(2, 2, 0);
    CHECK(nn_layer_forward(p, g, nn_graph_tensor(g, 2, (int[]){4, 4})) == NULL);
    CHECK_MSG(strstr(nn_graph_error(g), "nn_maxpool2d") && strstr(nn_graph_error(g), "[4x4]"), "%s",
              nn_graph_error(g));
    nn_graph_reset(g);
    CHECK(forward_shape(p, 1, 1, 1, 1, g) == NULL); /* window larger than input */
    CHECK(strstr(nn_graph_error(g), "larger than the padded input"));
    nn_graph_reset(g);
    nn_layer *ap = nn_avgpool2d_new(3, 1, 0);
    CHECK(nn_layer_forward(ap, g, nn_graph_tensor(g, 3, (int[]){2, 5, 5})) == NULL);
    CHECK_MSG(strstr(nn_graph_error(g), "nn_avgpool2d") && strstr(nn_graph_error(g), "[2x5x5]"), "%s",
              nn_graph_error(g));
    nn_graph_reset(g);
    nn_layer *rn = nn_rnn_new(4, 6, 1, &r);
    CHECK(nn_layer_forward(rn, g, nn_graph_tensor(g, 3, (int[]){5, 2, 3})) == NULL);
    CHECK_MSG(strstr(nn_graph_error(g), "rnn") && strstr(nn_graph_error(g), "[5x2x3]"), "%s",
              nn_graph_error(g));
    nn_graph_reset(g);
    nn_layer *seq = nn_sequential_new();
    nn_sequential_add(seq, nn_dense_new(8, 4, NN_INIT_HE, &r));
    nn_sequential_add(seq, nn_dense_new(5, 2, NN_INIT_HE, &r)); /* does not fit the first */
    CHECK(nn_layer_forward(seq, g, nn_graph_tensor(g, 2, (int[]){3, 8})) == NULL);
    CHECK_MSG(strstr(nn_graph_error(g), "dense") && strstr(nn_graph_error(g), "[3x4]") &&
                  strstr(nn_graph_error(g), "[2x5]"),
              "%s", nn_graph_error(g));
    nn_layer_free(seq);
    nn_layer_free(rn);
    nn_layer_free(ap);
    nn_layer_free(c);
    nn_layer_free(p);
    nn_graph_free(g);
}

/* The seed CNN of the MNIST trainer, built from library calls. */
static nn_layer *seed_cnn(uint64_t seed, int hw)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    nn_layer *m = nn_sequential_new();
    int s = ((hw - 2) / 2 - 2) / 2;
    nn_sequential_add(m, nn_conv2d_new(1, 32, 3, 1, 0, &r));
    nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(m, nn_maxpool2d_new(2, 2, 0));
    nn_sequential_add(m, nn_conv2d_new(32, 64, 3, 1, 0, &r));
    nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(m, nn_maxpool2d_new(2, 2, 0));
    nn_sequential_add(m, nn_flatten_new());
    nn_sequential_add(m, nn_dense_new(64 * s * s, 128, NN_INIT_HE, &r));
    nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(m, nn_dropout_new(0.5f, seed + 1));
    nn_sequential_add(m, nn_dense_new(128, 10, NN_INIT_XAVIER, &r));
    return m;
}

static void test_seed_cnn_parameters(void)
{
    nn_layer *m = seed_cnn(1, 28);
    nn_params p;
    nn_params_init(&p);
    CHECK(nn_layer_params(m, &p) == NN_OK);
    CHECK_MSG(nn_params_numel(&p) == 225034, "%zu parameters", nn_params_numel(&p));
    const char *names[] = {"0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias",
                           "10.weight", "10.bias"};
    CHECK(p.count == 8);
    for (int i = 0; i < 8; i++) CHECK_MSG(!strcmp(p.names[i], names[i]), "%s", p.names[i]);
    CHECK(nn_params_find(&p, "3.weight")->shape[1] == 32);
    nn_params_free(&p);
    nn_layer_free(m);
}

/* A few Adam steps of the seed CNN on random 12x12 images; returns the
 * losses and checks the arena stops growing after the first step. */
static int train_small_cnn(int threads, float *losses, int steps)
{
    int saved = nn_get_threads();
    nn_set_threads(threads);
    nn_layer *m = seed_cnn(7, 12);
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(m, &p);
    nn_optim *o = nn_optim_adam_new(&p, nn_adam_defaults(1e-3f));
    nn_graph *g = nn_graph_new();
    nn_rng r;
    nn_rng_seed(&r, 3);
    nn_tensor *x = nn_tensor_new4(16, 1, 12, 12);
    int labels[16], ok = 1;
    size_t mallocs_after_first = 0;
    for (int s = 0; s < steps; s++) {
        nn_tensor_uniform(x, &r, 0, 1);
        for (int i = 0; i < 16; i++) labels[i] = (int)nn_rng_below(&r, 10);
        nn_graph_reset(g);
        nn_optim_zero_grad(o);
        nn_tensor *loss = nn_softmax_cross_entropy(g, nn_layer_forward(m, g, x), labels);
        nn_backward(g, loss, NULL);
        nn_optim_step(o);
        losses[s] = loss->data[0];
        if (s == 0) mallocs_after_first = nn_graph_get_stats(g).mallocs;
    }
    ok = nn_graph_get_stats(g).mallocs == mallocs_after_first;
    nn_tensor_free(x);
    nn_graph_free(g);
    nn_optim_free(o);
    nn_params_free(&p);
    nn_layer_free(m);
    nn_set_threads(saved);
    return ok;
}

static void test_cnn_training_reproducible_and_thread_independent(void)
{
    float a[6], b[6], c[6];
    CHECK(train_small_cnn(2, a, 6));
    CHECK(train_small_cnn(2, b, 6));
    CHECK(train_small_cnn(1, c, 6));
    CHECK(memcmp(a, b, sizeof a) == 0); /* same seed, same threads */
    CHECK(memcmp(a, c, sizeof a) == 0); /* and 1 thread vs 2 */
    CHECK(a[5] < a[0] + 1.0f && isfinite(a[5]));
}

/* Inference (eval mode, no gradients) runs a batch through a stack of
 * per-sample layers in slices: the output must be bit for bit the
 * full-batch one (gradients enabled runs the whole batch at once), in less
 * arena, and an odd batch size must cover its last partial slice. A stack
 * with a recurrent layer is not sliced. */
static void test_sliced_inference_matches_full_batch(void)
{
    nn_layer *m = seed_cnn(5, 12);
    nn_layer_set_training(m, 0);
    nn_rng r;
    nn_rng_seed(&r, 9);
    nn_tensor *x = nn_tensor_new4(203, 1, 12, 12);
    nn_tensor_uniform(x, &r, 0, 1);
    nn_graph *full = nn_graph_new(), *sliced = nn_graph_new();
    nn_graph_set_grad_enabled(sliced, 0);
    nn_tensor *a = nn_layer_forward(m, full, x), *b = nn_layer_forward(m, sliced, x);
    CHECK(a && b && a->ndim == 2 && b->ndim == 2 && a->shape[0] == 203 && b->shape[0] == 203 &&
          a->shape[1] == 10 && b->shape[1] == 10);
    CHECK(a && b && memcmp(a->data, b->data, a->size * sizeof(float)) == 0);
    size_t used_full = nn_graph_get_stats(full).arena_used,
           used_sliced = nn_graph_get_stats(sliced).arena_used;
    CHECK_MSG(used_sliced * 2 < used_full, "arena %zu sliced vs %zu full", used_sliced, used_full);
    /* and again after a reset: the same bits from reused memory */
    nn_graph_reset(sliced);
    b = nn_layer_forward(m, sliced, x);
    CHECK(b && memcmp(a->data, b->data, a->size * sizeof(float)) == 0);
    nn_graph_free(full);
    nn_graph_free(sliced);
    nn_tensor_free(x);
    nn_layer_free(m);

    /* an LSTM's dimension 0 is time: a sequence must never be cut in slices */
    nn_layer *rec = nn_sequential_new();
    nn_sequential_add(rec, nn_lstm_new(3, 5, 1, &r));
    nn_sequential_add(rec, nn_activation_new(NN_ACT_TANH));
    nn_layer_set_training(rec, 0);
    nn_tensor *seq = nn_tensor_new3(150, 2, 3);
    nn_tensor_uniform(seq, &r, -1, 1);
    full = nn_graph_new();
    sliced = nn_graph_new();
    nn_graph_set_grad_enabled(sliced, 0);
    a = nn_layer_forward(rec, full, seq);
    b = nn_layer_forward(rec, sliced, seq);
    CHECK(a && b && a->size == b->size && memcmp(a->data, b->data, a->size * sizeof(float)) == 0);
    nn_graph_free(full);
    nn_graph_free(sliced);
    nn_tensor_free(seq);
    nn_layer_free(rec);
}

static void test_lstm_layout_and_init(void)
{
    nn_rng r;
    nn_rng_seed(&r, 1);
    nn_layer *l = nn_lstm_new(65, 128, 2, &r);
    nn_params p;
    nn_params_init(&p);
    CHECK(nn_layer_params(l, &p) == NN_OK && p.count == 8);
    const char *names[] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                           "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"};
    for (int i = 0; i < 8; i++) CHECK_MSG(!strcmp(p.names[i], names[i]), "%s", p.names[i]);
    nn_tensor *w = nn_params_find(&p, "weight_ih_l0"), *w1 = nn_params_find(&p, "weight_ih_l1");
    CHECK(w->shape[0] == 512 && w->shape[1] == 65 && w1->shape[1] == 128);
    nn_tensor *bi = nn_params_find(&p, "bias_ih_l1"), *bh = nn_params_find(&p, "bias_hh_l1");
    for (int j = 128; j < 256; j++) CHECK(bi->data[j] == 1.0f && bh->data[j] == 0.0f);
    float a = 1.0f / sqrtf(128.0f);
    for (size_t i = 0; i < w->size; i++) CHECK(fabsf(w->data[i]) <= a);
    nn_params_free(&p);
    nn_layer_free(l);
    nn_layer *rn = nn_rnn_new(5, 7, 1, &r);
    nn_params_init(&p);
    nn_layer_params(rn, &p);
    CHECK(p.count == 4 && nn_params_find(&p, "weight_hh_l0")->shape[0] == 7);
    nn_params_free(&p);
    nn_layer_free(rn);
}

/* The recurrences split the batch between threads: outputs and every
 * gradient must be the same bits on 1 and 2 threads (sizes large enough for
 * the split to happen: T*B*4H*H >= 4e6, B >= 16, an odd row count). */
typedef struct floats {
    float *v;
    size_t n;
} floats;

static floats lstm_run(int threads)
{
    int saved = nn_get_threads();
    nn_set_threads(threads);
    nn_rng r;
    nn_rng_seed(&r, 11);
    nn_layer *l = nn_lstm_new(16, 64, 2, &r);
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(l, &p);
    nn_tensor *x = nn_tensor_new3(12, 27, 16), *h = nn_tensor_new3(2, 27, 64),
              *c = nn_tensor_new3(2, 27, 64);
    nn_tensor_uniform(x, &r, -1, 1);
    nn_tensor_uniform(h, &r, -0.5f, 0.5f);
    nn_tensor_uniform(c, &r, -0.5f, 0.5f);
    nn_tensor_requires_grad(x, 1);
    nn_tensor_requires_grad(h, 1);
    nn_tensor_requires_grad(c, 1);
    nn_graph *g = nn_graph_new();
    nn_tensor *y = nn_recurrent_forward(l, g, x, h, c, NULL, NULL);
    size_t n = 0;
    float *o = NULL;
    if (!y || nn_backward(g, nn_sum(g, nn_mul(g, y, y)), NULL) != NN_OK) goto done;
    n = y->size + x->size + h->size + c->size;
    for (int i = 0; i < p.count; i++) n += p.tensors[i]->size;
    o = malloc(n * sizeof(float));
    float *at = o;
    memcpy(at, y->data, y->size * sizeof(float)), at += y->size;
    memcpy(at, x->grad, x->size * sizeof(float)), at += x->size;
    memcpy(at, h->grad, h->size * sizeof(float)), at += h->size;
    memcpy(at, c->grad, c->size * sizeof(float)), at += c->size;
    for (int i = 0; i < p.count; i++) {
        memcpy(at, p.tensors[i]->grad, p.tensors[i]->size * sizeof(float));
        at += p.tensors[i]->size;
    }
done:
    nn_graph_free(g);
    nn_tensor_free(x);
    nn_tensor_free(h);
    nn_tensor_free(c);
    nn_params_free(&p);
    nn_layer_free(l);
    nn_set_threads(saved);
    return (floats){o, n};
}

static void test_lstm_same_bits_any_thread_count(void)
{
    floats one = lstm_run(1), two = lstm_run(2);
    CHECK(one.v && two.v && one.n == two.n);
    CHECK_MSG(memcmp(one.v, two.v, one.n * sizeof(float)) == 0,
              "LSTM outputs or gradients differ between 1 and 2 threads");
    free(one.v);
    free(two.v);
}

/* Running a sequence in two halves with the state carried across must give
 * the same outputs as running it whole, even with h0/c0 and h_n/c_n being
 * the same tensors. */
static void test_lstm_state_carry(void)
{
    nn_rng r;
    nn_rng_seed(&r, 2);
    nn_layer *l = nn_lstm_new(3, 5, 2, &r);
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new3(6, 2, 3);
    nn_tensor_uniform(x, &r, -1, 1);
    nn_tensor *whole = nn_layer_forward(l, g, x);
    nn_tensor *h = nn_tensor_new3(2, 2, 5), *c = nn_tensor_new3(2, 2, 5);
    nn_tensor *x1 = nn_tensor_new3(3, 2, 3), *x2 = nn_tensor_new3(3, 2, 3);
    memcpy(x1->data, x->data, 18 * sizeof(float));
    memcpy(x2->data, x->data + 18, 18 * sizeof(float));
    nn_tensor *y1 = nn_recurrent_forward(l, g, x1, h, c, h, c);
    nn_tensor *y2 = nn_recurrent_forward(l, g, x2, h, c, h, c);
    CHECK(y1 && y2);
    for (int i = 0; i < 30; i++) {
        CHECK_NEAR(y1->data[i], whole->data[i], 1e-6);
        CHECK_NEAR(y2->data[i], whole->data[30 + i], 1e-6);
    }
    /* h_n of the last layer is the last output */
    for (int i = 0; i < 10; i++) CHECK_NEAR(h->data[10 + i], whole->data[50 + i], 1e-6);
    nn_graph_set_abort_on_error(g, 0);
    nn_tensor *bad = nn_tensor_new3(1, 2, 5);
    CHECK(nn_recurrent_forward(l, g, x1, bad, NULL, NULL, NULL) == NULL);
    CHECK_MSG(strstr(nn_graph_error(g), "lstm") && strstr(nn_graph_error(g), "[1x2x5]"), "%s",
              nn_graph_error(g));
    nn_graph_reset(g);
    CHECK(nn_layer_forward(l, g, nn_graph_tensor(g, 3, (int[]){3, 2, 4})) == NULL);
    CHECK_MSG(strstr(nn_graph_error(g), "(T, B, 3)") && strstr(nn_graph_error(g), "[3x2x4]"), "%s",
              nn_graph_error(g));
    nn_tensor_free(bad);
    nn_tensor_free(x);
    nn_tensor_free(x1);
    nn_tensor_free(x2);
    nn_tensor_free(h);
    nn_tensor_free(c);
    nn_graph_free(g);
    nn_layer_free(l);
}

const test_case layer_tests[] = {
    {"layer_sliced_inference_matches_full", test_sliced_inference_matches_full_batch},
    {"layer_lstm_layout_and_init", test_lstm_layout_and_init},
    {"layer_lstm_same_bits_any_threads", test_lstm_same_bits_any_thread_count},
    {"layer_lstm_state_carry", test_lstm_state_carry},
    {"layer_conv_padding_modes", test_conv_layer_padding_modes},
    {"layer_pool_dropout_flatten", test_pool_dropout_flatten_layers},
    {"layer_bad_inputs_reported", test_layers_report_bad_inputs},
    {"layer_seed_cnn_parameters", test_seed_cnn_parameters},
    {"layer_cnn_reproducible_any_threads", test_cnn_training_reproducible_and_thread_independent},
    {NULL, NULL}};
