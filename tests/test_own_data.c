/* The own-data layer: nn_data and its batcher, nn_fit / nn_evaluate /
 * nn_predict / nn_predictor, whole-model files, layer configurations and the
 * API's error values. Fixtures are generated here. */
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test.h"

#ifndef NN_TEST_SOURCE_DIR
#define NN_TEST_SOURCE_DIR "."
#endif
#define FIXTURES NN_TEST_SOURCE_DIR "/tests/fixtures"

/* n points of 2 features in three blobs, labels 0..2. */
static void make_blobs(int n, float *x, int *labels, uint64_t seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    const float cx[3] = {-2.0f, 2.0f, 0.0f}, cy[3] = {0.0f, 0.0f, 2.5f};
    for (int i = 0; i < n; i++) {
        int c = i % 3;
        labels[i] = c;
        x[2 * i] = cx[c] + 0.5f * nn_rng_normal(&r);
        x[2 * i + 1] = cy[c] + 0.5f * nn_rng_normal(&r);
    }
}

static nn_layer *mlp(int in, int hidden, int out, uint64_t seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    nn_layer *m = nn_sequential_new();
    nn_sequential_add(m, nn_dense_new(in, hidden, NN_INIT_HE, &r));
    nn_sequential_add(m, nn_activation_new(NN_ACT_TANH));
    nn_sequential_add(m, nn_dense_new(hidden, out, NN_INIT_XAVIER, &r));
    return m;
}

static void test_data_from_arrays_checks(void)
{
    float x[6] = {1, 2, 3, 4, 5, 6};
    int labels[3] = {0, 2, 1}, bad[3] = {0, 3, 1};
    nn_data d;
    nn_error err;
    CHECK(nn_data_from_arrays(&d, 3, 1, (int[]){2}, x, labels, 3, NULL, 0, &err) == NN_OK);
    CHECK(d.x == x && d.labels == labels && d.example_size == 2); /* borrowed, not copied */
    nn_data_free(&d);
    CHECK(nn_data_from_arrays(&d, 3, 1, (int[]){2}, x, bad, 3, NULL, 0, &err) == NN_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "example 1") && strstr(err.msg, "3"), "%s", err.msg);
    x[3] = NAN;
    CHECK(nn_data_from_arrays(&d, 3, 1, (int[]){2}, x, labels, 3, NULL, 0, &err) == NN_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "example 1"), "%s", err.msg);
    x[3] = 4;
    CHECK(nn_data_from_arrays(&d, 0, 1, (int[]){2}, x, NULL, 0, NULL, 0, &err) == NN_ERR_ARG);
    CHECK(nn_data_from_arrays(&d, 3, 4, (int[]){1, 1, 1, 2}, x, NULL, 0, NULL, 0, &err) == NN_ERR_ARG);
    CHECK(nn_data_from_arrays(&d, 3, 1, (int[]){2}, x, labels, 3, x, 1, &err) == NN_ERR_ARG);
    CHECK(nn_data_from_arrays(NULL, 3, 1, (int[]){2}, x, NULL, 0, NULL, 0, &err) == NN_ERR_ARG);
}

static void test_data_batcher_covers_each_example_once(void)
{
    enum { N = 23 };
    float x[N * 3];
    float y[N];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < 3; j++) x[3 * i + j] = (float)(100 * i + j);
        y[i] = (float)i;
    }
    nn_data d;
    CHECK(nn_data_from_arrays(&d, N, 1, (int[]){3}, x, NULL, 0, y, 1, NULL) == NN_OK);
    for (int shuffle = 0; shuffle < 2; shuffle++) {
        nn_data_batcher b;
        CHECK(nn_data_batcher_init(&b, &d, 5, shuffle, 7, NULL) == NN_OK);
        CHECK(nn_data_batcher_num_batches(&b) == 5);
        for (int epoch = 0; epoch < 2; epoch++) {
            int seen[N] = {0}, n, batches = 0, last = 0;
            nn_data_batcher_start_epoch(&b);
            while ((n = nn_data_batcher_next(&b)) > 0) {
                CHECK(b.x->shape[0] == n && b.x->shape[1] == 3 && b.y->shape[0] == n);
                for (int i = 0; i < n; i++) {
                    int id = (int)b.y->data[i];
                    CHECK(b.x->data[3 * i + 2] == (float)(100 * id + 2)); /* features follow the target */
                    seen[id]++;
                }
                if (!shuffle) CHECK(b.x->data == x + 3 * 5 * batches); /* in place */
                batches++;
                last = n;
            }
            CHECK(batches == 5 && last == 3);
            for (int i = 0; i < N; i++) CHECK(seen[i] == 1);
        }
        nn_data_batcher_free(&b);
    }
}

static void test_data_batcher_time_major(void)
{
    enum { N = 3, T = 4, F = 2 };
    float x[N * T * F];
    for (int i = 0; i < N * T * F; i++) x[i] = (float)i;
    int labels[N] = {0, 1, 0};
    nn_data d;
    CHECK(nn_data_from_arrays(&d, N, 2, (int[]){T, F}, x, labels, 2, NULL, 0, NULL) == NN_OK);
    nn_data_batcher b;
    CHECK(nn_data_batcher_init(&b, &d, 2, 0, 1, NULL) == NN_OK);
    CHECK(nn_data_batcher_time_major(&b, 1, NULL) == NN_OK);
    CHECK(nn_data_batcher_next(&b) == 2);
    CHECK(b.x->ndim == 3 && b.x->shape[0] == T && b.x->shape[1] == 2 && b.x->shape[2] == F);
    /* element (t, b, f) is example b's (t, f) */
    for (int t = 0; t < T; t++)
        for (int e = 0; e < 2; e++)
            for (int f = 0; f < F; f++) CHECK(b.x->data[(t * 2 + e) * F + f] == x[(e * T + t) * F + f]);
    CHECK(nn_data_batcher_next(&b) == 1 && b.x->shape[1] == 1);
    CHECK(b.x->data[F] == x[(2 * T + 1) * F]); /* (t 1, b 0, f 0) of the third example */
    nn_data_batcher_free(&b);
    nn_data flat;
    CHECK(nn_data_from_arrays(&flat, N, 1, (int[]){T * F}, x, labels, 2, NULL, 0, NULL) == NN_OK);
    CHECK(nn_data_batcher_init(&b, &flat, 2, 0, 1, NULL) == NN_OK);
    CHECK(nn_data_batcher_time_major(&b, 1, NULL) == NN_ERR_ARG);
    nn_data_batcher_free(&b);
}

static void test_data_split_is_a_seeded_partition(void)
{
    enum { N = 50 };
    float x[N];
    int labels[N];
    for (int i = 0; i < N; i++) {
        x[i] = (float)i;
        labels[i] = i % 2;
    }
    nn_data d, tr, va, tr2, va2;
    CHECK(nn_data_from_arrays(&d, N, 1, (int[]){1}, x, labels, 2, NULL, 0, NULL) == NN_OK);
    CHECK(nn_data_split(&d, 0.2f, 5, &tr, &va, NULL) == NN_OK);
    CHECK(tr.count == 40 && va.count == 10);
    int seen[N] = {0}, sorted = 1;
    for (int i = 0; i < tr.count; i++) seen[(int)tr.x[i]]++;
    for (int i = 0; i < va.count; i++) {
        seen[(int)va.x[i]]++;
        CHECK(va.labels[i] == (int)va.x[i] % 2);
        if (i && va.x[i] < va.x[i - 1]) sorted = 0;
    }
    for (int i = 0; i < N; i++) CHECK(seen[i] == 1);
    CHECK(!sorted || va.x[0] != 40); /* drawn at random, not the tail */
    CHECK(nn_data_split(&d, 0.2f, 5, &tr2, &va2, NULL) == NN_OK);
    CHECK(!memcmp(va.x, va2.x, 10 * sizeof(float)));
    nn_data_free(&tr);
    nn_data_free(&va);
    nn_data_free(&tr2);
    nn_data_free(&va2);
    CHECK(nn_data_split(&d, 1.0f, 5, &tr, &va, NULL) == NN_ERR_ARG);
}

static void test_fit_classifier_with_validation_fraction(void)
{
    enum { N = 300 };
    static float x[N * 2];
    static int labels[N];
    make_blobs(N, x, labels, 1);
    nn_data d;
    CHECK(nn_data_from_arrays(&d, N, 1, (int[]){2}, x, labels, 3, NULL, 0, NULL) == NN_OK);
    nn_layer *m = mlp(2, 16, 3, 2);
    nn_fit_opts o = nn_fit_defaults();
    o.epochs = 15;
    o.lr = 1e-2f;
    o.val_fraction = 0.2f;
    o.schedule = NN_SCHEDULE_COSINE;
    nn_history h;
    nn_error err;
    CHECK_MSG(nn_fit(m, &d, &o, &h, &err) == NN_OK, "%s", err.msg);
    CHECK(h.count == 15 && h.best_epoch >= 1);
    CHECK_MSG(h.epochs[h.count - 1].val_metric > 0.95f, "val acc %g", (double)h.epochs[h.count - 1].val_metric);
    CHECK(h.epochs[0].lr > h.epochs[14].lr); /* the schedule ran */
    nn_eval ev;
    CHECK(nn_evaluate(m, &d, 0, &ev, &err) == NN_OK);
    CHECK(ev.count == N && ev.accuracy > 0.95f && isnan(ev.mse));
    int pred[N];
    CHECK(nn_predict_classes(m, &d, 7, pred, &err) == NN_OK);
    int correct = 0;
    for (int i = 0; i < N; i++) correct += pred[i] == labels[i];
    CHECK_NEAR((double)correct / N, ev.accuracy, 1e-6);
    nn_history_free(&h);
    nn_layer_free(m);
}

/* Early stopping: a model that overfits noise stops before the last epoch
 * and ends with the weights of its best epoch. */
static void test_fit_early_stopping_restores_best(void)
{
    enum { N = 40 };
    float x[N * 4], y[N];
    nn_rng r;
    nn_rng_seed(&r, 3);
    for (int i = 0; i < N * 4; i++) x[i] = nn_rng_normal(&r);
    for (int i = 0; i < N; i++) y[i] = nn_rng_normal(&r); /* pure noise: nothing to learn */
    nn_data d;
    CHECK(nn_data_from_arrays(&d, N, 1, (int[]){4}, x, NULL, 0, y, 1, NULL) == NN_OK);
    nn_layer *m = mlp(4, 64, 1, 4);
    nn_fit_opts o = nn_fit_defaults();
    o.epochs = 200;
    o.batch_size = 8;
    o.lr = 1e-2f;
    o.val_fraction = 0.5f;
    o.patience = 5;
    nn_history h;
    nn_error err;
    CHECK_MSG(nn_fit(m, &d, &o, &h, &err) == NN_OK, "%s", err.msg);
    CHECK_MSG(h.stopped_early && h.count < 200 && h.count == h.best_epoch + 5, "ran %d, best %d", h.count,
              h.best_epoch);
    /* the validation loss now equals the best epoch's */
    nn_data tr, va;
    CHECK(nn_data_split(&d, 0.5f, o.seed ^ 0x9e3779b97f4a7c15ull, &tr, &va, NULL) == NN_OK);
    nn_eval ev;
    CHECK(nn_evaluate(m, &va, 0, &ev, &err) == NN_OK);
    CHECK_NEAR(ev.mse, h.epochs[h.best_epoch - 1].val_loss, 1e-6);
    CHECK(ev.mse < h.epochs[h.count - 1].val_loss);
    nn_data_free(&tr);
    nn_data_free(&va);
    nn_history_free(&h);
    /* patience without validation data is refused */
    o.val_fraction = 0;
    CHECK(nn_fit(m, &d, &o, NULL, &err) == NN_ERR_ARG && strstr(err.msg, "validation"));
    nn_layer_free(m);
}

static int stop_at_3(const nn_epoch_stats *s, void *user)
{
    ++*(int *)user;
    return s->epoch == 3;
}

static void test_fit_regression_callback_and_errors(void)
{
    enum { N = 256 };
    static float x[N], y[N];
    for (int i = 0; i < N; i++) {
        x[i] = -1.0f + 2.0f * (float)i / (N - 1);
        y[i] = 3.0f * x[i] * x[i] - 1.0f;
    }
    nn_data d;
    CHECK(nn_data_from_arrays(&d, N, 1, (int[]){1}, x, NULL, 0, y, 1, NULL) == NN_OK);
    nn_layer *m = mlp(1, 32, 1, 5);
    nn_eval before, after;
    CHECK(nn_evaluate(m, &d, 0, &before, NULL) == NN_OK);
    int calls = 0;
    nn_fit_opts o = nn_fit_defaults();
    o.epochs = 10;
    o.lr = 1e-2f;
    o.on_epoch = stop_at_3;
    o.user = &calls;
    nn_history h;
    CHECK(nn_fit(m, &d, &o, &h, NULL) == NN_OK);
    CHECK(calls == 3 && h.count == 3 && h.stopped_early);
    nn_history_free(&h);
    o.on_epoch = NULL;
    o.epochs = 60;
    CHECK(nn_fit(m, &d, &o, NULL, NULL) == NN_OK);
    CHECK(nn_evaluate(m, &d, 0, &after, NULL) == NN_OK);
    CHECK_MSG(after.mse < 0.02f && after.mse < before.mse / 20, "mse %g -> %g", (double)before.mse, (double)after.mse);
    /* errors: wrong loss for the targets, data that does not fit the model */
    nn_error err;
    o.loss = NN_LOSS_CROSS_ENTROPY;
    CHECK(nn_fit(m, &d, &o, NULL, &err) == NN_ERR_ARG && strstr(err.msg, "class"));
    o.loss = NN_LOSS_AUTO;
    float x2[N * 2] = {0};
    nn_data d2;
    CHECK(nn_data_from_arrays(&d2, N, 1, (int[]){2}, x2, NULL, 0, y, 1, NULL) == NN_OK);
    CHECK(nn_fit(m, &d2, &o, NULL, &err) == NN_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "layer 0 (dense)"), "%s", err.msg);
    o.epochs = 0;
    CHECK(nn_fit(m, &d, &o, NULL, &err) == NN_ERR_ARG);
    CHECK(nn_fit(NULL, &d, NULL, NULL, &err) == NN_ERR_ARG);
    CHECK(nn_evaluate(m, NULL, 0, &after, &err) == NN_ERR_ARG);
    nn_layer_free(m);
}

static void test_sequence_classifier_in_one_sequential(void)
{
    /* label = whether the sequence's first value is positive: the LSTM must
     * carry it to the last step */
    enum { N = 200, T = 6 };
    static float x[N * T];
    static int labels[N];
    nn_rng r;
    nn_rng_seed(&r, 8);
    for (int i = 0; i < N; i++) {
        for (int t = 0; t < T; t++) x[i * T + t] = nn_rng_uniform(&r) * 2.0f - 1.0f;
        labels[i] = x[i * T] > 0.0f;
    }
    nn_data d;
    CHECK(nn_data_from_arrays(&d, N, 2, (int[]){T, 1}, x, labels, 2, NULL, 0, NULL) == NN_OK);
    nn_layer *m = nn_sequential_new();
    nn_layer *lstm = nn_lstm_new(1, 16, 1, &r);
    nn_recurrent_set_batch_first(lstm, 1);
    nn_sequential_add(m, lstm);
    nn_sequential_add(m, nn_select_step_new(-1, 1));
    nn_sequential_add(m, nn_dense_new(16, 2, NN_INIT_XAVIER, &r));
    nn_fit_opts o = nn_fit_defaults();
    o.epochs = 30;
    o.lr = 1e-2f;
    nn_error err;
    CHECK_MSG(nn_fit(m, &d, &o, NULL, &err) == NN_OK, "%s", err.msg);
    nn_eval ev;
    CHECK(nn_evaluate(m, &d, 0, &ev, &err) == NN_OK);
    CHECK_MSG(ev.accuracy > 0.9f, "accuracy %g", (double)ev.accuracy);
    /* and it round-trips through a model file */
    char path[512];
    snprintf(path, sizeof path, "%s/seq.safetensors", test_tmpdir());
    CHECK(nn_model_save(path, m, NULL, &err) == NN_OK);
    nn_layer *back;
    CHECK_MSG(nn_model_load(path, &back, &err) == NN_OK, "%s", err.msg);
    nn_eval ev2;
    CHECK(nn_evaluate(back, &d, 0, &ev2, &err) == NN_OK);
    CHECK(ev2.accuracy == ev.accuracy && ev2.loss == ev.loss);
    nn_layer_free(back);
    nn_layer_free(m);
}

/* Every built-in kind describes itself and is rebuilt from its description. */
static void test_layer_configs_round_trip(void)
{
    nn_rng r;
    nn_rng_seed(&r, 1);
    nn_layer *m = nn_sequential_new();
    nn_layer *lstm = nn_lstm_new(3, 4, 2, &r);
    nn_recurrent_set_batch_first(lstm, 1);
    nn_layer *layers[] = {nn_standardize_new(3, NULL, NULL, 0), nn_conv2d_new(1, 2, 3, 2, NN_PAD_SAME, &r),
                          nn_maxpool2d_new(2, 0, 1), nn_avgpool2d_new(3, 1, 1), nn_activation_new(NN_ACT_RELU),
                          nn_activation_new(NN_ACT_SIGMOID), nn_activation_new(NN_ACT_TANH),
                          nn_leaky_relu_new(0.25f), nn_dropout_new(0.3f, 99), nn_flatten_new(), lstm,
                          nn_rnn_new(2, 5, 1, &r), nn_select_step_new(-2, 1), nn_dense_new(4, 2, NN_INIT_HE, &r),
                          nn_standardize_new(2, NULL, NULL, 1)};
    const char *kinds[] = {"standardize", "conv2d", "maxpool2d", "avgpool2d", "relu", "sigmoid", "tanh",
                           "leaky_relu", "dropout", "flatten", "lstm", "rnn", "select_step", "dense",
                           "standardize"};
    int n = (int)(sizeof layers / sizeof layers[0]);
    for (int i = 0; i < n; i++) {
        CHECK(layers[i]);
        CHECK_MSG(!strcmp(nn_layer_kind(layers[i]), kinds[i]), "%d: %s", i, nn_layer_kind(layers[i]));
        nn_sequential_add(m, layers[i]);
    }
    nn_layer_config c = nn_layer_get_config(layers[1]);
    CHECK(c.in == 1 && c.out == 2 && c.kernel == 3 && c.stride == 2 && c.padding == NN_PAD_SAME);
    c = nn_layer_get_config(layers[2]);
    CHECK(c.kernel == 2 && c.stride == 2 && c.padding == 1);
    c = nn_layer_get_config(layers[8]);
    CHECK(c.rate == (float)0.3f && c.seed == 99); /* (float): see test_optim.c's defaults test */
    c = nn_layer_get_config(lstm);
    CHECK(c.in == 3 && c.out == 4 && c.num_layers == 2 && c.batch_first == 1);
    c = nn_layer_get_config(layers[12]);
    CHECK(c.step == -2 && c.batch_first == 1);
    char *arch;
    nn_error err;
    CHECK(nn_model_architecture(m, &arch, &err) == NN_OK);
    nn_layer *back;
    CHECK_MSG(nn_model_from_architecture(arch, "test", &back, &err) == NN_OK, "%s", err.msg);
    char *arch2;
    CHECK(nn_model_architecture(back, &arch2, &err) == NN_OK);
    CHECK_MSG(!strcmp(arch, arch2), "%s\nvs\n%s", arch, arch2);
    for (int i = 0; i < n; i++) {
        nn_layer_config a = nn_layer_get_config(nn_sequential_get(m, i)),
                        b = nn_layer_get_config(nn_sequential_get(back, i));
        CHECK(!strcmp(a.kind, b.kind) && a.in == b.in && a.out == b.out && a.kernel == b.kernel &&
              a.stride == b.stride && a.padding == b.padding && a.num_layers == b.num_layers &&
              a.batch_first == b.batch_first && a.step == b.step && a.rate == b.rate &&
              a.inverse == b.inverse && a.seed == b.seed);
    }
    free(arch);
    free(arch2);
    nn_layer_free(back);
    nn_layer_free(m);
}

static nn_layer *small_cnn(uint64_t seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    nn_layer *m = nn_sequential_new();
    nn_sequential_add(m, nn_conv2d_new(1, 4, 3, 1, 0, &r));
    nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(m, nn_maxpool2d_new(2, 2, 0));
    nn_sequential_add(m, nn_flatten_new());
    nn_sequential_add(m, nn_dense_new(4 * 3 * 3, 3, NN_INIT_XAVIER, &r));
    return m;
}

static void test_model_file_round_trip_and_predictor(void)
{
    enum { N = 20 };
    static float x[N * 64];
    nn_rng r;
    nn_rng_seed(&r, 2);
    for (int i = 0; i < N * 64; i++) x[i] = nn_rng_normal(&r);
    nn_data d;
    CHECK(nn_data_from_arrays(&d, N, 3, (int[]){1, 8, 8}, x, NULL, 0, NULL, 0, NULL) == NN_OK);
    nn_layer *m = small_cnn(3);
    char path[512];
    snprintf(path, sizeof path, "%s/cnn.safetensors", test_tmpdir());
    nn_model_save_opts so = {3, {1, 8, 8}, NULL, (const char *[]){"note", "hello"}, 1};
    nn_error err;
    CHECK_MSG(nn_model_save(path, m, &so, &err) == NN_OK, "%s", err.msg);
    nn_layer *back;
    CHECK_MSG(nn_model_load(path, &back, &err) == NN_OK, "%s", err.msg);
    static float p1[N * 3], p2[N * 3];
    CHECK(nn_predict(m, &d, 6, p1, N * 3, &err) == NN_OK);
    CHECK(nn_predict(back, &d, 0, p2, N * 3, &err) == NN_OK);
    CHECK(!memcmp(p1, p2, sizeof p1));
    CHECK(nn_predict(m, &d, 6, p1, N * 3 - 1, &err) == NN_ERR_ARG && strstr(err.msg, "60"));
    nn_safetensors st;
    CHECK(nn_safetensors_read(path, &st, &err) == NN_OK);
    int shape[3];
    CHECK(nn_model_input_shape(&st, shape) == 3 && shape[0] == 1 && shape[1] == 8 && shape[2] == 8);
    CHECK(!strcmp(nn_safetensors_meta(&st, "note"), "hello"));
    nn_safetensors_free(&st);

    /* one example at a time: the same outputs to rounding (the predictor's
     * plan sums in another order), no allocation after the first call */
    nn_predictor *p = nn_predictor_new(back, 3, (int[]){1, 8, 8}, &err);
    CHECK(p);
    size_t mallocs = 0;
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < N; i++) {
            int n;
            const float *y = nn_predictor_run(p, x + i * 64, &n, &err);
            CHECK(y && n == 3);
            for (int j = 0; j < 3; j++)
                CHECK_MSG(fabsf(y[j] - p2[i * 3 + j]) <= 1e-5f * (1.0f + fabsf(p2[i * 3 + j])),
                          "example %d output %d: %g vs %g", i, j, (double)y[j], (double)p2[i * 3 + j]);
            if (k == 0 && i == 0) mallocs = nn_graph_get_stats(nn_predictor_graph(p)).mallocs;
        }
    CHECK(nn_graph_get_stats(nn_predictor_graph(p)).mallocs == mallocs);
    CHECK(nn_predictor_class(p, x, &err) >= 0);
    nn_predictor_free(p);
    p = nn_predictor_new(back, 1, (int[]){64}, &err); /* flat input does not fit a conv */
    CHECK(p && nn_predictor_run(p, x, NULL, &err) == NULL && strstr(err.msg, "layer 0 (conv2d)"));
    nn_predictor_free(p);

    /* summary: shapes and the parameter total */
    FILE *f = tmpfile();
    CHECK(f && nn_model_summary(back, 3, (int[]){1, 8, 8}, f, &err) == NN_OK);
    char text[4096] = {0};
    rewind(f);
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = '\0';
    fclose(f);
    CHECK_MSG(strstr(text, "[1x4x6x6]") && strstr(text, "[1x3]") && strstr(text, "total parameters: 151"), "%s", text);
    f = tmpfile();
    CHECK(f && nn_model_summary(back, 1, (int[]){64}, f, &err) == NN_ERR_SHAPE);
    fclose(f);
    nn_layer_free(back);
    nn_layer_free(m);
}

/* Write a safetensors file with the given architecture metadata and m's weights. */
static void write_with_arch(const char *path, nn_layer *m, const char *arch)
{
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(m, &p);
    const char *meta[] = {NN_MODEL_META_LAYERS, arch};
    nn_safetensors_write(path, &p, meta, 1, NULL);
    nn_params_free(&p);
}

static void test_model_file_hostile_metadata(void)
{
    nn_layer *m = small_cnn(1);
    char path[512];
    snprintf(path, sizeof path, "%s/bad.safetensors", test_tmpdir());
    const char *good = "conv2d in=1 out=4 kernel=3 stride=1 padding=0; relu; maxpool2d kernel=2 stride=2 "
                       "padding=0; flatten; dense in=36 out=3";
    struct {
        const char *arch, *want;
    } cases[] = {
        {"conv2d in=1 out=4 kernel=3 stride=1 padding=0; swish", "unknown layer kind 'swish'"},
        {"conv2d in=1 out=4 kernel=3 stride=1", "missing hyperparameter 'padding'"},
        {"conv2d in=1 out=4 kernel=3 stride=1 padding=0 dilation=2", "unknown hyperparameter 'dilation'"},
        {"conv2d in=1 out=4 kernel=x stride=1 padding=0", "kernel=x is not an integer"},
        {"conv2d in=1 out=0 kernel=3 stride=1 padding=0", "nn_conv2d_new"},
        {"conv2d in=1 out=4 kernel=3 stride=1 padding=0;; relu", "layer 1: empty entry"},
        {"conv2d in=1 in=1 out=4 kernel=3 stride=1 padding=0", "'in' given twice"},
        {"dropout p=nan seed=1", "p=nan"},
        {"dropout p=1.5 seed=1", "nn_dropout_new"},
        {"conv2d in=1 out=4 kernel=2 stride=1 padding=0; relu; maxpool2d kernel=2 stride=2 padding=0; "
         "flatten; dense in=36 out=3", "0.weight"}, /* shapes disagree with the weights */
        {"conv2d in=1 out=5 kernel=3 stride=1 padding=0; relu; maxpool2d kernel=2 stride=2 padding=0; "
         "flatten; dense in=45 out=3", "more weights"},
        {"dense in=100000 out=100000", "more weights"}, /* refused before allocating 40 GB */
        {"conv2d in=1 out=4 kernel=3 stride=1 padding=0; relu; maxpool2d kernel=2 stride=2 padding=0; "
         "flatten; dense in=36 out=3; dense in=3 out=2", "more weights"}, /* tensors the file lacks */
        {"", "empty entry"},
    };
    nn_error err;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_with_arch(path, m, cases[i].arch);
        nn_layer *back = (nn_layer *)1;
        nn_status s = nn_model_load(path, &back, &err);
        CHECK_MSG(s != NN_OK && back == NULL, "case %zu loaded", i);
        CHECK_MSG(strstr(err.msg, cases[i].want) && strstr(err.msg, "bad.safetensors"), "case %zu: %s", i, err.msg);
    }
    write_with_arch(path, m, good);
    nn_layer *back;
    CHECK_MSG(nn_model_load(path, &back, &err) == NN_OK, "%s", err.msg);
    nn_layer_free(back);
    /* weights only: no architecture */
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(m, &p);
    nn_save_params(path, &p, NULL);
    nn_params_free(&p);
    CHECK(nn_model_load(path, &back, &err) == NN_ERR_FORMAT && strstr(err.msg, "architecture"));
    /* custom or nested layers cannot be described */
    nn_layer *outer = nn_sequential_new();
    nn_sequential_add(outer, nn_sequential_new());
    CHECK(nn_model_save(path, outer, NULL, &err) == NN_ERR_ARG && strstr(err.msg, "layer 0"));
    nn_layer_free(outer);
    nn_layer_free(m);
}

static void test_api_errors_are_values(void)
{
    CHECK(nn_dense_new(0, 3, NN_INIT_HE, &(nn_rng){{1, 2, 3, 4}}) == NULL);
    CHECK_MSG(strstr(nn_layer_last_error(), "nn_dense_new") && strstr(nn_layer_last_error(), "0"), "%s",
              nn_layer_last_error());
    CHECK(nn_conv2d_new(1, 1, 3, 0, 0, &(nn_rng){{1, 2, 3, 4}}) == NULL && strstr(nn_layer_last_error(), "stride 0"));
    CHECK(nn_dropout_new(1.5f, 1) == NULL && strstr(nn_layer_last_error(), "1.5"));
    nn_params none;
    nn_params_init(&none);
    nn_sgd_opts bad_lr = {-0.1f, 0, 0, 0};
    CHECK(nn_optim_sgd_new(&none, bad_lr) == NULL);
    CHECK_MSG(strstr(nn_optim_last_error(), "lr"), "%s", nn_optim_last_error());
    /* NULL arguments give errors, not crashes */
    nn_graph *g = nn_graph_new();
    nn_error err;
    CHECK(nn_layer_forward(NULL, g, NULL) == NULL);
    CHECK(nn_backward(NULL, NULL, &err) == NN_ERR_ARG);
    CHECK(nn_backward(g, NULL, &err) == NN_ERR_ARG);
    nn_graph_set_abort_on_error(g, 0);
    nn_layer *m = mlp(3, 4, 2, 1);
    CHECK(nn_layer_forward(m, g, NULL) == NULL && nn_graph_error(g));
    /* a shape error inside a sequential names the layer */
    nn_graph_reset(g);
    nn_tensor *x = nn_tensor_new2(2, 5);
    CHECK(nn_layer_forward(m, g, x) == NULL);
    CHECK_MSG(strstr(nn_graph_error(g), "layer 0 (dense): dense:"), "%s", nn_graph_error(g));
    /* a loss recorded on another graph is refused */
    nn_graph *g2 = nn_graph_new();
    nn_tensor *x3 = nn_tensor_new2(2, 3);
    nn_tensor *loss = nn_mean(g2, nn_layer_forward(m, g2, x3));
    nn_graph_reset(g);
    CHECK(nn_backward(g, loss, &err) == NN_ERR_ARG && strstr(err.msg, "this graph"));
    CHECK(nn_backward(g2, loss, &err) == NN_OK);
    nn_tensor_free(x);
    nn_tensor_free(x3);
    nn_graph_free(g);
    nn_graph_free(g2);
    nn_layer_free(m);
}

static void test_standardize_layer(void)
{
    float mean[2] = {1.0f, -2.0f}, sd[2] = {2.0f, 0.5f};
    nn_layer *s = nn_standardize_new(2, mean, sd, 0), *inv = nn_standardize_new(2, mean, sd, 1);
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new2(2, 2);
    float v[4] = {3.0f, -1.0f, 1.0f, -2.0f};
    memcpy(x->data, v, sizeof v);
    nn_tensor *y = nn_layer_forward(s, g, x), *z = nn_layer_forward(inv, g, y);
    CHECK_NEAR(y->data[0], 1.0, 1e-6);
    CHECK_NEAR(y->data[1], 2.0, 1e-6);
    CHECK_NEAR(y->data[3], 0.0, 1e-6);
    for (int i = 0; i < 4; i++) CHECK_NEAR(z->data[i], v[i], 1e-6);
    /* frozen: an optimizer leaves the statistics alone */
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(s, &p);
    CHECK(p.count == 2 && !strcmp(p.names[0], "mean"));
    nn_optim *o = nn_optim_adam_new(&p, nn_adam_defaults(0.1f));
    for (int i = 0; i < 2; i++) p.tensors[i]->grad[0] = 1.0f;
    nn_optim_step(o);
    CHECK(p.tensors[0]->data[0] == 1.0f && p.tensors[1]->data[0] == 2.0f);
    CHECK(nn_standardize_new(2, mean, (float[]){1.0f, 0.0f}, 0) == NULL);
    nn_optim_free(o);
    nn_params_free(&p);
    nn_tensor_free(x);
    nn_graph_free(g);
    nn_layer_free(s);
    nn_layer_free(inv);
}

static nn_status csv(const char *text, const nn_csv_opts *o, nn_data *d, nn_error *err)
{
    return nn_csv_parse(text, strlen(text), "t.csv", o, d, err);
}

static void test_csv_classes_quotes_crlf(void)
{
    const char *text = "\xef\xbb\xbf" "a,\"b,c\",species\r\n"
                       "1, 2 ,virginica\r\n"
                       "\r\n"
                       "\"3\",4e-1,setosa\n"
                       "-5,6,\"vir\"\"ginica\"\n"
                       "7,8,virginica";
    nn_csv_opts o = nn_csv_defaults("species");
    nn_data d;
    nn_error err;
    CHECK_MSG(csv(text, &o, &d, &err) == NN_OK, "%s", err.msg);
    CHECK(d.count == 4 && d.example_size == 2 && d.target == NN_TARGET_CLASS && d.num_classes == 3);
    CHECK(!strcmp(d.feature_names[0], "a") && !strcmp(d.feature_names[1], "b,c"));
    CHECK(!strcmp(d.class_names[0], "virginica") && !strcmp(d.class_names[1], "setosa") &&
          !strcmp(d.class_names[2], "vir\"ginica"));
    CHECK(d.labels[0] == 0 && d.labels[1] == 1 && d.labels[2] == 2 && d.labels[3] == 0);
    CHECK(d.x[0] == 1.0f && d.x[1] == 2.0f && d.x[2] == 3.0f && d.x[3] == (float)0.4f && d.x[4] == -5.0f);
    nn_data_free(&d);
    o.order = NN_CSV_SORTED;
    CHECK(csv(text, &o, &d, &err) == NN_OK);
    CHECK(!strcmp(d.class_names[0], "setosa") && d.labels[0] == 2 && d.labels[1] == 0);
    nn_data_free(&d);
    /* numeric targets: regression, unless told to classify */
    o = nn_csv_defaults("y");
    CHECK(csv("x,y\n1,0.5\n2,1.5\n", &o, &d, &err) == NN_OK);
    CHECK(d.target == NN_TARGET_VALUE && d.y[1] == 1.5f);
    nn_data_free(&d);
    o.classify = 1;
    CHECK(csv("x,y\n1,3\n2,1\n3,3\n", &o, &d, &err) == NN_OK);
    CHECK(d.target == NN_TARGET_CLASS && d.num_classes == 2 && !strcmp(d.class_names[0], "3"));
    nn_data_free(&d);
    /* a fixed class list (what a saved model knows) */
    const char *names[] = {"b", "a"};
    o = nn_csv_defaults("y");
    o.classify = 1;
    o.class_names = names;
    o.num_class_names = 2;
    CHECK(csv("x,y\n1,a\n2,b\n", &o, &d, &err) == NN_OK && d.labels[0] == 1 && d.labels[1] == 0);
    nn_data_free(&d);
    CHECK(csv("x,y\n1,a\n2,c\n", &o, &d, &err) == NN_ERR_FORMAT && strstr(err.msg, "line 3, column 2 (y): unknown class 'c'"));
    /* the target column may be absent when optional */
    o = nn_csv_defaults("y");
    o.target_optional = 1;
    CHECK(csv("x,z\n1,2\n", &o, &d, &err) == NN_OK && d.target == NN_TARGET_NONE && d.example_size == 2);
    nn_data_free(&d);
}

static void test_csv_hostile_inputs_name_line_and_column(void)
{
    struct {
        const char *text, *want;
    } cases[] = {
        {"", "empty file"},
        {"\n\n", "empty file"},
        {"a,y\n", "no data rows"},
        {"a,b\n1,2\n", "no column named 'y'"},
        {"y\n1\n", "no feature columns"},
        {"a,a,y\n1,2,3\n", "'a' appears twice"},
        {"a,y\n1,2\n3\n", "line 3: 1 field, the header has 2"},
        {"a,y\n1,2,3\n", "line 2: more than the header's 2 fields"},
        {"a,b,y\n1,abc,2\n", "line 2, column 2 (b): 'abc' is not a finite number"},
        {"a,b,y\n1,,2\n", "line 2, column 2 (b): an empty field is not a finite number"},
        {"a,b,y\n1,nan,2\n", "'nan' is not a finite number"},
        {"a,b,y\n1,1e99,2\n", "'1e99' is not a finite number"},
        {"a,y\n\"1,2\n", "line 2, column 1: quoted field never closed"},
        {"a,y\n\"1\"x,2\n", "line 2, column 1: text after a closing quote"},
        {"a,y\n1\"2,3\n", "a quote inside an unquoted field"},
        {"a,y\r\n1,2\r\n\r\n3,x\r\n", "line 4, column 2 (y)"},
        {"\"multi\nline\",y\n2,3\n4,z\n", "line 4, column 2 (y)"},
        {"a,y\n1\0,2\n", "NUL byte"},
    };
    nn_csv_opts o = nn_csv_defaults("y");
    o.classify = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nn_data d;
        nn_error err;
        size_t len = strlen(cases[i].text);
        if (i == sizeof cases / sizeof cases[0] - 1) len = 10; /* the NUL case */
        nn_status s = nn_csv_parse(cases[i].text, len, "t.csv", &o, &d, &err);
        CHECK_MSG(s == NN_ERR_FORMAT, "case %zu: status %d", i, (int)s);
        CHECK_MSG(strstr(err.msg, cases[i].want) && !strncmp(err.msg, "t.csv: ", 7), "case %zu: %s", i, err.msg);
        CHECK(d.count == 0 && d.x == NULL);
    }
    nn_data d;
    nn_error err;
    CHECK(nn_csv_load("/nonexistent/x.csv", &o, &d, &err) == NN_ERR_IO && strstr(err.msg, "/nonexistent/x.csv"));
}

/* MNIST is one producer of nn_data: the same standardised pixels and labels
 * as the image batcher gives. */
static void test_data_from_mnist_matches_image_batcher(void)
{
    enum { N = 5, R = 4, C = 3 };
    uint8_t images[N * R * C], labels[N] = {3, 1, 4, 1, 5};
    for (int i = 0; i < N * R * C; i++) images[i] = (uint8_t)(i * 37);
    nn_dataset m = {images, labels, N, R, C};
    nn_data d;
    nn_error err;
    CHECK(nn_data_from_mnist(&m, NN_LAYOUT_NCHW, NN_MNIST_MEAN, NN_MNIST_STD, &d, &err) == NN_OK);
    CHECK(d.count == N && d.ndim == 3 && d.shape[0] == 1 && d.shape[1] == R && d.shape[2] == C);
    CHECK(d.num_classes == 10 && d.labels[2] == 4);
    nn_batcher b;
    CHECK(nn_batcher_init(&b, &m, N, NN_LAYOUT_NCHW, 0, 1, &err) == NN_OK);
    nn_batcher_normalize(&b, NN_MNIST_MEAN, NN_MNIST_STD);
    CHECK(nn_batcher_next(&b) == N);
    for (int i = 0; i < N * R * C; i++) CHECK_NEAR(d.x[i], b.x->data[i], 1e-5);
    nn_batcher_free(&b);
    nn_data_free(&d);
    CHECK(nn_data_from_mnist(&m, NN_LAYOUT_FLAT, 0.0f, 1.0f, &d, &err) == NN_OK);
    CHECK(d.ndim == 1 && d.example_size == R * C);
    CHECK_NEAR(d.x[1], 37.0 / 255.0, 1e-7);
    nn_data_free(&d);
}

/* A model with weights that are exact in binary (no libm in their making),
 * so every host writes the same file. */
static nn_layer *exact_cnn(void)
{
    nn_layer *m = small_cnn(1);
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(m, &p);
    for (int t = 0; t < p.count; t++)
        for (size_t i = 0; i < p.tensors[t]->size; i++)
            p.tensors[t]->data[i] = (float)((int)((i * 7 + (size_t)t * 3) % 17) - 8) / 32.0f;
    nn_params_free(&p);
    return m;
}

/* Files are the same bytes on every host: a model written here equals
 * tests/fixtures/model-exact.safetensors, written on x86-64 (so an x86 file
 * loads on a big-endian host and the other way round), and the fixture
 * loads and predicts as the model it was written from. */
static void test_model_file_same_bytes_on_every_host(void)
{
    nn_layer *m = exact_cnn();
    char path[512];
    snprintf(path, sizeof path, "%s/exact.safetensors", test_tmpdir());
    nn_model_save_opts so = {3, {1, 8, 8}, NULL, NULL, 0};
    nn_error err;
    CHECK(nn_model_save(path, m, &so, &err) == NN_OK);
    uint8_t *mine, *fixture;
    size_t n_mine, n_fixture;
    CHECK(nn_read_file(path, 1 << 20, &mine, &n_mine, &err) == NN_OK);
    CHECK_MSG(nn_read_file(FIXTURES "/model-exact.safetensors", 1 << 20, &fixture, &n_fixture, &err) == NN_OK,
              "%s", err.msg);
    int same = n_mine == n_fixture && !memcmp(mine, fixture, n_mine);
    free(mine);
    free(fixture);
    CHECK_MSG(same, "this host writes other bytes than tests/fixtures/model-exact.safetensors");
    nn_layer *back;
    CHECK(nn_model_load(FIXTURES "/model-exact.safetensors", &back, &err) == NN_OK);
    float x[2 * 64], y1[6], y2[6];
    for (int i = 0; i < 2 * 64; i++) x[i] = (float)(i % 9 - 4) / 8.0f;
    nn_data d;
    CHECK(nn_data_from_arrays(&d, 2, 3, (int[]){1, 8, 8}, x, NULL, 0, NULL, 0, &err) == NN_OK);
    CHECK(nn_predict(m, &d, 0, y1, 6, &err) == NN_OK && nn_predict(back, &d, 0, y2, 6, &err) == NN_OK);
    CHECK(!memcmp(y1, y2, sizeof y1));
    nn_layer_free(back);
    nn_layer_free(m);
}

const test_case own_data_tests[] = {
    {"model_file_same_bytes_on_every_host", test_model_file_same_bytes_on_every_host},
    {"data_from_mnist_matches_image_batcher", test_data_from_mnist_matches_image_batcher},
    {"csv_classes_quotes_crlf", test_csv_classes_quotes_crlf},
    {"csv_hostile_inputs_name_line_and_column", test_csv_hostile_inputs_name_line_and_column},
    {"data_from_arrays_checks", test_data_from_arrays_checks},
    {"data_batcher_covers_each_example_once", test_data_batcher_covers_each_example_once},
    {"data_batcher_time_major", test_data_batcher_time_major},
    {"data_split_is_a_seeded_partition", test_data_split_is_a_seeded_partition},
    {"fit_classifier_with_validation_fraction", test_fit_classifier_with_validation_fraction},
    {"fit_early_stopping_restores_best", test_fit_early_stopping_restores_best},
    {"fit_regression_callback_and_errors", test_fit_regression_callback_and_errors},
    {"sequence_classifier_in_one_sequential", test_sequence_classifier_in_one_sequential},
    {"layer_configs_round_trip", test_layer_configs_round_trip},
    {"model_file_round_trip_and_predictor", test_model_file_round_trip_and_predictor},
    {"model_file_hostile_metadata", test_model_file_hostile_metadata},
    {"api_errors_are_values", test_api_errors_are_values},
    {"standardize_layer", test_standardize_layer},
    {NULL, NULL}};
