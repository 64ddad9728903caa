/* char_rnn: a character-level language model (Karpathy's char-rnn) on a
 * text file: one-hot characters -> LSTM layers -> Dense -> softmax
 * cross-entropy at every step, trained with truncated backprop through time
 * (state carried across consecutive batches). The first 90% of the text
 * trains, the last 10% validates. Every 100 steps one line on stdout:
 *   step S/N | train_loss L | val_loss V | M ms/step | C chars/s
 * (losses in nats per character). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/text.h"
#include "nn.h"

#define CHECKPOINT_FORMAT "libnn-char-rnn-1"

typedef struct options {
    const char *data, *save, *resume, *prime, *cell, *schedule;
    const char *save_int8;
    int hidden, layers, seq, batch, steps, threads, sample, quiet, eval_every, steps_given, int8;
    float lr, temperature, clip, input_gain;
    uint64_t seed;
} options;

typedef struct model {
    nn_layer *rnn, *head;
    nn_params params;
    int vocab, hidden, layers;
} model;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: char_rnn [options]\n"
            "Train a character-level LSTM language model on a text file, or sample from one.\n\n"
            "  --data PATH        text file, or a folder holding input.txt (default: $NN_DATA_DIR,\n"
            "                     else ../shared/data/tinyshakespeare/input.txt)\n"
            "  --hidden N         hidden units per layer (default 128)\n"
            "  --layers N         stacked LSTM layers (default 2)\n"
            "  --cell lstm|rnn    recurrent cell (default lstm)\n"
            "  --seq N            characters per sequence, the BPTT length (default 50)\n"
            "  --batch N          sequences per batch (default 50)\n"
            "  --lr X             Adam learning rate (default 0.002)\n"
            "  --schedule S       decay: constant, then cosine to 0 over the last 25%% of the\n"
            "                     steps (default); cosine: over the whole run; or constant\n"
            "  --clip X           clip the gradient's global norm at X (default 5)\n"
            "  --input-gain X     the first layer's input weights start at U(-X/sqrt(H), X/sqrt(H))\n"
            "                     (default 4; 1 is PyTorch's init, see the source for why)\n"
            "  --steps N          training steps in all (default 2000); a resumed run continues to N\n"
            "  --eval-every N     report train/validation loss every N steps (default 100)\n"
            "  --seed N           seed (default 1)\n"
            "  --threads N        threads for the kernels (default: all cores)\n"
            "  --save FILE        checkpoint (safetensors) at every report\n"
            "  --resume FILE      start from a checkpoint\n"
            "  --sample N         generate N characters from --resume FILE and exit\n"
            "  --temperature X    sampling temperature (default 0.8)\n"
            "  --prime TEXT       text to feed before sampling (default a newline)\n"
            "  --int8             after training (or on --resume FILE with nothing left to train),\n"
            "                     quantize the LSTM and the head to int8 (calibrated on the first\n"
            "                     4000 training characters) and report the validation loss of both\n"
            "  --save-int8 FILE   with --int8: also save the int8 LSTM layers (nn_qrecurrent_save)\n"
            "  --quiet            no progress bar\n"
            "  --help             this text\n\n"
            "Output every N steps (stdout):\n"
            "  step S/N | train_loss L | val_loss V | M ms/step | C chars/s\n"
            "Training ends with a 600-character sample.\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--quiet") || !strcmp(a, "--int8")) {
            *(a[2] == 'q' ? &o->quiet : &o->int8) = 1;
            continue;
        }
        static const char *const flags[] = {"--data", "--hidden", "--layers", "--cell", "--seq",
                                            "--batch", "--lr", "--clip", "--steps", "--eval-every",
                                            "--seed", "--threads", "--save", "--resume", "--sample",
                                            "--temperature", "--prime", "--schedule", "--input-gain",
                                            "--save-int8", NULL};
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
        else if (!strcmp(a, "--save-int8")) o->save_int8 = v;
        else if (!strcmp(a, "--resume")) o->resume = v;
        else if (!strcmp(a, "--prime")) o->prime = v;
        else if (!strcmp(a, "--cell")) o->cell = v;
        else if (!strcmp(a, "--schedule")) o->schedule = v;
        else if (!strcmp(a, "--hidden")) ok = cli_int(a, v, 1, 8192, &o->hidden);
        else if (!strcmp(a, "--layers")) ok = cli_int(a, v, 1, 16, &o->layers);
        else if (!strcmp(a, "--seq")) ok = cli_int(a, v, 1, 10000, &o->seq);
        else if (!strcmp(a, "--batch")) ok = cli_int(a, v, 1, 10000, &o->batch);
        else if (!strcmp(a, "--steps")) ok = cli_int(a, v, 0, 100000000, &o->steps), o->steps_given = 1;
        else if (!strcmp(a, "--eval-every")) ok = cli_int(a, v, 1, 100000000, &o->eval_every);
        else if (!strcmp(a, "--threads")) ok = cli_int(a, v, 1, 1024, &o->threads);
        else if (!strcmp(a, "--sample")) ok = cli_int(a, v, 1, 100000000, &o->sample);
        else if (!strcmp(a, "--seed")) ok = cli_u64(a, v, &o->seed);
        else if (!strcmp(a, "--lr")) ok = cli_float(a, v, 0.0, 1e9, &o->lr);
        else if (!strcmp(a, "--clip")) ok = cli_float(a, v, 0.0, 1e9, &o->clip);
        else if (!strcmp(a, "--input-gain")) ok = cli_float(a, v, 0.0, 1000.0, &o->input_gain);
        else ok = cli_float(a, v, 1e-3, 100.0, &o->temperature);
        if (!ok) return 0;
    }
    if (strcmp(o->cell, "lstm") && strcmp(o->cell, "rnn")) {
        fprintf(stderr, "error: --cell must be lstm or rnn, got '%s'\n", o->cell);
        return 0;
    }
    if (!cli_schedule_ok(o->schedule)) return 0;
    if (o->int8 && o->sample) {
        fprintf(stderr, "error: --int8 reports validation losses; it does not apply to --sample\n");
        return 0;
    }
    if (o->save_int8 && !o->int8) {
        fprintf(stderr, "error: --save-int8 FILE needs --int8\n");
        return 0;
    }
    if (o->sample && !o->resume) {
        fprintf(stderr, "error: --sample N needs --resume FILE (the model to sample from)\n");
        return 0;
    }
    return 1;
}

/* The text as bytes and its sorted alphabet. */
typedef struct corpus {
    uint8_t *text;
    size_t len;
    char_vocab v;
} corpus;

static int load_corpus(const char *path, corpus *c)
{
    if (!text_read(path, &c->text, &c->len)) return 0;
    vocab_of_text(&c->v, c->text, c->len);
    return 1;
}

/* The input is one-hot, so at each step the first layer reads a single column
 * of weight_ih_l0: that matrix is an embedding table. PyTorch's bound
 * 1/sqrt(H) suits dense inputs and starts every character's signal at about
 * +-0.09 beside the recurrent inputs; scaling it by --input-gain (default 4)
 * lets the characters be told apart from the first step. Measured on
 * tinyshakespeare: validation loss at step 2000 went from 1.77 to 1.72. */
static void scale_input_weights(model *m, float gain)
{
    for (int i = 0; i < m->params.count; i++)
        if (!strcmp(m->params.names[i], "rnn.weight_ih_l0")) {
            nn_tensor *w = m->params.tensors[i];
            for (size_t j = 0; j < w->size; j++) w->data[j] *= gain;
        }
}

static int model_init(model *m, int vocab, int hidden, int layers, const char *cell, uint64_t seed)
{
    nn_rng rng;
    nn_rng_seed(&rng, seed);
    m->vocab = vocab;
    m->hidden = hidden;
    m->layers = layers;
    m->rnn = !strcmp(cell, "rnn") ? nn_rnn_new(vocab, hidden, layers, &rng)
                                  : nn_lstm_new(vocab, hidden, layers, &rng);
    m->head = nn_dense_new(hidden, vocab, NN_INIT_XAVIER, &rng);
    nn_params_init(&m->params);
    if (!m->rnn || !m->head) return 0;
    nn_params a, b;
    nn_params_init(&a);
    nn_params_init(&b);
    int ok = !nn_layer_params(m->rnn, &a) && !nn_layer_params(m->head, &b);
    char name[128];
    for (int i = 0; ok && i < a.count; i++) {
        snprintf(name, sizeof name, "rnn.%s", a.names[i]);
        ok = !nn_params_add(&m->params, name, a.tensors[i]);
    }
    for (int i = 0; ok && i < b.count; i++) {
        snprintf(name, sizeof name, "head.%s", b.names[i]);
        ok = !nn_params_add(&m->params, name, b.tensors[i]);
    }
    nn_params_free(&a);
    nn_params_free(&b);
    return ok;
}

static void model_free(model *m)
{
    nn_params_free(&m->params);
    nn_layer_free(m->rnn);
    nn_layer_free(m->head);
}

/* logits (T*B, V) for input x (T, B, V), carrying state h/c. */
static nn_tensor *model_forward(model *m, nn_graph *g, nn_tensor *x, nn_tensor *h, nn_tensor *c)
{
    nn_tensor *hs = nn_recurrent_forward(m->rnn, g, x, h, c, h, c);
    if (!hs) return NULL;
    nn_tensor *flat = nn_reshape(g, hs, 2, (int[]){hs->shape[0] * hs->shape[1], hs->shape[2]});
    return nn_layer_forward(m->head, g, flat);
}

/* Fill one-hot x (T, B, V) and targets from B streams of text starting at
 * base + b*stream_len + pos. */
static void fill_batch(const corpus *c, size_t base, size_t stream_len, size_t pos, int T, int B,
                       nn_tensor *x, int *targets)
{
    int V = c->v.size;
    memset(x->data, 0, x->size * sizeof(float));
    for (int b = 0; b < B; b++) {
        const uint8_t *s = c->text + base + (size_t)b * stream_len + pos;
        for (int t = 0; t < T; t++) {
            x->data[((size_t)t * B + b) * V + c->v.index_of[s[t]]] = 1.0f;
            targets[t * B + b] = c->v.index_of[s[t + 1]];
        }
    }
}

/* Mean loss per character over the text [base, base+len) in B streams, with
 * state carried, without gradients. */
static double evaluate(model *m, nn_graph *g, const corpus *c, size_t base, size_t len, int T,
                       int B, nn_tensor *x, int *targets, nn_tensor *h, nn_tensor *cs)
{
    size_t stream = len / (size_t)B;
    if (stream < (size_t)T + 1) return NAN;
    nn_tensor_zero(h);
    nn_tensor_zero(cs);
    nn_graph_set_grad_enabled(g, 0);
    double total = 0;
    long batches = 0;
    for (size_t pos = 0; pos + (size_t)T + 1 <= stream; pos += (size_t)T) {
        nn_graph_reset(g);
        fill_batch(c, base, stream, pos, T, B, x, targets);
        nn_tensor *loss = nn_softmax_cross_entropy(g, model_forward(m, g, x, h, cs), targets);
        total += loss->data[0];
        batches++;
    }
    nn_graph_set_grad_enabled(g, 1);
    return total / (double)batches;
}

/* Calibration characters for --int8: CALIB_STEPS steps of CALIB_STREAMS
 * streams from the training text. */
enum { CALIB_STEPS = 200, CALIB_STREAMS = 20 };

/* --int8: quantize the recurrent layers and the head, calibrated on the
 * start of the training text, and return the validation loss as
 * evaluate() does (same streams and windows), or NAN with a message. */
static double evaluate_int8(model *m, nn_graph *g, const corpus *c, size_t train_len, size_t base, size_t len,
                            int T, int B, nn_tensor *x, int *targets, const char *save_path)
{
    int V = c->v.size, H = m->hidden, Tc = CALIB_STEPS, Bc = CALIB_STREAMS;
    size_t stream = len / (size_t)B, cstream = train_len / (size_t)Bc;
    double total = NAN;
    nn_error err = {0};
    nn_qrecurrent *q = NULL;
    nn_qmodel *head = NULL;
    float *calib = calloc((size_t)Tc * Bc * V, sizeof(float));
    float *hs = malloc(sizeof(float) * (size_t)(T * B > Tc * Bc ? T * B : Tc * Bc) * H);
    float *h = calloc((size_t)m->layers * B * H, sizeof(float)), *cs = calloc((size_t)m->layers * B * H, sizeof(float));
    nn_tensor *logits = nn_tensor_new2(T * B, V);
    if (!calib || !hs || !h || !cs || !logits) {
        fprintf(stderr, "error: --int8: out of memory\n");
        goto out;
    }
    if (cstream < (size_t)Tc || stream < (size_t)T + 1) {
        fprintf(stderr, "error: --int8: text too short to calibrate and evaluate\n");
        goto out;
    }
    for (int b = 0; b < Bc; b++)
        for (int t = 0; t < Tc; t++)
            calib[((size_t)t * Bc + b) * V + c->v.index_of[c->text[(size_t)b * cstream + t]]] = 1.0f;
    q = nn_quantize_recurrent(m->rnn, Tc, Bc, calib, &err);
    /* the head is calibrated on what it will see: the int8 layers' outputs */
    if (q && !nn_qrecurrent_run(q, Tc, Bc, calib, NULL, NULL, hs, &err))
        head = nn_quantize(m->head, 1, &H, hs, Tc * Bc, &err);
    if (!head || (save_path && nn_qrecurrent_save(q, save_path, &err))) {
        fprintf(stderr, "error: --int8: %s\n", err.msg);
        goto out;
    }
    double sum = 0;
    long batches = 0;
    nn_graph_set_grad_enabled(g, 0);
    for (size_t pos = 0; pos + (size_t)T + 1 <= stream; pos += (size_t)T, batches++) {
        fill_batch(c, base, stream, pos, T, B, x, targets);
        if (nn_qrecurrent_run(q, T, B, x->data, h, cs, hs, &err)) {
            fprintf(stderr, "error: --int8: %s\n", err.msg);
            goto out;
        }
        for (int r = 0; r < T * B; r++)
            memcpy(logits->data + (size_t)r * V, nn_qmodel_run(head, hs + (size_t)r * H, NULL, &err),
                   sizeof(float) * (size_t)V);
        nn_graph_reset(g);
        sum += nn_softmax_cross_entropy(g, logits, targets)->data[0];
    }
    total = sum / (double)batches;
out:
    nn_graph_set_grad_enabled(g, 1);
    nn_tensor_free(logits);
    nn_qrecurrent_free(q);
    nn_qmodel_free(head);
    free(calib);
    free(hs);
    free(h);
    free(cs);
    return total;
}

static void sample_text(model *m, const corpus *c, const char *prime, int n, float temperature,
                        uint64_t seed)
{
    nn_graph *g = nn_graph_new();
    nn_graph_set_grad_enabled(g, 0);
    nn_tensor *x = nn_tensor_new3(1, 1, c->v.size);
    nn_tensor *h = nn_tensor_new3(m->layers, 1, m->hidden), *cs = nn_tensor_new3(m->layers, 1, m->hidden);
    float *p = malloc(sizeof(float) * (size_t)c->v.size);
    nn_rng rng;
    nn_rng_seed(&rng, seed);
    int idx = c->v.index_of['\n'] >= 0 ? c->v.index_of['\n'] : 0;
    size_t plen = strlen(prime);
    nn_tensor *logits = NULL;
    for (size_t i = 0; i <= plen && !logits; i++) { /* feed the prime, keep the last logits */
        if (i < plen) {
            int k = c->v.index_of[(uint8_t)prime[i]];
            if (k < 0) continue; /* characters outside the alphabet are skipped */
            idx = k;
            fputc(prime[i], stdout);
        }
        nn_graph_reset(g);
        nn_tensor_zero(x);
        x->data[idx] = 1.0f;
        nn_tensor *l = model_forward(m, g, x, h, cs);
        if (i + 1 >= plen) logits = l;
    }
    for (int k = 0; k < n; k++) {
        idx = sample_index(logits->data, c->v.size, temperature, &rng, p);
        fputc(c->v.char_of[idx], stdout);
        nn_graph_reset(g);
        nn_tensor_zero(x);
        x->data[idx] = 1.0f;
        logits = model_forward(m, g, x, h, cs);
    }
    fputc('\n', stdout);
    free(p);
    nn_tensor_free(x);
    nn_tensor_free(h);
    nn_tensor_free(cs);
    nn_graph_free(g);
}

/* The training position: the streams' offset and the recurrent state
 * carried between batches. With the weights, the optimizer's state and the
 * step (the schedule's position) it is all a run's future depends on (no
 * dropout, no shuffling), so --resume continues bit for bit. */
static size_t stream_pos;

static int save_checkpoint(const options *o, const corpus *c, const nn_params *all, long step)
{
    char hex[513], s_step[32], s_hidden[32], s_layers[32], s_pos[32];
    snprintf(s_pos, sizeof s_pos, "%zu", stream_pos);
    vocab_to_hex(&c->v, hex);
    snprintf(s_step, sizeof s_step, "%ld", step);
    snprintf(s_hidden, sizeof s_hidden, "%d", o->hidden);
    snprintf(s_layers, sizeof s_layers, "%d", o->layers);
    const char *meta[] = {"format", CHECKPOINT_FORMAT, "vocab_hex", hex, "step", s_step,
                          "hidden", s_hidden, "layers", s_layers, "cell", o->cell, "stream_pos", s_pos};
    nn_error err;
    if (nn_safetensors_write(o->save, all, meta, 7, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 0;
    }
    return 1;
}

/* Read the checkpoint's shape (vocabulary, sizes) into o and c before the
 * model exists; the tensors are loaded afterwards. */
static int read_checkpoint_meta(const char *path, options *o, corpus *c, nn_safetensors *st)
{
    nn_error err;
    if (nn_safetensors_read(path, st, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 0;
    }
    const char *fmt = nn_safetensors_meta(st, "format");
    const char *hidden = nn_safetensors_meta(st, "hidden"), *layers = nn_safetensors_meta(st, "layers");
    const char *cell = nn_safetensors_meta(st, "cell");
    if (!fmt || strcmp(fmt, CHECKPOINT_FORMAT) || !vocab_from_hex(&c->v, nn_safetensors_meta(st, "vocab_hex")) ||
        !hidden || !layers || !cell || !cli_int("hidden", hidden, 1, 8192, &o->hidden) ||
        !cli_int("layers", layers, 1, 16, &o->layers)) {
        fprintf(stderr, "error: %s: not a checkpoint written by char_rnn --save\n", path);
        nn_safetensors_free(st);
        return 0;
    }
    o->cell = strcmp(cell, "rnn") ? "lstm" : "rnn";
    return 1;
}

int main(int argc, char **argv)
{
    options o = {.prime = "\n", .cell = "lstm", .schedule = "decay", .hidden = 128, .layers = 2, .seq = 50,
                 .batch = 50, .steps = 2000, .eval_every = 100, .lr = 2e-3f, .temperature = 0.8f,
                 .clip = 5.0f, .input_gain = 4.0f, .seed = 1};
    if (!parse_args(argc, argv, &o)) return 2;
    if (o.threads) nn_set_threads(o.threads);
    corpus c = {0};
    nn_safetensors st = {0};
    int have_ck = 0;
    if (o.resume) {
        if (!read_checkpoint_meta(o.resume, &o, &c, &st)) return 1;
        have_ck = 1;
    }
    if (!o.sample) {
        const char *path = o.data ? o.data : getenv("NN_DATA_DIR");
        if (!path || !*path) path = "../shared/data/tinyshakespeare/input.txt";
        corpus text;
        if (!load_corpus(path, &text)) return 1;
        if (have_ck) { /* keep the checkpoint's alphabet; the text must fit it */
            for (size_t i = 0; i < text.len; i++)
                if (c.v.index_of[text.text[i]] < 0) {
                    fprintf(stderr, "error: %s has character 0x%02x outside the checkpoint's alphabet\n",
                            path, text.text[i]);
                    return 1;
                }
            c.text = text.text;
            c.len = text.len;
        } else {
            c = text;
        }
    }

    model m;
    if (!model_init(&m, c.v.size, o.hidden, o.layers, o.cell, o.seed)) {
        fprintf(stderr, "error: cannot build the model (out of memory?)\n");
        return 1;
    }
    if (!have_ck) scale_input_weights(&m, o.input_gain);
    nn_optim *opt = nn_optim_adam_new(&m.params, nn_adam_defaults(o.lr));
    nn_params all;
    nn_params_init(&all);
    for (int i = 0; i < m.params.count; i++) nn_params_add(&all, m.params.names[i], m.params.tensors[i]);
    if (!opt || nn_optim_state(opt, &m.params, &all)) {
        fprintf(stderr, "error: cannot build the optimizer\n");
        return 1;
    }
    /* the state carried between batches, saved with the weights */
    nn_tensor *h = nn_tensor_new3(o.layers, o.batch, o.hidden), *cs = nn_tensor_new3(o.layers, o.batch, o.hidden);
    nn_params state;
    nn_params_init(&state);
    if (!h || !cs || nn_params_add(&state, "state.h", h) || nn_params_add(&state, "state.c", cs)) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    long step0 = 0;
    int have_state = 0;
    if (have_ck) {
        nn_error err;
        /* sampling needs only the model; resuming training needs it all */
        if (nn_safetensors_load_params(&st, o.sample ? &m.params : &all, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        const char *s = nn_safetensors_meta(&st, "step"), *p = nn_safetensors_meta(&st, "stream_pos");
        step0 = s ? atol(s) : 0;
        nn_optim_set_steps(opt, step0);
        if (!o.sample && p && nn_safetensors_find(&st, "state.h")) {
            if (nn_safetensors_load_params(&st, &state, &err)) {
                fprintf(stderr, "error: %s (was it written with another --batch?)\n", err.msg);
                return 1;
            }
            stream_pos = (size_t)strtoull(p, NULL, 10);
            have_state = 1;
        } else if (!o.sample) {
            fprintf(stderr, "note: %s holds no stream position or recurrent state (an older checkpoint): "
                            "the rest of the run differs from an uninterrupted one\n", o.resume);
        }
        nn_safetensors_free(&st);
    }
    for (int i = 0; i < state.count; i++) nn_params_add(&all, state.names[i], state.tensors[i]);
    if (o.sample) {
        sample_text(&m, &c, o.prime, o.sample, o.temperature, o.seed);
        nn_optim_free(opt);
        nn_params_free(&all);
        nn_params_free(&state);
        nn_tensor_free(h);
        nn_tensor_free(cs);
        model_free(&m);
        return 0;
    }

    int T = o.seq, B = o.batch, V = c.v.size;
    size_t train_len = c.len * 9 / 10, val_len = c.len - train_len;
    size_t stream = train_len / (size_t)B;
    if (stream < (size_t)T + 2 || val_len / (size_t)B < (size_t)T + 1) {
        fprintf(stderr, "error: text too short for --batch %d x --seq %d\n", B, T);
        return 1;
    }
    nn_tensor *x = nn_tensor_new3(T, B, V);
    nn_tensor *eh = nn_tensor_new3(o.layers, B, o.hidden), *ec = nn_tensor_new3(o.layers, B, o.hidden);
    int *targets = malloc(sizeof(int) * (size_t)T * B);
    nn_graph *g = nn_graph_new();
    if (!x || !h || !cs || !eh || !ec || !targets || !g) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    printf("char_rnn: %zu characters (%d distinct), %zu train / %zu validation; %s %dx%d, "
           "%zu parameters\n",
           c.len, V, train_len, val_len, o.cell, o.layers, o.hidden, nn_params_numel(&m.params));
    printf("seq %d, batch %d, Adam lr %g (%s schedule), clip %g, %d steps, %d threads\n", T, B,
           (double)o.lr, o.schedule, (double)o.clip, o.steps, nn_get_threads());
    fflush(stdout);

    if (have_state && stream_pos > stream) {
        fprintf(stderr, "error: %s: stream position %zu beyond this text's streams (%zu)\n", o.resume,
                stream_pos, stream);
        return 1;
    }
    if (step0 >= o.steps) printf("the checkpoint is at step %ld, --steps is %d: nothing to train\n", step0, o.steps);
    size_t pos = have_state ? stream_pos : ((size_t)step0 * T) % (stream - T - 1);
    double window_loss = 0, t_window = cli_now();
    int window = 0, status = 0;
    progress bar;
    progress_start(&bar, "train", o.eval_every, "chars", o.quiet);
    for (long s = step0; s < o.steps; s++) {
        if (pos + (size_t)T + 1 > stream) { /* wrapped: start the streams again */
            pos = 0;
            nn_tensor_zero(h);
            nn_tensor_zero(cs);
        }
        fill_batch(&c, 0, stream, pos, T, B, x, targets);
        pos += (size_t)T;
        long total = o.steps;
        nn_optim_set_lr(opt, cli_schedule_lr(o.schedule, o.lr, s, total));
        nn_graph_reset(g);
        nn_optim_zero_grad(opt);
        nn_tensor *loss = nn_softmax_cross_entropy(g, model_forward(&m, g, x, h, cs), targets);
        if (!isfinite(loss->data[0])) {
            progress_end(&bar);
            fprintf(stderr, "error: loss is %g at step %ld; stopping (lower --lr)\n",
                    (double)loss->data[0], s + 1);
            status = 3;
            break;
        }
        nn_backward(g, loss, NULL);
        if (o.clip > 0) nn_clip_grad_norm(&m.params, o.clip);
        nn_optim_step(opt);
        window_loss += loss->data[0];
        window++;
        progress_update(&bar, window, window_loss / window, -1, (long)window * T * B);
        if (window == o.eval_every || s + 1 == o.steps) {
            double secs = cli_now() - t_window;
            progress_end(&bar);
            double val = evaluate(&m, g, &c, train_len, val_len, T, B, x, targets, eh, ec);
            printf("step %ld/%d | train_loss %.4f | val_loss %.4f | %.1f ms/step | %.0f chars/s\n",
                   s + 1, o.steps, window_loss / window, val, 1e3 * secs / window,
                   (double)window * T * B / secs);
            fflush(stdout);
            stream_pos = pos;
            if (o.save && !save_checkpoint(&o, &c, &all, s + 1)) status = 1;
            window_loss = 0;
            window = 0;
            t_window = cli_now();
            progress_start(&bar, "train", o.eval_every, "chars", o.quiet);
        }
    }
    progress_end(&bar);
    if (!status && o.int8) {
        double val = evaluate(&m, g, &c, train_len, val_len, T, B, x, targets, eh, ec);
        double q8 = evaluate_int8(&m, g, &c, train_len, train_len, val_len, T, B, x, targets, o.save_int8);
        if (isnan(q8)) status = 1;
        else
            printf("int8: val_loss %.4f (float %.4f, difference %+.4f nats)%s%s\n", q8, val, q8 - val,
                   o.save_int8 ? "; int8 LSTM saved to " : "", o.save_int8 ? o.save_int8 : "");
        fflush(stdout);
    }
    if (!status) {
        printf("\nsample (temperature %g):\n", (double)o.temperature);
        sample_text(&m, &c, o.prime, 600, o.temperature, o.seed);
    }
    free(targets);
    free(c.text);
    nn_tensor_free(x);
    nn_tensor_free(h);
    nn_tensor_free(cs);
    nn_tensor_free(eh);
    nn_tensor_free(ec);
    nn_graph_free(g);
    nn_optim_free(opt);
    nn_params_free(&all);
    nn_params_free(&state);
    model_free(&m);
    return status;
}
