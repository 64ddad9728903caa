/* Optimizer steps against values worked out by hand (one parameter p = 1,
 * gradients set directly; see the comments for the arithmetic). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/kernels/kernels.h"
#include "nn.h"
#include "test.h"

typedef struct {
    nn_tensor *p;
    nn_params params;
} one_param;

static void setup(one_param *s)
{
    s->p = nn_tensor_new1(1);
    s->p->data[0] = 1.0f;
    nn_tensor_requires_grad(s->p, 1);
    nn_params_init(&s->params);
    nn_params_add(&s->params, "p", s->p);
}

static void teardown(one_param *s, nn_optim *o)
{
    nn_optim_free(o);
    nn_params_free(&s->params);
    nn_tensor_free(s->p);
}

static float step_with(nn_optim *o, one_param *s, float grad)
{
    nn_optim_zero_grad(o);
    s->p->grad[0] = grad;
    nn_optim_step(o);
    return s->p->data[0];
}

static void test_sgd_plain(void)
{
    one_param s;
    setup(&s);
    nn_optim *o = nn_optim_sgd_new(&s.params, (nn_sgd_opts){.lr = 0.1f});
    CHECK_NEAR(step_with(o, &s, 0.5f), 0.95, 1e-6); /* 1 - 0.1*0.5 */
    CHECK_NEAR(step_with(o, &s, 0.5f), 0.90, 1e-6);
    teardown(&s, o);
}

static void test_sgd_momentum(void)
{
    one_param s;
    setup(&s);
    nn_optim *o = nn_optim_sgd_new(&s.params, (nn_sgd_opts){.lr = 0.1f, .momentum = 0.9f});
    CHECK_NEAR(step_with(o, &s, 0.5f), 0.95, 1e-6);   /* buf 0.5 */
    CHECK_NEAR(step_with(o, &s, 0.5f), 0.855, 1e-6);  /* buf 0.95 */
    CHECK_NEAR(step_with(o, &s, 0.5f), 0.7195, 1e-6); /* buf 1.355 */
    teardown(&s, o);
}

static void test_sgd_nesterov(void)
{
    one_param s;
    setup(&s);
    nn_optim *o = nn_optim_sgd_new(&s.params,
                                   (nn_sgd_opts){.lr = 0.1f, .momentum = 0.9f, .nesterov = 1});
    CHECK_NEAR(step_with(o, &s, 0.5f), 0.905, 1e-6);  /* buf 0.5, d = 0.5 + 0.45 */
    CHECK_NEAR(step_with(o, &s, 0.5f), 0.7695, 1e-6); /* buf 0.95, d = 0.5 + 0.855 */
    teardown(&s, o);
}

static void test_sgd_weight_decay(void)
{
    one_param s;
    setup(&s);
    nn_optim *o = nn_optim_sgd_new(&s.params, (nn_sgd_opts){.lr = 0.1f, .weight_decay = 0.1f});
    CHECK_NEAR(step_with(o, &s, 0.5f), 0.94, 1e-6);   /* d = 0.5 + 0.1*1 */
    CHECK_NEAR(step_with(o, &s, 0.5f), 0.8806, 1e-6); /* d = 0.5 + 0.094 */
    teardown(&s, o);
}

static void test_sgd_rejects_bad_options(void)
{
    one_param s;
    setup(&s);
    CHECK(nn_optim_sgd_new(&s.params, (nn_sgd_opts){.lr = -1.0f}) == NULL);
    CHECK(nn_optim_sgd_new(&s.params, (nn_sgd_opts){.lr = 0.1f, .nesterov = 1}) == NULL);
    CHECK(nn_optim_adam_new(&s.params, (nn_adam_opts){.lr = 0.1f, .beta1 = 1.0f}) == NULL);
    teardown(&s, NULL);
}

static void test_adam(void)
{
    one_param s;
    setup(&s);
    nn_optim *o = nn_optim_adam_new(&s.params, nn_adam_defaults(0.1f));
    /* step 1: m = 0.05, v = 0.00025, mhat = 0.5, vhat = 0.25 -> p -= 0.1 */
    CHECK_NEAR(step_with(o, &s, 0.5f), 0.9, 1e-6);
    /* step 2: m = 0.02, v = 0.00031225; mhat = 0.02/0.19, vhat = 0.00031225/0.001999
     * -> p -= 0.1 * 0.1052632 / 0.3952250 = 0.0266337 */
    CHECK_NEAR(step_with(o, &s, -0.25f), 0.8733663, 2e-6);
    CHECK(nn_optim_steps(o) == 2);
    teardown(&s, o);
}

/* A parameter whose gradient turns 0 (a dead unit) must not leave its
 * optimizer state subnormal (slow arithmetic on x86), nor may gradients
 * that are subnormal or nearly so: after 2000 steps no state value is
 * subnormal, the decayed ones are exactly 0, and the parameter stays put
 * once they are. Ordinary gradients keep the exact torch rule (the tests
 * above). */
static void test_optim_state_never_subnormal(void)
{
    enum { N = 4, STEPS = 2000 };
    float p[N], g[N], m[N] = {0}, v[N] = {0}, buf[N] = {0}, q[N];
    for (int i = 0; i < N; i++) p[i] = q[i] = 1.0f;
    int subnormal = 0;
    for (int t = 1; t <= STEPS; t++) {
        /* a gradient that stops, a tiny one, a subnormal one, an ordinary one */
        g[0] = t <= 5 ? 1e-3f : 0.0f;
        g[1] = 1e-19f;
        g[2] = 1e-40f;
        g[3] = t % 2 ? 0.25f : -0.25f;
        float c1 = 1.0f - powf(0.9f, (float)t), c2 = 1.0f - powf(0.999f, (float)t);
        nn_k_adam(N, p, g, m, v, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, c1, c2, 0);
        nn_k_sgd(N, q, g, buf, 1e-3f, 0.9f, 0.0f, 0, t == 1);
        for (int i = 0; i < N; i++)
            subnormal += fpclassify(m[i]) == FP_SUBNORMAL || fpclassify(v[i]) == FP_SUBNORMAL ||
                         fpclassify(buf[i]) == FP_SUBNORMAL || fpclassify(p[i]) == FP_SUBNORMAL ||
                         fpclassify(q[i]) == FP_SUBNORMAL;
    }
    CHECK_MSG(subnormal == 0, "%d subnormal state values", subnormal);
    CHECK(m[0] == 0.0f && buf[0] == 0.0f); /* 0.9^2000 of 1e-4: below any float */
    CHECK(m[1] == 0.0f && v[1] == 0.0f && m[2] == 0.0f && v[2] == 0.0f);
    CHECK(p[1] == 1.0f && p[2] == 1.0f && q[1] == 1.0f && q[2] == 1.0f);
    CHECK(m[3] != 0.0f && v[3] > 0.0f && buf[3] != 0.0f);
    float p0 = p[0];
    g[0] = 0.0f;
    nn_k_adam(1, p, g, m, v, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 1.0f, 0);
    CHECK(p[0] == p0);
}

static void test_adam_l2_weight_decay(void)
{
    one_param s;
    setup(&s);
    nn_adam_opts a = nn_adam_defaults(0.1f);
    a.weight_decay = 0.1f;
    nn_optim *o = nn_optim_adam_new(&s.params, a);
    CHECK_NEAR(step_with(o, &s, 0.5f), 0.9, 1e-6); /* g = 0.6: first step is always lr */
    /* g = -0.25 + 0.09 = -0.16; m = 0.038, v = 0.00038524; mhat 0.2, vhat 0.1927164
     * -> p -= 0.1 * 0.2 / 0.4389947 = 0.0455587 */
    CHECK_NEAR(step_with(o, &s, -0.25f), 0.8544414, 2e-6);
    teardown(&s, o);
}

static void test_adamw_decoupled_weight_decay(void)
{
    one_param s;
    setup(&s);
    nn_adam_opts a = nn_adam_defaults(0.1f);
    a.weight_decay = 0.1f;
    nn_optim *o = nn_optim_adamw_new(&s.params, a);
    CHECK_NEAR(step_with(o, &s, 0.5f), 0.89, 1e-6);        /* 1*(1 - 0.01) - 0.1 */
    CHECK_NEAR(step_with(o, &s, -0.25f), 0.8544663, 2e-6); /* 0.89*0.99 - 0.0266337 */
    teardown(&s, o);
}

static void test_zero_grad_and_lr(void)
{
    one_param s;
    setup(&s);
    nn_optim *o = nn_optim_sgd_new(&s.params, (nn_sgd_opts){.lr = 0.1f});
    s.p->grad[0] = 3.0f;
    nn_optim_zero_grad(o);
    CHECK(s.p->grad[0] == 0.0f);
    nn_optim_set_lr(o, 0.5f);
    CHECK(nn_optim_lr(o) == 0.5f);
    CHECK_NEAR(step_with(o, &s, 1.0f), 0.5, 1e-6);
    teardown(&s, o);
}

static void test_clip_grad_norm(void)
{
    nn_tensor *a = nn_tensor_new1(1), *b = nn_tensor_new1(1);
    nn_tensor_requires_grad(a, 1);
    nn_tensor_requires_grad(b, 1);
    nn_params p;
    nn_params_init(&p);
    nn_params_add(&p, "a", a);
    nn_params_add(&p, "b", b);
    a->grad[0] = 3.0f;
    b->grad[0] = 4.0f;
    CHECK_NEAR(nn_clip_grad_norm(&p, 10.0f), 5.0, 1e-6); /* under the limit: unchanged */
    CHECK(a->grad[0] == 3.0f);
    CHECK_NEAR(nn_clip_grad_norm(&p, 1.0f), 5.0, 1e-6);
    CHECK_NEAR(a->grad[0], 0.6, 1e-5);
    CHECK_NEAR(b->grad[0], 0.8, 1e-5);
    /* a longer gradient (the sum of squares runs in 16 lanes plus a tail):
     * integers, so the exact norm is known */
    nn_tensor *c = nn_tensor_new1(1037);
    nn_tensor_requires_grad(c, 1);
    nn_params_add(&p, "c", c);
    double want = 0.36 + 0.64;
    for (int i = 0; i < 1037; i++) {
        c->grad[i] = (float)(i % 7 - 3);
        want += (double)(i % 7 - 3) * (i % 7 - 3);
    }
    CHECK_NEAR(nn_clip_grad_norm(&p, 1e6f), sqrt(want), 1e-4);
    nn_params_free(&p);
    nn_tensor_free(a);
    nn_tensor_free(b);
    nn_tensor_free(c);
}

static void test_lr_schedules(void)
{
    CHECK_NEAR(nn_lr_cosine(1.0f, 0.0f, 0, 100, 0), 1.0, 1e-6);
    CHECK_NEAR(nn_lr_cosine(1.0f, 0.0f, 50, 100, 0), 0.5, 1e-6);
    CHECK_NEAR(nn_lr_cosine(1.0f, 0.1f, 100, 100, 0), 0.1, 1e-6);
    CHECK_NEAR(nn_lr_cosine(1.0f, 0.0f, 4, 100, 10), 0.5, 1e-6); /* warm-up: (4+1)/10 */
    CHECK_NEAR(nn_lr_stable_decay(2.0f, 0.0f, 70, 100, 25), 2.0, 1e-6);
    CHECK_NEAR(nn_lr_stable_decay(2.0f, 0.0f, 75, 100, 25), 2.0, 1e-6);
    CHECK_NEAR(nn_lr_stable_decay(2.0f, 0.0f, 87, 100, 25), 2.0 * 0.5 * (1 + cos(3.14159265358979 * 12 / 25)), 1e-5);
    CHECK_NEAR(nn_lr_step(1.0f, 0.5f, 25, 10), 0.25, 1e-6);
}

/* Adamax against values worked by hand: step 1 moves by lr exactly (m / u
 * = (1 - b1) g / |g| and the bias correction undoes 1 - b1); step 2 with a
 * smaller gradient of the other sign keeps u from step 1 (decayed). */
static void test_adamax_hand_worked(void)
{
    nn_tensor *p = nn_tensor_new1(1);
    nn_tensor_requires_grad(p, 1);
    p->data[0] = 1.0f;
    nn_params ps;
    nn_params_init(&ps);
    nn_params_add(&ps, "p", p);
    nn_optim *o = nn_optim_adamax_new(&ps, nn_adam_defaults(0.1f));
    CHECK(o && !strcmp(nn_optim_name(o), "adamax"));
    p->grad[0] = 0.5f;
    nn_optim_step(o);
    CHECK_NEAR(p->data[0], 0.9, 1e-6);
    p->grad[0] = -0.2f;
    nn_optim_step(o);
    CHECK_NEAR(p->data[0], 0.8736578689, 1e-6);
    nn_params state;
    nn_params_init(&state);
    CHECK(nn_optim_state(o, &ps, &state) == NN_OK && state.count == 2);
    CHECK(!strcmp(state.names[1], "optim.exp_inf.p"));
    CHECK_NEAR(state.tensors[1]->data[0], 0.999 * 0.5, 1e-6);
    nn_params_free(&state);
    nn_optim_free(o);
    /* weight decay as L2: g = 0.5 + 0.1 * 1 */
    nn_adam_opts wd = nn_adam_defaults(0.1f);
    wd.weight_decay = 0.1f;
    o = nn_optim_adamax_new(&ps, wd);
    p->data[0] = 1.0f;
    p->grad[0] = 0.5f;
    nn_optim_step(o);
    CHECK_NEAR(p->data[0], 0.9, 1e-6);
    nn_optim_free(o);
    wd.beta1 = 1.0f;
    CHECK(nn_optim_adamax_new(&ps, wd) == NULL && strstr(nn_optim_last_error(), "adamax"));
    nn_params_free(&ps);
    nn_tensor_free(p);
}

static void test_optim_defaults(void)
{
    nn_adam_opts a = nn_adamw_defaults(3e-4f);
    /* (float) casts: where FLT_EVAL_METHOD is 1 (s390x) a float constant is
     * evaluated as a double */
    CHECK(a.lr == (float)3e-4f && a.beta1 == (float)0.9f && a.beta2 == (float)0.999f && a.eps == (float)1e-8f &&
          a.weight_decay == (float)0.01f);
    nn_sgd_opts s = nn_sgd_defaults(0.1f);
    CHECK(s.lr == (float)0.1f && s.momentum == 0.0f && s.weight_decay == 0.0f && !s.nesterov);
}

/* Adam and AdamW over many tensors of mixed sizes (the step splits their
 * concatenation between threads, chunk boundaries falling inside tensors)
 * with one frozen: on 1 and 2 threads the same bits as nn_k_adam on each
 * tensor alone, and the frozen tensor untouched. */
static void test_adam_many_tensors_any_threads(void)
{
    enum { COUNT = 6 };
    static const int sizes[COUNT] = {5, 40001, 3, 70000, 1, 9000};
    int saved = nn_get_threads();
    for (int decoupled = 0; decoupled <= 1; decoupled++) {
        float *want[COUNT];
        nn_tensor *t[2][COUNT];
        for (int run = 0; run < 2; run++) {
            nn_params ps;
            nn_params_init(&ps);
            for (int i = 0; i < COUNT; i++) {
                t[run][i] = nn_tensor_new1(sizes[i]);
                CHECK(nn_tensor_requires_grad(t[run][i], 1) == NN_OK);
                for (int j = 0; j < sizes[i]; j++) t[run][i]->data[j] = 0.001f * (float)((j * 7 + i) % 101) - 0.05f;
                char name[16];
                snprintf(name, sizeof name, "p%d", i);
                CHECK(nn_params_add(&ps, name, t[run][i]) == NN_OK);
            }
            nn_adam_opts a = decoupled ? nn_adamw_defaults(1e-2f) : nn_adam_defaults(1e-2f);
            a.weight_decay = 0.05f;
            nn_optim *o = decoupled ? nn_optim_adamw_new(&ps, a) : nn_optim_adam_new(&ps, a);
            CHECK_MSG(o != NULL, "%s", nn_optim_last_error());
            CHECK(nn_tensor_requires_grad(t[run][2], 0) == NN_OK); /* frozen after the optimizer was made */
            nn_set_threads(run + 1);
            for (int step = 1; o && step <= 3; step++) {
                for (int i = 0; i < COUNT; i++)
                    if (t[run][i]->grad)
                        for (int j = 0; j < sizes[i]; j++)
                            t[run][i]->grad[j] = 0.01f * (float)((j * 13 + i * 5 + step) % 37) - 0.18f;
                nn_optim_step(o);
            }
            nn_set_threads(saved);
            nn_optim_free(o);
            nn_params_free(&ps);
        }
        /* the reference: each tensor on its own with the same gradients */
        int same = 1, frozen_kept = 1;
        for (int i = 0; i < COUNT; i++) {
            int n = sizes[i];
            want[i] = malloc(sizeof(float) * n);
            float *m = calloc(n, sizeof(float)), *v = calloc(n, sizeof(float)), *g = malloc(sizeof(float) * n);
            for (int j = 0; j < n; j++) want[i][j] = 0.001f * (float)((j * 7 + i) % 101) - 0.05f;
            for (int step = 1; i != 2 && step <= 3; step++) {
                for (int j = 0; j < n; j++) g[j] = 0.01f * (float)((j * 13 + i * 5 + step) % 37) - 0.18f;
                float c1 = 1.0f - powf(0.9f, (float)step), c2 = 1.0f - powf(0.999f, (float)step);
                nn_k_adam(n, want[i], g, m, v, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.05f, c1, c2, decoupled);
            }
            for (int run = 0; run < 2; run++)
                same = same && memcmp(t[run][i]->data, want[i], sizeof(float) * n) == 0;
            if (i == 2) frozen_kept = memcmp(t[0][i]->data, want[i], sizeof(float) * n) == 0;
            free(m), free(v), free(g), free(want[i]);
            for (int run = 0; run < 2; run++) nn_tensor_free(t[run][i]);
        }
        CHECK_MSG(same, "%s: parameters differ from per-tensor updates", decoupled ? "AdamW" : "Adam");
        CHECK(frozen_kept);
    }
}

const test_case optim_tests[] = {
    {"optim_adam_many_tensors_any_threads", test_adam_many_tensors_any_threads},
    {"optim_adamax_hand_worked", test_adamax_hand_worked},
    {"optim_defaults", test_optim_defaults},
    {"optim_lr_schedules", test_lr_schedules},{"optim_sgd_plain", test_sgd_plain},
                                 {"optim_sgd_momentum", test_sgd_momentum},
                                 {"optim_sgd_nesterov", test_sgd_nesterov},
                                 {"optim_sgd_weight_decay", test_sgd_weight_decay},
                                 {"optim_rejects_bad_options", test_sgd_rejects_bad_options},
                                 {"optim_adam", test_adam},
                                 {"optim_state_never_subnormal", test_optim_state_never_subnormal},
                                 {"optim_adam_l2_weight_decay", test_adam_l2_weight_decay},
                                 {"optim_adamw", test_adamw_decoupled_weight_decay},
                                 {"optim_zero_grad_and_lr", test_zero_grad_and_lr},
                                 {"optim_clip_grad_norm", test_clip_grad_norm},
                                 {NULL, NULL}};
