/* Data-parallel replicas (replicas.h): the slices' summed gradient is the
 * whole batch's, the same bits on 1 and 2 threads, values copied back, and
 * argument errors. On a small character GPT (attention, layer norm, GELU). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test.h"

enum { VOCAB = 11, CONTEXT = 8, BATCH = 6 };

typedef struct gpt {
    nn_layer *m;
    nn_params p;
} gpt;

static void gpt_make(gpt *g, uint64_t seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    nn_gpt_config cfg = {VOCAB, CONTEXT, 1, 2, 16};
    g->m = nn_gpt_new(cfg, &r);
    nn_params_init(&g->p);
    nn_layer_params(g->m, &g->p);
}

static void gpt_free(gpt *g)
{
    nn_params_free(&g->p);
    nn_layer_free(g->m);
}

typedef struct batch {
    float ids[BATCH * CONTEXT];
    int targets[BATCH * CONTEXT];
    int fail_replica; /* a replica whose step reports an error, or -1 */
} batch;

/* The mean cross-entropy over rows [b0, b1) of the batch, times scale. */
static nn_tensor *slice_loss(nn_layer *m, nn_graph *g, const batch *d, int b0, int b1, float scale)
{
    nn_tensor *x = nn_graph_tensor(g, 2, (int[]){b1 - b0, CONTEXT});
    memcpy(x->data, d->ids + b0 * CONTEXT, sizeof(float) * (size_t)(b1 - b0) * CONTEXT);
    nn_tensor *logits = nn_reshape(g, nn_layer_forward(m, g, x), 2, (int[]){(b1 - b0) * CONTEXT, VOCAB});
    return nn_scale(g, nn_softmax_cross_entropy(g, logits, d->targets + b0 * CONTEXT), scale);
}

typedef struct step_ctx {
    gpt *models;
    int n;
    const batch *d;
} step_ctx;

static nn_status replica_step(void *ctx, int i, nn_graph *g)
{
    const step_ctx *s = ctx;
    if (i == s->d->fail_replica) return NN_ERR_NUMERIC;
    int b0 = BATCH * i / s->n, b1 = BATCH * (i + 1) / s->n;
    nn_tensor *loss = slice_loss(s->models[i].m, g, s->d, b0, b1, (float)(b1 - b0) / BATCH);
    return loss ? nn_backward(g, loss, NULL) : NN_ERR_MEMORY;
}

static void fill_batch(batch *d, uint64_t seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    for (int i = 0; i < BATCH * CONTEXT; i++) {
        d->ids[i] = (float)nn_rng_below(&r, VOCAB);
        d->targets[i] = (int)nn_rng_below(&r, VOCAB);
    }
    d->fail_replica = -1;
}

static void zero_grads(nn_params *p)
{
    for (int t = 0; t < p->count; t++) nn_tensor_zero_grad(p->tensors[t]);
}

/* n replicas (models[0] the reference's twin) over one batch: the reduced
 * gradient against the whole batch's through one model. */
static void check_replicas_match_whole_batch(int n)
{
    gpt whole, models[3];
    gpt_make(&whole, 5);
    for (int i = 0; i < n; i++) gpt_make(&models[i], i == 0 ? 5 : 100 + (uint64_t)i);
    nn_params *lists[3];
    for (int i = 0; i < n; i++) lists[i] = &models[i].p;
    nn_error err;
    nn_replicas *r = nn_replicas_new(n, lists, &err);
    CHECK_MSG(r != NULL, "nn_replicas_new: %s", err.msg);
    if (!r) return;
    /* the other replicas now hold replica 0's values */
    for (int i = 1; i < n; i++)
        for (int t = 0; t < models[0].p.count; t++)
            CHECK(memcmp(models[i].p.tensors[t]->data, models[0].p.tensors[t]->data,
                         models[0].p.tensors[t]->size * sizeof(float)) == 0);
    batch d;
    fill_batch(&d, 9);
    nn_graph *g = nn_graph_new();
    zero_grads(&whole.p);
    nn_backward(g, slice_loss(whole.m, g, &d, 0, BATCH, 1.0f), NULL);
    step_ctx s = {models, n, &d};
    zero_grads(&models[0].p);
    CHECK(nn_replicas_run(r, replica_step, &s) == NN_OK);
    nn_replicas_reduce(r, 1.0f);
    double worst = 0;
    for (int t = 0; t < whole.p.count; t++) {
        const nn_tensor *a = whole.p.tensors[t], *b = models[0].p.tensors[t];
        for (size_t j = 0; j < a->size; j++) {
            double e = fabs((double)a->grad[j] - b->grad[j]) / (1e-3 + fabs((double)a->grad[j]));
            if (e > worst) worst = e;
        }
        for (int i = 1; i < n; i++) /* zeroed for the next step */
            for (size_t j = 0; j < a->size; j++) CHECK(models[i].p.tensors[t]->grad[j] == 0.0f);
    }
    CHECK_MSG(worst < 1e-4, "%d replicas: gradient differs from the whole batch's by %g (relative)", n, worst);
    nn_graph_free(g);
    nn_replicas_free(r);
    gpt_free(&whole);
    for (int i = 0; i < n; i++) gpt_free(&models[i]);
}

static void test_replicas_sum_to_the_whole_batch_gradient(void)
{
    check_replicas_match_whole_batch(2);
    check_replicas_match_whole_batch(3);
    check_replicas_match_whole_batch(1);
}

/* Three steps (run, reduce, AdamW, sync) on `threads` threads: replica 0's
 * values, or NULL if a step failed, the replicas differ after the sync or
 * the thread setting changed. */
static float *replica_step_values(int threads)
{
    int saved = nn_get_threads(), bad = 0;
    nn_set_threads(threads);
    int setting = nn_get_threads(); /* 1 without OpenMP */
    gpt models[2];
    gpt_make(&models[0], 21);
    gpt_make(&models[1], 22);
    nn_params *lists[2] = {&models[0].p, &models[1].p};
    nn_replicas *r = nn_replicas_new(2, lists, NULL);
    nn_optim *opt = nn_optim_adamw_new(&models[0].p, nn_adam_defaults(1e-2f));
    batch d;
    fill_batch(&d, 31);
    step_ctx s = {models, 2, &d};
    for (int step = 0; step < 3; step++) {
        nn_optim_zero_grad(opt);
        bad |= nn_replicas_run(r, replica_step, &s) != NN_OK;
        nn_replicas_reduce(r, 1.0f);
        nn_optim_step(opt);
        nn_replicas_sync(r);
    }
    bad |= nn_get_threads() != setting;
    size_t total = nn_params_numel(&models[0].p), at = 0;
    float *out = malloc(total * sizeof(float));
    for (int t = 0; t < models[0].p.count; t++) {
        const nn_tensor *a = models[0].p.tensors[t];
        bad |= memcmp(a->data, models[1].p.tensors[t]->data, a->size * sizeof(float)) != 0;
        memcpy(out + at, a->data, a->size * sizeof(float));
        at += a->size;
    }
    nn_optim_free(opt);
    nn_replicas_free(r);
    gpt_free(&models[0]);
    gpt_free(&models[1]);
    nn_set_threads(saved);
    if (bad) {
        free(out);
        return NULL;
    }
    return out;
}

static void test_replicas_same_bits_on_1_and_2_threads(void)
{
    gpt probe;
    gpt_make(&probe, 1);
    size_t total = nn_params_numel(&probe.p);
    gpt_free(&probe);
    float *one = replica_step_values(1), *two = replica_step_values(2);
    CHECK_MSG(one && two, "a run failed, left the replicas apart or changed the thread setting");
    if (one && two) CHECK(memcmp(one, two, total * sizeof(float)) == 0);
    free(one);
    free(two);
}

static void test_replicas_errors(void)
{
    gpt a, b, wide;
    gpt_make(&a, 1);
    gpt_make(&b, 2);
    nn_rng rng;
    nn_rng_seed(&rng, 3);
    nn_gpt_config cfg = {VOCAB, CONTEXT, 1, 2, 32};
    wide.m = nn_gpt_new(cfg, &rng);
    nn_params_init(&wide.p);
    nn_layer_params(wide.m, &wide.p);
    nn_error err;
    nn_params *mismatched[2] = {&a.p, &wide.p};
    CHECK(nn_replicas_new(2, mismatched, &err) == NULL);
    CHECK_MSG(err.code == NN_ERR_SHAPE && strstr(err.msg, "wte.weight") && strstr(err.msg, "list 1"),
              "message: %s", err.msg);
    nn_params *lists[2] = {&a.p, &b.p};
    CHECK(nn_replicas_new(0, lists, &err) == NULL && err.code == NN_ERR_ARG);
    nn_params *with_null[2] = {&a.p, NULL};
    CHECK(nn_replicas_new(2, with_null, &err) == NULL && err.code == NN_ERR_ARG);
    nn_replicas *r = nn_replicas_new(2, lists, &err);
    CHECK(r && nn_replicas_count(r) == 2 && nn_replicas_graph(r, 1) && !nn_replicas_graph(r, 2));
    CHECK(nn_replicas_run(r, NULL, NULL) == NN_ERR_ARG);
    batch d;
    fill_batch(&d, 4);
    d.fail_replica = 1;
    gpt models[2] = {a, b};
    step_ctx s = {models, 2, &d};
    CHECK(nn_replicas_run(r, replica_step, &s) == NN_ERR_NUMERIC);
    nn_replicas_free(r);
    nn_replicas_free(NULL);
    gpt_free(&a);
    gpt_free(&b);
    gpt_free(&wide);
}

const test_case replica_tests[] = {
    {"replicas_sum_to_the_whole_batch_gradient", test_replicas_sum_to_the_whole_batch_gradient},
    {"replicas_same_bits_on_1_and_2_threads", test_replicas_same_bits_on_1_and_2_threads},
    {"replicas_errors", test_replicas_errors},
    {NULL, NULL}};
