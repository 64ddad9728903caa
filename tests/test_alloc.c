/* Allocation failure, swept: for each job (building a model, reading IDX +
 * gzip, CSV, safetensors model files, training with nn_fit, saving), the
 * job is run once to count its allocations and then once per allocation
 * with that one failing. Every run must end in an error value or success,
 * never a crash; the sanitizer builds check that nothing leaks; a failing
 * save never damages the file already there. */
#include <stdlib.h>
#include <string.h>

#include "alloc_fail.h"
#include "nn.h"
#include "test.h"

#ifndef NN_TEST_SOURCE_DIR
#define NN_TEST_SOURCE_DIR "."
#endif

typedef struct sweep_result {
    long allocations, failed_runs, ok_runs;
} sweep_result;

/* job returns 0 on success, nonzero on a handled error; -1 means a wrong
 * result (checked by the job itself). */
typedef int (*job_fn)(void *ctx);

static int sweep(job_fn job, void *ctx, sweep_result *r)
{
    memset(r, 0, sizeof *r);
    alloc_fail_at(-1);
    if (job(ctx) != 0) return 0; /* must work with no failure */
    long n = alloc_calls();
    r->allocations = n;
    for (long k = 1; k <= n; k++) {
        alloc_fail_at(k);
        int rc = job(ctx);
        alloc_fail_at(-1);
        if (rc == -1) return 0;
        if (rc == 0) r->ok_runs++; /* the failure was absorbed (e.g. a fallback path) */
        else r->failed_runs++;
    }
    return 1;
}

static nn_layer *build_cnn(void)
{
    nn_rng r;
    nn_rng_seed(&r, 1);
    nn_layer *m = nn_sequential_new();
    if (nn_sequential_add(m, nn_conv2d_new(1, 4, 3, 1, 0, &r)) || nn_sequential_add(m, nn_activation_new(NN_ACT_RELU)) ||
        nn_sequential_add(m, nn_maxpool2d_new(2, 2, 0)) || nn_sequential_add(m, nn_flatten_new()) ||
        nn_sequential_add(m, nn_dropout_new(0.25f, 3)) || nn_sequential_add(m, nn_dense_new(36, 3, NN_INIT_XAVIER, &r))) {
        nn_layer_free(m);
        return NULL;
    }
    return m;
}

static int job_build(void *ctx)
{
    (void)ctx;
    nn_layer *m = build_cnn();
    if (!m) return 1;
    nn_params p;
    nn_params_init(&p);
    int rc = 1;
    if (nn_layer_params(m, &p) == NN_OK) {
        nn_optim *o = nn_optim_adam_new(&p, nn_adam_defaults(1e-3f));
        rc = o ? 0 : 1;
        nn_optim_free(o);
    }
    nn_params_free(&p);
    nn_layer_free(m);
    return rc;
}

static int job_idx(void *ctx)
{
    (void)ctx;
    nn_idx idx;
    nn_error err;
    if (nn_idx_load(NN_TEST_SOURCE_DIR "/tests/fixtures/tiny-images-idx3-ubyte.gz", &idx, &err)) return 1;
    nn_idx_free(&idx);
    return 0;
}

static int job_csv(void *ctx)
{
    (void)ctx;
    const char *text = "a,b,\"c\",y\n1,2,3,cat\n4,5,6,dog\n7,8,9,cat\n\"1.5\",2,3,bird\n";
    nn_data d, copy;
    nn_error err;
    nn_csv_opts o = nn_csv_defaults("y");
    if (nn_csv_parse(text, strlen(text), "t.csv", &o, &d, &err)) return 1;
    int rc = 0;
    if (d.count != 4 || d.num_classes != 3) rc = -1;
    else if (nn_data_copy(&d, &copy, &err)) rc = 1;
    else nn_data_free(&copy);
    nn_data_free(&d);
    return rc;
}

static int job_load(void *path)
{
    nn_layer *m;
    nn_error err;
    if (nn_model_load(path, &m, &err)) return 1;
    nn_layer_free(m);
    return 0;
}

typedef struct fit_ctx {
    nn_layer *model;
    nn_data *data;
} fit_ctx;

static int job_fit(void *p)
{
    fit_ctx *c = p;
    nn_fit_opts o = nn_fit_defaults();
    o.epochs = 1;
    o.batch_size = 4;
    o.val_fraction = 0.25f;
    o.patience = 1;
    nn_history h;
    nn_error err;
    if (nn_fit(c->model, c->data, &o, &h, &err)) return 1;
    nn_history_free(&h);
    return 0;
}

typedef struct save_ctx {
    nn_layer *model;
    const char *path;
    uint8_t *original;
    size_t len;
} save_ctx;

static int job_save(void *p)
{
    save_ctx *c = p;
    nn_error err;
    nn_status s = nn_model_save(c->path, c->model, &(nn_model_save_opts){3, {1, 8, 8}, NULL, NULL, 0}, &err);
    if (s == NN_OK) return 0;
    /* the file already there is untouched */
    uint8_t *now;
    size_t n;
    alloc_fail_at(-1);
    if (nn_read_file(c->path, 1 << 20, &now, &n, NULL)) return -1;
    int same = n == c->len && !memcmp(now, c->original, n);
    free(now);
    if (!same) fprintf(stderr, "    save failed (%s) and the file changed: %zu vs %zu bytes\n", err.msg, n, c->len);
    return same ? 1 : -1;
}

static void report(const char *what, const sweep_result *r)
{
    printf("    alloc sweep %-10s %4ld allocations, %4ld failed with an error, %3ld absorbed\n", what,
           r->allocations, r->failed_runs, r->ok_runs);
}

static void test_allocation_failures_are_errors(void)
{
    sweep_result r;
    CHECK(sweep(job_build, NULL, &r) && r.allocations > 10);
    report("build", &r);
    CHECK(sweep(job_idx, NULL, &r) && r.allocations >= 2);
    report("idx+gzip", &r);
    CHECK(sweep(job_csv, NULL, &r) && r.allocations > 10);
    report("csv", &r);

    char path[512];
    snprintf(path, sizeof path, "%s/sweep.safetensors", test_tmpdir());
    nn_layer *m = build_cnn();
    CHECK(m && nn_model_save(path, m, &(nn_model_save_opts){3, {1, 8, 8}, NULL, NULL, 0}, NULL) == NN_OK);
    CHECK(sweep(job_load, path, &r) && r.allocations > 10);
    report("load", &r);

    save_ctx sc = {m, path, NULL, 0};
    CHECK(nn_read_file(path, 1 << 20, &sc.original, &sc.len, NULL) == NN_OK);
    int ok = sweep(job_save, &sc, &r);
    free(sc.original);
    CHECK_MSG(ok, "a failed save damaged the existing file");
    report("save", &r);

    float x[16 * 64];
    int labels[16];
    for (int i = 0; i < 16 * 64; i++) x[i] = (float)(i % 13) / 13.0f;
    for (int i = 0; i < 16; i++) labels[i] = i % 3;
    nn_data d;
    CHECK(nn_data_from_arrays(&d, 16, 3, (int[]){1, 8, 8}, x, labels, 3, NULL, 0, NULL) == NN_OK);
    fit_ctx fc = {m, &d};
    CHECK(sweep(job_fit, &fc, &r) && r.allocations > 10);
    report("fit", &r);
    nn_layer_free(m);
}

const test_case alloc_tests[] = {
    {"allocation_failures_are_errors", test_allocation_failures_are_errors},
    {NULL, NULL}};
