/* Inference: the predictor's plan (channels-last direct convolutions,
 * dense layers as matrix-vector products) against the graph's forward. */
#include <stdlib.h>
#include <string.h>

#include "../src/infer/plan.h"
#include "alloc_fail.h"
#include "nn.h"
#include "test.h"

/* Random parameters (biases too, so that a dropped bias shows). */
static void randomize(nn_layer *m, uint64_t seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(m, &p);
    for (int i = 0; i < p.count; i++) nn_tensor_uniform(p.tensors[i], &r, -0.5f, 0.5f);
    nn_params_free(&p);
}

/* The graph's output for one example in evaluation mode. */
static nn_tensor *graph_output(nn_layer *m, nn_graph *g, int ndim, const int *shape, const float *x)
{
    int full[4] = {1, 1, 1, 1};
    for (int i = 0; i < ndim; i++) full[i + 1] = shape[i];
    nn_tensor *in = nn_graph_tensor(g, ndim + 1, full);
    memcpy(in->data, x, in->size * sizeof(float));
    nn_layer_set_training(m, 0);
    nn_tensor *y = nn_layer_forward(m, g, in);
    nn_layer_set_training(m, 1);
    return y;
}

/* Checks that the plan covers m and agrees with the graph on a few random
 * examples; returns the largest difference relative to 1 + |y|. */
static double plan_vs_graph(nn_layer *m, int ndim, const int *shape, int *covered)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float *x = malloc(n * sizeof *x);
    nn__plan *p = nn__plan_new(m, ndim, shape);
    nn_graph *g = nn_graph_new();
    nn_graph_set_grad_enabled(g, 0);
    nn_rng r;
    nn_rng_seed(&r, 7);
    double worst = 0.0;
    *covered = p != NULL;
    for (int rep = 0; p && rep < 3; rep++) {
        for (size_t i = 0; i < n; i++) x[i] = nn_rng_uniform(&r) * 2.0f - 1.0f;
        nn_graph_reset(g);
        nn_tensor *want = graph_output(m, g, ndim, shape, x);
        int size = 0;
        const float *got = nn__plan_run(p, x, &size);
        if (!want || (size_t)size != want->size) {
            worst = INFINITY;
            break;
        }
        for (int i = 0; i < size; i++) {
            double d = fabs((double)got[i] - want->data[i]) / (1.0 + fabs((double)want->data[i]));
            if (!(d <= worst)) worst = d;
        }
    }
    nn_graph_free(g);
    nn__plan_free(p);
    free(x);
    return worst;
}

static nn_layer *seed_cnn(uint64_t seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    nn_layer *m = nn_sequential_new();
    nn_sequential_add(m, nn_conv2d_new(1, 32, 3, 1, 0, &r));
    nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(m, nn_maxpool2d_new(2, 2, 0));
    nn_sequential_add(m, nn_conv2d_new(32, 64, 3, 1, 0, &r));
    nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(m, nn_maxpool2d_new(2, 2, 0));
    nn_sequential_add(m, nn_flatten_new());
    nn_sequential_add(m, nn_dense_new(1600, 128, NN_INIT_HE, &r));
    nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(m, nn_dropout_new(0.5f, seed));
    nn_sequential_add(m, nn_dense_new(128, 10, NN_INIT_XAVIER, &r));
    return m;
}

static void test_plan_matches_graph_seed_cnn(void)
{
    nn_layer *m = seed_cnn(1);
    randomize(m, 2);
    int covered;
    double d = plan_vs_graph(m, 3, (int[]){1, 28, 28}, &covered);
    nn_layer_free(m);
    CHECK_MSG(covered, "the seed CNN is not covered by the plan");
    CHECK_MSG(d < 1e-5, "plan vs graph: %g", d);
}

/* Padding ("same" and explicit), strides, channel counts that are not a
 * vector multiple and need several channel groups, pooling with padding
 * and stride, every activation, nested containers, Winograd's path with
 * padded output channels, a flat-input MLP. */
static void test_plan_matches_graph_other_shapes(void)
{
    nn_rng r;
    nn_rng_seed(&r, 3);
    nn_layer *a = nn_sequential_new();
    nn_sequential_add(a, nn_conv2d_new(3, 40, 3, 2, NN_PAD_SAME, &r));
    nn_sequential_add(a, nn_leaky_relu_new(0.1f));
    nn_sequential_add(a, nn_maxpool2d_new(3, 2, 1));
    nn_sequential_add(a, nn_conv2d_new(40, 100, 2, 1, 1, &r));
    nn_sequential_add(a, nn_activation_new(NN_ACT_TANH));
    nn_layer *inner = nn_sequential_new();
    nn_sequential_add(inner, nn_conv2d_new(100, 7, 1, 1, 0, &r));
    nn_sequential_add(inner, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(a, inner);
    nn_sequential_add(a, nn_flatten_new());
    nn_sequential_add(a, nn_activation_new(NN_ACT_SIGMOID));
    nn_layer *b = nn_sequential_new(); /* conv straight to the output, no flatten */
    nn_sequential_add(b, nn_conv2d_new(2, 5, 5, 1, 2, &r));
    nn_layer *wino = nn_sequential_new(); /* 3x3 then 2x2 pooling: Winograd, padded channels */
    nn_sequential_add(wino, nn_conv2d_new(3, 16, 3, 1, NN_PAD_SAME, &r));
    nn_sequential_add(wino, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(wino, nn_conv2d_new(16, 24, 3, 1, 0, &r));
    nn_sequential_add(wino, nn_maxpool2d_new(2, 2, 0));
    nn_sequential_add(wino, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(wino, nn_flatten_new());
    nn_sequential_add(wino, nn_dense_new(24 * 5 * 4, 6, NN_INIT_HE, &r));
    nn_layer *mlp = nn_sequential_new();
    nn_sequential_add(mlp, nn_dense_new(37, 19, NN_INIT_HE, &r));
    nn_sequential_add(mlp, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(mlp, nn_dense_new(19, 3, NN_INIT_XAVIER, &r));
    nn_layer *models[] = {a, b, wino, mlp};
    int shapes[][3] = {{3, 17, 15}, {2, 9, 6}, {3, 13, 11}, {37, 0, 0}};
    int ndims[] = {3, 3, 3, 1};
    for (int i = 0; i < 4; i++) {
        randomize(models[i], 10 + (uint64_t)i);
        int covered;
        double d = plan_vs_graph(models[i], ndims[i], shapes[i], &covered);
        CHECK_MSG(covered && d < 1e-5, "model %d: covered %d, plan vs graph %g", i, covered, d);
    }
    for (int i = 0; i < 4; i++) nn_layer_free(models[i]);
}

/* Layers the plan does not cover leave the predictor on the graph, which
 * gives the same answers and reports shape errors. */
static void test_predictor_falls_back_to_the_graph(void)
{
    nn_rng r;
    nn_rng_seed(&r, 4);
    nn_layer *m = nn_sequential_new();
    nn_sequential_add(m, nn_conv2d_new(1, 4, 3, 1, 0, &r));
    nn_sequential_add(m, nn_avgpool2d_new(2, 2, 0));
    nn_sequential_add(m, nn_flatten_new());
    nn_sequential_add(m, nn_dense_new(36, 2, NN_INIT_HE, &r));
    CHECK(nn__plan_new(m, 3, (int[]){1, 8, 8}) == NULL);
    nn_error err;
    nn_predictor *p = nn_predictor_new(m, 3, (int[]){1, 8, 8}, &err);
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = (float)(i % 5) - 2.0f;
    int n = 0;
    const float *y = nn_predictor_run(p, x, &n, &err);
    nn_graph *g = nn_graph_new();
    nn_tensor *want = graph_output(m, g, 3, (int[]){1, 8, 8}, x);
    CHECK(y && n == 2 && !memcmp(y, want->data, 2 * sizeof(float)));
    nn_graph_free(g);
    nn_predictor_free(p);
    /* a shape the model cannot take: no plan, and the graph's message */
    CHECK(nn__plan_new(m, 3, (int[]){2, 8, 8}) == NULL);
    p = nn_predictor_new(m, 3, (int[]){2, 8, 8}, &err);
    float x2[128] = {0};
    CHECK(p && !nn_predictor_run(p, x2, NULL, &err) && strstr(err.msg, "conv2d"));
    nn_predictor_free(p);
    nn_layer_free(m);
}

/* A planned predictor allocates nothing per call, and sees changed weights
 * after nn_predictor_refresh. */
static void test_predictor_no_allocation_and_refresh(void)
{
    nn_layer *m = seed_cnn(5);
    nn_error err;
    nn_predictor *p = nn_predictor_new(m, 3, (int[]){1, 28, 28}, &err);
    CHECK(p);
    float x[784];
    for (int i = 0; i < 784; i++) x[i] = (float)((i * 7) % 13) / 13.0f;
    int n;
    float before[10];
    memcpy(before, nn_predictor_run(p, x, &n, &err), sizeof before);
    alloc_fail_at(0);
    for (int k = 0; k < 50; k++) nn_predictor_run(p, x, &n, &err);
    long calls = alloc_calls();
    CHECK_MSG(calls == 0, "%ld allocations in 50 predictions", calls);
    nn_tensor *w = nn_conv2d_weight(nn_sequential_get(m, 0));
    for (size_t i = 0; i < w->size; i++) w->data[i] *= 2.0f;
    nn_predictor_refresh(p);
    const float *after = nn_predictor_run(p, x, &n, &err);
    nn_graph *g = nn_graph_new();
    nn_tensor *want = graph_output(m, g, 3, (int[]){1, 28, 28}, x);
    int same = 1;
    double d = 0.0;
    for (int i = 0; i < 10; i++) {
        same &= after[i] == before[i];
        double e = fabs((double)after[i] - want->data[i]) / (1.0 + fabs((double)want->data[i]));
        if (e > d) d = e;
    }
    CHECK_MSG(!same && d < 1e-5, "after refresh: unchanged %d, vs graph %g", same, d);
    nn_graph_free(g);
    nn_predictor_free(p);
    nn_layer_free(m);
}

const test_case infer_tests[] = {
    {"plan_matches_graph_seed_cnn", test_plan_matches_graph_seed_cnn},
    {"plan_matches_graph_other_shapes", test_plan_matches_graph_other_shapes},
    {"predictor_falls_back_to_the_graph", test_predictor_falls_back_to_the_graph},
    {"predictor_no_allocation_and_refresh", test_predictor_no_allocation_and_refresh},
    {NULL, NULL}};
