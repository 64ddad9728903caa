/* libnn benchmark: machine peak, GEMM on the seed CNN's shapes, and whole
 * training workloads, each for 1 and 2 threads.
 *
 *   W1  the seed CNN (225,034 parameters) training, batch 64, and inference
 *       at batch 1000 (also as W1-infer img_per_s) and of one image at a
 *       time (W1-infer1 latency_us)
 *   W2  the 784-128-10 MLP training, batch 64
 *   W3  char-rnn: 2-layer LSTM 128 over 65 characters, seq 50, batch 50
 *   W4  char GPT (nanoGPT's CPU configuration): 4 blocks, 4 heads, width
 *       128, context 64, 65 characters, batch 12, AdamW with matrices-only
 *       decay and clipping; and generation with the key/value cache
 *
 * Prints a table for people and, for scripts, one line per figure:
 *   BENCH workload=<W1|W2|W3|W4|gemm-...|peak> threads=<n> metric=<name> value=<number>
 * Each workload runs in a child process so its peak RSS is its own.
 * Figures are medians of --reps repetitions (default 3). W1's speedup_vs_1t
 * times one thread and N threads in turn in one process, each repetition,
 * so the ratio is not skewed by the load moving between separate runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../../src/kernels/kernels.h"
#include "nn.h"

typedef struct bench_opts {
    const char *data;
    int reps;
    int steps;       /* training steps timed per W1/W2 repetition */
    const char *only; /* run only workloads whose name contains this */
    int max_threads;
} bench_opts;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void report(const char *workload, int threads, const char *metric, double value)
{
    printf("BENCH workload=%s threads=%d metric=%s value=%.6g\n", workload, threads, metric, value);
    fflush(stdout);
}

/* ---- FMA peak: many independent vector FMA chains per thread ---- */
#if defined(__AVX512F__)
#define PV 16
#elif defined(__AVX__)
#define PV 8
#else
#define PV 4
#endif
typedef float pvec __attribute__((vector_size(PV * sizeof(float))));

/* How many threads a parallel region asking for `threads` runs (1 in a
 * build without OpenMP). */
static int team_size(int threads)
{
    int n = 1;
    (void)threads; /* read only by the OpenMP pragma */
#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
#pragma omp master
        n = omp_get_num_threads();
#endif
    }
    return n;
}

static double peak_gflops(int threads)
{
    const long iters = 20000000;
    double best = 0;
    /* the best of several: the machine's other load only ever lowers it */
    for (int rep = 0; rep < 7; rep++) {
        double t0 = now();
        float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        {
            pvec a[12], m = {0}, c = {0};
            for (int j = 0; j < PV; j++) m[j] = 0.999999f, c[j] = 1e-7f;
            for (int k = 0; k < 12; k++) a[k] = m * (float)(k + 1);
            for (long i = 0; i < iters / 12; i++)
                for (int k = 0; k < 12; k++) a[k] = a[k] * m + c;
            for (int k = 0; k < 12; k++) sink += a[k][0];
        }
        double secs = now() - t0;
        volatile float keep = sink; /* the chains are used: the loop stays */
        (void)keep;
        double gf = 2.0 * PV * (iters / 12) * 12 * team_size(threads) / secs / 1e9;
        best = gf > best ? gf : best;
    }
    return best;
}

/* ---- memory read bandwidth: each thread sums its own buffer, far larger
 * than the caches (what a GEMM that packs its B from memory is fed by) ---- */
#define STREAM_FLOATS ((size_t)16 << 20) /* 64 MB per thread */

static double read_gbps(int threads)
{
    double best = 0;
    float *buf[8] = {0};
    int ok = threads <= 8;
    for (int t = 0; t < threads && ok; t++) ok = (buf[t] = aligned_alloc(64, STREAM_FLOATS * sizeof(float))) != NULL;
    for (int rep = 0; rep < 5 && ok; rep++) {
        float sink = 0;
        double t0 = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        {
            int me = 0;
#ifdef _OPENMP
            me = omp_get_thread_num();
#endif
            float *b = buf[me];
            if (rep == 0) /* the first pass touches the pages; it is not timed */
                for (size_t i = 0; i < STREAM_FLOATS; i++) b[i] = 1.0f;
#pragma omp barrier
#pragma omp master
            t0 = now();
#pragma omp barrier
            pvec acc[4] = {{0}};
            for (size_t i = 0; i + 4 * PV <= STREAM_FLOATS; i += 4 * PV)
                for (int k = 0; k < 4; k++) {
                    pvec v;
                    memcpy(&v, b + i + (size_t)k * PV, sizeof v);
                    acc[k] += v;
                }
            for (int k = 0; k < 4; k++)
                for (int j = 0; j < PV; j++) sink += acc[k][j];
        }
        double secs = now() - t0;
        volatile float keep = sink; /* the sums are used: the loop stays */
        (void)keep;
        double gbps = (double)team_size(threads) * STREAM_FLOATS * sizeof(float) / secs / 1e9;
        best = gbps > best ? gbps : best;
    }
    for (int t = 0; t < threads && t < 8; t++) free(buf[t]);
    return ok ? best : 0;
}

/* ---- GEMM shapes ---- */
static double gemm_gflops(int M, int N, int K, int ta, int tb, int reps)
{
    /* the matrices as libnn's tensors (so aligned as training sees them) */
    nn_tensor *a_t = nn_tensor_new2(M, K), *b_t = nn_tensor_new2(K, N), *c_t = nn_tensor_new2(M, N);
    if (!a_t || !b_t || !c_t) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    float *A = a_t->data, *B = b_t->data, *C = c_t->data;
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 13) * 0.01f;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)(i % 7) * 0.01f;
    nn_sgemm(ta, tb, M, N, K, 1, A, ta ? M : K, B, tb ? K : N, 0, C, N); /* warm-up */
    double v[32];
    for (int r = 0; r < reps; r++) {
        int calls = 0;
        double t0 = now(), t;
        do {
            nn_sgemm(ta, tb, M, N, K, 1, A, ta ? M : K, B, tb ? K : N, 0, C, N);
            calls++;
            t = now() - t0;
        } while (t < 0.2);
        v[r] = 2.0 * M * N * K * calls / t / 1e9;
    }
    nn_tensor_free(a_t);
    nn_tensor_free(b_t);
    nn_tensor_free(c_t);
    return median(v, reps);
}

/* ---- W1 / W2 ---- */
static nn_layer *build_cnn(uint64_t seed)
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

static nn_layer *build_mlp(uint64_t seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    nn_layer *m = nn_sequential_new();
    nn_sequential_add(m, nn_dense_new(784, 128, NN_INIT_HE, &r));
    nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(m, nn_dense_new(128, 10, NN_INIT_XAVIER, &r));
    return m;
}

/* MNIST if opts->data names it, else 60,000 random images of the same shape. */
static int load_data(const bench_opts *o, nn_dataset *d)
{
    if (o->data) {
        nn_error err;
        if (nn_mnist_load(o->data, 1, d, &err)) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return 0;
        }
        return 1;
    }
    d->count = 60000;
    d->rows = d->cols = 28;
    d->images = malloc((size_t)d->count * 784);
    d->labels = malloc((size_t)d->count);
    nn_rng r;
    nn_rng_seed(&r, 1);
    for (size_t i = 0; i < (size_t)d->count * 784; i++) d->images[i] = (uint8_t)nn_rng_below(&r, 256);
    for (int i = 0; i < d->count; i++) d->labels[i] = (uint8_t)nn_rng_below(&r, 10);
    return 1;
}

/* A model (the seed CNN or the MLP) with its optimizer, graph and batcher,
 * trained step by step as mnist_train does. */
typedef struct trainer {
    nn_dataset d;
    nn_layer *m;
    nn_params p;
    nn_optim *opt;
    nn_graph *g;
    nn_batcher b;
} trainer;

static int trainer_init(trainer *t, const bench_opts *o, int cnn)
{
    if (!load_data(o, &t->d)) return 0;
    t->m = cnn ? build_cnn(1) : build_mlp(1);
    nn_params_init(&t->p);
    nn_layer_params(t->m, &t->p);
    t->opt = nn_optim_adam_new(&t->p, nn_adam_defaults(1e-3f));
    t->g = nn_graph_new();
    nn_batcher_init(&t->b, &t->d, 64, cnn ? NN_LAYOUT_NCHW : NN_LAYOUT_FLAT, 1, 1, NULL);
    return 1;
}

/* Seconds per step over `steps` training steps. */
static double trainer_run(trainer *t, int steps)
{
    double t0 = now();
    for (int s = 0; s < steps; s++) {
        if (!nn_batcher_next(&t->b)) {
            nn_batcher_start_epoch(&t->b);
            nn_batcher_next(&t->b);
        }
        nn_graph_reset(t->g);
        nn_optim_zero_grad(t->opt);
        nn_tensor *loss = nn_softmax_cross_entropy(t->g, nn_layer_forward(t->m, t->g, t->b.x), t->b.labels);
        nn_backward(t->g, loss, NULL);
        nn_optim_step(t->opt);
    }
    return (now() - t0) / steps;
}

static void trainer_free(trainer *t)
{
    nn_batcher_free(&t->b);
    nn_graph_free(t->g);
    nn_optim_free(t->opt);
    nn_params_free(&t->p);
    nn_layer_free(t->m);
    nn_dataset_free(&t->d);
}

/* Median seconds per training step over reps runs of o->steps steps. */
static double train_step_seconds(const bench_opts *o, int cnn)
{
    trainer t;
    if (!trainer_init(&t, o, cnn)) return NAN;
    double v[32];
    trainer_run(&t, o->steps); /* warm-up */
    for (int r = 0; r < o->reps; r++) v[r] = trainer_run(&t, o->steps);
    trainer_free(&t);
    return median(v, o->reps);
}

/* How much faster `threads` threads train the seed CNN than one: each
 * repetition times o->steps steps on one thread and then on `threads` in
 * the same process, so both see the same machine (a shared machine's load
 * moves between the separate runs above); the median of the ratios. */
static double cnn_speedup(const bench_opts *o, int threads)
{
    trainer t;
    if (!trainer_init(&t, o, 1)) return NAN;
    double v[32];
    for (int r = -1; r < o->reps; r++) { /* r = -1 warms up both */
        nn_set_threads(1);
        double one = trainer_run(&t, o->steps);
        nn_set_threads(threads);
        double many = trainer_run(&t, o->steps);
        if (r >= 0) v[r] = one / many;
    }
    trainer_free(&t);
    return median(v, o->reps);
}

static double cnn_inference_img_per_s(const bench_opts *o)
{
    nn_dataset d;
    if (!load_data(o, &d)) return NAN;
    nn_layer *m = build_cnn(1);
    nn_layer_set_training(m, 0);
    nn_graph *g = nn_graph_new();
    nn_graph_set_grad_enabled(g, 0);
    nn_batcher b;
    nn_batcher_init(&b, &d, 1000, NN_LAYOUT_NCHW, 0, 1, NULL);
    double v[32];
    for (int r = -1; r < o->reps; r++) {
        double t0 = now();
        int images = 0;
        for (int k = 0; k < 10; k++) {
            if (!nn_batcher_next(&b)) {
                nn_batcher_start_epoch(&b);
                nn_batcher_next(&b);
            }
            nn_graph_reset(g);
            nn_layer_forward(m, g, b.x);
            images += b.x->shape[0];
        }
        if (r >= 0) v[r] = images / (now() - t0);
    }
    nn_batcher_free(&b);
    nn_graph_free(g);
    nn_layer_free(m);
    nn_dataset_free(&d);
    return median(v, o->reps);
}

/* The first n images of d normalized as the trainers do (float x n * 784). */
static float *normalized(const nn_dataset *d, int n)
{
    float *x = malloc(sizeof(float) * 784 * (size_t)n);
    for (size_t i = 0; x && i < (size_t)n * 784; i++) x[i] = (d->images[i] / 255.0f - 0.1307f) / 0.3081f;
    return x;
}

/* The seed CNN quantized to int8, calibrated on 500 images of d. */
static nn_qmodel *quantized_cnn(const nn_dataset *d, nn_layer *m)
{
    float *calib = normalized(d, 500);
    nn_error err;
    nn_qmodel *q = calib ? nn_quantize(m, 3, (int[]){1, 28, 28}, calib, 500, &err) : NULL;
    if (!q) fprintf(stderr, "bench: %s\n", calib ? err.msg : "out of memory");
    free(calib);
    return q;
}

/* W1-infer1 (float, nn_predictor) and W1-infer1-int8 (nn_qmodel): one
 * image at a time, eval mode, nothing allocated per call, on the calling
 * thread; microseconds per image, including the image's normalization: the
 * median over repetitions of the mean over 2000 images. */
static double cnn_latency_us(const bench_opts *o, int int8)
{
    nn_dataset d;
    if (!load_data(o, &d)) return NAN;
    nn_layer *m = build_cnn(1);
    nn_layer_set_training(m, 0);
    nn_predictor *p = int8 ? NULL : nn_predictor_new(m, 3, (int[]){1, 28, 28}, NULL);
    nn_qmodel *q = int8 ? quantized_cnn(&d, m) : NULL;
    float x[784];
    double v[32];
    for (int r = -1; (p || q) && r < o->reps; r++) {
        double t0 = now();
        for (int k = 0; k < 2000; k++) {
            const unsigned char *img = d.images + (size_t)(k % d.count) * 784;
            for (int i = 0; i < 784; i++) x[i] = (img[i] / 255.0f - 0.1307f) / 0.3081f;
            if (q) nn_qmodel_class(q, x, NULL);
            else nn_predictor_class(p, x, NULL);
        }
        if (r >= 0) v[r] = 1e6 * (now() - t0) / 2000;
    }
    int ok = p || q;
    nn_predictor_free(p);
    nn_qmodel_free(q);
    nn_layer_free(m);
    nn_dataset_free(&d);
    return ok ? median(v, o->reps) : NAN;
}

/* W1-infer-int8: images per second over 10 x 1000 images, one image at a
 * time through an nn_qmodel per thread (threads share the images). */
static double cnn_int8_img_per_s(const bench_opts *o, int threads)
{
    enum { IMAGES = 10000, MAX_THREADS = 64 };
    nn_dataset d;
    if (!load_data(o, &d)) return NAN;
    nn_layer *m = build_cnn(1);
    nn_layer_set_training(m, 0);
    nn_qmodel *q[MAX_THREADS] = {0};
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    int ok = 1;
    for (int t = 0; t < threads; t++) ok = ok && (q[t] = quantized_cnn(&d, m)) != NULL;
    double v[32];
    for (int r = -1; ok && r < o->reps; r++) {
        double t0 = now();
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int k = 0; k < IMAGES; k++) {
            int me = 0;
#ifdef _OPENMP
            me = omp_get_thread_num();
#endif
            float x[784];
            const unsigned char *img = d.images + (size_t)(k % d.count) * 784;
            for (int i = 0; i < 784; i++) x[i] = (img[i] / 255.0f - 0.1307f) / 0.3081f;
            nn_qmodel_class(q[me], x, NULL);
        }
        if (r >= 0) v[r] = IMAGES / (now() - t0);
    }
    for (int t = 0; t < threads; t++) nn_qmodel_free(q[t]);
    nn_layer_free(m);
    nn_dataset_free(&d);
    return ok ? median(v, o->reps) : NAN;
}

/* W3: one char-rnn training step on random characters. */
static double lstm_step_ms(const bench_opts *o)
{
    const int T = 50, B = 50, V = 65, H = 128, L = 2;
    nn_rng r;
    nn_rng_seed(&r, 1);
    nn_layer *lstm = nn_lstm_new(V, H, L, &r), *head = nn_dense_new(H, V, NN_INIT_XAVIER, &r);
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(lstm, &p);
    nn_layer_params(head, &p); /* names repeat; only the tensors matter here */
    nn_optim *opt = nn_optim_adam_new(&p, nn_adam_defaults(2e-3f));
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new3(T, B, V), *h = nn_tensor_new3(L, B, H), *c = nn_tensor_new3(L, B, H);
    int *targets = malloc(sizeof(int) * T * B);
    double v[32];
    for (int rep = -1; rep < o->reps; rep++) {
        int steps = 10;
        double t0 = now();
        for (int s = 0; s < steps; s++) {
            nn_tensor_zero(x);
            for (int i = 0; i < T * B; i++) {
                x->data[(size_t)i * V + nn_rng_below(&r, V)] = 1.0f;
                targets[i] = (int)nn_rng_below(&r, V);
            }
            nn_graph_reset(g);
            nn_optim_zero_grad(opt);
            nn_tensor *hs = nn_recurrent_forward(lstm, g, x, h, c, h, c);
            nn_tensor *flat = nn_reshape(g, hs, 2, (int[]){T * B, H});
            nn_tensor *loss = nn_softmax_cross_entropy(g, nn_layer_forward(head, g, flat), targets);
            nn_backward(g, loss, NULL);
            nn_clip_grad_norm(&p, 5.0f);
            nn_optim_step(opt);
        }
        if (rep >= 0) v[rep] = 1e3 * (now() - t0) / steps;
    }
    free(targets);
    nn_tensor_free(x);
    nn_tensor_free(h);
    nn_tensor_free(c);
    nn_graph_free(g);
    nn_optim_free(opt);
    nn_params_free(&p);
    nn_layer_free(lstm);
    nn_layer_free(head);
    return median(v, o->reps);
}

/* W4: one char-GPT training step on random windows of random characters
 * (value[0], ms) as char_gpt runs it by default: two replicas, each on 6 of
 * the 12 windows on its own thread (replicas.h); and generation: tokens per
 * second through the key/value cache over whole contexts (value[1]). */
enum { W4_T = 64, W4_B = 12, W4_V = 65, W4_REPLICAS = 2 };

typedef struct w4_step {
    nn_layer *m[W4_REPLICAS];
    nn_tensor *x[W4_REPLICAS];
    int *targets; /* the whole batch's */
} w4_step;

static nn_status w4_replica(void *ctx, int i, nn_graph *g)
{
    w4_step *s = ctx;
    int rows = W4_B / W4_REPLICAS;
    nn_tensor *logits = nn_reshape(g, nn_layer_forward(s->m[i], g, s->x[i]), 2, (int[]){rows * W4_T, W4_V});
    nn_tensor *loss = nn_scale(g, nn_softmax_cross_entropy(g, logits, s->targets + i * rows * W4_T),
                               1.0f / W4_REPLICAS);
    return loss ? nn_backward(g, loss, NULL) : NN_ERR_MEMORY;
}

static void gpt_bench(const bench_opts *o, double out[2])
{
    const int T = W4_T, V = W4_V, rows = W4_B / W4_REPLICAS;
    nn_rng r;
    nn_rng_seed(&r, 1);
    nn_gpt_config cfg = {V, T, 4, 4, 128};
    w4_step st;
    nn_params p[W4_REPLICAS], *lists[W4_REPLICAS];
    for (int i = 0; i < W4_REPLICAS; i++) {
        st.m[i] = nn_gpt_new(cfg, &r);
        st.x[i] = nn_tensor_new(2, (int[]){rows, T});
        nn_params_init(&p[i]);
        nn_layer_params(st.m[i], &p[i]);
        lists[i] = &p[i];
    }
    nn_replicas *rep = nn_replicas_new(W4_REPLICAS, lists, NULL);
    nn_adam_opts ao = {1e-3f, 0.9f, 0.99f, 1e-8f, 0.1f};
    nn_optim *opt = nn_optim_adamw_new(&p[0], ao);
    nn_optim_decay_matrices_only(opt);
    st.targets = malloc(sizeof(int) * T * W4_B);
    double v[32], tok[32];
    for (int rep_i = -1; rep_i < o->reps; rep_i++) {
        int steps = 20;
        double t0 = now();
        for (int s = 0; s < steps; s++) {
            for (int i = 0; i < T * W4_B; i++) {
                st.x[i / (rows * T)]->data[i % (rows * T)] = (float)nn_rng_below(&r, V);
                st.targets[i] = (int)nn_rng_below(&r, V);
            }
            nn_optim_zero_grad(opt);
            nn_replicas_run(rep, w4_replica, &st);
            nn_replicas_reduce(rep, 1.0f);
            nn_clip_grad_norm(&p[0], 1.0f);
            nn_optim_step(opt);
            nn_replicas_sync(rep);
        }
        if (rep_i >= 0) v[rep_i] = 1e3 * (now() - t0) / steps;
        nn_gpt_cache *cache = nn_gpt_cache_new(st.m[0]);
        float logits[65];
        int n = 0;
        t0 = now();
        for (int k = 0; k < 8; k++, nn_gpt_cache_reset(cache))
            for (int t = 0; t < T; t++, n++) nn_gpt_cache_step(cache, (int)nn_rng_below(&r, V), logits);
        if (rep_i >= 0) tok[rep_i] = n / (now() - t0);
        nn_gpt_cache_free(cache);
    }
    out[0] = median(v, o->reps);
    out[1] = median(tok, o->reps);
    free(st.targets);
    nn_replicas_free(rep);
    nn_optim_free(opt);
    for (int i = 0; i < W4_REPLICAS; i++) {
        nn_tensor_free(st.x[i]);
        nn_params_free(&p[i]);
        nn_layer_free(st.m[i]);
    }
}

/* ---- running each workload in its own process ---- */
typedef struct result {
    double value[4];
    double rss_mb;
} result;

typedef void (*workload_fn)(const bench_opts *o, int threads, result *out);

static void run_isolated(workload_fn fn, const bench_opts *o, int threads, result *out)
{
    int fds[2];
    memset(out, 0, sizeof *out);
    if (pipe(fds) != 0) return;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        nn_set_threads(threads);
        result r = {{0}, 0};
        fn(o, threads, &r);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        r.rss_mb = ru.ru_maxrss / 1024.0; /* Linux reports KiB */
        if (write(fds[1], &r, sizeof r) != (ssize_t)sizeof r) _exit(1);
        _exit(0);
    }
    close(fds[1]);
    if (read(fds[0], out, sizeof *out) != (ssize_t)sizeof *out) memset(out, 0, sizeof *out);
    close(fds[0]);
    waitpid(pid, NULL, 0);
}

static void w_peak(const bench_opts *o, int t, result *r)
{
    (void)o;
    r->value[0] = peak_gflops(t);
    r->value[1] = read_gbps(t);
}
static void w1_train(const bench_opts *o, int t, result *r) { (void)t; r->value[0] = train_step_seconds(o, 1); }
static void w1_speedup(const bench_opts *o, int t, result *r) { r->value[0] = cnn_speedup(o, t); }
static void w1_infer(const bench_opts *o, int t, result *r) { (void)t; r->value[0] = cnn_inference_img_per_s(o); }
static void w1_latency(const bench_opts *o, int t, result *r) { (void)t; r->value[0] = cnn_latency_us(o, 0); }
static void w1_latency_int8(const bench_opts *o, int t, result *r) { (void)t; r->value[0] = cnn_latency_us(o, 1); }
static void w1_infer_int8(const bench_opts *o, int t, result *r) { r->value[0] = cnn_int8_img_per_s(o, t); }
static void w2_train(const bench_opts *o, int t, result *r) { (void)t; r->value[0] = train_step_seconds(o, 0); }
static void w3_train(const bench_opts *o, int t, result *r) { (void)t; r->value[0] = lstm_step_ms(o); }
static void w4_train(const bench_opts *o, int t, result *r) { (void)t; gpt_bench(o, r->value); }

static const struct { const char *name; int m, n, k, ta, tb; } shapes[] = {
    {"gemm-square256", 256, 256, 256, 0, 0},    {"gemm-square1024", 1024, 1024, 1024, 0, 0},
    {"gemm-conv1-fwd", 32, 43264, 9, 0, 0},     {"gemm-conv2-fwd", 64, 7744, 288, 0, 0},
    {"gemm-conv2-dW", 64, 288, 7744, 0, 1},     {"gemm-conv2-dX", 288, 7744, 64, 1, 0},
    {"gemm-dense-fwd", 64, 128, 1600, 0, 1},
    {"gemm-gpt-fc-fwd", 768, 512, 128, 0, 1},  {"gemm-gpt-fc-dW", 512, 128, 768, 1, 0},
    {"gemm-gpt-fc-dX", 768, 128, 512, 0, 0},
};
static int shape_index;
static void w_gemm(const bench_opts *o, int t, result *r)
{
    (void)t;
    r->value[0] = gemm_gflops(shapes[shape_index].m, shapes[shape_index].n, shapes[shape_index].k,
                              shapes[shape_index].ta, shapes[shape_index].tb, o->reps);
}

static int wanted(const bench_opts *o, const char *name)
{
    return !o->only || strstr(name, o->only);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench [--data DIR] [--reps N] [--steps N] [--only NAME] [--threads N]\n"
               "  --data DIR   train W1/W2 on MNIST from DIR (default: random data, same shapes)\n"
               "  --reps N     repetitions per figure; medians are reported (default 3)\n"
               "  --steps N    training steps timed per repetition (default 100)\n"
               "  --only NAME  run only workloads whose name contains NAME (peak, gemm, W1, ...)\n"
               "  --threads N  largest thread count to measure (default 2)\n");
}

int main(int argc, char **argv)
{
    bench_opts o = {NULL, 3, 100, NULL, 2};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        if (!strcmp(argv[i], "--data")) o.data = argv[++i];
        else if (!strcmp(argv[i], "--reps")) o.reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps")) o.steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only")) o.only = argv[++i];
        else if (!strcmp(argv[i], "--threads")) o.max_threads = atoi(argv[++i]);
        else {
            usage(stderr);
            return 2;
        }
    }
    if (o.reps < 1 || o.reps > 32 || o.steps < 1 || o.max_threads < 1) {
        usage(stderr);
        return 2;
    }
    printf("# libnn bench: medians of %d repetitions; W1/W2 on %s\n", o.reps,
           o.data ? o.data : "random data of MNIST's shape");
    printf("# %-18s %8s %14s %14s %10s\n", "workload", "threads", "metric", "value", "rss MB");
    double peak[8] = {0};
    for (int t = 1; t <= o.max_threads; t++) {
        result r;
        if (wanted(&o, "peak")) {
            run_isolated(w_peak, &o, t, &r);
            peak[t] = r.value[0];
            report("peak", t, "gflops", r.value[0]);
            report("peak", t, "mem_read_gbps", r.value[1]);
        }
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            if (!wanted(&o, shapes[s].name)) continue;
            shape_index = (int)s;
            run_isolated(w_gemm, &o, t, &r);
            report(shapes[s].name, t, "gflops", r.value[0]);
            if (peak[t] > 0) report(shapes[s].name, t, "pct_peak", 100.0 * r.value[0] / peak[t]);
        }
        if (wanted(&o, "W1")) {
            run_isolated(w1_train, &o, t, &r);
            double steps = ceil(60000 / 64.0);
            report("W1", t, "epoch_s", r.value[0] * steps);
            report("W1", t, "img_per_s", 64.0 / r.value[0]);
            report("W1", t, "peak_rss_mb", r.rss_mb);
            if (t > 1) {
                run_isolated(w1_speedup, &o, t, &r);
                report("W1", t, "speedup_vs_1t", r.value[0]);
            }
        }
        if (wanted(&o, "W1-infer")) {
            run_isolated(w1_infer, &o, t, &r);
            report("W1-infer", t, "img_per_s", r.value[0]);
        }
        if (wanted(&o, "W1-infer1")) {
            run_isolated(w1_latency, &o, t, &r);
            report("W1-infer1", t, "latency_us", r.value[0]);
        }
        if (wanted(&o, "W1-infer-int8")) {
            run_isolated(w1_infer_int8, &o, t, &r);
            report("W1-infer-int8", t, "img_per_s", r.value[0]);
        }
        if (wanted(&o, "W1-infer1-int8")) {
            run_isolated(w1_latency_int8, &o, t, &r);
            report("W1-infer1-int8", t, "latency_us", r.value[0]);
        }
        if (wanted(&o, "W2")) {
            run_isolated(w2_train, &o, t, &r);
            report("W2", t, "epoch_s", r.value[0] * ceil(60000 / 64.0));
            report("W2", t, "img_per_s", 64.0 / r.value[0]);
            report("W2", t, "peak_rss_mb", r.rss_mb);
        }
        if (wanted(&o, "W3")) {
            run_isolated(w3_train, &o, t, &r);
            report("W3", t, "step_ms", r.value[0]);
            report("W3", t, "peak_rss_mb", r.rss_mb);
        }
        if (wanted(&o, "W4")) {
            run_isolated(w4_train, &o, t, &r);
            report("W4", t, "step_ms", r.value[0]);
            report("W4", t, "gen_tokens_per_s", r.value[1]);
            report("W4", t, "peak_rss_mb", r.rss_mb);
        }
    }
    return 0;
}
