/* Inference: the predictor's plan (channels-last direct convolutions,
 * dense layers as matrix-vector products) against the graph's forward. */
#include <stdlib.h>
#include <string.h>

#include "../src/infer/plan.h"
#include "../src/kernels/kernels.h"
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


/* ---- int8 --------------------------------------------------------------- */

/* Quantization of activations: exact multiples of the scale round trip,
 * ties go to even, values beyond 127 scales saturate, NaN becomes 0; the
 * vector body and the scalar tail agree. */
static void test_q8_quantize_round_trip_and_saturation(void)
{
    enum { N = 300 };
    float x[N];
    uint8_t q[N];
    const float scale = 0.05f;
    for (int i = 0; i < 255; i++) x[i] = (float)(i - 127) * scale; /* every level */
    x[255] = 0.5f * scale, x[256] = 1.5f * scale, x[257] = -2.5f * scale; /* ties */
    x[258] = 1000.0f, x[259] = -1000.0f, x[260] = NAN, x[261] = INFINITY;
    for (int i = 262; i < N; i++) x[i] = (float)(i % 7) * scale;
    nn_k_q8_quantize(1, N, N, x, 1.0f / scale, N, q);
    for (int i = 0; i < 255; i++) CHECK_MSG(q[i] == i + 1, "level %d gave byte %d", i - 127, q[i]);
    CHECK(q[255] == 128 && q[256] == 130 && q[257] == 126);
    CHECK(q[258] == 255 && q[259] == 1 && q[260] == 128 && q[261] == 255);
    /* a map with a channel stride: the padding channels become 128 */
    float m[2 * 8] = {0};
    for (int i = 0; i < 2 * 8; i++) m[i] = (float)i * scale;
    uint8_t qm[2 * 8];
    nn_k_q8_quantize(2, 5, 8, m, 1.0f / scale, 8, qm);
    for (int p = 0; p < 2; p++)
        for (int c = 0; c < 8; c++) CHECK(qm[p * 8 + c] == (c < 5 ? 128 + p * 8 + c : 128));
}

/* One convolution (or dense layer) through the int8 kernel against sums
 * computed here from the same rounding of the weights: VNNI (where built)
 * and the plain C path give the same bits; both match the reference to
 * float rounding. */
static int q8_case(int c, int k, int stride, int oc, int ih, int iw, int pool2, int row_runs, int dense, uint64_t seed,
                   double *worst, int *same_bits)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    int cq = row_runs ? c : nn_k_q8_channels(c), ocp = (oc + 15) / 16 * 16;
    int oh = (ih - k) / stride + 1, ow = (iw - k) / stride + 1;
    int rows = pool2 ? oh / 2 * 2 : oh, cols = pool2 ? ow / 2 * 2 : ow;
    int yh = pool2 ? rows / 2 : rows, yw = pool2 ? cols / 2 : ow;
    size_t in_bytes = (size_t)ih * iw * cq + 3;
    uint8_t *x = malloc(in_bytes);
    float *w = malloc(sizeof(float) * (size_t)oc * c * k * k), *scale = calloc((size_t)ocp, sizeof(float));
    float *bias = calloc((size_t)ocp, sizeof(float)), *wscale = calloc((size_t)ocp, sizeof(float));
    size_t packed = dense ? nn_k_q8_packed_bytes(oc, c, 1, 0) : nn_k_q8_packed_bytes(oc, c, k, row_runs);
    int8_t *wp = malloc(packed);
    int32_t *wsum = malloc(sizeof(int32_t) * (size_t)ocp);
    size_t ysize = (size_t)yh * yw * ocp;
    float *y1 = calloc(ysize, sizeof(float)), *y2 = calloc(ysize, sizeof(float));
    for (size_t i = 0; i < in_bytes; i++) x[i] = (uint8_t)nn_rng_below(&r, 256);
    for (size_t i = 0; i < (size_t)oc * c * k * k; i++) w[i] = nn_rng_uniform(&r) - 0.5f;
    for (int o = 0; o < oc; o++) {
        /* per-channel scales over three orders of magnitude */
        float mag = o % 3 == 0 ? 1e-3f : o % 3 == 1 ? 1.0f : 3.0f;
        for (int i = 0; i < c * k * k; i++) w[(size_t)o * c * k * k + i] *= mag;
        float m = 0.0f;
        for (int i = 0; i < c * k * k; i++) m = fmaxf(m, fabsf(w[(size_t)o * c * k * k + i]));
        wscale[o] = m / 127.0f;
        scale[o] = 0.02f * wscale[o];
        bias[o] = nn_rng_uniform(&r) - 0.5f;
    }
    if (dense)
        nn_k_q8_pack_dense(oc, c, w, c, NULL, wscale, wp, wsum);
    else
        nn_k_q8_pack(oc, c, k, row_runs, w, wscale, wp, wsum);
    nn_q8_conv s = {iw, cq, k, stride, ocp, yw, rows, cols, dense, pool2, row_runs};
    nn_k_q8_conv(&s, x, wp, wsum, scale, bias, 1, 1, y1);
    nn_k_q8_conv(&s, x, wp, wsum, scale, bias, 1, 0, y2);
    *same_bits = !memcmp(y1, y2, ysize * sizeof(float));
    /* the reference: (x - 128) . round(w / wscale), scaled, pooled, ReLU */
    *worst = 0.0;
    for (int py = 0; py < yh; py++)
        for (int px = 0; px < yw; px++)
            for (int o = 0; o < oc; o++) {
                double best = -INFINITY;
                for (int dy = 0; dy < (pool2 ? 2 : 1); dy++)
                    for (int dx = 0; dx < (pool2 ? 2 : 1); dx++) {
                        int oy = pool2 ? 2 * py + dy : py, ox = pool2 ? 2 * px + dx : px;
                        long sum = 0;
                        for (int ci = 0; ci < c; ci++)
                            for (int ky = 0; ky < k; ky++)
                                for (int kx = 0; kx < k; kx++) {
                                    float v = w[(((size_t)o * c + ci) * k + ky) * k + kx] / wscale[o];
                                    long qw = lrintf(fmaxf(-127.0f, fminf(127.0f, v)));
                                    int a = x[((size_t)(oy * stride + ky) * iw + ox * stride + kx) * cq + ci] - 128;
                                    sum += a * qw;
                                }
                        double v = (double)sum * scale[o] + bias[o];
                        if (v > best) best = v;
                    }
                if (best < 0) best = 0;
                double got = y1[((size_t)py * yw + px) * ocp + o];
                double d = fabs(got - best) / (1e-3 + fabs(best));
                if (d > *worst) *worst = d;
            }
    free(x), free(w), free(scale), free(bias), free(wscale), free(wp), free(wsum), free(y1), free(y2);
    return 1;
}

static void test_q8_kernels_match_reference_and_each_other(void)
{
    struct {
        int c, k, stride, oc, ih, iw, pool2, row_runs, dense;
    } cases[] = {
        {32, 3, 1, 64, 13, 13, 1, 0, 0}, /* the seed CNN's second layer, pooled */
        {1, 3, 1, 32, 28, 28, 1, 1, 0},  /* its first layer: row runs, pooled */
        {5, 3, 2, 20, 11, 9, 0, 0, 0},   /* odd channels, stride 2, padded outputs */
        {3, 2, 1, 48, 7, 8, 0, 1, 0},    /* row runs of 6 bytes, three output vectors */
        {2, 3, 1, 16, 9, 10, 1, 0, 0},   /* two channels in a quad, odd pooled size */
        {1600, 1, 1, 128, 1, 1, 0, 0, 1}, /* the dense layer */
        {37, 1, 1, 10, 1, 1, 0, 0, 1},   /* a small dense layer, ragged sizes */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double worst;
        int same;
        q8_case(cases[i].c, cases[i].k, cases[i].stride, cases[i].oc, cases[i].ih, cases[i].iw, cases[i].pool2,
                cases[i].row_runs, cases[i].dense, 20 + i, &worst, &same);
        CHECK_MSG(same, "case %zu: the VNNI and plain C paths differ", i);
        CHECK_MSG(worst < 1e-5, "case %zu: %g from the reference", i, worst);
    }
    if (!nn_k_q8_vnni()) printf("    (this build has no VNNI path: the plain C path was checked alone)\n");
}

/* The quantized seed CNN against its float model: outputs close, the same
 * classes for nearly all inputs; no allocation per call; every layer in
 * int8; bad arguments and NaN calibration are errors. */
static void test_quantized_model_close_to_float(void)
{
    enum { CAL = 40, TEST = 40 };
    nn_layer *m = seed_cnn(8);
    float *x = malloc(sizeof(float) * 784 * (CAL + TEST));
    nn_rng r;
    nn_rng_seed(&r, 9);
    /* smooth blobs, so that features are not noise */
    for (int n = 0; n < CAL + TEST; n++) {
        float cy = 6 + 16 * nn_rng_uniform(&r), cx = 6 + 16 * nn_rng_uniform(&r);
        for (int i = 0; i < 784; i++) {
            float dy = (float)(i / 28) - cy, dx = (float)(i % 28) - cx;
            x[(size_t)n * 784 + i] = 2.5f * expf(-(dy * dy + dx * dx) / 30.0f) - 0.4f;
        }
    }
    nn_error err;
    nn_qmodel *q = nn_quantize(m, 3, (int[]){1, 28, 28}, x, CAL, &err);
    CHECK_MSG(q, "%s", err.msg);
    CHECK(nn_qmodel_quantized_layers(q) == 4);
    nn_predictor *p = nn_predictor_new(m, 3, (int[]){1, 28, 28}, &err);
    int agree = 0;
    double worst = 0.0;
    for (int n = CAL; n < CAL + TEST; n++) {
        int nf, nq;
        float yf[10];
        memcpy(yf, nn_predictor_run(p, x + (size_t)n * 784, &nf, &err), sizeof yf);
        const float *yq = nn_qmodel_run(q, x + (size_t)n * 784, &nq, &err);
        CHECK(nf == 10 && nq == 10);
        double span = 0.0;
        for (int i = 0; i < 10; i++) span = fmax(span, fabs(yf[i]));
        for (int i = 0; i < 10; i++) worst = fmax(worst, fabs(yq[i] - yf[i]) / span);
        int cf = 0, cq = 0;
        for (int i = 1; i < 10; i++) cf = yf[i] > yf[cf] ? i : cf, cq = yq[i] > yq[cq] ? i : cq;
        agree += cf == cq;
    }
    /* the whole quantized model on the plain C path: the same bits */
    nn__plan *plan = nn__plan_new(m, 3, (int[]){1, 28, 28});
    for (int n = 0; n < CAL; n++) nn__plan_observe(plan, x + (size_t)n * 784);
    CHECK(nn__plan_quantize(plan, 4, NULL, NULL) == 4);
    for (int n = CAL; n < CAL + 5; n++) {
        float fast[10];
        memcpy(fast, nn__plan_run(plan, x + (size_t)n * 784, NULL), sizeof fast);
        nn__plan_set_portable(plan, 1);
        const float *plain = nn__plan_run(plan, x + (size_t)n * 784, NULL);
        CHECK_MSG(!memcmp(fast, plain, sizeof fast), "example %d: the VNNI and plain C models differ", n);
        nn__plan_set_portable(plan, 0);
    }
    nn__plan_free(plan);
    CHECK_MSG(worst < 0.1 && agree >= TEST - 2, "int8 vs float: %.3g of the output range, %d of %d classes agree",
              worst, agree, TEST);
    alloc_fail_at(0);
    for (int k = 0; k < 20; k++) nn_qmodel_class(q, x, &err);
    CHECK_MSG(alloc_calls() == 0, "%ld allocations in 20 int8 predictions", alloc_calls());
    nn_qmodel_free(q);
    nn_predictor_free(p);

    /* errors */
    CHECK(!nn_quantize(m, 3, (int[]){1, 28, 28}, x, 0, &err) && strstr(err.msg, "calibration"));
    CHECK(!nn_quantize(NULL, 3, (int[]){1, 28, 28}, x, 1, &err) && err.code == NN_ERR_ARG);
    CHECK(!nn_quantize(m, 3, (int[]){2, 28, 28}, x, 1, &err) && strstr(err.msg, "does not fit"));
    x[100] = NAN;
    CHECK(!nn_quantize(m, 3, (int[]){1, 28, 28}, x, 1, &err) && err.code == NN_ERR_NUMERIC);
    CHECK(!nn_qmodel_run(NULL, x, NULL, &err) && nn_qmodel_class(NULL, x, &err) == -1);
    nn_rng_seed(&r, 1);
    nn_layer *lstm = nn_lstm_new(4, 8, 1, &r);
    CHECK(!nn_quantize(lstm, 1, (int[]){4}, x, 1, &err) && strstr(err.msg, "lstm"));
    nn_layer_free(lstm);
    free(x);
    nn_layer_free(m);
}

/* A quantized model saved and loaded gives the same bits; hostile files
 * are refused with the file, the tensor and the problem named. */
static void test_quantized_model_file_round_trip_and_hostile_files(void)
{
    nn_layer *m = seed_cnn(11);
    enum { CAL = 8 };
    float *x = malloc(sizeof(float) * 784 * CAL);
    for (int i = 0; i < 784 * CAL; i++) x[i] = (float)((i * 37) % 101) / 40.0f - 0.4f;
    nn_error err;
    nn_qmodel *q = nn_quantize(m, 3, (int[]){1, 28, 28}, x, CAL, &err);
    CHECK_MSG(q, "%s", err.msg);
    char path[512], bad[512];
    snprintf(path, sizeof path, "%s/q8.safetensors", test_tmpdir());
    snprintf(bad, sizeof bad, "%s/q8-bad.safetensors", test_tmpdir());
    CHECK_MSG(nn_qmodel_save(q, path, &err) == NN_OK, "%s", err.msg);
    nn_qmodel *back = nn_qmodel_load(path, &err);
    CHECK_MSG(back, "%s", err.msg);
    CHECK(nn_qmodel_quantized_layers(back) == 4);
    for (int n = 0; n < CAL; n++) {
        float y[10];
        int k1, k2;
        memcpy(y, nn_qmodel_run(q, x + (size_t)n * 784, &k1, &err), sizeof y);
        const float *y2 = nn_qmodel_run(back, x + (size_t)n * 784, &k2, &err);
        CHECK_MSG(k1 == 10 && k2 == 10 && !memcmp(y, y2, sizeof y), "example %d differs after loading", n);
    }
    /* the file is self-describing: I8 weights, F32 scales */
    nn_safetensors st;
    CHECK(nn_safetensors_read(path, &st, &err) == NN_OK);
    const nn_st_tensor *w = nn_safetensors_find(&st, "3.weight");
    CHECK(w && !strcmp(w->dtype, "I8") && w->ndim == 4 && w->shape[0] == 64 && w->shape[1] == 32);
    CHECK(nn_safetensors_find(&st, "0.weight_scale") && nn_safetensors_find(&st, "10.input_scale"));
    nn_safetensors_free(&st);
    /* saving to the same path again replaces it atomically */
    CHECK(nn_qmodel_save(back, path, &err) == NN_OK);
    nn_qmodel_free(back);

    /* hostile variants, made by editing the file's bytes */
    FILE *f = fopen(path, "rb");
    CHECK(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *bytes = malloc((size_t)size), *copy = malloc((size_t)size);
    CHECK(fread(bytes, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    uint64_t header = 0;
    for (int i = 0; i < 8; i++) header |= (uint64_t)(unsigned char)bytes[i] << (8 * i);
    struct {
        const char *find, *replace; /* in the header, same length */
        const char *expect;
    } edits[] = {
        {"\"int8\"", "\"int4\"", "not an int8 model file"},
        {"\"dtype\":\"I8\"", "\"dtype\":\"U8\"", "expected I8"},
        {"\"0.bias\"", "\"0.bian\"", "'0.bias' is missing"},
        {"in=128 out=10", "in=128 out=11", "expected I8 [11, 128"},
        {"conv2d in=32", "conv2d in=31", "does not fit"},
        {"relu; maxpool2d", "relu; gelu00000", "gelu"},
    };
    for (size_t e = 0; e < sizeof edits / sizeof edits[0]; e++) {
        memcpy(copy, bytes, (size_t)size);
        char *at = NULL;
        for (char *p = copy + 8; p + strlen(edits[e].find) <= copy + 8 + header; p++)
            if (!memcmp(p, edits[e].find, strlen(edits[e].find))) {
                at = p;
                break;
            }
        CHECK_MSG(at, "edit %zu: '%s' not in the header", e, edits[e].find);
        memcpy(at, edits[e].replace, strlen(edits[e].replace));
        f = fopen(bad, "wb");
        fwrite(copy, 1, (size_t)size, f);
        fclose(f);
        nn_qmodel *h = nn_qmodel_load(bad, &err);
        CHECK_MSG(!h && strstr(err.msg, edits[e].expect) && strstr(err.msg, "q8-bad"), "edit %zu: %s", e,
                  h ? "loaded" : err.msg);
    }
    /* a scale of zero, and a weight of -128, in the data */
    CHECK(nn_safetensors_read(path, &st, &err) == NN_OK);
    size_t data_at = 8 + (size_t)header;
    const nn_st_tensor *ws = nn_safetensors_find(&st, "3.weight_scale"), *qw = nn_safetensors_find(&st, "7.weight");
    size_t scale_at = data_at + ws->begin, weight_at = data_at + qw->begin + 5;
    nn_safetensors_free(&st);
    memcpy(copy, bytes, (size_t)size);
    memset(copy + scale_at, 0, 4);
    f = fopen(bad, "wb");
    fwrite(copy, 1, (size_t)size, f);
    fclose(f);
    CHECK(!nn_qmodel_load(bad, &err) && strstr(err.msg, "3.weight_scale") && strstr(err.msg, "positive"));
    memcpy(copy, bytes, (size_t)size);
    copy[weight_at] = (char)0x80;
    f = fopen(bad, "wb");
    fwrite(copy, 1, (size_t)size, f);
    fclose(f);
    CHECK(!nn_qmodel_load(bad, &err) && strstr(err.msg, "7.weight") && strstr(err.msg, "-128"));
    /* a float model file is not an int8 one */
    CHECK(nn_model_save(bad, m, NULL, &err) == NN_OK);
    CHECK(!nn_qmodel_load(bad, &err) && strstr(err.msg, "not an int8 model file"));
    CHECK(!nn_qmodel_load(NULL, &err) && err.code == NN_ERR_ARG);
    free(bytes);
    free(copy);
    free(x);
    nn_qmodel_free(q);
    nn_layer_free(m);
}

const test_case infer_tests[] = {
    {"plan_matches_graph_seed_cnn", test_plan_matches_graph_seed_cnn},
    {"plan_matches_graph_other_shapes", test_plan_matches_graph_other_shapes},
    {"predictor_falls_back_to_the_graph", test_predictor_falls_back_to_the_graph},
    {"predictor_no_allocation_and_refresh", test_predictor_no_allocation_and_refresh},
    {"q8_quantize_round_trip_and_saturation", test_q8_quantize_round_trip_and_saturation},
    {"q8_kernels_match_reference_and_each_other", test_q8_kernels_match_reference_and_each_other},
    {"quantized_model_close_to_float", test_quantized_model_close_to_float},
    {"quantized_model_file_round_trip_and_hostile_files", test_quantized_model_file_round_trip_and_hostile_files},
    {NULL, NULL}};
