/* Distributed training tests, run under mpirun with 2 and 4 ranks (make
 * MPI=1 test-dist). Every rank runs every test; a test fails if it fails
 * on any rank. Rank 0 prints "N passed, M failed" last.
 * With --bench: the gradient allreduce's time for the seed CNN's 225,034
 * parameters and larger models, medians of 30 after a barrier, as
 * "BENCH workload=allreduce ranks=N floats=F metric=ms value=X". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "nn/dist.h"

static nn_dist dist;
static int failed; /* this rank, current test */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "    rank %d: %s:%d: %s\n", dist.rank, __FILE__, __LINE__, #cond);     \
            failed = 1;                                                                            \
        }                                                                                          \
    } while (0)

/* A synthetic data set of n 6x6 images; example i's label is i % 256 (so
 * a batch's labels name its examples) and its pixels depend on i. */
static nn_dataset make_data(int n)
{
    nn_dataset d = {malloc((size_t)n * 36), malloc((size_t)n), n, 6, 6};
    for (int i = 0; i < n; i++) {
        d.labels[i] = (uint8_t)(i % 256);
        for (int p = 0; p < 36; p++) d.images[(size_t)i * 36 + p] = (uint8_t)((i * 37 + p * p * 11) % 256);
    }
    return d;
}

/* Classes 0..9 for the models: the label mod 10. */
static void classes(const nn_batcher *b, int n, int *out)
{
    for (int i = 0; i < n; i++) out[i] = b->labels[i] % 10;
}

/* A small CNN over 6x6 images (convolution, pooling, dense), same
 * weights for the same seed. */
static nn_layer *small_cnn(uint64_t seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    nn_layer *m = nn_sequential_new();
    nn_sequential_add(m, nn_conv2d_new(1, 4, 3, 1, NN_PAD_SAME, &r));
    nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(m, nn_maxpool2d_new(2, 2, 0));
    nn_sequential_add(m, nn_flatten_new());
    nn_sequential_add(m, nn_dense_new(36, 10, NN_INIT_XAVIER, &r));
    return m;
}

/* Every example appears in exactly one rank's shard once per epoch, each
 * shard is its slice of the single-process batch (pixels, shifts and
 * labels bit for bit), and the shards add up to the global batch. */
static void test_shards_cover_every_example_once(void)
{
    enum { N = 103, BATCH = 8, EPOCHS = 2 };
    nn_dataset d = make_data(N);
    nn_batcher sharded, whole;
    nn_error err;
    CHECK(nn_batcher_init(&sharded, &d, BATCH, NN_LAYOUT_NCHW, 1, 7, &err) == NN_OK);
    CHECK(nn_batcher_init(&whole, &d, BATCH, NN_LAYOUT_NCHW, 1, 7, &err) == NN_OK);
    nn_batcher_augment_shift(&sharded, 1);
    nn_batcher_augment_shift(&whole, 1);
    CHECK(nn_batcher_shard(&sharded, dist.rank, dist.size, &err) == NN_OK);
    CHECK(nn_batcher_shard(&sharded, dist.size, dist.size, &err) == NN_ERR_ARG);
    for (int e = 0; e < EPOCHS; e++) {
        double seen[N] = {0};
        nn_batcher_start_epoch(&sharded);
        nn_batcher_start_epoch(&whole);
        int n, m;
        while ((m = nn_batcher_next(&sharded)) > 0) {
            n = nn_batcher_next(&whole);
            CHECK(n == sharded.global_n);
            int lo = (int)((long long)n * dist.rank / dist.size);
            CHECK(!memcmp(sharded.x->data, whole.x->data + (size_t)lo * 36, sizeof(float) * (size_t)m * 36));
            CHECK(!memcmp(sharded.labels, whole.labels + lo, sizeof(int) * (size_t)m));
            for (int i = 0; i < m; i++) seen[sharded.labels[i]] += 1;
            double total = m;
            nn_dist_sum(&dist, &total, 1, &err);
            CHECK(total == n);
        }
        CHECK(nn_batcher_next(&whole) == 0);
        nn_dist_sum(&dist, seen, N, &err);
        for (int i = 0; i < N; i++) CHECK(seen[i] == 1.0);
    }
    nn_batcher_free(&sharded);
    nn_batcher_free(&whole);
    free(d.images);
    free(d.labels);
}

/* After the broadcast every rank holds rank 0's parameters. */
static void test_broadcast_makes_ranks_equal(void)
{
    nn_layer *m = small_cnn(100 + (uint64_t)dist.rank), *ref = small_cnn(100);
    nn_params p, q;
    nn_params_init(&p);
    nn_params_init(&q);
    nn_layer_params(m, &p);
    nn_layer_params(ref, &q);
    nn_error err;
    if (dist.size > 1) CHECK(!nn_dist_params_equal(&dist, &p));
    CHECK(nn_dist_broadcast(&dist, &p, &err) == NN_OK);
    CHECK(nn_dist_params_equal(&dist, &p));
    for (int i = 0; i < p.count; i++)
        CHECK(!memcmp(p.tensors[i]->data, q.tensors[i]->data, p.tensors[i]->size * sizeof(float)));
    nn_params_free(&p);
    nn_params_free(&q);
    nn_layer_free(m);
    nn_layer_free(ref);
}

/* The loss's gradients for the current batch of b. */
static void gradients(nn_layer *m, nn_graph *g, nn_params *p, nn_batcher *b, int n)
{
    int labels[64];
    classes(b, n, labels);
    for (int i = 0; i < p->count; i++) memset(p->tensors[i]->grad, 0, p->tensors[i]->size * sizeof(float));
    nn_graph_reset(g);
    nn_tensor *loss = nn_softmax_cross_entropy(g, nn_layer_forward(m, g, b->x), labels);
    nn_backward(g, loss, NULL);
}

/* Shard gradients averaged across ranks equal the single-process gradient
 * of the whole global batch, within rounding, for even and uneven shards;
 * a small bucket size (many allreduces) gives the same result. */
static void test_averaged_gradients_equal_single_process(void)
{
    nn_dataset d = make_data(40);
    nn_layer *m = small_cnn(3), *ref = small_cnn(3);
    nn_params p, q;
    nn_params_init(&p);
    nn_params_init(&q);
    nn_layer_params(m, &p);
    nn_layer_params(ref, &q);
    nn_graph *g = nn_graph_new();
    nn_error err;
    int sizes[2] = {12, 13};
    for (int s = 0; s < 2; s++) {
        nn_batcher sharded, whole;
        nn_batcher_init(&sharded, &d, sizes[s], NN_LAYOUT_NCHW, 1, 5, &err);
        nn_batcher_init(&whole, &d, sizes[s], NN_LAYOUT_NCHW, 1, 5, &err);
        nn_batcher_normalize(&sharded, 0.5f, 0.25f);
        nn_batcher_normalize(&whole, 0.5f, 0.25f);
        nn_batcher_shard(&sharded, dist.rank, dist.size, &err);
        int mine = nn_batcher_next(&sharded), all = nn_batcher_next(&whole);
        gradients(m, g, &p, &sharded, mine);
        dist.bucket = s ? 7 : 0; /* 7: many small buckets */
        CHECK(nn_dist_average_grads(&dist, &p, (float)mine / (float)sharded.global_n, &err) == NN_OK);
        gradients(ref, g, &q, &whole, all);
        double worst = 0;
        for (int i = 0; i < p.count; i++)
            for (size_t j = 0; j < p.tensors[i]->size; j++) {
                double a = p.tensors[i]->grad[j], b = q.tensors[i]->grad[j];
                double rel = fabs(a - b) / (fabs(b) + 1e-4);
                worst = rel > worst ? rel : worst;
            }
        if (worst > 1e-4) fprintf(stderr, "    rank %d: batch %d: relative difference %g\n", dist.rank, sizes[s], worst);
        CHECK(worst <= 1e-4);
        nn_batcher_free(&sharded);
        nn_batcher_free(&whole);
    }
    dist.bucket = 0;
    nn_graph_free(g);
    nn_params_free(&p);
    nn_params_free(&q);
    nn_layer_free(m);
    nn_layer_free(ref);
    free(d.images);
    free(d.labels);
}

/* Train steps of Adam on sharded batches from rank-specific weights
 * (broadcast first); the parameters' hash afterwards. */
static unsigned long long train(int steps, nn_params *out_params, nn_layer **out_model)
{
    nn_dataset d = make_data(96);
    nn_layer *m = small_cnn(20 + (uint64_t)dist.rank);
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(m, &p);
    nn_error err;
    nn_dist_broadcast(&dist, &p, &err);
    nn_optim *opt = nn_optim_adam_new(&p, nn_adam_defaults(0.01f));
    nn_graph *g = nn_graph_new();
    nn_batcher b;
    nn_batcher_init(&b, &d, 16, NN_LAYOUT_NCHW, 1, 9, &err);
    nn_batcher_augment_shift(&b, 1);
    nn_batcher_shard(&b, dist.rank, dist.size, &err);
    int done = 0, n;
    while (done < steps) {
        nn_batcher_start_epoch(&b);
        while (done < steps && (n = nn_batcher_next(&b)) > 0) {
            int labels[16];
            classes(&b, n, labels);
            nn_graph_reset(g);
            nn_optim_zero_grad(opt);
            nn_backward(g, nn_softmax_cross_entropy(g, nn_layer_forward(m, g, b.x), labels), NULL);
            nn_dist_average_grads(&dist, &p, (float)n / (float)b.global_n, &err);
            nn_optim_step(opt);
            done++;
        }
    }
    unsigned long long h = 1469598103934665603ull;
    for (int i = 0; i < p.count; i++) {
        const unsigned char *bytes = (const unsigned char *)p.tensors[i]->data;
        for (size_t j = 0; j < p.tensors[i]->size * sizeof(float); j++) h = (h ^ bytes[j]) * 1099511628211ull;
    }
    CHECK(nn_dist_params_equal(&dist, &p));
    nn_batcher_free(&b);
    nn_graph_free(g);
    nn_optim_free(opt);
    free(d.images);
    free(d.labels);
    *out_params = p;
    *out_model = m;
    return h;
}

/* Two runs give the same bits; every rank ends with the same parameters. */
static void test_training_repeats_bit_for_bit(void)
{
    nn_params p1, p2;
    nn_layer *m1, *m2;
    unsigned long long a = train(15, &p1, &m1), b = train(15, &p2, &m2);
    CHECK(a == b);
    nn_params_free(&p1);
    nn_params_free(&p2);
    nn_layer_free(m1);
    nn_layer_free(m2);
}

/* nn_fit made data-parallel by nn_dist_fit_opts: every rank ends with the
 * same weights, close to a single process's nn_fit on the same data, and
 * the history (reduced losses, early stopping) agrees. */
static void test_fit_sharded_close_to_single_process(void)
{
    enum { N = 90, F = 5, C = 3 };
    float x[N * F];
    int y[N];
    for (int i = 0; i < N; i++) {
        y[i] = i % C;
        for (int f = 0; f < F; f++) x[i * F + f] = (float)((i * 13 + f * 7) % 17) / 8.0f - 1.0f + 0.7f * (float)(y[i] == f % C);
    }
    nn_data d;
    nn_error err;
    CHECK(nn_data_from_arrays(&d, N, 1, (int[]){F}, x, y, C, NULL, 0, &err) == NN_OK);
    nn_layer *m[2];
    nn_history h[2];
    for (int k = 0; k < 2; k++) {
        nn_rng r;
        nn_rng_seed(&r, 2);
        m[k] = nn_sequential_new();
        nn_sequential_add(m[k], nn_dense_new(F, 16, NN_INIT_HE, &r));
        nn_sequential_add(m[k], nn_activation_new(NN_ACT_RELU));
        nn_sequential_add(m[k], nn_dense_new(16, C, NN_INIT_XAVIER, &r));
        nn_fit_opts fo = nn_fit_defaults();
        fo.epochs = 6;
        fo.batch_size = 8; /* 72 training rows: no short batch, which fewer examples than ranks would skip */
        fo.lr = 0.01f;
        fo.val_fraction = 0.2f;
        fo.clip_norm = 1.0f;
        if (k) nn_dist_fit_opts(&dist, &fo);
        CHECK(nn_fit(m[k], &d, &fo, &h[k], &err) == NN_OK);
    }
    nn_params p, q;
    nn_params_init(&p);
    nn_params_init(&q);
    nn_layer_params(m[1], &p);
    nn_layer_params(m[0], &q);
    CHECK(nn_dist_params_equal(&dist, &p));
    double worst = 0;
    for (int i = 0; i < p.count; i++)
        for (size_t j = 0; j < p.tensors[i]->size; j++) {
            double a = p.tensors[i]->data[j], b = q.tensors[i]->data[j];
            worst = fabs(a - b) > worst ? fabs(a - b) : worst;
        }
    if (worst > 1e-4) fprintf(stderr, "    rank %d: weights differ by %g\n", dist.rank, worst);
    CHECK(worst <= 1e-4);
    CHECK(h[0].count == h[1].count && h[0].best_epoch == h[1].best_epoch);
    for (int e = 0; e < h[0].count && e < h[1].count; e++)
        CHECK(fabsf(h[0].epochs[e].train_loss - h[1].epochs[e].train_loss) < 1e-4f);
    nn_history_free(&h[0]);
    nn_history_free(&h[1]);
    nn_params_free(&p);
    nn_params_free(&q);
    nn_layer_free(m[0]);
    nn_layer_free(m[1]);
    nn_data_free(&d);
}

/* nn_dist_tree_sum over M = 8 micro-batch gradients split across the
 * ranks gives the bits one process gets summing all 8 (MPI_COMM_SELF),
 * on every rank; values of mixed magnitude make the order show. */
static void test_tree_sum_independent_of_process_count(void)
{
    enum { M = 8, P = 1000 };
    if (M % dist.size) return;
    nn_tensor *t = nn_tensor_new1(P);
    t->grad = calloc(P, sizeof(float));
    nn_params p;
    nn_params_init(&p);
    nn_params_add(&p, "w", t);
    float *leaves[M], *mine[M];
    for (int j = 0; j < M; j++) {
        leaves[j] = malloc(P * sizeof(float));
        mine[j] = malloc(P * sizeof(float));
        for (int i = 0; i < P; i++) leaves[j][i] = (float)((i * 7919 + j * 104729) % 2003 - 1001) * powf(10.0f, (float)((i + j) % 7 - 3));
    }
    int local = M / dist.size, j0 = local * dist.rank;
    for (int k = 0; k < local; k++) memcpy(mine[k], leaves[j0 + k], P * sizeof(float));
    nn_error err;
    CHECK(nn_dist_tree_sum(&dist, &p, mine, local, &err) == NN_OK);
    float *got = malloc(P * sizeof(float));
    memcpy(got, t->grad, P * sizeof(float));
    nn_dist self;
    CHECK(nn_dist_init_comm(&self, MPI_COMM_SELF, &err) == NN_OK);
    CHECK(nn_dist_tree_sum(&self, &p, leaves, M, &err) == NN_OK);
    CHECK(!memcmp(got, t->grad, P * sizeof(float)));
    CHECK(nn_dist_tree_sum(&self, &p, leaves, 3, &err) == NN_ERR_ARG && strstr(err.msg, "powers of two"));
    nn_dist_finalize(&self);
    for (int j = 0; j < M; j++) {
        free(leaves[j]);
        free(mine[j]);
    }
    free(got);
    nn_params_free(&p);
    nn_tensor_free(t);
}

static void test_sum_and_errors(void)
{
    double v[2] = {dist.rank, 1.0};
    nn_error err;
    CHECK(nn_dist_sum(&dist, v, 2, &err) == NN_OK);
    CHECK(v[0] == dist.size * (dist.size - 1) / 2.0 && v[1] == dist.size);
    CHECK(nn_dist_sum(NULL, v, 2, &err) == NN_ERR_ARG);
    CHECK(nn_dist_average_grads(&dist, NULL, 1.0f, &err) == NN_ERR_ARG);
    CHECK(nn_dist_broadcast(NULL, NULL, &err) == NN_ERR_ARG);
}

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

static const test_case tests[] = {
    {"dist_shards_cover_every_example_once", test_shards_cover_every_example_once},
    {"dist_broadcast_makes_ranks_equal", test_broadcast_makes_ranks_equal},
    {"dist_averaged_gradients_equal_single_process", test_averaged_gradients_equal_single_process},
    {"dist_training_repeats_bit_for_bit", test_training_repeats_bit_for_bit},
    {"dist_fit_sharded_close_to_single_process", test_fit_sharded_close_to_single_process},
    {"dist_tree_sum_independent_of_process_count", test_tree_sum_independent_of_process_count},
    {"dist_sum_and_errors", test_sum_and_errors},
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_allreduce(void)
{
    enum { REPS = 30 };
    const int sizes[3] = {225034, 1 << 20, 1 << 23};
    for (int s = 0; s < 3; s++) {
        nn_tensor *t = nn_tensor_new1(sizes[s]);
        t->grad = calloc((size_t)sizes[s], sizeof(float));
        nn_params p;
        nn_params_init(&p);
        nn_params_add(&p, "w", t);
        double times[REPS];
        nn_error err;
        for (int r = 0; r < REPS; r++) {
            MPI_Barrier(dist.comm);
            double t0 = MPI_Wtime();
            nn_dist_average_grads(&dist, &p, 1.0f, &err);
            times[r] = MPI_Wtime() - t0;
        }
        qsort(times, REPS, sizeof times[0], cmp_double);
        if (!dist.rank)
            printf("BENCH workload=allreduce ranks=%d floats=%d metric=ms value=%.3f\n", dist.size, sizes[s],
                   1e3 * times[REPS / 2]);
        nn_params_free(&p);
        free(t->grad);
        t->grad = NULL;
        nn_tensor_free(t);
    }
}

int main(int argc, char **argv)
{
    nn_error err;
    if (nn_dist_init(&dist, &argc, &argv, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    nn_set_threads(1);
    if (argc > 1 && !strcmp(argv[1], "--bench")) {
        bench_allreduce();
        nn_dist_finalize(&dist);
        return 0;
    }
    int passed = 0, failures = 0;
    for (size_t t = 0; t < sizeof tests / sizeof tests[0]; t++) {
        failed = 0;
        tests[t].fn();
        int any = 0;
        MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, dist.comm);
        if (!dist.rank) printf("%s %s (%d ranks)\n", any ? "FAIL" : "ok  ", tests[t].name, dist.size);
        any ? failures++ : passed++;
    }
    if (!dist.rank) printf("%d passed, %d failed\n", passed, failures);
    nn_dist_finalize(&dist);
    return failures ? 1 : 0;
}
