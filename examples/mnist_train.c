/* mnist_train: the bundled MNIST / Fashion-MNIST trainer.
 *
 * Default: the seed CNN (Conv 32 3x3 ReLU, MaxPool 2, Conv 64 3x3 ReLU,
 * MaxPool 2, Flatten, Dense 128 ReLU, Dropout 0.5, Dense 10), softmax
 * cross-entropy with label smoothing 0.1, AdamW (lr 1e-3, weight decay 0.1)
 * held constant for 75% of the steps then decayed to 0 by a cosine, random
 * 1-pixel shifts, batch 64, 10 epochs.
 * After each epoch one line on stdout:
 *   epoch E/N | loss L | train_acc A% | test_acc T% | S s | R img/s
 * Built with make MPI=1, --dist trains data-parallel across the ranks of
 * mpirun, each taking its shard of every global batch (nn/dist.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/models.h"
#include "common/plot.h"
#include "nn.h"

#define CHECKPOINT_FORMAT "libnn-mnist-checkpoint-1"

typedef struct options {
    const char *data, *model, *optim, *schedule, *save, *resume, *plot;
    int epochs, batch, threads, limit, quiet, augment, dist, micro_batches;
    float lr, label_smoothing, weight_decay;
    int lr_given, weight_decay_given;
    uint64_t seed;
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mnist_train [options]\n"
            "Train a CNN (default) or an MLP on MNIST or Fashion-MNIST.\n\n"
            "  --data DIR        folder with the four IDX files, raw or .gz\n"
            "                    (default: $NN_DATA_DIR, else data/mnist)\n"
            "  --model cnn|mlp   the seed CNN (225,034 parameters) or the 784-128-10 MLP\n"
            "  --epochs N        passes over the training set (default 10)\n"
            "  --batch N         mini-batch size (default 64)\n"
            "  --optim adam|sgd  Adam, or SGD with momentum 0.9 (default adam)\n"
            "  --lr X            peak learning rate (default 0.001 for adam, 0.05 for sgd)\n"
            "  --schedule S      decay (constant, then cosine to 0 over the last 25%% of the\n"
            "                    steps; default), cosine (over the whole run) or constant\n"
            "  --weight-decay X  decoupled weight decay (AdamW) with adam, L2 with sgd\n"
            "                    (default 0.1 for adam, 0 for sgd)\n"
            "  --augment N       shift training images randomly by up to N pixels (default 1)\n"
            "  --label-smoothing X  smooth the targets by X in [0, 1) (default 0.1)\n"
            "  --seed N          seed for initialisation, shuffling and dropout (default 1)\n"
            "  --threads N       threads for the kernels (default: all cores)\n"
            "  --limit N         train on the first N training images only\n"
            "  --save FILE       write a checkpoint (safetensors) after every epoch\n"
            "  --resume FILE     continue from a checkpoint written by --save\n"
            "  --plot FILE.svg   write a chart of training loss and test accuracy\n"
            "  --dist            data-parallel across the processes of mpirun (MPI builds:\n"
            "                    make MPI=1): each rank trains on its share of every global\n"
            "                    batch of --batch; rank 0 alone prints, evaluates and saves\n"
            "  --micro-batches M with --dist: split every batch into M micro-batches (a power of\n"
            "                    two, a multiple of the process count) whose gradients are added\n"
            "                    in a fixed tree: the same weights for any number of processes\n"
            "  --quiet           no progress bar\n"
            "  --help            this text\n\n"
            "Per-epoch output (stdout):\n"
            "  epoch E/N | loss L | train_acc A%% | test_acc T%% | S s | R img/s\n"
            "A NaN or infinite loss stops training with exit status 3 and leaves the last\n"
            "checkpoint untouched.\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--quiet") || !strcmp(a, "--dist")) {
            *(a[2] == 'q' ? &o->quiet : &o->dist) = 1;
            continue;
        }
        static const char *const with_value[] = {"--data", "--model", "--epochs", "--batch",
                                                  "--optim", "--lr", "--schedule", "--seed",
                                                  "--threads", "--limit", "--save", "--resume",
                                                  "--plot", "--augment", "--label-smoothing",
                                                  "--weight-decay", "--micro-batches", NULL};
        int known = 0;
        for (int k = 0; with_value[k]; k++) known |= !strcmp(a, with_value[k]);
        if (!known) {
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", a);
            return 0;
        }
        const char *v = cli_value(argc, argv, &i);
        if (!v) return 0;
        int ok = 1;
        if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--optim")) o->optim = v;
        else if (!strcmp(a, "--schedule")) o->schedule = v;
        else if (!strcmp(a, "--save")) o->save = v;
        else if (!strcmp(a, "--resume")) o->resume = v;
        else if (!strcmp(a, "--plot")) o->plot = v;
        else if (!strcmp(a, "--epochs")) ok = cli_int(a, v, 1, 100000, &o->epochs);
        else if (!strcmp(a, "--batch")) ok = cli_int(a, v, 1, 60000, &o->batch);
        else if (!strcmp(a, "--threads")) ok = cli_int(a, v, 1, 1024, &o->threads);
        else if (!strcmp(a, "--limit")) ok = cli_int(a, v, 1, 1 << 30, &o->limit);
        else if (!strcmp(a, "--augment")) ok = cli_int(a, v, 0, 8, &o->augment);
        else if (!strcmp(a, "--micro-batches")) ok = cli_int(a, v, 1, 4096, &o->micro_batches);
        else if (!strcmp(a, "--label-smoothing")) ok = cli_float(a, v, 0.0, 0.99, &o->label_smoothing);
        else if (!strcmp(a, "--weight-decay")) ok = cli_float(a, v, 0.0, 10.0, &o->weight_decay), o->weight_decay_given = 1;
        else if (!strcmp(a, "--seed")) ok = cli_u64(a, v, &o->seed);
        else ok = cli_float(a, v, 0.0, 1e9, &o->lr), o->lr_given = 1;
        if (!ok) return 0;
    }
    if (strcmp(o->model, "cnn") && strcmp(o->model, "mlp")) {
        fprintf(stderr, "error: --model must be cnn or mlp, got '%s'\n", o->model);
        return 0;
    }
    if (strcmp(o->optim, "adam") && strcmp(o->optim, "sgd")) {
        fprintf(stderr, "error: --optim must be adam or sgd, got '%s'\n", o->optim);
        return 0;
    }
    if (!cli_schedule_ok(o->schedule)) return 0;
    if (o->micro_batches && (!o->dist || (o->micro_batches & (o->micro_batches - 1)) || o->micro_batches > o->batch)) {
        fprintf(stderr, "error: --micro-batches M needs --dist and a power of two M <= --batch, got %d\n",
                o->micro_batches);
        return 0;
    }
#ifndef NN_HAVE_MPI
    if (o->dist) {
        fprintf(stderr, "error: --dist needs the MPI build of libnn: make MPI=1, then run "
                        "mpirun -np N build/mpi/examples/mnist_train --dist ...\n");
        return 0;
    }
#endif
    if (!o->lr_given) o->lr = strcmp(o->optim, "sgd") ? 1e-3f : 0.05f;
    if (!o->weight_decay_given) o->weight_decay = strcmp(o->optim, "sgd") ? 0.1f : 0.0f;
    return 1;
}

/* Model parameters followed by the optimizer's state: what a checkpoint holds. */
static int checkpoint_params(nn_optim *opt, const nn_params *model, nn_params *out)
{
    nn_params_init(out);
    for (int i = 0; i < model->count; i++)
        if (nn_params_add(out, model->names[i], model->tensors[i])) return 0;
    return nn_optim_state(opt, model, out) == NN_OK;
}

/* The model's architecture and input shape ride along in the checkpoint,
 * so that nn_model_load and mnist_predict need no --arch. */
static const char *arch_text, *input_shape_text;

/* What the rest of a run depends on besides the weights, the optimizer's
 * state and the step (which sets the schedule's position): the batcher's
 * generator and example order (the next epochs' shuffles and shifts) and each
 * dropout layer's generator. Every checkpoint holds them, so --resume after
 * any epoch continues bit for bit. */
static struct {
    nn_batcher *batches;
    nn_layer *model;
    nn_tensor *order; /* the batcher's order, as exact floats (fewer than 2^24 examples) */
    nn_params saved;  /* weights, optimizer state and the order */
} run;

#define META_MAX 40

/* Append the generators' states to meta (key, value pairs), n pairs so far. */
static int add_rng_meta(const char **meta, int n, char (*text)[NN_RNG_STRING_MAX], char (*keys)[32])
{
    int k = 0;
    nn_rng_to_string(&run.batches->rng, text[k]);
    meta[2 * n] = "rng.batcher";
    meta[2 * n++ + 1] = text[k++];
    for (int i = 0; i < nn_sequential_len(run.model) && n < META_MAX - 1 && k < 16; i++) {
        nn_rng *r = nn_layer_rng(nn_sequential_get(run.model, i));
        if (!r) continue;
        snprintf(keys[k], 32, "rng.layer.%d", i);
        nn_rng_to_string(r, text[k]);
        meta[2 * n] = keys[k];
        meta[2 * n++ + 1] = text[k++];
    }
    return n;
}

static int save_checkpoint(const options *o, const nn_params *all, int epoch, long step,
                           int epochs_total)
{
    char e[32], s[32], seed[32], lr[32], total[32], batch[32];
    snprintf(e, sizeof e, "%d", epoch);
    snprintf(s, sizeof s, "%ld", step);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    snprintf(lr, sizeof lr, "%.9g", (double)o->lr);
    snprintf(total, sizeof total, "%d", epochs_total);
    snprintf(batch, sizeof batch, "%d", o->batch);
    const char *meta[2 * META_MAX] = {"format", CHECKPOINT_FORMAT, "model", o->model, "optimizer", o->optim,
                                      "schedule", o->schedule, "epoch", e, "step", s, "epochs", total,
                                      "seed", seed, "lr", lr, "batch", batch, NN_MODEL_META_LAYERS, arch_text,
                                      NN_MODEL_META_INPUT_SHAPE, input_shape_text};
    char rng_text[16][NN_RNG_STRING_MAX], rng_keys[16][32];
    int n = add_rng_meta(meta, 12, rng_text, rng_keys);
    (void)all;
    for (int i = 0; i < run.batches->data->count; i++) run.order->data[i] = (float)run.batches->order[i];
    nn_error err;
    if (nn_safetensors_write(o->save, &run.saved, meta, n, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 0;
    }
    return 1;
}

/* Restore the generators and the example order a checkpoint holds; a
 * checkpoint from before they were saved continues with a fresh shuffle
 * stream (said on stderr). 0 after printing why on a malformed state. */
static int restore_run_state(const nn_safetensors *st, const options *o)
{
    const char *rb = nn_safetensors_meta(st, "rng.batcher");
    if (!rb) {
        fprintf(stderr, "note: %s holds no generator state (an older checkpoint): the rest of the run "
                        "shuffles differently from an uninterrupted one\n", o->resume);
        nn_rng_seed(&run.batches->rng, o->seed + (uint64_t)atoi(nn_safetensors_meta(st, "epoch")));
        return 1;
    }
    nn_rng batcher_rng = run.batches->rng;
    if (!nn_rng_from_string(&batcher_rng, rb)) {
        fprintf(stderr, "error: %s: malformed rng.batcher '%.80s'\n", o->resume, rb);
        return 0;
    }
    for (int i = 0; i < nn_sequential_len(run.model); i++) {
        nn_rng *r = nn_layer_rng(nn_sequential_get(run.model, i));
        if (!r) continue;
        char key[32];
        snprintf(key, sizeof key, "rng.layer.%d", i);
        if (!nn_rng_from_string(r, nn_safetensors_meta(st, key))) {
            fprintf(stderr, "error: %s: metadata %s missing or malformed\n", o->resume, key);
            return 0;
        }
    }
    const nn_st_tensor *saved_order = nn_safetensors_find(st, "state.batcher.order");
    if (saved_order && (saved_order->ndim != 1 || saved_order->shape[0] != (uint64_t)run.batches->data->count)) {
        fprintf(stderr, "note: %s was written for %llu training images, this run has %d (another --limit): "
                        "the rest of the run shuffles anew\n", o->resume,
                (unsigned long long)(saved_order->ndim == 1 ? saved_order->shape[0] : 0), run.batches->data->count);
        nn_rng_seed(&run.batches->rng, o->seed + (uint64_t)atoi(nn_safetensors_meta(st, "epoch")));
        return 1;
    }
    nn_params order;
    nn_params_init(&order);
    nn_params_add(&order, "state.batcher.order", run.order);
    nn_error err;
    int ok = nn_safetensors_load_params(st, &order, &err) == NN_OK;
    nn_params_free(&order);
    if (!ok) {
        fprintf(stderr, "error: %s (was it written with another --limit?)\n", err.msg);
        return 0;
    }
    int n = run.batches->data->count;
    char *seen = calloc((size_t)n, 1);
    for (int i = 0; ok && i < n; i++) {
        float v = run.order->data[i];
        ok = seen && v >= 0 && v < (float)n && v == (float)(int)v && !seen[(int)v];
        if (ok) {
            seen[(int)v] = 1;
            run.batches->order[i] = (int)v;
        }
    }
    free(seen);
    if (!ok) {
        fprintf(stderr, "error: %s: state.batcher.order is not a permutation of the %d examples\n", o->resume, n);
        return 0;
    }
    run.batches->rng = batcher_rng;
    return 1;
}

/* Load a checkpoint into the model and optimizer; returns the number of
 * epochs it completed, or -1 after printing why not. */
static int resume_checkpoint(const options *o, const nn_params *all, nn_optim *opt, long *step)
{
    nn_safetensors st;
    nn_error err;
    if (nn_safetensors_read(o->resume, &st, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return -1;
    }
    const char *fmt = nn_safetensors_meta(&st, "format"), *model = nn_safetensors_meta(&st, "model");
    const char *optim = nn_safetensors_meta(&st, "optimizer"), *ep = nn_safetensors_meta(&st, "epoch");
    const char *stp = nn_safetensors_meta(&st, "step");
    int epoch = -1;
    if (!fmt || strcmp(fmt, CHECKPOINT_FORMAT) || !ep || !stp) {
        fprintf(stderr, "error: %s: not a checkpoint written by mnist_train --save\n", o->resume);
    } else if (!model || strcmp(model, o->model) || !optim || strcmp(optim, o->optim)) {
        fprintf(stderr, "error: %s holds model '%s' trained with '%s'; this run uses --model %s --optim %s\n",
                o->resume, model ? model : "?", optim ? optim : "?", o->model, o->optim);
    } else if (nn_safetensors_load_params(&st, all, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
    } else if (!restore_run_state(&st, o)) {
        epoch = -1;
    } else {
        epoch = atoi(ep);
        *step = atol(stp);
        nn_optim_set_steps(opt, *step);
    }
    nn_safetensors_free(&st);
    return epoch;
}

static long count_correct(const nn_tensor *logits, const int *labels, int n)
{
    long c = 0;
    for (int i = 0; i < n; i++) c += argmax(logits->data + (size_t)i * 10, 10) == labels[i];
    return c;
}

#ifdef NN_HAVE_MPI
/* Seed every dropout generator of the model from the run's seed and key
 * (a micro-batch, or an epoch and rank), whatever its state was. */
static void seed_dropout(nn_layer *model, uint64_t seed, uint64_t key)
{
    for (int i = 0; i < nn_sequential_len(model); i++) {
        nn_rng *r = nn_layer_rng(nn_sequential_get(model, i));
        if (r) nn_rng_seed(r, seed ^ (0x9e3779b97f4a7c15ull * key + (uint64_t)i));
    }
}

/* --micro-batches: this rank's micro-batches' gradients, kept apart. */
typedef struct micro_state {
    int count;     /* micro-batches per global batch (M) */
    int local;     /* per rank: M / ranks */
    float **grads; /* local flat gradients */
    nn_layer *model;
    const nn_params *params;
    nn_optim *opt;
} micro_state;

/* One global batch as M micro-batches: this rank's own forward and
 * backward passes, one per micro-batch (dropout seeded by the step and
 * the micro-batch, not the rank), then the fixed-order sum
 * (nn_dist_tree_sum) into the parameters' gradients. */
static int micro_batches(nn_dist *d, micro_state *ms, const options *o, long step, nn_graph *g,
                         const nn_batcher *b, int n, double *loss_sum, long *correct, nn_error *err)
{
    int N = b->global_n, j0 = ms->count / d->size * d->rank;
    int lo = (int)((long long)N * d->rank / d->size);
    size_t per_example = b->x->size / (size_t)n;
    for (int k = 0; k < ms->local; k++) {
        int a = (int)((long long)N * (j0 + k) / ms->count) - lo;
        int e = (int)((long long)N * (j0 + k + 1) / ms->count) - lo;
        if (e <= a) { /* a batch shorter than M: an empty micro-batch adds zeros */
            nn_dist_flat_grads(ms->params, 0.0f, ms->grads[k]);
            continue;
        }
        nn_tensor view = *b->x; /* rows [a, e) of the shard, read in place */
        view.data = b->x->data + (size_t)a * per_example;
        view.grad = NULL;
        view.flags = 0;
        view.shape[0] = e - a;
        view.size = view.capacity = (size_t)(e - a) * per_example;
        seed_dropout(ms->model, o->seed, (uint64_t)(step * ms->count + j0 + k + 1));
        nn_optim_zero_grad(ms->opt);
        nn_graph_reset(g);
        nn_tensor *logits = nn_layer_forward(ms->model, g, &view);
        nn_tensor *loss = nn_softmax_cross_entropy_smoothed(g, logits, b->labels + a, o->label_smoothing);
        *loss_sum += (double)loss->data[0] * (e - a);
        *correct += count_correct(logits, b->labels + a, e - a);
        nn_backward(g, loss, NULL);
        nn_dist_flat_grads(ms->params, (float)(e - a) / (float)N, ms->grads[k]);
    }
    /* a state fixed by the step alone, so that checkpoints do not depend on the process count */
    seed_dropout(ms->model, o->seed, (uint64_t)(step + 1) * (uint64_t)ms->count);
    return nn_dist_tree_sum(d, ms->params, ms->grads, ms->local, err) != NN_OK;
}
#endif

int main(int argc, char **argv)
{
    /* Defaults measured on MNIST and Fashion-MNIST (README): on top of the
     * seed recipe (Adam 1e-3, batch 64), a stable-then-decay schedule, AdamW
     * weight decay 0.1, label smoothing 0.1 and random 1-pixel shifts. */
    options o = {.model = "cnn", .optim = "adam", .schedule = "decay", .epochs = 10, .batch = 64,
                 .augment = 1, .label_smoothing = 0.1f, .seed = 1};
    if (!parse_args(argc, argv, &o)) return 2;
    if (o.threads) nn_set_threads(o.threads);
    int rank = 0, ranks = 1;
#ifdef NN_HAVE_MPI
    nn_dist dist = {0};
    if (o.dist) {
        if (!cli_dist_start(&dist, &argc, &argv)) return 1;
        rank = dist.rank;
        ranks = dist.size;
        if (rank) { /* rank 0 speaks and writes for the job */
            o.quiet = 1;
            o.save = NULL;
            o.plot = NULL;
        }
    }
#endif

    const char *dir = cli_data_dir(o.data, "data/mnist");
    nn_dataset train, test;
    if (!cli_load_mnist(dir, &train, &test)) return 1;
    nn_dataset_truncate(&train, o.limit);

    nn_layout layout;
    nn_layer *model = model_build(o.model, train.rows, train.cols, o.seed, &layout);
    nn_params params, all;
    nn_params_init(&params);
    char *arch = NULL, shape[64];
    if (!model || nn_layer_params(model, &params) || nn_model_architecture(model, &arch, NULL)) {
        fprintf(stderr, "error: cannot build model '%s'\n", o.model);
        return 1;
    }
    if (layout == NN_LAYOUT_NCHW) snprintf(shape, sizeof shape, "1,%d,%d", train.rows, train.cols);
    else snprintf(shape, sizeof shape, "%d", train.rows * train.cols);
    arch_text = arch;
    input_shape_text = shape;
    nn_adam_opts adam = nn_adam_defaults(o.lr);
    adam.weight_decay = o.weight_decay;
    nn_optim *opt = !strcmp(o.optim, "sgd")
                        ? nn_optim_sgd_new(&params, (nn_sgd_opts){.lr = o.lr, .momentum = 0.9f,
                                                                  .weight_decay = o.weight_decay})
                    : o.weight_decay > 0 ? nn_optim_adamw_new(&params, adam)
                                         : nn_optim_adam_new(&params, adam);
    nn_graph *g = nn_graph_new();
    nn_batcher batches;
    nn_error err;
    if (!opt || !g || !checkpoint_params(opt, &params, &all) ||
        nn_batcher_init(&batches, &train, o.batch, layout, 1, o.seed, &err)) {
        fprintf(stderr, "error: setting up training failed (out of memory?)\n");
        return 1;
    }
    nn_batcher_normalize(&batches, NN_MNIST_MEAN, NN_MNIST_STD);
    nn_batcher_augment_shift(&batches, o.augment);
    if (ranks > 1 && nn_batcher_shard(&batches, rank, ranks, &err)) {
        fprintf(stderr, "error: %s (--batch must be at least the number of processes)\n", err.msg);
        return 2;
    }
    run.batches = &batches;
    run.model = model;
    run.order = nn_tensor_new1(train.count);
    nn_params_init(&run.saved);
    for (int i = 0; i < all.count; i++) nn_params_add(&run.saved, all.names[i], all.tensors[i]);
    if (!run.order || train.count >= (1 << 24) || nn_params_add(&run.saved, "state.batcher.order", run.order)) {
        fprintf(stderr, "error: setting up checkpoints failed\n");
        return 1;
    }

    int start_epoch = 0;
    long step = 0;
    if (o.resume) {
        start_epoch = resume_checkpoint(&o, &all, opt, &step);
        if (start_epoch < 0) return 1;
        printf("resumed from %s after epoch %d (step %ld)\n", o.resume, start_epoch, step);
    }
#ifdef NN_HAVE_MPI
    if (o.dist) {
        /* rank 0's weights for all (each rank's dropout masks: see the epoch loop) */
        if (nn_dist_broadcast(&dist, &params, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
    }
    micro_state micro_run = {0};
    int micro = o.micro_batches > 0;
    if (micro) {
        micro_run.count = o.micro_batches;
        micro_run.local = o.micro_batches / ranks;
        micro_run.model = model;
        micro_run.params = &params;
        micro_run.opt = opt;
        if (o.micro_batches % ranks || (micro_run.local & (micro_run.local - 1))) {
            fprintf(stderr, "error: --micro-batches %d must be a multiple of the %d processes, by a power of two\n",
                    o.micro_batches, ranks);
            return 2;
        }
        micro_run.grads = calloc((size_t)micro_run.local, sizeof *micro_run.grads);
        for (int k = 0; micro_run.grads && k < micro_run.local; k++)
            if (!(micro_run.grads[k] = malloc(sizeof(float) * nn_params_numel(&params)))) return 1;
        if (!micro_run.grads) return 1;
    }
#endif
    int per_epoch = nn_batcher_num_batches(&batches);
    long total_steps = (long)per_epoch * o.epochs;
    printf("mnist_train: model %s, %zu parameters; %d train / %d test images from %s\n", o.model,
           nn_params_numel(&params), train.count, test.count, dir);
    printf("optimizer %s lr %g (%s schedule), weight decay %g, batch %d, %d epochs, augment %d, "
           "label smoothing %g, seed %llu, %d threads%s\n",
           o.optim, (double)o.lr, o.schedule, (double)o.weight_decay, o.batch, o.epochs, o.augment,
           (double)o.label_smoothing, (unsigned long long)o.seed, nn_get_threads(),
           ranks > 1 ? " per process" : "");
    if (o.dist) printf("distributed: %d processes, each with its shard of every batch of %d%s\n", ranks, o.batch,
                       o.micro_batches ? ", in micro-batches summed in a fixed order" : "");
    fflush(stdout);

    float *loss_hist = malloc(sizeof(float) * (size_t)(total_steps > 0 ? total_steps : 1));
    float *acc_hist = malloc(sizeof(float) * (size_t)o.epochs);
    int n_loss = 0, n_acc = 0, status = 0;
    for (int epoch = start_epoch + 1; epoch <= o.epochs && !status; epoch++) {
        double t0 = cli_now(), loss_sum = 0;
        long seen = 0, correct = 0;
        int n, done = 0;
        char label[32];
        snprintf(label, sizeof label, "epoch %d/%d", epoch, o.epochs);
        progress bar;
        progress_start(&bar, label, per_epoch, "img", o.quiet);
        nn_batcher_start_epoch(&batches);
#ifdef NN_HAVE_MPI
        /* each rank its own dropout masks, seeded per epoch and rank, so that
         * a resumed distributed run (only rank 0's state is saved) continues
         * exactly as an uninterrupted one */
        if (o.dist && !micro) seed_dropout(model, o.seed, (uint64_t)(epoch * 1024 + rank + 1));
#endif
        nn_layer_set_training(model, 1);
        while ((n = nn_batcher_next(&batches)) > 0) {
            nn_optim_set_lr(opt, cli_schedule_lr(o.schedule, o.lr, step, total_steps));
            nn_tensor *loss = NULL;
            double batch_loss = 0; /* this process's examples' loss, summed */
            long batch_correct = 0;
#ifdef NN_HAVE_MPI
            if (micro) { /* forward and backward per micro-batch, tree-summed gradients */
                if (micro_batches(&dist, &micro_run, &o, step, g, &batches, n, &batch_loss, &batch_correct, &err)) {
                    fprintf(stderr, "error: %s\n", err.msg);
                    status = 1;
                    break;
                }
            } else
#endif
            {
                nn_graph_reset(g);
                nn_optim_zero_grad(opt);
                nn_tensor *logits = nn_layer_forward(model, g, batches.x);
                loss = nn_softmax_cross_entropy_smoothed(g, logits, batches.labels, o.label_smoothing);
                batch_loss = (double)loss->data[0] * n;
                batch_correct = count_correct(logits, batches.labels, n);
            }
            double step_loss = batch_loss / n;
#ifdef NN_HAVE_MPI
            if (o.dist) { /* the global batch's loss, so that every rank stops together */
                step_loss = batch_loss / batches.global_n;
                if (nn_dist_sum(&dist, &step_loss, 1, &err)) {
                    fprintf(stderr, "error: %s\n", err.msg);
                    status = 1;
                    break;
                }
            }
#endif
            if (!isfinite(step_loss)) {
                progress_end(&bar);
                fprintf(stderr, "error: loss is %g at step %ld (epoch %d, batch %d); stopping. "
                                "Lower --lr. %s\n",
                        step_loss, step + 1, epoch, done + 1,
                        o.save ? "The last checkpoint was left as it was." : "");
                status = 3;
                break;
            }
            if (loss) nn_backward(g, loss, NULL);
#ifdef NN_HAVE_MPI
            if (o.dist && !micro &&
                nn_dist_average_grads(&dist, &params, (float)n / (float)batches.global_n, &err)) {
                fprintf(stderr, "error: %s\n", err.msg);
                status = 1;
                break;
            }
#endif
            nn_optim_step(opt);
            step++;
            if (n_loss < total_steps) loss_hist[n_loss++] = (float)step_loss;
            loss_sum += batch_loss;
            correct += batch_correct;
            seen += n;
            progress_update(&bar, ++done, loss_sum / seen, (double)correct / seen, seen);
        }
        if (status) break;
        progress_end(&bar);
        double secs = cli_now() - t0;
#ifdef NN_HAVE_MPI
        if (o.dist) { /* the epoch's totals over all ranks */
            double totals[3] = {loss_sum, (double)correct, (double)seen};
            if (nn_dist_sum(&dist, totals, 3, &err)) {
                fprintf(stderr, "error: %s\n", err.msg);
                status = 1;
                break;
            }
            loss_sum = totals[0];
            correct = (long)totals[1];
            seen = (long)totals[2];
        }
#endif
        /* in a distributed run rank 0 evaluates while the others go on to
         * the next epoch's first batch and wait for it there */
        double acc = rank ? 0.0 : evaluate_accuracy(model, g, &test, layout);
        acc_hist[n_acc++] = (float)(100.0 * acc);
        printf("epoch %d/%d | loss %.4f | train_acc %.2f%% | test_acc %.2f%% | %.1f s | %.0f img/s\n",
               epoch, o.epochs, loss_sum / seen, 100.0 * correct / seen, 100.0 * acc, secs,
               seen / secs);
        fflush(stdout);
        if (o.save && !save_checkpoint(&o, &all, epoch, step, o.epochs)) status = 1;
        if (o.plot) {
            char title[256];
            snprintf(title, sizeof title, "mnist_train --model %s (%s, lr %g, %s), data %s",
                     o.model, o.optim, (double)o.lr, o.schedule, dir);
            if (!plot_training_svg(o.plot, title, loss_hist, n_loss, acc_hist, n_acc)) status = 1;
        }
    }

#ifdef NN_HAVE_MPI
    if (o.dist) {
        double per_step = dist.allreduces ? 1e3 * dist.comm_seconds / (double)dist.allreduces : 0.0;
        printf("distributed: gradient allreduce %.3f ms per step on rank 0 (%zu floats, %.1f MB)\n", per_step,
               nn_params_numel(&params), 4e-6 * (double)nn_params_numel(&params));
        fflush(stdout);
        nn_dist_finalize(&dist);
        for (int k = 0; micro_run.grads && k < micro_run.local; k++) free(micro_run.grads[k]);
        free(micro_run.grads);
    }
#endif
    free(loss_hist);
    free(acc_hist);
    nn_batcher_free(&batches);
    nn_graph_free(g);
    nn_optim_free(opt);
    nn_params_free(&all);
    nn_params_free(&run.saved);
    nn_tensor_free(run.order);
    nn_params_free(&params);
    nn_layer_free(model);
    free(arch);
    nn_dataset_free(&train);
    nn_dataset_free(&test);
    return status;
}
