/* Finite-difference gradient checks for every differentiable op.
 *
 * Each check builds out = op(inputs), reduces it to a scalar with fixed
 * random weights (loss = sum(out * w)), runs nn_backward, and compares every
 * input gradient element with a central difference of the loss. */
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test.h"
#include "../src/ops/ops_internal.h"

/* max(a, b) written out: Debian 12's aarch64 gcc 12.2 crashes (an internal
 * compiler error) vectorizing fmax reductions at -O3. */
static inline double larger(double a, double b) { return a > b ? a : b; }

typedef nn_tensor *(*build_fn)(nn_graph *g, nn_tensor **in, const void *ctx);

#define EPS 1e-2
#define ATOL 1e-3
#define RTOL 1e-2

static double loss_of(nn_graph *g, build_fn f, nn_tensor **in, const void *ctx, nn_tensor *w)
{
    nn_graph_reset(g);
    nn_tensor *out = f(g, in, ctx);
    nn_tensor *loss = nn_sum(g, nn_mul(g, out, w));
    return loss->data[0];
}

/* Returns 1 if all gradients match, else prints the first mismatch. */
static int gradcheck(const char *name, build_fn f, nn_tensor **in, int n_in, const void *ctx)
{
    nn_graph *g = nn_graph_new();
    nn_rng r;
    nn_rng_seed(&r, 77);
    nn_tensor *out = f(g, in, ctx);
    if (!out) {
        const char *why = nn_graph_error(g);
        fprintf(stderr, "    %s: no output (%s)\n", name, why ? why : "no graph error");
        nn_graph_free(g);
        return 0;
    }
    nn_tensor *w = nn_tensor_new(out->ndim, out->shape);
    nn_tensor_uniform(w, &r, -1.0f, 1.0f);
    for (int i = 0; i < n_in; i++) nn_tensor_zero_grad(in[i]);
    nn_tensor *loss = nn_sum(g, nn_mul(g, out, w));
    int ok = nn_backward(g, loss, NULL) == NN_OK;
    if (!ok) fprintf(stderr, "    %s: backward failed\n", name);
    nn_graph_set_grad_enabled(g, 0);
    for (int i = 0; ok && i < n_in; i++) {
        nn_tensor *x = in[i];
        if (!x->grad) continue;
        for (size_t j = 0; j < x->size; j++) {
            float saved = x->data[j];
            x->data[j] = saved + (float)EPS;
            double lp = loss_of(g, f, in, ctx, w);
            x->data[j] = saved - (float)EPS;
            double lm = loss_of(g, f, in, ctx, w);
            x->data[j] = saved;
            double num = (lp - lm) / (2 * EPS), ana = x->grad[j];
            if (fabs(num - ana) > ATOL + RTOL * fabs(num)) {
                fprintf(stderr, "    %s: input %d element %zu: analytic %.6g vs numeric %.6g\n",
                        name, i, j, ana, num);
                ok = 0;
                break;
            }
        }
    }
    nn_tensor_free(w);
    nn_graph_free(g);
    return ok;
}

/* A parameter-like input with values in [lo, hi) (and |x| >= gap, so that
 * kinks such as relu's stay farther than EPS from every sample). */
static nn_tensor *input(nn_rng *r, int ndim, const int *shape, float gap)
{
    nn_tensor *t = nn_tensor_new(ndim, shape);
    for (size_t i = 0; i < t->size; i++) {
        float v;
        do v = nn_rng_uniform(r) * 2.0f - 1.0f;
        while (fabsf(v) < gap);
        t->data[i] = v;
    }
    nn_tensor_requires_grad(t, 1);
    return t;
}

static void free_all(nn_tensor **t, int n)
{
    for (int i = 0; i < n; i++) nn_tensor_free(t[i]);
}

/* ---- builders ---- */
static nn_tensor *b_matmul(nn_graph *g, nn_tensor **in, const void *ctx)
{
    const int *t = ctx;
    return nn_matmul_ex(g, in[0], in[1], t[0], t[1]);
}
static nn_tensor *b_add_bias(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_add_bias(g, in[0], in[1]); }
static nn_tensor *b_add(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_add(g, in[0], in[1]); }
static nn_tensor *b_sub(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_sub(g, in[0], in[1]); }
static nn_tensor *b_mul(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_mul(g, in[0], in[1]); }
static nn_tensor *b_square(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_mul(g, in[0], in[0]); }
static nn_tensor *b_scale(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_scale(g, in[0], -1.7f); }
static nn_tensor *b_relu(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_relu(g, in[0]); }
static nn_tensor *b_sigmoid(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_sigmoid(g, nn_scale(g, in[0], 3.0f)); }
static nn_tensor *b_tanh(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_tanh(g, nn_scale(g, in[0], 2.0f)); }
static nn_tensor *b_softmax(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_softmax(g, nn_scale(g, in[0], 3.0f)); }
static nn_tensor *b_log_softmax(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_log_softmax(g, nn_scale(g, in[0], 3.0f)); }
static nn_tensor *b_xent(nn_graph *g, nn_tensor **in, const void *labels) { return nn_softmax_cross_entropy(g, nn_scale(g, in[0], 3.0f), labels); }
static nn_tensor *b_xent_smooth(nn_graph *g, nn_tensor **in, const void *labels)
{
    return nn_softmax_cross_entropy_smoothed(g, nn_scale(g, in[0], 3.0f), labels, 0.2f);
}
static nn_tensor *b_leaky(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_leaky_relu(g, in[0], 0.2f); }
static nn_tensor *b_bce(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_bce_with_logits(g, nn_scale(g, in[0], 4.0f), in[1]); }
static nn_tensor *b_mse(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_mse(g, in[0], in[1]); }
static nn_tensor *b_reshape(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_reshape(g, in[0], 2, (int[]){4, 6}); }
static nn_tensor *b_flatten(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_flatten(g, in[0]); }
/* x reached through a reshape and directly: the reshape's gradient is added
 * to one already there (its first one is copied) */
static nn_tensor *b_reshape_and_direct(nn_graph *g, nn_tensor **in, const void *c)
{
    (void)c;
    nn_tensor *direct = nn_reshape(g, in[0], 2, (int[]){4, 6}); /* its backward runs last: adds */
    nn_tensor *squared = nn_reshape(g, nn_mul(g, in[0], in[0]), 2, (int[]){4, 6}); /* copied */
    return nn_add(g, squared, direct);
}
static nn_tensor *b_sum(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_sum(g, in[0]); }
static nn_tensor *b_mean(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_mean(g, in[0]); }

static void test_grad_matmul_all_transposes(void)
{
    nn_rng r;
    nn_rng_seed(&r, 1);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int M = 3, K = 4, N = 5;
            nn_tensor *in[2] = {input(&r, 2, ta ? (int[]){K, M} : (int[]){M, K}, 0),
                                input(&r, 2, tb ? (int[]){N, K} : (int[]){K, N}, 0)};
            int t[2] = {ta, tb};
            int ok = gradcheck("matmul", b_matmul, in, 2, t);
            free_all(in, 2);
            CHECK_MSG(ok, "matmul ta=%d tb=%d", ta, tb);
        }
}

static void test_grad_matmul_large_enough_for_packed_path(void)
{
    nn_rng r;
    nn_rng_seed(&r, 2);
    nn_tensor *in[2] = {input(&r, 2, (int[]){20, 40}, 0), input(&r, 2, (int[]){36, 40}, 0)};
    int t[2] = {0, 1}; /* 2*20*36*40 flops: above the small-GEMM cutoff */
    int ok = gradcheck("matmul", b_matmul, in, 2, t);
    free_all(in, 2);
    CHECK(ok);
}

#define UNARY_CHECK(fn, name, shape_nd, shape, gap, ctx)                    \
    do {                                                                    \
        nn_rng r;                                                           \
        nn_rng_seed(&r, 3);                                                 \
        nn_tensor *in[1] = {input(&r, shape_nd, (int[])shape, gap)};        \
        int ok = gradcheck(name, fn, in, 1, ctx);                           \
        free_all(in, 1);                                                    \
        CHECK(ok);                                                          \
    } while (0)

#define SHAPE(...) {__VA_ARGS__}

static void test_grad_add_bias(void)
{
    nn_rng r;
    nn_rng_seed(&r, 4);
    nn_tensor *a[2] = {input(&r, 2, (int[]){3, 4}, 0), input(&r, 1, (int[]){4}, 0)};
    int ok = gradcheck("add_bias 2-D", b_add_bias, a, 2, NULL);
    free_all(a, 2);
    CHECK(ok);
    nn_tensor *b[2] = {input(&r, 4, (int[]){2, 3, 2, 2}, 0), input(&r, 1, (int[]){3}, 0)};
    ok = gradcheck("add_bias 4-D", b_add_bias, b, 2, NULL);
    free_all(b, 2);
    CHECK(ok);
}

static void test_grad_elementwise_binary(void)
{
    build_fn fns[] = {b_add, b_sub, b_mul, b_mse};
    const char *names[] = {"add", "sub", "mul", "mse"};
    for (int k = 0; k < 4; k++) {
        nn_rng r;
        nn_rng_seed(&r, 5 + (uint64_t)k);
        nn_tensor *in[2] = {input(&r, 3, (int[]){2, 3, 4}, 0), input(&r, 3, (int[]){2, 3, 4}, 0)};
        int ok = gradcheck(names[k], fns[k], in, 2, NULL);
        free_all(in, 2);
        CHECK_MSG(ok, "%s", names[k]);
    }
}

static void test_grad_shared_input_accumulates(void) { UNARY_CHECK(b_square, "x*x", 2, SHAPE(3, 3), 0, NULL); }
static void test_grad_scale(void) { UNARY_CHECK(b_scale, "scale", 1, SHAPE(7), 0, NULL); }
static void test_grad_relu(void) { UNARY_CHECK(b_relu, "relu", 2, SHAPE(4, 5), 0.05f, NULL); }
static void test_grad_sigmoid(void) { UNARY_CHECK(b_sigmoid, "sigmoid", 2, SHAPE(4, 5), 0, NULL); }
static void test_grad_tanh(void) { UNARY_CHECK(b_tanh, "tanh", 2, SHAPE(4, 5), 0, NULL); }
static void test_grad_softmax(void) { UNARY_CHECK(b_softmax, "softmax", 3, SHAPE(2, 3, 5), 0, NULL); }
static void test_grad_log_softmax(void) { UNARY_CHECK(b_log_softmax, "log_softmax", 3, SHAPE(2, 3, 5), 0, NULL); }
static void test_grad_reshape(void) { UNARY_CHECK(b_reshape, "reshape", 3, SHAPE(2, 3, 4), 0, NULL); }
static void test_grad_flatten(void) { UNARY_CHECK(b_flatten, "flatten", 4, SHAPE(2, 3, 2, 2), 0, NULL); }
static void test_grad_reshape_accumulates(void)
{
    UNARY_CHECK(b_reshape_and_direct, "reshape + direct use", 3, SHAPE(2, 3, 4), 0, NULL);
}
static void test_grad_sum(void) { UNARY_CHECK(b_sum, "sum", 2, SHAPE(3, 4), 0, NULL); }
static void test_grad_mean(void) { UNARY_CHECK(b_mean, "mean", 2, SHAPE(3, 4), 0, NULL); }

static void test_grad_softmax_cross_entropy(void)
{
    static const int labels[4] = {2, 0, 4, 1};
    UNARY_CHECK(b_xent, "softmax_cross_entropy", 2, SHAPE(4, 5), 0, labels);
}

static void test_grad_leaky_relu(void) { UNARY_CHECK(b_leaky, "leaky_relu", 2, SHAPE(4, 5), 0.05f, NULL); }

static void test_grad_bce_with_logits(void)
{
    nn_rng r;
    nn_rng_seed(&r, 50);
    nn_tensor *in[2] = {input(&r, 2, (int[]){3, 4}, 0), input(&r, 2, (int[]){3, 4}, 0)};
    for (size_t i = 0; i < in[1]->size; i++) in[1]->data[i] = 0.5f + 0.5f * in[1]->data[i];
    int ok = gradcheck("bce_with_logits", b_bce, in, 2, NULL);
    free_all(in, 2);
    CHECK(ok);
    /* stable for huge logits, and the known value at 0: log 2 */
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new1(3), *t = nn_tensor_new1(3);
    x->data[0] = 1000.0f;
    x->data[1] = -1000.0f;
    t->data[0] = 1.0f;
    t->data[1] = 0.0f;
    CHECK_NEAR(nn_bce_with_logits(g, x, t)->data[0], log(2.0) / 3, 1e-6);
    nn_tensor_free(x);
    nn_tensor_free(t);
    nn_graph_free(g);
}

static void test_detach_stops_gradient(void)
{
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new1(2);
    nn_tensor_requires_grad(x, 1);
    x->data[0] = 3.0f;
    x->data[1] = -2.0f;
    /* y = sum(x * detach(x)): dy/dx = x, not 2x */
    nn_tensor *d = nn_detach(g, x);
    CHECK(d->data == x->data && !(d->flags & NN_REQUIRES_GRAD));
    CHECK(nn_backward(g, nn_sum(g, nn_mul(g, x, d)), NULL) == NN_OK);
    CHECK(x->grad[0] == 3.0f && x->grad[1] == -2.0f);
    nn_tensor_free(x);
    nn_graph_free(g);
}

/* The GAN pattern: D frozen while G trains. Gradients flow through D into
 * G; D's weights get none and its optimizer leaves them alone. */
static void test_frozen_params_pass_gradient_through(void)
{
    nn_rng r;
    nn_rng_seed(&r, 51);
    nn_layer *gen = nn_dense_new(3, 4, NN_INIT_XAVIER, &r), *dis = nn_dense_new(4, 1, NN_INIT_XAVIER, &r);
    nn_params gp, dp;
    nn_params_init(&gp);
    nn_params_init(&dp);
    nn_layer_params(gen, &gp);
    nn_layer_params(dis, &dp);
    nn_optim *dopt = nn_optim_adam_new(&dp, nn_adam_defaults(0.1f));
    nn_graph *g = nn_graph_new();
    nn_tensor *z = nn_tensor_new2(2, 3), *ones = nn_tensor_new2(2, 1);
    nn_tensor_uniform(z, &r, -1, 1);
    nn_tensor_fill(ones, 1.0f);
    nn_params_freeze(&dp, 1);
    nn_tensor *fake = nn_layer_forward(gen, g, z);
    nn_tensor *loss = nn_bce_with_logits(g, nn_layer_forward(dis, g, fake), ones);
    CHECK(nn_backward(g, loss, NULL) == NN_OK);
    double gsum = 0, dsum = 0;
    for (size_t i = 0; i < gp.tensors[0]->size; i++) gsum += fabs(gp.tensors[0]->grad[i]);
    for (size_t i = 0; i < dp.tensors[0]->size; i++) dsum += fabs(dp.tensors[0]->grad[i]);
    CHECK(gsum > 0 && dsum == 0);
    float before = dp.tensors[0]->data[0];
    dp.tensors[0]->grad[0] = 1.0f; /* even with a gradient, a frozen tensor stays */
    nn_optim_step(dopt);
    CHECK(dp.tensors[0]->data[0] == before);
    nn_params_freeze(&dp, 0);
    nn_optim_step(dopt);
    CHECK(dp.tensors[0]->data[0] != before);
    nn_tensor_free(z);
    nn_tensor_free(ones);
    nn_graph_free(g);
    nn_optim_free(dopt);
    nn_params_free(&gp);
    nn_params_free(&dp);
    nn_layer_free(gen);
    nn_layer_free(dis);
}

static void test_grad_softmax_cross_entropy_smoothed(void)
{
    static const int labels[4] = {2, 0, 4, 1};
    UNARY_CHECK(b_xent_smooth, "softmax_cross_entropy_smoothed", 2, SHAPE(4, 5), 0, labels);
    /* value: uniform logits give log C whatever the smoothing */
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new2(1, 4);
    int label = 1;
    CHECK_NEAR(nn_softmax_cross_entropy_smoothed(g, x, &label, 0.3f)->data[0], log(4.0), 1e-6);
    x->data[1] = 2.0f; /* -(0.7 + 0.075) log p1 - 0.075 * sum_{j != 1} log pj */
    double lse = log(3.0 + exp(2.0));
    CHECK_NEAR(nn_softmax_cross_entropy_smoothed(g, x, &label, 0.3f)->data[0],
               0.775 * (lse - 2.0) + 0.225 * lse, 1e-5);
    nn_tensor_free(x);
    nn_graph_free(g);
}

static void test_softmax_cross_entropy_stable_for_large_logits(void)
{
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new2(2, 3);
    nn_tensor_requires_grad(x, 1);
    float v[6] = {1000.0f, 0.0f, -1000.0f, 500.0f, 500.0f, -800.0f};
    memcpy(x->data, v, sizeof v);
    int labels[2] = {1, 0};
    nn_tensor *loss = nn_softmax_cross_entropy(g, x, labels);
    /* row 0: -log softmax = 1000; row 1: log 2 */
    CHECK_NEAR(loss->data[0], (1000.0 + log(2.0)) / 2, 1e-3);
    CHECK(nn_backward(g, loss, NULL) == NN_OK);
    for (int i = 0; i < 6; i++) CHECK(isfinite(x->grad[i]));
    CHECK_NEAR(x->grad[0], 0.5, 1e-6);  /* (p - 1{label}) / N */
    CHECK_NEAR(x->grad[1], -0.5, 1e-6);
    CHECK_NEAR(x->grad[3], -0.25, 1e-6);
    nn_tensor *ls = nn_log_softmax(g, x);
    for (int i = 0; i < 6; i++) CHECK(isfinite(ls->data[i]));
    nn_tensor_free(x);
    nn_graph_free(g);
}

/* A whole dense layer: gradients reach the input, the weight and the bias. */
static nn_layer *grad_layer;
static nn_tensor *b_dense(nn_graph *g, nn_tensor **in, const void *c)
{
    (void)c;
    return nn_tanh(g, nn_layer_forward(grad_layer, g, in[0]));
}

static void test_grad_dense_layer(void)
{
    nn_rng r;
    nn_rng_seed(&r, 6);
    grad_layer = nn_dense_new(5, 4, NN_INIT_XAVIER, &r);
    nn_tensor *x = input(&r, 2, (int[]){3, 5}, 0);
    nn_tensor *in[3] = {x, nn_dense_weight(grad_layer), nn_dense_bias(grad_layer)};
    nn_tensor_uniform(in[2], &r, -0.5f, 0.5f);
    int ok = gradcheck("dense", b_dense, in, 3, NULL);
    nn_tensor_free(x);
    nn_layer_free(grad_layer);
    CHECK(ok);
}

/* ---- convolution and pooling ---- */
typedef struct {
    int kh, kw;
    nn_window2d win;
} window_ctx;

static nn_tensor *b_conv(nn_graph *g, nn_tensor **in, const void *c)
{
    return nn_conv2d(g, in[0], in[1], in[2], ((const window_ctx *)c)->win);
}
static nn_tensor *b_conv_nobias(nn_graph *g, nn_tensor **in, const void *c)
{
    return nn_conv2d(g, in[0], in[1], NULL, ((const window_ctx *)c)->win);
}
static nn_tensor *b_conv_relu(nn_graph *g, nn_tensor **in, const void *c)
{
    return nn_conv2d_relu(g, in[0], in[1], in[2], ((const window_ctx *)c)->win);
}
static nn_tensor *b_maxpool(nn_graph *g, nn_tensor **in, const void *c)
{
    const window_ctx *w = c;
    return nn_maxpool2d(g, in[0], w->kh, w->kw, w->win);
}
static nn_tensor *b_maxpool_relu(nn_graph *g, nn_tensor **in, const void *c)
{
    const window_ctx *w = c;
    return nn_maxpool2d_relu(g, in[0], w->kh, w->kw, w->win);
}
static nn_tensor *b_avgpool(nn_graph *g, nn_tensor **in, const void *c)
{
    const window_ctx *w = c;
    return nn_avgpool2d(g, in[0], w->kh, w->kw, w->win);
}

static void test_grad_conv2d(void)
{
    /* valid, explicit symmetric, asymmetric ("same" for an even kernel),
     * strided, non-square kernels; the first five have few taps per output
     * (c*kh*kw <= 32: the direct path), the last two many (im2col + GEMM) */
    static const struct {
        int n, c, h, w, oc, kh, kw;
        nn_window2d win;
    } cases[] = {
        {2, 1, 5, 5, 3, 3, 3, {1, 1, 0, 0, 0, 0}},
        {2, 2, 5, 4, 3, 3, 3, {1, 1, 1, 1, 1, 1}},
        {1, 2, 6, 6, 2, 2, 2, {1, 1, 0, 1, 0, 1}},
        {2, 3, 7, 6, 2, 3, 2, {2, 2, 1, 1, 0, 1}},
        {1, 2, 5, 7, 4, 1, 3, {1, 2, 0, 0, 2, 2}},
        {2, 4, 5, 5, 3, 3, 3, {1, 1, 1, 1, 1, 1}},
        {1, 5, 6, 5, 2, 3, 3, {2, 2, 1, 0, 0, 1}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nn_rng r;
        nn_rng_seed(&r, 10 + k);
        nn_tensor *in[3] = {input(&r, 4, (int[]){cases[k].n, cases[k].c, cases[k].h, cases[k].w}, 0),
                            input(&r, 4, (int[]){cases[k].oc, cases[k].c, cases[k].kh, cases[k].kw}, 0),
                            input(&r, 1, (int[]){cases[k].oc}, 0)};
        window_ctx ctx = {0, 0, cases[k].win};
        int ok = gradcheck("conv2d", b_conv, in, 3, &ctx) &&
                 gradcheck("conv2d without bias", b_conv_nobias, in, 2, &ctx);
        free_all(in, 3);
        CHECK_MSG(ok, "conv2d case %zu", k);
    }
}

static void test_grad_conv2d_relu(void)
{
    static const nn_window2d wins[] = {{1, 1, 0, 0, 0, 0}, {2, 2, 1, 1, 0, 1}};
    static const int channels[] = {2, 4}; /* 18 taps: direct path; 36: im2col */
    for (size_t k = 0; k < 4; k++) {
        int c = channels[k / 2];
        /* finite differences are wrong across the ReLU's kink: take the first
         * seed whose pre-activations all keep clear of 0 */
        nn_tensor *in[3] = {NULL, NULL, NULL};
        window_ctx ctx = {0, 0, wins[k % 2]};
        for (uint64_t seed = 30; seed < 1000; seed++) {
            nn_rng r;
            nn_rng_seed(&r, seed);
            free_all(in, 3);
            in[0] = input(&r, 4, (int[]){1, c, 4, 5}, 0);
            in[1] = input(&r, 4, (int[]){2, c, 3, 3}, 0);
            in[2] = input(&r, 1, (int[]){2}, 0);
            nn_graph *g = nn_graph_new();
            nn_tensor *z = nn_conv2d(g, in[0], in[1], in[2], wins[k % 2]);
            float closest = INFINITY;
            for (size_t i = 0; i < z->size; i++) closest = fminf(closest, fabsf(z->data[i]));
            nn_graph_free(g);
            if (closest > 0.05f) break;
        }
        int ok = gradcheck("conv2d_relu", b_conv_relu, in, 3, &ctx);
        free_all(in, 3);
        CHECK_MSG(ok, "conv2d_relu case %zu", k);
    }
}

/* The fused op must give exactly what relu(conv2d) gives, forward and back;
 * so must a sequential model, which fuses conv2d + ReLU layers by itself. */
static void test_conv2d_relu_equals_two_ops(void)
{
    nn_rng r;
    nn_rng_seed(&r, 33);
    nn_tensor *x = input(&r, 4, (int[]){3, 2, 7, 7}, 0), *w = input(&r, 4, (int[]){4, 2, 3, 3}, 0),
              *b = input(&r, 1, (int[]){4}, 0);
    nn_tensor *p[3] = {x, w, b};
    float *grads[2][3], *outs[2];
    for (int fused = 0; fused < 2; fused++) {
        nn_graph *g = nn_graph_new();
        for (int i = 0; i < 3; i++) nn_tensor_zero_grad(p[i]);
        nn_tensor *y = fused ? nn_conv2d_relu(g, x, w, b, nn_window(1, 1))
                             : nn_relu(g, nn_conv2d(g, x, w, b, nn_window(1, 1)));
        nn_tensor *loss = nn_sum(g, nn_mul(g, y, y));
        CHECK(nn_backward(g, loss, NULL) == NN_OK);
        outs[fused] = malloc(y->size * sizeof(float));
        memcpy(outs[fused], y->data, y->size * sizeof(float));
        for (int i = 0; i < 3; i++) {
            grads[fused][i] = malloc(p[i]->size * sizeof(float));
            memcpy(grads[fused][i], p[i]->grad, p[i]->size * sizeof(float));
        }
        if (fused) CHECK(memcmp(outs[0], outs[1], y->size * sizeof(float)) == 0);
        nn_graph_free(g);
    }
    for (int i = 0; i < 3; i++) {
        CHECK_MSG(memcmp(grads[0][i], grads[1][i], p[i]->size * sizeof(float)) == 0,
                  "gradient of input %d differs between fused and separate ops", i);
        free(grads[0][i]);
        free(grads[1][i]);
    }
    free(outs[0]);
    free(outs[1]);

    /* sequential: conv2d layer + ReLU layer vs the same ops by hand */
    nn_rng_seed(&r, 34);
    nn_layer *m = nn_sequential_new();
    nn_sequential_add(m, nn_conv2d_new(2, 4, 3, 1, NN_PAD_SAME, &r));
    nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
    nn_graph *g = nn_graph_new();
    nn_tensor *ys = nn_layer_forward(m, g, x);
    nn_layer *conv = nn_sequential_get(m, 0);
    nn_tensor *yh = nn_relu(g, nn_conv2d(g, x, nn_conv2d_weight(conv), nn_conv2d_bias(conv), nn_window(1, 1)));
    CHECK(ys && yh && ys->size == yh->size && memcmp(ys->data, yh->data, ys->size * sizeof(float)) == 0);
    nn_graph_free(g);
    nn_layer_free(m);
    free_all(p, 3);
}

static void test_conv2d_matches_direct_sum(void)
{
    /* One output element by hand: x 1x1x3x3 = 1..9, w = 1x1x2x2 of ones,
     * padding 1: the top-left output sees only x[0][0] = 1. */
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new4(1, 1, 3, 3), *w = nn_tensor_new4(1, 1, 2, 2), *b = nn_tensor_new1(1);
    for (int i = 0; i < 9; i++) x->data[i] = (float)(i + 1);
    nn_tensor_fill(w, 1.0f);
    b->data[0] = 0.5f;
    nn_tensor *y = nn_conv2d(g, x, w, b, nn_window(1, 1));
    CHECK(y->shape[2] == 4 && y->shape[3] == 4);
    CHECK_NEAR(y->data[0], 1.5, 1e-6);
    CHECK_NEAR(y->data[5], 1 + 2 + 4 + 5 + 0.5, 1e-6);
    nn_tensor *s = nn_conv2d(g, x, w, NULL, (nn_window2d){2, 2, 0, 0, 0, 0});
    CHECK(s->shape[2] == 1 && s->shape[3] == 1 && s->data[0] == 12.0f);
    nn_tensor_free(x);
    nn_tensor_free(w);
    nn_tensor_free(b);
    nn_graph_free(g);
}

/* A 1-channel convolution (9 taps: the direct path) against the same one
 * padded to 4 channels with zero input (36 taps: im2col + GEMM). The extra
 * taps add exact zeros after the real ones, so the forward must match bit
 * for bit; gradients sum in another order and match closely. */
/* |a - b| relative to the larger magnitude, or absolute below 1. */
static double rel_diff(double a, double b) { return fabs(a - b) / fmax(1.0, fmax(fabs(a), fabs(b))); }

static void test_conv2d_direct_matches_im2col(void)
{
    const int N = 3, H = 9, W = 20, OC = 5, C4 = 4; /* 18 outputs per row: more than one vector */
    nn_rng r;
    nn_rng_seed(&r, 77);
    nn_tensor *x1 = input(&r, 4, (int[]){N, 1, H, W}, 0), *w1 = input(&r, 4, (int[]){OC, 1, 3, 3}, 0),
              *b1 = input(&r, 1, (int[]){OC}, 0);
    nn_tensor *x4 = input(&r, 4, (int[]){N, C4, H, W}, 0), *w4 = input(&r, 4, (int[]){OC, C4, 3, 3}, 0),
              *b4 = input(&r, 1, (int[]){OC}, 0);
    nn_tensor_zero(x4);
    for (int n = 0; n < N; n++)
        memcpy(x4->data + (size_t)n * C4 * H * W, x1->data + (size_t)n * H * W, sizeof(float) * H * W);
    for (int o = 0; o < OC; o++) memcpy(w4->data + (size_t)o * C4 * 9, w1->data + (size_t)o * 9, sizeof(float) * 9);
    memcpy(b4->data, b1->data, sizeof(float) * OC);
    static const nn_window2d wins[] = {{1, 1, 0, 0, 0, 0}, {1, 1, 1, 1, 1, 1}, {2, 2, 1, 0, 1, 0}};
    for (int k = 0; k < 3; k++)
        for (int relu = 0; relu < 2; relu++) {
            nn_tensor *p[6] = {x1, w1, b1, x4, w4, b4};
            for (int i = 0; i < 6; i++) nn_tensor_zero_grad(p[i]);
            nn_graph *g = nn_graph_new();
            nn_tensor *y1 = relu ? nn_conv2d_relu(g, x1, w1, b1, wins[k]) : nn_conv2d(g, x1, w1, b1, wins[k]);
            nn_tensor *y4 = relu ? nn_conv2d_relu(g, x4, w4, b4, wins[k]) : nn_conv2d(g, x4, w4, b4, wins[k]);
            CHECK(y1 && y4 && y1->size == y4->size);
            CHECK_MSG(memcmp(y1->data, y4->data, y1->size * sizeof(float)) == 0,
                      "window %d relu %d: direct and im2col outputs differ", k, relu);
            nn_tensor *loss = nn_add(g, nn_sum(g, nn_mul(g, y1, y1)), nn_sum(g, nn_mul(g, y4, y4)));
            CHECK(nn_backward(g, loss, NULL) == NN_OK);
            double worst = 0;
            for (int n = 0; n < N; n++)
                for (int i = 0; i < H * W; i++)
                    worst = larger(worst, rel_diff(x1->grad[n * H * W + i], x4->grad[(size_t)n * C4 * H * W + i]));
            for (int o = 0; o < OC; o++) {
                for (int i = 0; i < 9; i++)
                    worst = larger(worst, rel_diff(w1->grad[o * 9 + i], w4->grad[o * C4 * 9 + i]));
                worst = larger(worst, rel_diff(b1->grad[o], b4->grad[o]));
            }
            CHECK_MSG(worst < 1e-4, "window %d relu %d: gradients differ by %g (relative)", k, relu, worst);
            nn_graph_free(g);
        }
    nn_tensor *p[6] = {x1, w1, b1, x4, w4, b4};
    free_all(p, 6);
}

/* Outputs and gradients of a convolution (x, w, b requiring gradients,
 * loss sum(y^2)) on the given thread count, in one buffer. */
static float *conv_run(int threads, int c, int hw, int relu, size_t *n_out)
{
    int saved = nn_get_threads();
    nn_set_threads(threads);
    nn_rng r;
    nn_rng_seed(&r, 21);
    nn_tensor *x = input(&r, 4, (int[]){20, c, hw, hw}, 0), *w = input(&r, 4, (int[]){24, c, 3, 3}, 0),
              *b = input(&r, 1, (int[]){24}, 0);
    nn_graph *g = nn_graph_new();
    nn_tensor *y = relu ? nn_conv2d_relu(g, x, w, b, nn_window(1, 0)) : nn_conv2d(g, x, w, b, nn_window(1, 0));
    float *out = NULL;
    *n_out = 0;
    if (y && nn_backward(g, nn_sum(g, nn_mul(g, y, y)), NULL) == NN_OK) {
        size_t n = y->size + x->size + w->size + b->size;
        out = malloc(n * sizeof(float));
        float *at = out;
        nn_tensor *parts[4] = {y, x, w, b};
        for (int i = 0; i < 4; i++) {
            const float *src = i ? parts[i]->grad : parts[i]->data;
            memcpy(at, src, parts[i]->size * sizeof(float));
            at += parts[i]->size;
        }
        *n_out = n;
    }
    nn_graph_free(g);
    nn_tensor *p[3] = {x, w, b};
    free_all(p, 3);
    nn_set_threads(saved);
    return out;
}

/* Both convolution paths (direct: 1 channel; im2col, whose input gradient
 * runs a few images at a time with threads owning channels, the last chunk
 * partial) must give the same bits on 1 and 2 threads, every time. */
static void test_conv2d_same_bits_any_thread_count(void)
{
    static const struct { int c, hw, relu; } cases[] = {{1, 28, 1}, {32, 13, 1}, {32, 13, 0}};
    for (size_t k = 0; k < 3; k++) {
        size_t n1, n2;
        float *one = conv_run(1, cases[k].c, cases[k].hw, cases[k].relu, &n1);
        for (int rep = 0; rep < 3; rep++) {
            float *two = conv_run(2, cases[k].c, cases[k].hw, cases[k].relu, &n2);
            CHECK(one && two && n1 == n2);
            CHECK_MSG(memcmp(one, two, n1 * sizeof(float)) == 0,
                      "case %zu: 1 and 2 threads differ (run %d)", k, rep);
            free(two);
        }
        free(one);
    }
}

/* Inputs for max pooling: distinct values at least 0.05 apart, so that an
 * EPS perturbation never changes which element is the maximum. */
static nn_tensor *distinct_input(nn_rng *r, int ndim, const int *shape)
{
    nn_tensor *t = nn_tensor_new(ndim, shape);
    int *perm = malloc(t->size * sizeof *perm);
    for (size_t i = 0; i < t->size; i++) perm[i] = (int)i;
    nn_rng_shuffle(r, perm, t->size);
    for (size_t i = 0; i < t->size; i++) t->data[i] = 0.05f * (float)perm[i] - 1.0f;
    free(perm);
    nn_tensor_requires_grad(t, 1);
    return t;
}

static void test_grad_maxpool2d(void)
{
    static const window_ctx cases[] = {{2, 2, {2, 2, 0, 0, 0, 0}},
                                       {3, 3, {2, 2, 1, 1, 1, 1}},
                                       {3, 2, {1, 2, 1, 0, 0, 1}},
                                       {2, 2, {2, 2, 0, 0, 0, 0}}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nn_rng r;
        nn_rng_seed(&r, 20 + k);
        /* the last case: 2x2 windows tiling a 4x6 plane exactly, whose
         * backward writes the input gradient whole */
        int h = k == 3 ? 4 : 5;
        nn_tensor *in[1] = {distinct_input(&r, 4, (int[]){2, 2, h, 6})};
        int ok = gradcheck("maxpool2d", b_maxpool, in, 1, &cases[k]);
        free_all(in, 1);
        CHECK_MSG(ok, "maxpool case %zu", k);
    }
}

static void test_grad_maxpool2d_relu(void)
{
    static const window_ctx cases[] = {{2, 2, {2, 2, 0, 0, 0, 0}}, {3, 3, {2, 2, 1, 1, 1, 1}}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nn_rng r;
        nn_rng_seed(&r, 40 + k);
        /* values -2.975, -2.925, ... 1.775: a few windows wholly negative
         * (their gradient must be dropped), none within EPS of the kink */
        nn_tensor *in[1] = {distinct_input(&r, 4, (int[]){2, 2, 4, 6})};
        for (size_t i = 0; i < in[0]->size; i++) in[0]->data[i] -= 1.975f;
        int ok = gradcheck("maxpool2d_relu", b_maxpool_relu, in, 1, &cases[k]);
        free_all(in, 1);
        CHECK_MSG(ok, "maxpool2d_relu case %zu", k);
    }
}

/* Output and gradients of x, weight and bias after loss = sum(y * probe),
 * copied out (out[0] = y, then the three gradients). A fixed random probe,
 * not y itself: y*y would give zero gradient wherever y is 0, hiding a
 * wrong ReLU mask. */
/* 1 if a and b (n floats) agree to float rounding of sums reordered:
 * within 1e-5 of the largest magnitude in b. */
static int same_to_rounding(const float *a, const float *b, size_t n)
{
    float scale = 0.0f;
    for (size_t i = 0; i < n; i++) scale = fabsf(b[i]) > scale ? fabsf(b[i]) : scale;
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= 1e-5f * scale)) return 0;
    return 1;
}

static void run_and_copy(nn_graph *g, nn_tensor *y, nn_tensor **p, float **out)
{
    nn_rng r;
    nn_rng_seed(&r, 99);
    nn_tensor *probe = nn_tensor_new(y->ndim, y->shape);
    for (size_t i = 0; i < probe->size; i++) probe->data[i] = nn_rng_uniform(&r) - 0.5f;
    nn_tensor *loss = nn_sum(g, nn_mul(g, y, probe));
    CHECK(nn_backward(g, loss, NULL) == NN_OK);
    out[0] = malloc(y->size * sizeof(float));
    memcpy(out[0], y->data, y->size * sizeof(float));
    for (int i = 0; i < 3; i++) {
        out[i + 1] = malloc(p[i]->size * sizeof(float));
        memcpy(out[i + 1], p[i]->grad, p[i]->size * sizeof(float));
    }
    nn_tensor_free(probe);
}

/* A sequential model's conv2d + ReLU + max pooling layers (which it runs as
 * nn_conv2d_maxpool2d_relu) give exactly the values of the three ops by
 * hand, on both convolution paths, and their gradients: exactly on the
 * direct paths, to rounding where the im2col path leaves out the
 * convolution's last column, which the pooling never reads (its weight
 * gradient then sums fewer terms, in other groups). */
static void test_sequential_relu_maxpool_equals_ops(void)
{
    /* 18 taps, padded: direct path; 36: im2col; 9 unpadded: fused */
    static const int configs[][2] = {{2, NN_PAD_SAME}, {4, NN_PAD_SAME}, {1, 0}};
    for (int k = 0; k < 3; k++) {
        int c = configs[k][0], pad = configs[k][1];
        nn_rng r;
        nn_rng_seed(&r, 70 + c);
        nn_tensor *x = input(&r, 4, (int[]){3, c, 8, 7}, 0);
        nn_layer *m = nn_sequential_new();
        nn_sequential_add(m, nn_conv2d_new(c, 5, 3, 1, pad, &r));
        nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
        nn_sequential_add(m, nn_maxpool2d_new(2, 2, 0));
        nn_layer *conv = nn_sequential_get(m, 0);
        nn_tensor *p[3] = {x, nn_conv2d_weight(conv), nn_conv2d_bias(conv)};
        float *got[2][4];
        size_t out_size = 0;
        for (int by_hand = 0; by_hand < 2; by_hand++) {
            nn_graph *g = nn_graph_new();
            for (int i = 0; i < 3; i++) nn_tensor_zero_grad(p[i]);
            nn_tensor *y = by_hand ? nn_maxpool2d(g, nn_relu(g, nn_conv2d(g, x, p[1], p[2], nn_window(1, pad ? 1 : 0))),
                                                  2, 2, nn_window(2, 0))
                                   : nn_layer_forward(m, g, x);
            CHECK(y != NULL);
            if (y) run_and_copy(g, y, p, got[by_hand]);
            if (y) out_size = y->size;
            nn_graph_free(g);
        }
        size_t sizes[4] = {out_size, p[0]->size, p[1]->size, p[2]->size};
        for (int i = 0; i < 4; i++) {
            int exact = i == 0 || c * 9 <= 32; /* the output; the direct paths */
            CHECK_MSG(exact ? memcmp(got[0][i], got[1][i], sizes[i] * sizeof(float)) == 0
                            : same_to_rounding(got[0][i], got[1][i], sizes[i]),
                      "%s differs (%d channels)", i ? "a gradient" : "the output", c);
            free(got[0][i]);
            free(got[1][i]);
        }
        nn_layer_free(m);
        nn_tensor_free(x);
    }
}

/* ---- convolution + max pooling + ReLU in one op ---- */
typedef struct {
    int kh, kw;
    nn_window2d conv, pool;
} conv_pool_ctx;

static nn_tensor *b_conv_pool(nn_graph *g, nn_tensor **in, const void *c)
{
    const conv_pool_ctx *k = c;
    return nn_conv2d_maxpool2d_relu(g, in[0], in[1], in[2], k->conv, k->kh, k->kw, k->pool);
}

static nn_tensor *conv_pool_by_hand(nn_graph *g, nn_tensor **in, const conv_pool_ctx *k)
{
    return nn_maxpool2d(g, nn_relu(g, nn_conv2d(g, in[0], in[1], in[2], k->conv)), k->kh, k->kw, k->pool);
}

/* Finite differences through the fused op, on its fused direct path (1 and
 * 3 input channels of 3x3 taps; the input without a gradient, so the weight
 * gradient comes from the pooled gradient spread an image at a time), with
 * the input's gradient (the convolution's output gradient whole), and on
 * the im2col path (4 channels), whose 3 x 4 convolution output is cut to
 * the 2 x 4 the pooling reads. */
static void test_grad_conv2d_maxpool2d_relu(void)
{
    const conv_pool_ctx k = {2, 2, {1, 1, 0, 0, 0, 0}, {2, 2, 0, 0, 0, 0}};
    static const int channels[] = {1, 3, 4};
    for (int ci = 0; ci < 3; ci++)
        for (int x_grad = 0; x_grad <= 1; x_grad++) {
            int c = channels[ci];
            nn_rng r;
            nn_rng_seed(&r, 90 + c + x_grad); /* no window within EPS of a tie or of 0 */
            nn_tensor *in[3] = {input(&r, 4, (int[]){2, c, 5, 6}, 0), input(&r, 4, (int[]){3, c, 3, 3}, 0),
                                input(&r, 1, (int[]){3}, 0)};
            if (!x_grad) { /* a plain tensor: no gradient buffer at all */
                nn_tensor *x = nn_tensor_new(4, in[0]->shape);
                memcpy(x->data, in[0]->data, x->size * sizeof(float));
                nn_tensor_free(in[0]);
                in[0] = x;
            }
            int ok = gradcheck("conv2d_maxpool2d_relu", b_conv_pool, in, 3, &k);
            free_all(in, 3);
            CHECK_MSG(ok, "%d channels, input gradient %d", c, x_grad);
        }
}

/* The fused op against the three ops by hand: output and every gradient,
 * bit for bit between 1 and 2 threads, and against the ops by hand for tap
 * counts with a fused direct path (1x3x3, 1x5x5 without bias, 3x3x3), a
 * padded direct convolution, im2col convolutions (4x3x3, and 5x3x3 padded
 * without bias), 2x2 and overlapping 3x3 pooling, the input with and
 * without a gradient. Against the ops by hand the output is exact, and so
 * are the gradients except where the im2col convolution is shortened to
 * the rows and columns the pooling reads (4x3x3: its 21 x 19 output pooled
 * to 10 x 9 reads 20 x 18), whose gradients agree to rounding. */
static void test_conv2d_maxpool2d_relu_equals_ops(void)
{
    static const struct {
        int c, k, bias;
        conv_pool_ctx w;
    } cases[] = {{1, 3, 1, {2, 2, {1, 1, 0, 0, 0, 0}, {2, 2, 0, 0, 0, 0}}},
                 {1, 5, 0, {3, 3, {1, 1, 0, 0, 0, 0}, {2, 2, 1, 1, 1, 1}}},
                 {3, 3, 1, {2, 2, {1, 1, 0, 0, 0, 0}, {2, 2, 0, 0, 0, 0}}},
                 {1, 3, 1, {2, 2, {1, 1, 1, 1, 1, 1}, {2, 2, 0, 0, 0, 0}}},
                 {4, 3, 1, {2, 2, {1, 1, 0, 0, 0, 0}, {2, 2, 0, 0, 0, 0}}},
                 {5, 3, 0, {3, 3, {1, 1, 1, 1, 1, 1}, {2, 2, 1, 1, 1, 1}}}};
    int threads = nn_get_threads();
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++)
        for (int x_grad = 0; x_grad <= 1; x_grad++) {
            nn_rng r;
            nn_rng_seed(&r, 60 + t);
            int c = cases[t].c, k = cases[t].k;
            nn_tensor *p[3] = {input(&r, 4, (int[]){3, c, 23, 21}, 0), input(&r, 4, (int[]){4, c, k, k}, 0),
                               input(&r, 1, (int[]){4}, 0)};
            nn_tensor_requires_grad(p[0], x_grad);
            nn_tensor *in[3] = {p[0], p[1], cases[t].bias ? p[2] : NULL};
            float *got[3][4] = {{NULL}};
            size_t sizes[4] = {0, p[0]->size, p[1]->size, p[2]->size};
            for (int run = 0; run < 3; run++) { /* fused on 1 and 2 threads, then by hand */
                nn_set_threads(run == 1 ? 2 : 1);
                nn_graph *g = nn_graph_new();
                for (int i = 0; i < 3; i++) nn_tensor_zero_grad(p[i]);
                nn_tensor *y = run < 2 ? b_conv_pool(g, in, &cases[t].w) : conv_pool_by_hand(g, in, &cases[t].w);
                CHECK(y != NULL);
                if (y) {
                    nn_tensor *probe = nn_tensor_new(y->ndim, y->shape);
                    nn_rng pr;
                    nn_rng_seed(&pr, 99);
                    for (size_t i = 0; i < probe->size; i++) probe->data[i] = nn_rng_uniform(&pr) - 0.5f;
                    CHECK(nn_backward(g, nn_sum(g, nn_mul(g, y, probe)), NULL) == NN_OK);
                    sizes[0] = y->size;
                    for (int i = 0; i < 4; i++) {
                        const float *src = i == 0 ? y->data : p[i - 1]->grad;
                        if (!src || (i == 3 && !cases[t].bias)) continue;
                        got[run][i] = malloc(sizes[i] * sizeof(float));
                        memcpy(got[run][i], src, sizes[i] * sizeof(float));
                    }
                    nn_tensor_free(probe);
                }
                nn_graph_free(g);
            }
            nn_set_threads(threads);
            for (int run = 1; run < 3; run++)
                for (int i = 0; i < 4; i++) {
                    if (!got[0][i] && !got[run][i]) continue; /* no gradient kept */
                    int exact = run == 1 || i == 0 || t != 4;
                    CHECK_MSG(got[0][i] && got[run][i] &&
                                  (exact ? memcmp(got[0][i], got[run][i], sizes[i] * sizeof(float)) == 0
                                         : same_to_rounding(got[0][i], got[run][i], sizes[i])),
                              "case %zu, input gradient %d: %s differs from %s", t, x_grad,
                              i ? "a gradient" : "the output", run == 1 ? "2 threads" : "the ops by hand");
                }
            for (int run = 0; run < 3; run++)
                for (int i = 0; i < 4; i++) free(got[run][i]);
            free_all(p, 3);
        }
}

/* An input that also feeds another op: the pooling, convolution or matmul backward
 * must add to a gradient that already exists (x*x's backward ran first) or
 * start it (it ran first, x*x adds after), never overwrite. */
static nn_tensor *b_pool_then_square(nn_graph *g, nn_tensor **in, const void *c)
{
    (void)c;
    nn_tensor *p = nn_maxpool2d(g, in[0], 2, 2, nn_window(2, 0));
    return nn_add(g, nn_sum(g, p), nn_sum(g, nn_mul(g, in[0], in[0])));
}
static nn_tensor *b_square_then_pool(nn_graph *g, nn_tensor **in, const void *c)
{
    (void)c;
    nn_tensor *sq = nn_sum(g, nn_mul(g, in[0], in[0]));
    return nn_add(g, sq, nn_sum(g, nn_maxpool2d(g, in[0], 2, 2, nn_window(2, 0))));
}
static nn_tensor *b_conv_then_square(nn_graph *g, nn_tensor **in, const void *c)
{
    (void)c;
    nn_tensor *y = nn_conv2d(g, in[0], in[1], NULL, nn_window(1, 1));
    return nn_add(g, nn_sum(g, nn_mul(g, y, y)), nn_sum(g, nn_mul(g, in[0], in[0])));
}
static nn_tensor *b_square_then_conv(nn_graph *g, nn_tensor **in, const void *c)
{
    (void)c;
    nn_tensor *sq = nn_sum(g, nn_mul(g, in[0], in[0]));
    nn_tensor *y = nn_conv2d(g, in[0], in[1], NULL, nn_window(1, 1));
    return nn_add(g, sq, nn_sum(g, nn_mul(g, y, y)));
}

static nn_tensor *b_matmul_self(nn_graph *g, nn_tensor **in, const void *c)
{
    (void)c;
    return nn_add(g, nn_matmul(g, in[0], in[0]), nn_matmul_ex(g, in[1], in[0], 1, 0));
}

static void test_grad_pool_conv_matmul_shared_input(void)
{
    nn_rng r;
    nn_rng_seed(&r, 60);
    nn_tensor *x[1] = {distinct_input(&r, 4, (int[]){2, 2, 4, 6})};
    CHECK(gradcheck("maxpool, then x*x", b_pool_then_square, x, 1, NULL));
    CHECK(gradcheck("x*x, then maxpool", b_square_then_pool, x, 1, NULL));
    free_all(x, 1);
    /* 4 channels x 3x3 = 36 taps: the im2col path */
    nn_tensor *in[2] = {input(&r, 4, (int[]){2, 4, 5, 5}, 0), input(&r, 4, (int[]){3, 4, 3, 3}, 0)};
    CHECK(gradcheck("conv2d, then x*x", b_conv_then_square, in, 2, NULL));
    CHECK(gradcheck("x*x, then conv2d", b_square_then_conv, in, 2, NULL));
    free_all(in, 2);
    /* a matrix times itself, plus another product using it: both operands'
     * gradients land in one buffer */
    nn_tensor *m[2] = {input(&r, 2, (int[]){4, 4}, 0), input(&r, 2, (int[]){4, 4}, 0)};
    CHECK(gradcheck("x x + y^T x", b_matmul_self, m, 2, NULL));
    free_all(m, 2);
}

static void test_maxpool_ties_and_values(void)
{
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new4(1, 1, 2, 4);
    nn_tensor_requires_grad(x, 1);
    float v[8] = {1, 5, 2, 2, 5, 0, 2, 2};
    memcpy(x->data, v, sizeof v);
    nn_tensor *y = nn_maxpool2d(g, x, 2, 2, nn_window(2, 0));
    CHECK(y->shape[3] == 2 && y->data[0] == 5 && y->data[1] == 2);
    CHECK(nn_backward(g, nn_sum(g, y), NULL) == NN_OK);
    /* ties: the first maximum in row-major order takes the whole gradient */
    CHECK(x->grad[1] == 1 && x->grad[4] == 0 && x->grad[2] == 1 && x->grad[3] == 0);
    nn_tensor_free(x);
    nn_graph_free(g);
}

/* A NaN anywhere in a window wins (it propagates), on the 2x2 fast paths
 * (even width: whole row blocks; odd width: row by row) as on the general
 * path (3x3 windows). */
static void test_maxpool_nan_propagates(void)
{
    static const int widths[] = {4, 5};
    for (int wi = 0; wi < 2; wi++)
        for (int pos = 0; pos < 4; pos++)
            for (int k = 2; k <= 3; k++) {
                int w = widths[wi];
                nn_graph *g = nn_graph_new();
                nn_tensor *x = nn_tensor_new4(1, 1, 4, w);
                for (size_t i = 0; i < x->size; i++) x->data[i] = (float)i;
                int at = (pos / 2) * w + pos % 2; /* within the first window */
                x->data[at] = NAN;
                nn_tensor *y = nn_maxpool2d(g, x, k, k, nn_window(k == 3 ? 1 : 2, 0));
                CHECK_MSG(y && isnan(y->data[0]), "width %d, %dx%d window, NaN at %d: output %g", w, k, k,
                          at, y ? (double)y->data[0] : 0.0);
                nn_tensor_free(x);
                nn_graph_free(g);
            }
}

static void test_grad_avgpool2d(void)
{
    static const window_ctx cases[] = {{2, 2, {2, 2, 0, 0, 0, 0}}, {3, 3, {2, 1, 1, 1, 1, 1}}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nn_rng r;
        nn_rng_seed(&r, 30 + k);
        nn_tensor *in[1] = {input(&r, 4, (int[]){2, 3, 5, 4}, 0)};
        int ok = gradcheck("avgpool2d", b_avgpool, in, 1, &cases[k]);
        free_all(in, 1);
        CHECK_MSG(ok, "avgpool case %zu", k);
    }
}

/* Dropout draws a fresh rng from a fixed seed on every forward, so the
 * finite differences see the same mask as the backward pass. */
static nn_tensor *b_dropout(nn_graph *g, nn_tensor **in, const void *c)
{
    (void)c;
    nn_rng r;
    nn_rng_seed(&r, 1234);
    return nn_dropout(g, in[0], 0.4f, &r);
}

static void test_grad_dropout(void) { UNARY_CHECK(b_dropout, "dropout", 2, SHAPE(6, 7), 0, NULL); }

static void test_dropout_statistics(void)
{
    nn_graph *g = nn_graph_new();
    nn_rng r;
    nn_rng_seed(&r, 5);
    nn_tensor *x = nn_tensor_new1(100000);
    nn_tensor_fill(x, 1.0f);
    nn_tensor *y = nn_dropout(g, x, 0.5f, &r);
    size_t zeros = 0;
    double sum = 0;
    for (size_t i = 0; i < y->size; i++) {
        zeros += y->data[i] == 0.0f;
        CHECK(y->data[i] == 0.0f || y->data[i] == 2.0f);
        sum += y->data[i];
    }
    CHECK_NEAR((double)zeros / y->size, 0.5, 0.01);
    CHECK_NEAR(sum / y->size, 1.0, 0.02); /* inverted dropout keeps the mean */
    nn_tensor_free(x);
    nn_graph_free(g);
}

/* ---- recurrent layers through time ---- */
typedef struct {
    nn_layer *layer;
    int use_c0;
} rec_ctx;

static nn_tensor *b_recurrent(nn_graph *g, nn_tensor **in, const void *c)
{
    const rec_ctx *r = c;
    return nn_recurrent_forward(r->layer, g, in[0], in[1], r->use_c0 ? in[2] : NULL, NULL, NULL);
}

static int check_recurrent(nn_layer *layer, int use_c0, const char *name)
{
    nn_rng r;
    nn_rng_seed(&r, 40);
    int T = 5, B = 2, H = nn_recurrent_hidden_size(layer), L = nn_recurrent_num_layers(layer);
    nn_tensor *in[3 + 16];
    in[0] = input(&r, 3, (int[]){T, B, 3}, 0);
    in[1] = input(&r, 3, (int[]){L, B, H}, 0);
    in[2] = input(&r, 3, (int[]){L, B, H}, 0);
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(layer, &p);
    for (int i = 0; i < p.count; i++) in[3 + i] = p.tensors[i];
    rec_ctx ctx = {layer, use_c0};
    int ok = gradcheck(name, b_recurrent, in, 3 + p.count, &ctx);
    nn_params_free(&p);
    free_all(in, 3);
    return ok;
}

static void test_grad_lstm_through_time(void)
{
    nn_rng r;
    nn_rng_seed(&r, 41);
    nn_layer *l = nn_lstm_new(3, 4, 2, &r);
    CHECK(check_recurrent(l, 1, "lstm (T=5, B=2, 2 layers, h0 and c0)"));
    nn_layer_free(l);
}

/* A one-hot input (a character model's), large enough that W_ih's
 * projection and gradient take the row-copy and row-sum paths (T = B = 8,
 * 16 inputs, hidden 8): finite differences through all of it. */
static void test_grad_lstm_one_hot_input(void)
{
    enum { T = 8, B = 8, I = 16, H = 8 };
    nn_rng r;
    nn_rng_seed(&r, 43);
    nn_layer *l = nn_lstm_new(I, H, 1, &r);
    nn_tensor *in[3 + 16];
    in[0] = nn_tensor_new3(T, B, I); /* no gradient: it stays one-hot */
    for (int i = 0; i < T * B; i++) in[0]->data[(size_t)i * I + nn_rng_below(&r, I)] = 1.0f;
    in[1] = input(&r, 3, (int[]){1, B, H}, 0);
    in[2] = input(&r, 3, (int[]){1, B, H}, 0);
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(l, &p);
    for (int i = 0; i < p.count; i++) in[3 + i] = p.tensors[i];
    rec_ctx ctx = {l, 1};
    CHECK(gradcheck("lstm, one-hot input", b_recurrent, in, 3 + p.count, &ctx));
    nn_params_free(&p);
    free_all(in, 3);
    nn_layer_free(l);
}

static void test_grad_rnn_through_time(void)
{
    nn_rng r;
    nn_rng_seed(&r, 42);
    nn_layer *l = nn_rnn_new(3, 4, 2, &r);
    CHECK(check_recurrent(l, 0, "rnn (T=5, B=2, 2 layers, h0)"));
    nn_layer_free(l);
}

static nn_tensor *b_transpose01(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_transpose01(g, in[0]); }
static nn_tensor *b_select_last_tm(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_select_step(g, in[0], -1, 0); }
static nn_tensor *b_select_1_bf(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_select_step(g, in[0], 1, 1); }
static nn_tensor *b_channel_affine(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_channel_affine(g, in[0], in[1], in[2]); }

static void test_grad_transpose01(void) { UNARY_CHECK(b_transpose01, "transpose01", 3, SHAPE(3, 2, 4), 0, NULL); }
static void test_grad_select_step(void)
{
    UNARY_CHECK(b_select_last_tm, "select_step last, time-major", 3, SHAPE(3, 2, 4), 0, NULL);
    UNARY_CHECK(b_select_1_bf, "select_step 1, batch-first", 3, SHAPE(2, 3, 4), 0, NULL);
}

static void test_grad_channel_affine(void)
{
    nn_rng r;
    nn_rng_seed(&r, 9);
    nn_tensor *a[3] = {input(&r, 3, (int[]){2, 3, 4}, 0), input(&r, 1, (int[]){3}, 0), input(&r, 1, (int[]){3}, 0)};
    int ok = gradcheck("channel_affine", b_channel_affine, a, 3, NULL);
    free_all(a, 3);
    CHECK(ok);
}

/* An LSTM that takes batch-first input, then its last step, as layers. */
static nn_tensor *b_lstm_last_step(nn_graph *g, nn_tensor **in, const void *c)
{
    nn_layer *const *layers = c;
    return nn_layer_forward(layers[1], g, nn_layer_forward(layers[0], g, in[0]));
}

static void test_grad_batch_first_lstm_last_step(void)
{
    nn_rng r;
    nn_rng_seed(&r, 10);
    nn_layer *layers[2] = {nn_lstm_new(3, 4, 1, &r), nn_select_step_new(-1, 1)};
    CHECK(nn_recurrent_set_batch_first(layers[0], 1) == NN_OK);
    nn_tensor *x[1] = {input(&r, 3, (int[]){2, 5, 3}, 0)};
    int ok = gradcheck("batch-first lstm + last step", b_lstm_last_step, x, 1, layers);
    free_all(x, 1);
    nn_layer_free(layers[0]);
    nn_layer_free(layers[1]);
    CHECK(ok);
}

/* ---- transformer ops ---- */
static const int emb_ids[6] = {2, 0, 2, 3, 1, 2}; /* row 2 three times: the scatter-add sums */
static nn_tensor *b_embedding(nn_graph *g, nn_tensor **in, const void *c)
{
    (void)c;
    return nn_embedding(g, in[0], emb_ids, 2, (int[]){2, 3});
}
static nn_tensor *b_layernorm(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_layernorm(g, in[0], in[1], in[2], 1e-5f); }
static nn_tensor *b_layernorm_plain(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_layernorm(g, in[0], NULL, NULL, 1e-5f); }
static nn_tensor *b_gelu(nn_graph *g, nn_tensor **in, const void *c) { (void)c; return nn_gelu(g, nn_scale(g, in[0], 3.0f)); }
/* The ops that write over an input, on intermediates (scaled copies): the
 * result must share the intermediate's buffer and the gradients flow as
 * through the ordinary ops. */
static nn_tensor *b_gelu_over(nn_graph *g, nn_tensor **in, const void *c)
{
    (void)c;
    nn_tensor *t = nn_scale(g, in[0], 3.0f), *y = nn__gelu_over(g, t);
    return y && y->data == t->data ? y : NULL;
}
static nn_tensor *b_add_over(nn_graph *g, nn_tensor **in, const void *c)
{
    (void)c;
    nn_tensor *t = nn_scale(g, in[1], 2.0f), *y = nn__add_over(g, nn_mul(g, in[0], in[0]), t);
    return y && y->data == t->data ? y : NULL;
}
static nn_tensor *b_attention(nn_graph *g, nn_tensor **in, const void *heads)
{
    return nn_causal_attention(g, nn_scale(g, in[0], 2.0f), *(const int *)heads);
}

static void test_grad_embedding(void)
{
    UNARY_CHECK(b_embedding, "embedding", 2, SHAPE(4, 5), 0, NULL);
    nn_graph *g = nn_graph_new();
    nn_graph_set_abort_on_error(g, 0);
    nn_tensor *table = nn_tensor_new(2, (int[]){4, 5});
    const int bad[2] = {1, 4};
    CHECK(nn_embedding(g, table, bad, 1, (int[]){2}) == NULL);
    CHECK_MSG(strstr(nn_graph_error(g), "nn_embedding") && strstr(nn_graph_error(g), "index 4") &&
                  strstr(nn_graph_error(g), "[4x5]"), "%s", nn_graph_error(g));
    nn_tensor_free(table);
    nn_graph_free(g);
}

static void test_grad_layernorm(void)
{
    nn_rng r;
    nn_rng_seed(&r, 11);
    nn_tensor *in[3] = {input(&r, 3, (int[]){2, 3, 6}, 0), input(&r, 1, (int[]){6}, 0),
                        input(&r, 1, (int[]){6}, 0)};
    int ok = gradcheck("layernorm", b_layernorm, in, 3, NULL);
    free_all(in, 3);
    CHECK(ok);
    /* a width of whole 16-lane groups: the vector path */
    nn_tensor *in32[3] = {input(&r, 2, (int[]){5, 32}, 0), input(&r, 1, (int[]){32}, 0),
                          input(&r, 1, (int[]){32}, 0)};
    ok = gradcheck("layernorm, width 32", b_layernorm, in32, 3, NULL);
    free_all(in32, 3);
    CHECK(ok);
    UNARY_CHECK(b_layernorm_plain, "layernorm without affine", 2, SHAPE(4, 37), 0, NULL);
    UNARY_CHECK(b_layernorm_plain, "layernorm without affine, width 16", 2, SHAPE(3, 16), 0, NULL);
    nn_graph *g = nn_graph_new();
    nn_graph_set_abort_on_error(g, 0);
    nn_tensor *x = nn_tensor_new(2, (int[]){3, 4}), *w = nn_tensor_new(1, (int[]){5});
    CHECK(nn_layernorm(g, x, w, NULL, 1e-5f) == NULL);
    CHECK_MSG(strstr(nn_graph_error(g), "nn_layernorm") && strstr(nn_graph_error(g), "[5]") &&
                  strstr(nn_graph_error(g), "[3x4]"), "%s", nn_graph_error(g));
    nn_tensor_free(x);
    nn_tensor_free(w);
    nn_graph_free(g);
}

static void test_grad_gelu(void) { UNARY_CHECK(b_gelu, "gelu", 2, SHAPE(5, 7), 0, NULL); }

static void test_grad_ops_over_an_input(void)
{
    UNARY_CHECK(b_gelu_over, "gelu over its input", 2, SHAPE(5, 7), 0, NULL);
    nn_rng r;
    nn_rng_seed(&r, 12);
    nn_tensor *in[2] = {input(&r, 2, (int[]){4, 9}, 0), input(&r, 2, (int[]){4, 9}, 0)};
    int ok = gradcheck("addition over its second input", b_add_over, in, 2, NULL);
    free_all(in, 2);
    CHECK(ok);
}

static void test_grad_causal_attention(void)
{
    int heads = 2;
    UNARY_CHECK(b_attention, "causal attention, 2 heads", 3, SHAPE(2, 5, 12), 0, &heads);
    heads = 1;
    UNARY_CHECK(b_attention, "causal attention, 1 head", 3, SHAPE(1, 4, 9), 0, &heads);
    UNARY_CHECK(b_attention, "causal attention, 37 steps (five row blocks)", 3, SHAPE(1, 37, 6), 0, &heads);
    heads = 2;
    UNARY_CHECK(b_attention, "causal attention, 2 heads of 17 (vector columns and a tail)", 3, SHAPE(1, 21, 102),
                0, &heads);
    nn_graph *g = nn_graph_new();
    nn_graph_set_abort_on_error(g, 0);
    nn_tensor *x = nn_tensor_new(3, (int[]){2, 4, 12});
    CHECK(nn_causal_attention(g, x, 3) == NULL); /* 12 = 3C with C = 4, not a multiple of 3 heads */
    CHECK_MSG(strstr(nn_graph_error(g), "nn_causal_attention") && strstr(nn_graph_error(g), "[2x4x12]"),
              "%s", nn_graph_error(g));
    nn_tensor_free(x);
    nn_graph_free(g);
}

/* Layers: the input and every parameter, with parameters redrawn large
 * enough that each one's gradient is well above the check's tolerance. */
static nn_tensor *b_layer(nn_graph *g, nn_tensor **in, const void *layer)
{
    return nn_layer_forward((nn_layer *)layer, g, in[0]);
}

static int layer_gradcheck(const char *name, nn_layer *l, nn_tensor *x, nn_rng *r)
{
    nn_params p;
    nn_params_init(&p);
    nn_tensor *in[24] = {x};
    int n = 1;
    if (nn_layer_params(l, &p) != NN_OK || p.count > 23) return 0;
    for (int i = 0; i < p.count; i++) {
        nn_tensor *t = p.tensors[i];
        int is_scale = strstr(p.names[i], "ln") && strstr(p.names[i], "weight");
        nn_tensor_uniform(t, r, is_scale ? 0.5f : -0.5f, is_scale ? 1.5f : 0.5f);
        in[n++] = t;
    }
    int ok = gradcheck(name, b_layer, in, n, l);
    nn_params_free(&p);
    return ok;
}

static void test_grad_transformer_layers(void)
{
    nn_rng r;
    nn_rng_seed(&r, 21);
    nn_tensor *x = input(&r, 3, (int[]){2, 5, 8}, 0);
    nn_layer *ln = nn_layernorm_new(8), *att = nn_causal_self_attention_new(8, 2, &r);
    nn_layer *blk = nn_transformer_block_new(8, 2, 2, &r);
    int ok = layer_gradcheck("layernorm layer", ln, x, &r) &&
             layer_gradcheck("causal self-attention layer", att, x, &r) &&
             layer_gradcheck("transformer block", blk, x, &r);
    nn_layer_free(ln);
    nn_layer_free(att);
    nn_layer_free(blk);
    nn_tensor_free(x);
    CHECK(ok);
    /* token ids in, no input gradient: the embedding's and the GPT's parameters
     * (the GPT's head is tied to wte, which gets both gradients) */
    nn_tensor *ids = nn_tensor_new(2, (int[]){2, 5});
    for (int i = 0; i < 10; i++) ids->data[i] = (float)((i * 3) % 7);
    nn_layer *emb = nn_embedding_new(7, 4, &r);
    nn_gpt_config cfg = {7, 5, 1, 2, 8};
    nn_layer *gpt = nn_gpt_new(cfg, &r);
    ok = layer_gradcheck("embedding layer", emb, ids, &r) && layer_gradcheck("gpt", gpt, ids, &r);
    nn_layer_free(emb);
    nn_layer_free(gpt);
    nn_tensor_free(ids);
    CHECK(ok);
}

const test_case gradcheck_tests[] = {
    {"grad_transformer_layers", test_grad_transformer_layers},
    {"grad_embedding", test_grad_embedding},
    {"grad_layernorm", test_grad_layernorm},
    {"grad_ops_over_an_input", test_grad_ops_over_an_input},
    {"grad_gelu", test_grad_gelu},
    {"grad_causal_attention", test_grad_causal_attention},
    {"grad_transpose01", test_grad_transpose01},
    {"grad_select_step", test_grad_select_step},
    {"grad_channel_affine", test_grad_channel_affine},
    {"grad_batch_first_lstm_last_step", test_grad_batch_first_lstm_last_step},
    {"grad_lstm_through_time", test_grad_lstm_through_time},
    {"grad_lstm_one_hot_input", test_grad_lstm_one_hot_input},
    {"grad_rnn_through_time", test_grad_rnn_through_time},
    {"grad_conv2d", test_grad_conv2d},
    {"grad_conv2d_relu", test_grad_conv2d_relu},
    {"grad_maxpool2d_relu", test_grad_maxpool2d_relu},
    {"maxpool_nan_propagates", test_maxpool_nan_propagates},
    {"sequential_relu_maxpool_equals_ops", test_sequential_relu_maxpool_equals_ops},
    {"grad_conv2d_maxpool2d_relu", test_grad_conv2d_maxpool2d_relu},
    {"conv2d_maxpool2d_relu_equals_ops", test_conv2d_maxpool2d_relu_equals_ops},
    {"conv2d_relu_equals_two_ops", test_conv2d_relu_equals_two_ops},
    {"conv2d_matches_direct_sum", test_conv2d_matches_direct_sum},
    {"conv2d_direct_matches_im2col", test_conv2d_direct_matches_im2col},
    {"conv2d_same_bits_any_thread_count", test_conv2d_same_bits_any_thread_count},
    {"grad_maxpool2d", test_grad_maxpool2d},
    {"maxpool_ties_and_values", test_maxpool_ties_and_values},
    {"grad_pool_conv_matmul_shared_input", test_grad_pool_conv_matmul_shared_input},
    {"grad_avgpool2d", test_grad_avgpool2d},
    {"grad_dropout", test_grad_dropout},
    {"dropout_statistics", test_dropout_statistics},
    {"grad_matmul_all_transposes", test_grad_matmul_all_transposes},
    {"grad_matmul_packed_path", test_grad_matmul_large_enough_for_packed_path},
    {"grad_add_bias", test_grad_add_bias},
    {"grad_add_sub_mul_mse", test_grad_elementwise_binary},
    {"grad_shared_input_accumulates", test_grad_shared_input_accumulates},
    {"grad_scale", test_grad_scale},
    {"grad_relu", test_grad_relu},
    {"grad_sigmoid", test_grad_sigmoid},
    {"grad_tanh", test_grad_tanh},
    {"grad_softmax", test_grad_softmax},
    {"grad_log_softmax", test_grad_log_softmax},
    {"grad_softmax_cross_entropy", test_grad_softmax_cross_entropy},
    {"softmax_cross_entropy_large_logits", test_softmax_cross_entropy_stable_for_large_logits},
    {"grad_softmax_cross_entropy_smoothed", test_grad_softmax_cross_entropy_smoothed},
    {"grad_leaky_relu", test_grad_leaky_relu},
    {"grad_bce_with_logits", test_grad_bce_with_logits},
    {"detach_stops_gradient", test_detach_stops_gradient},
    {"frozen_params_pass_gradient_through", test_frozen_params_pass_gradient_through},
    {"grad_reshape", test_grad_reshape},
    {"grad_flatten", test_grad_flatten},
    {"grad_reshape_accumulates", test_grad_reshape_accumulates},
    {"grad_sum", test_grad_sum},
    {"grad_mean", test_grad_mean},
    {"grad_dense_layer", test_grad_dense_layer},
    {NULL, NULL}};
