/* The engine: accumulation, reset, the no-malloc guarantee, misuse. */
#include <math.h>
#include <string.h>

#include "nn.h"
#include "test.h"

static void test_shared_input_gets_both_contributions(void)
{
    /* y = sum(x*x + x): dy/dx = 2x + 1 */
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new1(3);
    nn_tensor_requires_grad(x, 1);
    x->data[0] = 1;
    x->data[1] = -2;
    x->data[2] = 0.5f;
    nn_tensor *y = nn_sum(g, nn_add(g, nn_mul(g, x, x), x));
    CHECK(nn_backward(g, y, NULL) == NN_OK);
    CHECK_NEAR(x->grad[0], 3.0, 1e-6);
    CHECK_NEAR(x->grad[1], -3.0, 1e-6);
    CHECK_NEAR(x->grad[2], 2.0, 1e-6);
    nn_tensor_free(x);
    nn_graph_free(g);
}

static void test_param_grads_accumulate_across_backward_calls(void)
{
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new1(2);
    nn_tensor_requires_grad(x, 1);
    nn_tensor_fill(x, 1.0f);
    for (int step = 0; step < 2; step++) {
        nn_graph_reset(g);
        CHECK(nn_backward(g, nn_sum(g, nn_scale(g, x, 3.0f)), NULL) == NN_OK);
    }
    CHECK_NEAR(x->grad[0], 6.0, 1e-6);
    /* The same recorded graph may be differentiated twice. */
    nn_tensor_zero_grad(x);
    nn_tensor *loss = nn_sum(g, nn_relu(g, x));
    CHECK(nn_backward(g, loss, NULL) == NN_OK);
    CHECK(nn_backward(g, loss, NULL) == NN_OK);
    CHECK_NEAR(x->grad[1], 2.0, 1e-6);
    nn_tensor_free(x);
    nn_graph_free(g);
}

static void test_no_grad_records_nothing(void)
{
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new2(2, 2);
    nn_tensor_requires_grad(x, 1);
    nn_graph_set_grad_enabled(g, 0);
    nn_tensor *y = nn_relu(g, x);
    CHECK(y && nn_graph_get_stats(g).tape_len == 0);
    CHECK(!(y->flags & NN_REQUIRES_GRAD));
    nn_error err;
    CHECK(nn_backward(g, nn_sum(g, y), &err) == NN_ERR_ARG);
    nn_graph_set_grad_enabled(g, 1);
    nn_graph_reset(g);
    nn_tensor *c = nn_tensor_new2(2, 2); /* no gradient wanted: no record */
    nn_relu(g, c);
    CHECK(nn_graph_get_stats(g).tape_len == 0);
    nn_relu(g, x);
    CHECK(nn_graph_get_stats(g).tape_len == 1);
    nn_tensor_free(c);
    nn_tensor_free(x);
    nn_graph_free(g);
}

static void test_backward_rejects_bad_losses(void)
{
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new1(3);
    nn_tensor_requires_grad(x, 1);
    nn_error err;
    CHECK(nn_backward(g, NULL, &err) == NN_ERR_ARG);
    CHECK(nn_backward(g, nn_relu(g, x), &err) == NN_ERR_ARG);
    CHECK(strstr(err.msg, "1 element") && strstr(err.msg, "[3]"));
    CHECK(nn_backward(g, x, &err) == NN_ERR_ARG); /* not computed on the graph */
    x->data[0] = INFINITY;
    nn_tensor *bad = nn_sum(g, x);
    nn_tensor_zero_grad(x);
    CHECK(nn_backward(g, bad, &err) == NN_ERR_NUMERIC && strstr(err.msg, "inf"));
    CHECK(x->grad[1] == 0.0f); /* nothing accumulated */
    nn_tensor_free(x);
    nn_graph_free(g);
}

static void test_misuse_reports_op_and_both_shapes(void)
{
    nn_graph *g = nn_graph_new();
    nn_graph_set_abort_on_error(g, 0);
    nn_tensor *a = nn_tensor_new2(2, 3), *b = nn_tensor_new2(4, 5), *bias = nn_tensor_new1(7);
    CHECK(nn_matmul(g, a, b) == NULL);
    const char *e = nn_graph_error(g);
    CHECK_MSG(e && strstr(e, "nn_matmul") && strstr(e, "[2x3]") && strstr(e, "[4x5]"), "%s", e);
    /* Later ops given the NULL propagate it without replacing the message. */
    CHECK(nn_relu(g, NULL) == NULL);
    CHECK(strstr(nn_graph_error(g), "nn_matmul") != NULL);
    nn_error err;
    CHECK(nn_backward(g, NULL, &err) == NN_ERR_ARG);
    nn_graph_reset(g);
    CHECK(nn_graph_error(g) == NULL);
    CHECK(nn_add(g, a, b) == NULL && strstr(nn_graph_error(g), "nn_add"));
    nn_graph_reset(g);
    CHECK(nn_add_bias(g, a, bias) == NULL && strstr(nn_graph_error(g), "[7]"));
    nn_graph_reset(g);
    CHECK(nn_reshape(g, a, 2, (int[]){4, 2}) == NULL && strstr(nn_graph_error(g), "[4x2]"));
    nn_graph_reset(g);
    int bad_labels[2] = {0, 3};
    CHECK(nn_softmax_cross_entropy(g, a, bad_labels) == NULL);
    CHECK(strstr(nn_graph_error(g), "label 3"));
    nn_graph_reset(g);
    CHECK(nn_mse(g, a, b) == NULL && strstr(nn_graph_error(g), "nn_mse"));
    nn_tensor_free(a);
    nn_tensor_free(b);
    nn_tensor_free(bias);
    nn_graph_free(g);
}

static void test_dense_layer_reports_wrong_input(void)
{
    nn_rng r;
    nn_rng_seed(&r, 1);
    nn_layer *d = nn_dense_new(784, 10, NN_INIT_HE, &r);
    nn_graph *g = nn_graph_new();
    nn_graph_set_abort_on_error(g, 0);
    nn_tensor *x = nn_tensor_new2(8, 100);
    CHECK(nn_layer_forward(d, g, x) == NULL);
    const char *e = nn_graph_error(g);
    CHECK_MSG(e && strstr(e, "dense") && strstr(e, "[8x100]") && strstr(e, "[10x784]"), "%s", e);
    nn_tensor_free(x);
    nn_graph_free(g);
    nn_layer_free(d);
}

static void test_reshape_shares_data(void)
{
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new2(2, 3);
    nn_tensor *y = nn_reshape(g, x, 1, (int[]){6});
    CHECK(y && y->data == x->data && y->size == 6);
    nn_tensor_free(x);
    nn_graph_free(g);
}

/* After one warm-up step, further training steps of the same shape must not
 * grow the arena or the tape (no malloc inside the engine). */
static void test_training_step_allocates_nothing_after_warmup(void)
{
    nn_rng r;
    nn_rng_seed(&r, 3);
    nn_layer *model = nn_sequential_new();
    nn_sequential_add(model, nn_dense_new(20, 32, NN_INIT_HE, &r));
    nn_sequential_add(model, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(model, nn_dense_new(32, 5, NN_INIT_XAVIER, &r));
    nn_params params;
    nn_params_init(&params);
    nn_layer_params(model, &params);
    nn_optim *opt = nn_optim_adam_new(&params, nn_adam_defaults(1e-3f));
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new2(16, 20);
    int labels[16];
    nn_graph_stats after_warmup = {0};
    for (int step = 0; step < 20; step++) {
        nn_tensor_uniform(x, &r, 0, 1);
        for (int i = 0; i < 16; i++) labels[i] = (int)nn_rng_below(&r, 5);
        nn_graph_reset(g);
        nn_optim_zero_grad(opt);
        nn_tensor *loss = nn_softmax_cross_entropy(g, nn_layer_forward(model, g, x), labels);
        CHECK(nn_backward(g, loss, NULL) == NN_OK);
        nn_optim_step(opt);
        if (step == 0) after_warmup = nn_graph_get_stats(g);
    }
    nn_graph_stats end = nn_graph_get_stats(g);
    CHECK_MSG(end.mallocs == after_warmup.mallocs, "mallocs %zu after warm-up, %zu at the end",
              after_warmup.mallocs, end.mallocs);
    CHECK(end.arena_bytes == after_warmup.arena_bytes);
    CHECK(end.arena_used == after_warmup.arena_used && end.tape_len == after_warmup.tape_len);
    nn_tensor_free(x);
    nn_graph_free(g);
    nn_optim_free(opt);
    nn_params_free(&params);
    nn_layer_free(model);
}

static void test_arena_grows_across_blocks_and_rewinds(void)
{
    nn_graph *g = nn_graph_new();
    nn_tensor *big = nn_tensor_new2(600, 600); /* 1.44 MB per op output: several blocks */
    for (int step = 0; step < 3; step++) {
        nn_graph_reset(g);
        nn_tensor *y = big;
        for (int i = 0; i < 4; i++) y = nn_scale(g, y, 1.0f);
        CHECK(y && y->size == big->size);
    }
    nn_graph_stats s = nn_graph_get_stats(g);
    CHECK(s.arena_bytes >= 4 * big->size * sizeof(float));
    CHECK(s.arena_bytes < 8 * big->size * sizeof(float)); /* reused, not regrown */
    nn_tensor_free(big);
    nn_graph_free(g);
}

/* An intermediate result's gradient is used up once its op's backward has
 * run: its buffer goes to the next gradient of the same size (the chain's
 * gradients then take two buffers, not one per op) and the tensor keeps no
 * gradient, while the input's is whole. */
static void test_backward_reuses_used_up_gradients(void)
{
    enum { N = 1000, DEPTH = 12 };
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new1(N);
    nn_tensor_requires_grad(x, 1);
    for (int i = 0; i < N; i++) x->data[i] = (float)(i % 7) * 0.1f - 0.3f;
    nn_tensor *h[DEPTH], *cur = x;
    for (int d = 0; d < DEPTH; d++) cur = h[d] = nn_tanh(g, cur);
    nn_tensor *loss = nn_sum(g, cur);
    size_t before = nn_graph_get_stats(g).arena_used;
    CHECK(nn_backward(g, loss, NULL) == NN_OK);
    size_t grew = nn_graph_get_stats(g).arena_used - before;
    CHECK(grew <= 3 * N * sizeof(float)); /* one per op would be 12 x N floats */
    for (int d = 0; d < DEPTH; d++) CHECK(h[d]->grad == NULL);
    for (int i = 0; i < N; i++) { /* d/dx of tanh applied DEPTH times */
        double v = x->data[i], dv = 1.0;
        for (int d = 0; d < DEPTH; d++) {
            double t = tanh(v);
            dv *= 1.0 - t * t;
            v = t;
        }
        CHECK_NEAR(x->grad[i], dv, 1e-5);
    }
    /* a second backward on the same graph gives the same input gradient again */
    float first = x->grad[5];
    nn_tensor_zero_grad(x);
    CHECK(nn_backward(g, loss, NULL) == NN_OK);
    CHECK(x->grad[5] == first);
    nn_tensor_free(x);
    nn_graph_free(g);
}

static void test_sequential_names_params_like_pytorch(void)
{
    nn_rng r;
    nn_rng_seed(&r, 1);
    nn_layer *m = nn_sequential_new();
    CHECK(nn_sequential_add(m, nn_dense_new(4, 3, NN_INIT_HE, &r)) == NN_OK);
    CHECK(nn_sequential_add(m, nn_activation_new(NN_ACT_TANH)) == NN_OK);
    CHECK(nn_sequential_add(m, nn_dense_new(3, 2, NN_INIT_XAVIER, &r)) == NN_OK);
    CHECK(nn_sequential_add(m, NULL) == NN_ERR_ARG);
    CHECK(nn_sequential_len(m) == 3);
    nn_params p;
    nn_params_init(&p);
    CHECK(nn_layer_params(m, &p) == NN_OK);
    CHECK(p.count == 4);
    CHECK(strcmp(p.names[0], "0.weight") == 0 && strcmp(p.names[1], "0.bias") == 0);
    CHECK(strcmp(p.names[2], "2.weight") == 0 && strcmp(p.names[3], "2.bias") == 0);
    CHECK(nn_params_find(&p, "2.weight")->shape[0] == 2);
    CHECK(nn_params_find(&p, "2.weight")->shape[1] == 3);
    CHECK(nn_params_numel(&p) == 4 * 3 + 3 + 3 * 2 + 2);
    nn_layer_set_training(m, 0);
    CHECK(nn_sequential_get(m, 1)->training == 0);
    nn_params_free(&p);
    nn_layer_free(m);
}

const test_case graph_tests[] = {
    {"graph_shared_input_gets_both_contributions", test_shared_input_gets_both_contributions},
    {"graph_param_grads_accumulate", test_param_grads_accumulate_across_backward_calls},
    {"graph_no_grad_records_nothing", test_no_grad_records_nothing},
    {"graph_backward_rejects_bad_losses", test_backward_rejects_bad_losses},
    {"graph_misuse_reports_op_and_shapes", test_misuse_reports_op_and_both_shapes},
    {"graph_dense_reports_wrong_input", test_dense_layer_reports_wrong_input},
    {"graph_reshape_shares_data", test_reshape_shares_data},
    {"graph_no_malloc_after_warmup", test_training_step_allocates_nothing_after_warmup},
    {"graph_arena_grows_and_rewinds", test_arena_grows_across_blocks_and_rewinds},
    {"graph_backward_reuses_used_up_gradients", test_backward_reuses_used_up_gradients},
    {"sequential_names_params_like_pytorch", test_sequential_names_params_like_pytorch},
    {NULL, NULL}};
