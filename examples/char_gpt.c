/* char_gpt: a character-level GPT (nanoGPT's small CPU configuration) on a
 * text file: token + position embeddings -> pre-norm transformer blocks ->
 * layer norm -> head tied to the token embedding, trained on random windows
 * of the first 90% of the text; the last 10% validates. Every --eval-every
 * steps one line on stdout:
 *   step S/N | train_loss L | val_loss V | M ms/step
 * train_loss is the mean over the steps since the last line; val_loss the
 * mean over the WHOLE validation split in consecutive, non-overlapping
 * windows of --context characters (losses in nats per character). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/text.h"
#include "nn.h"

#define CHECKPOINT_FORMAT "libnn-char-gpt-1"
#define VAL_BATCH 128 /* validation windows per forward pass */
#define MAX_REPLICAS 64

typedef struct options {
    const char *data, *save, *resume, *prompt, *recipe;
    int batch, context, blocks, heads, width, steps, warmup, threads, replicas, sample, quiet, eval_every;
    float lr, min_lr, beta1, beta2, weight_decay, clip, temperature;
    uint64_t seed;
    int set_lr, set_min_lr, set_warmup, set_beta2, set_wd, set_batch, set_clip, set_replicas;
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: char_gpt [options]\n"
            "Train a character-level GPT on a text file, or sample from a checkpoint.\n\n"
            "  --data PATH        text file, or a folder holding input.txt (default: $NN_DATA_DIR,\n"
            "                     else ../shared/data/tinyshakespeare/input.txt)\n"
            "  --recipe R         libnn (default): AdamW lr 5e-3, betas 0.9/0.99, weight decay 0.1\n"
            "                     on matrices, 100 warmup steps, cosine to 1e-4, clip 1;\n"
            "                     nanogpt: nanoGPT's CPU recipe exactly (the same with lr 1e-3)\n"
            "  --lr X --min-lr X --warmup N --beta2 X --weight-decay X   override the recipe\n"
            "  --clip X           clip the gradient's global norm at X (default 1; 0: off)\n"
            "  --batch N          windows per step (default 12)\n"
            "  --context N        characters per window, the model's context (default 64)\n"
            "  --blocks N         transformer blocks (default 4)\n"
            "  --heads N          attention heads (default 4)\n"
            "  --width N          embedding width (default 128)\n"
            "  --steps N          training steps in all (default 2000); a resumed run continues to N\n"
            "  --eval-every N     report train/validation loss every N steps (default 100)\n"
            "  --seed N           seed of the initial weights and the windows (default 1)\n"
            "  --threads N        threads for the kernels (default: all cores)\n"
            "  --replicas N       copies of the model that each train on a slice of every batch,\n"
            "                     one thread each (default 2; results depend on N, not on --threads;\n"
            "                     with more cores than N, raise N to use them)\n"
            "  --save FILE        checkpoint (safetensors, PyTorch names) at every report\n"
            "  --resume FILE      continue training from a checkpoint (bit for bit): the model,\n"
            "                     optimizer, step, windows and recipe come from the file\n"
            "  --sample N         generate N characters from --resume FILE and exit\n"
            "  --temperature X    sampling temperature (default 0.8)\n"
            "  --prompt TEXT      text to start the sample with (default a newline)\n"
            "  --quiet            no progress bar\n"
            "  --help             this text\n\n"
            "Output every N steps (stdout):\n"
            "  step S/N | train_loss L | val_loss V | M ms/step\n"
            "Training ends with a 500-character sample (generated with a key/value cache).\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--quiet")) {
            o->quiet = 1;
            continue;
        }
        static const char *const flags[] = {
            "--data", "--recipe", "--lr", "--min-lr", "--warmup", "--beta2", "--weight-decay", "--clip",
            "--batch", "--context", "--blocks", "--heads", "--width", "--steps", "--eval-every", "--seed",
            "--threads", "--replicas", "--save", "--resume", "--sample", "--temperature", "--prompt", NULL};
        int known = 0;
        for (int k = 0; flags[k]; k++) known |= !strcmp(a, flags[k]);
        if (!known) {
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", a);
            return 0;
        }
        const char *v = cli_value(argc, argv, &i);
        if (!v) return 0;
        int ok = 1;
        if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--save")) o->save = v;
        else if (!strcmp(a, "--resume")) o->resume = v;
        else if (!strcmp(a, "--prompt")) o->prompt = v;
        else if (!strcmp(a, "--recipe")) o->recipe = v;
        else if (!strcmp(a, "--lr")) ok = cli_float(a, v, 0.0, 10.0, &o->lr), o->set_lr = 1;
        else if (!strcmp(a, "--min-lr")) ok = cli_float(a, v, 0.0, 10.0, &o->min_lr), o->set_min_lr = 1;
        else if (!strcmp(a, "--warmup")) ok = cli_int(a, v, 0, 100000000, &o->warmup), o->set_warmup = 1;
        else if (!strcmp(a, "--beta2")) ok = cli_float(a, v, 0.0, 0.999999, &o->beta2), o->set_beta2 = 1;
        else if (!strcmp(a, "--weight-decay")) ok = cli_float(a, v, 0.0, 100.0, &o->weight_decay), o->set_wd = 1;
        else if (!strcmp(a, "--clip")) ok = cli_float(a, v, 0.0, 1e9, &o->clip), o->set_clip = 1;
        else if (!strcmp(a, "--batch")) ok = cli_int(a, v, 1, 100000, &o->batch), o->set_batch = 1;
        else if (!strcmp(a, "--context")) ok = cli_int(a, v, 1, 4096, &o->context);
        else if (!strcmp(a, "--blocks")) ok = cli_int(a, v, 1, 64, &o->blocks);
        else if (!strcmp(a, "--heads")) ok = cli_int(a, v, 1, 256, &o->heads);
        else if (!strcmp(a, "--width")) ok = cli_int(a, v, 1, 8192, &o->width);
        else if (!strcmp(a, "--steps")) ok = cli_int(a, v, 0, 100000000, &o->steps);
        else if (!strcmp(a, "--eval-every")) ok = cli_int(a, v, 1, 100000000, &o->eval_every);
        else if (!strcmp(a, "--threads")) ok = cli_int(a, v, 1, 1024, &o->threads);
        else if (!strcmp(a, "--replicas")) ok = cli_int(a, v, 1, MAX_REPLICAS, &o->replicas), o->set_replicas = 1;
        else if (!strcmp(a, "--sample")) ok = cli_int(a, v, 1, 100000000, &o->sample);
        else if (!strcmp(a, "--seed")) ok = cli_u64(a, v, &o->seed);
        else ok = cli_float(a, v, 1e-3, 100.0, &o->temperature);
        if (!ok) return 0;
    }
    if (strcmp(o->recipe, "libnn") && strcmp(o->recipe, "nanogpt")) {
        fprintf(stderr, "error: --recipe must be libnn or nanogpt, got '%s'\n", o->recipe);
        return 0;
    }
    /* the recipes differ only in the peak learning rate (measured: README) */
    if (!o->set_lr) o->lr = strcmp(o->recipe, "nanogpt") ? 5e-3f : 1e-3f;
    if (!o->set_min_lr) o->min_lr = 1e-4f;
    if (!o->set_warmup) o->warmup = 100;
    if (!o->set_beta2) o->beta2 = 0.99f;
    if (!o->set_wd) o->weight_decay = 0.1f;
    if (o->width % o->heads) {
        fprintf(stderr, "error: --width %d must be a multiple of --heads %d\n", o->width, o->heads);
        return 0;
    }
    if (o->sample && !o->resume) {
        fprintf(stderr, "error: --sample N needs --resume FILE (the model to sample from)\n");
        return 0;
    }
    return 1;
}

/* The text as token ids over its sorted alphabet. */
typedef struct corpus {
    int *ids;
    size_t len;
    char_vocab v;
} corpus;

/* Read the text as ids; with fixed_vocab (a checkpoint's) every byte must be
 * in the alphabet already in c->v. */
static int load_corpus(const char *path, corpus *c, int fixed_vocab)
{
    uint8_t *text;
    size_t len;
    if (!text_read(path, &text, &len)) return 0;
    if (!fixed_vocab) vocab_of_text(&c->v, text, len);
    c->ids = malloc(len * sizeof(int));
    if (!c->ids) {
        fprintf(stderr, "error: out of memory for %zu characters\n", len);
        free(text);
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        c->ids[i] = c->v.index_of[text[i]];
        if (c->ids[i] < 0) {
            fprintf(stderr, "error: %s has character 0x%02x at byte %zu, outside the checkpoint's alphabet\n",
                    path, text[i], i);
            free(text);
            return 0;
        }
    }
    c->len = len;
    free(text);
    return 1;
}

/* Windows x (B, T) as float ids and their next characters as targets. */
static void fill_windows(const corpus *c, const size_t *starts, int B, int T, nn_tensor *x, int *targets)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            x->data[(size_t)b * T + t] = (float)c->ids[starts[b] + (size_t)t];
            targets[b * T + t] = c->ids[starts[b] + (size_t)t + 1];
        }
}

static nn_tensor *loss_of(nn_layer *m, nn_graph *g, nn_tensor *x, const int *targets)
{
    nn_tensor *logits = nn_layer_forward(m, g, x);
    if (!logits) return NULL;
    int rows = logits->shape[0] * logits->shape[1];
    return nn_softmax_cross_entropy(g, nn_reshape(g, logits, 2, (int[]){rows, logits->shape[2]}), targets);
}

/* Mean loss per character over [base, base + len) in consecutive windows of T. */
static double evaluate(nn_layer *m, nn_graph *g, const corpus *c, size_t base, size_t len, int T)
{
    size_t windows = (len - 1) / (size_t)T;
    int *targets = malloc(sizeof(int) * VAL_BATCH * (size_t)T);
    size_t starts[VAL_BATCH];
    double total = 0;
    if (!targets) return NAN;
    nn_layer_set_training(m, 0);
    nn_graph_set_grad_enabled(g, 0);
    for (size_t w0 = 0; w0 < windows; w0 += VAL_BATCH) {
        int B = windows - w0 < VAL_BATCH ? (int)(windows - w0) : VAL_BATCH;
        for (int b = 0; b < B; b++) starts[b] = base + (w0 + (size_t)b) * T;
        nn_graph_reset(g);
        nn_tensor *xb = nn_graph_tensor(g, 2, (int[]){B, T});
        fill_windows(c, starts, B, T, xb, targets);
        nn_tensor *loss = loss_of(m, g, xb, targets);
        total += loss ? (double)loss->data[0] * B * T : NAN;
    }
    nn_graph_set_grad_enabled(g, 1);
    nn_layer_set_training(m, 1);
    free(targets);
    return total / (double)(windows * (size_t)T);
}

/* Sample n characters after the prompt, each step one cached position; when
 * the context is full the cache restarts from the last half of it. */
static int sample_text(nn_layer *m, const corpus *c, const char *prompt, int n, float temperature,
                       uint64_t seed)
{
    nn_gpt_config cfg = nn_gpt_get_config(m);
    nn_gpt_cache *cache = nn_gpt_cache_new(m);
    int *hist = malloc(sizeof(int) * (size_t)cfg.context);
    float *logits = malloc(sizeof(float) * (size_t)c->v.size), *p = malloc(sizeof(float) * (size_t)c->v.size);
    if (!cache || !hist || !logits || !p) {
        fprintf(stderr, "error: out of memory for sampling\n");
        return 0;
    }
    nn_rng rng;
    nn_rng_seed(&rng, seed);
    int len = 0, fed = 0;
    for (size_t i = 0; prompt[i]; i++) {
        int k = c->v.index_of[(uint8_t)prompt[i]];
        if (k < 0) continue; /* characters outside the alphabet are skipped */
        fputc(prompt[i], stdout);
        if (len == cfg.context) { /* keep the last half */
            memmove(hist, hist + cfg.context / 2, sizeof(int) * (size_t)(cfg.context - cfg.context / 2));
            len = cfg.context - cfg.context / 2;
            nn_gpt_cache_reset(cache);
            fed = 0;
        }
        hist[len++] = k;
    }
    if (!len) hist[len++] = c->v.index_of['\n'] >= 0 ? c->v.index_of['\n'] : 0;
    for (int k = 0; k <= n; k++) {
        while (fed < len) nn_gpt_cache_step(cache, hist[fed++], logits);
        if (k == n) break;
        int idx = sample_index(logits, c->v.size, temperature, &rng, p);
        fputc(c->v.char_of[idx], stdout);
        if (len == cfg.context) {
            int keep = cfg.context / 2;
            memmove(hist, hist + cfg.context - keep, sizeof(int) * (size_t)keep);
            len = keep;
            nn_gpt_cache_reset(cache);
            fed = 0;
        }
        hist[len++] = idx;
    }
    fputc('\n', stdout);
    nn_gpt_cache_free(cache);
    free(hist);
    free(logits);
    free(p);
    return 1;
}

/* A checkpoint is a model file (nn_model_load reads it; the tensors have
 * PyTorch's names) plus the optimizer's moments and, in metadata, the
 * alphabet, the step, the window generator's state and the recipe. */
static int save_checkpoint(const options *o, const corpus *c, nn_layer *m, nn_optim *opt, long step,
                           const nn_rng *rng)
{
    char hex[513], s_step[32], s_rng[NN_RNG_STRING_MAX], s_lr[32], s_min[32], s_warm[32], s_b2[32], s_wd[32],
        s_batch[32], s_clip[32], s_replicas[32];
    vocab_to_hex(&c->v, hex);
    snprintf(s_step, sizeof s_step, "%ld", step);
    nn_rng_to_string(rng, s_rng);
    snprintf(s_lr, sizeof s_lr, "%.9g", (double)o->lr);
    snprintf(s_min, sizeof s_min, "%.9g", (double)o->min_lr);
    snprintf(s_warm, sizeof s_warm, "%d", o->warmup);
    snprintf(s_b2, sizeof s_b2, "%.9g", (double)o->beta2);
    snprintf(s_wd, sizeof s_wd, "%.9g", (double)o->weight_decay);
    snprintf(s_batch, sizeof s_batch, "%d", o->batch);
    snprintf(s_clip, sizeof s_clip, "%.9g", (double)o->clip);
    snprintf(s_replicas, sizeof s_replicas, "%d", o->replicas);
    const char *meta[] = {"format", CHECKPOINT_FORMAT, "vocab_hex", hex, "step", s_step, "rng", s_rng,
                          "lr", s_lr, "min_lr", s_min, "warmup", s_warm, "beta2", s_b2,
                          "weight_decay", s_wd, "batch", s_batch, "clip", s_clip, "replicas", s_replicas};
    nn_model_save_opts so = {0};
    so.optim = opt;
    so.meta_kv = meta;
    so.meta_count = 12;
    nn_error err;
    if (nn_model_save(o->save, m, &so, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 0;
    }
    return 1;
}

/* Rebuild the model, alphabet and (to continue training) the optimizer
 * state, step, recipe and window generator from a checkpoint. */
static nn_layer *load_checkpoint(const char *path, options *o, corpus *c, nn_safetensors *st)
{
    nn_error err;
    if (nn_safetensors_read(path, st, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return NULL;
    }
    const char *fmt = nn_safetensors_meta(st, "format");
    if (!fmt || strcmp(fmt, CHECKPOINT_FORMAT) || !vocab_from_hex(&c->v, nn_safetensors_meta(st, "vocab_hex"))) {
        fprintf(stderr, "error: %s: not a checkpoint written by char_gpt --save\n", path);
        return NULL;
    }
    nn_layer *m;
    if (nn_model_from_safetensors(st, &m, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return NULL;
    }
    nn_gpt_config cfg = nn_gpt_get_config(m);
    if (cfg.vocab != c->v.size) {
        fprintf(stderr, "error: %s: the model has %d tokens, the alphabet %d\n", path, cfg.vocab, c->v.size);
        nn_layer_free(m);
        return NULL;
    }
    o->context = cfg.context;
    o->blocks = cfg.num_blocks;
    o->heads = cfg.heads;
    o->width = cfg.width;
    const char *lr = nn_safetensors_meta(st, "lr"), *min = nn_safetensors_meta(st, "min_lr");
    const char *warm = nn_safetensors_meta(st, "warmup"), *b2 = nn_safetensors_meta(st, "beta2");
    const char *wd = nn_safetensors_meta(st, "weight_decay"), *batch = nn_safetensors_meta(st, "batch");
    const char *clip = nn_safetensors_meta(st, "clip"), *replicas = nn_safetensors_meta(st, "replicas");
    /* the run's recipe continues unless overridden on the command line */
    if (lr && !o->set_lr) o->lr = strtof(lr, NULL);
    if (min && !o->set_min_lr) o->min_lr = strtof(min, NULL);
    if (warm && !o->set_warmup) o->warmup = atoi(warm);
    if (b2 && !o->set_beta2) o->beta2 = strtof(b2, NULL);
    if (wd && !o->set_wd) o->weight_decay = strtof(wd, NULL);
    if (clip && !o->set_clip) o->clip = strtof(clip, NULL);
    /* a checkpoint from before replicas was trained by one model */
    if (!o->set_replicas) o->replicas = 1;
    if ((batch && !o->set_batch && !cli_int("batch", batch, 1, 100000, &o->batch)) ||
        (replicas && !o->set_replicas && !cli_int("replicas", replicas, 1, MAX_REPLICAS, &o->replicas))) {
        nn_layer_free(m);
        return NULL;
    }
    nn_layer_set_training(m, 1);
    return m;
}

/* Data-parallel training: replica i takes windows [B*i/R, B*(i+1)/R) of
 * every batch, its loss scaled by its share so that the replicas'
 * gradients add up to the whole batch's mean. */
typedef struct train_step {
    nn_layer **models;
    nn_tensor **x;    /* each replica's windows */
    const int *targets; /* the whole batch's */
    int B, T, R;
    float *loss; /* each replica's scaled loss */
} train_step;

static nn_status replica_step(void *ctx, int i, nn_graph *g)
{
    train_step *s = ctx;
    int b0 = s->B * i / s->R, b1 = s->B * (i + 1) / s->R;
    nn_tensor *loss = nn_scale(g, loss_of(s->models[i], g, s->x[i], s->targets + (size_t)b0 * s->T),
                               (float)(b1 - b0) / (float)s->B);
    if (!loss) return NN_ERR_MEMORY;
    s->loss[i] = loss->data[0];
    return nn_backward(g, loss, NULL);
}

/* Replicas 1..R-1 of m (same configuration; their initial values are
 * overwritten by m's) with their parameter lists, and each replica's input
 * tensor for its slice of B windows. 0 on failure (message printed). */
static int make_replicas(nn_layer *m, nn_gpt_config cfg, int R, int B, nn_layer **models, nn_params *lists,
                         nn_tensor **x)
{
    nn_rng scratch;
    nn_rng_seed(&scratch, 0);
    for (int i = 0; i < R; i++) {
        if (i > 0) {
            if (!(models[i] = nn_gpt_new(cfg, &scratch))) {
                fprintf(stderr, "error: %s\n", nn_layer_last_error());
                return 0;
            }
            nn_layer_set_training(models[i], 1);
            nn_params_init(&lists[i]);
            if (nn_layer_params(models[i], &lists[i])) {
                fprintf(stderr, "error: out of memory for replica %d\n", i);
                return 0;
            }
        }
        if (!(x[i] = nn_tensor_new(2, (int[]){B * (i + 1) / R - B * i / R, cfg.context}))) {
            fprintf(stderr, "error: out of memory for replica %d\n", i);
            return 0;
        }
    }
    models[0] = m;
    return 1;
}

int main(int argc, char **argv)
{
    options o = {.recipe = "libnn", .prompt = "\n", .batch = 12, .context = 64, .blocks = 4, .heads = 4,
                 .width = 128, .steps = 2000, .eval_every = 100, .beta1 = 0.9f, .clip = 1.0f,
                 .temperature = 0.8f, .seed = 1, .replicas = 2};
    if (!parse_args(argc, argv, &o)) return 2;
    if (o.threads) nn_set_threads(o.threads);
    corpus c = {0};
    nn_safetensors st = {0};
    nn_layer *m = NULL;
    if (o.resume && !(m = load_checkpoint(o.resume, &o, &c, &st))) {
        nn_safetensors_free(&st);
        return 1;
    }
    if (o.sample) {
        int ok = sample_text(m, &c, o.prompt, o.sample, o.temperature, o.seed);
        nn_safetensors_free(&st);
        nn_layer_free(m);
        return ok ? 0 : 1;
    }
    const char *path = o.data ? o.data : getenv("NN_DATA_DIR");
    if (!path || !*path) path = "../shared/data/tinyshakespeare/input.txt";
    if (!load_corpus(path, &c, m != NULL)) return 1;
    nn_rng rng;
    nn_rng_seed(&rng, o.seed);
    if (!m) {
        nn_gpt_config cfg = {c.v.size, o.context, o.blocks, o.heads, o.width};
        if (!(m = nn_gpt_new(cfg, &rng))) {
            fprintf(stderr, "error: %s\n", nn_layer_last_error());
            return 1;
        }
    }
    nn_params params;
    nn_params_init(&params);
    nn_adam_opts ao = {o.lr, o.beta1, o.beta2, 1e-8f, o.weight_decay};
    nn_optim *opt = NULL;
    if (nn_layer_params(m, &params) || !(opt = nn_optim_adamw_new(&params, ao))) {
        fprintf(stderr, "error: cannot build the optimizer: %s\n", nn_optim_last_error());
        return 1;
    }
    nn_optim_decay_matrices_only(opt);
    long step0 = 0;
    if (o.resume) {
        nn_params state;
        nn_params_init(&state);
        nn_error err;
        const char *s = nn_safetensors_meta(&st, "step"), *r = nn_safetensors_meta(&st, "rng");
        if (nn_optim_state(opt, &params, &state) || nn_safetensors_load_params(&st, &state, &err) || !s || !r ||
            !nn_rng_from_string(&rng, r)) {
            fprintf(stderr, "error: %s: no optimizer state, step or generator state to resume from\n", o.resume);
            return 1;
        }
        step0 = atol(s);
        nn_optim_set_steps(opt, step0);
        nn_params_free(&state);
        nn_safetensors_free(&st);
    }

    int T = o.context, B = o.batch;
    size_t train_len = c.len * 9 / 10, val_len = c.len - train_len;
    if (train_len < (size_t)T + 2 || val_len < (size_t)T + 1) {
        fprintf(stderr, "error: text too short for --context %d\n", T);
        return 1;
    }
    int R = o.replicas;
    if (R > B) {
        fprintf(stderr, "error: --replicas %d is more than --batch %d (each replica needs a window)\n", R, B);
        return 1;
    }
    nn_tensor *rx[MAX_REPLICAS] = {0}; /* each replica's windows */
    int *targets = malloc(sizeof(int) * (size_t)T * B);
    size_t *starts = malloc(sizeof(size_t) * (size_t)B);
    nn_graph *g = nn_graph_new();
    nn_layer *models[MAX_REPLICAS] = {0};
    nn_params lists[MAX_REPLICAS];
    float replica_loss[MAX_REPLICAS];
    nn_gpt_config cfg = {c.v.size, T, o.blocks, o.heads, o.width};
    lists[0] = params;
    if (!targets || !starts || !g) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    if (!make_replicas(m, cfg, R, B, models, lists, rx)) return 1;
    nn_params *list_ptrs[MAX_REPLICAS];
    for (int i = 0; i < R; i++) list_ptrs[i] = &lists[i];
    nn_error err;
    nn_replicas *replicas = nn_replicas_new(R, list_ptrs, &err);
    if (!replicas) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    train_step step = {models, rx, targets, B, T, R, replica_loss};
    printf("char_gpt: %zu characters (%d distinct), %zu train / %zu validation; %d blocks x %d heads, "
           "width %d, context %d, %zu parameters\n",
           c.len, c.v.size, train_len, val_len, o.blocks, o.heads, o.width, T, nn_params_numel(&params));
    printf("recipe %s: batch %d, AdamW lr %g (warmup %d, cosine to %g), betas %g/%g, weight decay %g on "
           "matrices, clip %g, %d steps, %d replicas, %d threads\n",
           o.recipe, B, (double)o.lr, o.warmup, (double)o.min_lr, (double)o.beta1, (double)o.beta2,
           (double)o.weight_decay, (double)o.clip, o.steps, R, nn_get_threads());
    fflush(stdout);
    if (step0 >= o.steps) printf("the checkpoint is at step %ld, --steps is %d: nothing to train\n", step0, o.steps);

    double window_loss = 0, t_train = 0;
    int window = 0, status = 0;
    progress bar;
    progress_start(&bar, "train", o.eval_every, "chars", o.quiet);
    for (long s = step0; s < o.steps; s++) {
        for (int b = 0; b < B; b++) /* as torch.randint(len - T - 1): [0, train_len - T - 1) */
            starts[b] = (size_t)nn_rng_below(&rng, (uint64_t)(train_len - (size_t)T - 1));
        for (int i = 0; i < R; i++) { /* each replica's windows; the targets stay whole */
            int b0 = B * i / R;
            fill_windows(&c, starts + b0, B * (i + 1) / R - b0, T, rx[i], targets + (size_t)b0 * T);
        }
        double t0 = cli_now();
        nn_optim_set_lr(opt, nn_lr_cosine(o.lr, o.min_lr, s, o.steps, o.warmup));
        nn_optim_zero_grad(opt);
        nn_status run = nn_replicas_run(replicas, replica_step, &step);
        double loss = 0;
        for (int i = 0; i < R; i++) loss += replica_loss[i];
        if (run != NN_OK || !isfinite(loss)) {
            progress_end(&bar);
            if (run != NN_OK)
                fprintf(stderr, "error: %s at step %ld\n", nn_status_name(run), s + 1);
            else
                fprintf(stderr, "error: loss is %g at step %ld; stopping (lower --lr)\n", loss, s + 1);
            status = 3;
            break;
        }
        nn_replicas_reduce(replicas, 1.0f);
        if (o.clip > 0) nn_clip_grad_norm(&params, o.clip);
        nn_optim_step(opt);
        nn_replicas_sync(replicas);
        t_train += cli_now() - t0;
        window_loss += loss;
        window++;
        progress_update(&bar, window, window_loss / window, -1, (long)window * T * B);
        if (window == o.eval_every || s + 1 == o.steps) {
            progress_end(&bar);
            double val = evaluate(m, g, &c, train_len, val_len, T);
            printf("step %ld/%d | train_loss %.4f | val_loss %.4f | %.2f ms/step\n", s + 1, o.steps,
                   window_loss / window, val, 1e3 * t_train / window);
            fflush(stdout);
            if (o.save && !save_checkpoint(&o, &c, m, opt, s + 1, &rng)) status = 1;
            window_loss = 0;
            window = 0;
            t_train = 0;
            progress_start(&bar, "train", o.eval_every, "chars", o.quiet);
        }
    }
    progress_end(&bar);
    if (!status) {
        printf("\nsample (temperature %g):\n", (double)o.temperature);
        if (!sample_text(m, &c, o.prompt, 500, o.temperature, o.seed)) status = 1;
    }
    free(targets);
    free(starts);
    free(c.ids);
    nn_graph_free(g);
    nn_replicas_free(replicas);
    for (int i = 1; i < R; i++) {
        nn_params_free(&lists[i]);
        nn_layer_free(models[i]);
    }
    for (int i = 0; i < R; i++) nn_tensor_free(rx[i]);
    nn_optim_free(opt);
    nn_params_free(&params);
    nn_layer_free(m);
    return status;
}
