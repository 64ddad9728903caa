/* Whole-model files: the architecture as text in safetensors metadata, and
 * model summaries. Uses only the public API of the layers and io modules. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "nn/graph.h"
#include "nn/model.h"

/* Hyperparameters a kind records, in the order they are written. */
typedef enum field { F_IN, F_OUT, F_KERNEL, F_STRIDE, F_PADDING, F_LAYERS, F_BATCH_FIRST, F_STEP,
                     F_RATE, F_INVERSE, F_SEED, F_HEADS, F_CONTEXT, F_NONE } field;

typedef struct kind_spec {
    const char *kind;
    const char *keys[5];
    field fields[5];
} kind_spec;

static const kind_spec kinds[] = {
    {"dense", {"in", "out"}, {F_IN, F_OUT, F_NONE}},
    {"conv2d", {"in", "out", "kernel", "stride", "padding"}, {F_IN, F_OUT, F_KERNEL, F_STRIDE, F_PADDING}},
    {"maxpool2d", {"kernel", "stride", "padding"}, {F_KERNEL, F_STRIDE, F_PADDING, F_NONE}},
    {"avgpool2d", {"kernel", "stride", "padding"}, {F_KERNEL, F_STRIDE, F_PADDING, F_NONE}},
    {"relu", {NULL}, {F_NONE}},
    {"sigmoid", {NULL}, {F_NONE}},
    {"tanh", {NULL}, {F_NONE}},
    {"flatten", {NULL}, {F_NONE}},
    {"leaky_relu", {"slope"}, {F_RATE, F_NONE}},
    {"dropout", {"p", "seed"}, {F_RATE, F_SEED, F_NONE}},
    {"lstm", {"in", "hidden", "layers", "batch_first"}, {F_IN, F_OUT, F_LAYERS, F_BATCH_FIRST, F_NONE}},
    {"rnn", {"in", "hidden", "layers", "batch_first"}, {F_IN, F_OUT, F_LAYERS, F_BATCH_FIRST, F_NONE}},
    {"select_step", {"step", "batch_first"}, {F_STEP, F_BATCH_FIRST, F_NONE}},
    {"standardize", {"features", "inverse"}, {F_IN, F_INVERSE, F_NONE}},
    {"embedding", {"rows", "width"}, {F_IN, F_OUT, F_NONE}},
    {"layernorm", {"features"}, {F_IN, F_NONE}},
    {"causal_attention", {"width", "heads"}, {F_IN, F_HEADS, F_NONE}},
    {"transformer_block", {"width", "heads"}, {F_IN, F_HEADS, F_NONE}},
    /* a whole model: saved and loaded as the top-level layer, not in a sequential */
    {"gpt", {"vocab", "width", "blocks", "heads", "context"}, {F_IN, F_OUT, F_LAYERS, F_HEADS, F_CONTEXT}},
};
#define NUM_KINDS (sizeof kinds / sizeof kinds[0])

static const kind_spec *find_kind(const char *kind, size_t len)
{
    for (size_t i = 0; i < NUM_KINDS; i++)
        if (strlen(kinds[i].kind) == len && !strncmp(kinds[i].kind, kind, len)) return &kinds[i];
    return NULL;
}

static int *int_field(nn_layer_config *c, field f)
{
    switch (f) {
    case F_IN: return &c->in;
    case F_OUT: return &c->out;
    case F_KERNEL: return &c->kernel;
    case F_STRIDE: return &c->stride;
    case F_PADDING: return &c->padding;
    case F_LAYERS: return &c->num_layers;
    case F_BATCH_FIRST: return &c->batch_first;
    case F_STEP: return &c->step;
    case F_INVERSE: return &c->inverse;
    case F_HEADS: return &c->heads;
    case F_CONTEXT: return &c->context;
    default: return NULL;
    }
}

nn_status nn_layer_from_config(const nn_layer_config *c, nn_rng *rng, nn_layer **out, nn_error *err)
{
    *out = NULL;
    const char *k = c && c->kind ? c->kind : "";
    nn_layer *l = NULL;
    if (!strcmp(k, "dense")) l = nn_dense_new(c->in, c->out, NN_INIT_HE, rng);
    else if (!strcmp(k, "conv2d")) l = nn_conv2d_new(c->in, c->out, c->kernel, c->stride, c->padding, rng);
    else if (!strcmp(k, "maxpool2d")) l = nn_maxpool2d_new(c->kernel, c->stride, c->padding);
    else if (!strcmp(k, "avgpool2d")) l = nn_avgpool2d_new(c->kernel, c->stride, c->padding);
    else if (!strcmp(k, "relu")) l = nn_activation_new(NN_ACT_RELU);
    else if (!strcmp(k, "sigmoid")) l = nn_activation_new(NN_ACT_SIGMOID);
    else if (!strcmp(k, "tanh")) l = nn_activation_new(NN_ACT_TANH);
    else if (!strcmp(k, "flatten")) l = nn_flatten_new();
    else if (!strcmp(k, "leaky_relu")) l = nn_leaky_relu_new(c->rate);
    else if (!strcmp(k, "dropout")) l = nn_dropout_new(c->rate, c->seed);
    else if (!strcmp(k, "lstm") || !strcmp(k, "rnn")) {
        l = (k[0] == 'l' ? nn_lstm_new : nn_rnn_new)(c->in, c->out, c->num_layers, rng);
        if (l && c->batch_first) nn_recurrent_set_batch_first(l, 1);
    } else if (!strcmp(k, "select_step")) l = nn_select_step_new(c->step, c->batch_first);
    else if (!strcmp(k, "standardize")) l = nn_standardize_new(c->in, NULL, NULL, c->inverse);
    else if (!strcmp(k, "embedding")) l = nn_embedding_new(c->in, c->out, rng);
    else if (!strcmp(k, "layernorm")) l = nn_layernorm_new(c->in);
    else if (!strcmp(k, "causal_attention")) l = nn_causal_self_attention_new(c->in, c->heads, rng);
    else if (!strcmp(k, "transformer_block")) l = nn_transformer_block_new(c->in, c->heads, 1, rng);
    else if (!strcmp(k, "gpt")) {
        nn_gpt_config g = {c->in, c->context, c->num_layers, c->heads, c->out};
        l = nn_gpt_new(g, rng);
    }
    else return nn_error_set(err, NN_ERR_ARG, "unknown layer kind '%s'", k);
    if (!l) return nn_error_set(err, NN_ERR_ARG, "%s", nn_layer_last_error());
    *out = l;
    return NN_OK;
}

/* ---- writing ------------------------------------------------------------ */

typedef struct text {
    char *s;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void put(text *t, const char *fmt, ...)
{
    for (int tries = 0; tries < 2 && !t->failed; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if (t->s && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = 2 * (t->len + (size_t)n + 64);
        char *s = realloc(t->s, cap);
        if (!s) {
            t->failed = 1;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
}

nn_status nn_model_architecture(nn_layer *model, char **out, nn_error *err)
{
    *out = NULL;
    int whole = model && !strcmp(nn_layer_kind(model), "gpt");
    if (!model || (!whole && strcmp(nn_layer_kind(model), "sequential")))
        return nn_error_set(err, NN_ERR_ARG, "nn_model_architecture: the model must be an nn_sequential "
                            "or a gpt, got %s", model ? nn_layer_kind(model) : "NULL");
    text t = {0};
    put(&t, "%s", "");
    int count = whole ? 1 : nn_sequential_len(model);
    for (int i = 0; i < count; i++) {
        nn_layer_config c = nn_layer_get_config(whole ? model : nn_sequential_get(model, i));
        const kind_spec *spec = find_kind(c.kind, strlen(c.kind));
        if (spec && !whole && !strcmp(c.kind, "gpt")) {
            free(t.s);
            return nn_error_set(err, NN_ERR_ARG, "nn_model_architecture: layer %d is a gpt, a whole model: "
                                "save the gpt layer itself, not inside a sequential", i);
        }
        if (!spec) {
            free(t.s);
            return nn_error_set(err, NN_ERR_ARG, "nn_model_architecture: layer %d is a '%s', which model "
                                "files cannot describe (only built-in layers, not nested containers)",
                                i, c.kind);
        }
        put(&t, "%s%s", i ? "; " : "", c.kind);
        for (int j = 0; j < 5 && spec->keys[j]; j++) {
            if (spec->fields[j] == F_RATE) put(&t, " %s=%.9g", spec->keys[j], (double)c.rate);
            else if (spec->fields[j] == F_SEED) put(&t, " %s=%" PRIu64, spec->keys[j], c.seed);
            else put(&t, " %s=%d", spec->keys[j], *int_field(&c, spec->fields[j]));
        }
    }
    if (t.failed) {
        free(t.s);
        return nn_error_set(err, NN_ERR_MEMORY, "nn_model_architecture: out of memory");
    }
    *out = t.s;
    return NN_OK;
}

/* ---- reading ------------------------------------------------------------ */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Parse one "kind key=value ..." entry of s[0..len) into c. */
static nn_status parse_entry(const char *s, size_t len, const char *name, int index, nn_layer_config *c,
                             nn_error *err)
{
    size_t p = 0;
    while (p < len && is_space(s[p])) p++;
    size_t k0 = p;
    while (p < len && !is_space(s[p])) p++;
    if (p == k0) return nn_error_set(err, NN_ERR_FORMAT, "%s: layer %d: empty entry in %s", name, index,
                                     NN_MODEL_META_LAYERS);
    const kind_spec *spec = find_kind(s + k0, p - k0);
    if (!spec)
        return nn_error_set(err, NN_ERR_FORMAT, "%s: layer %d: unknown layer kind '%.*s'", name, index,
                            (int)(p - k0 > 40 ? 40 : p - k0), s + k0);
    memset(c, 0, sizeof *c);
    c->kind = spec->kind;
    int seen = 0;
    while (p < len) {
        while (p < len && is_space(s[p])) p++;
        if (p == len) break;
        size_t a = p;
        while (p < len && !is_space(s[p]) && s[p] != '=') p++;
        size_t key_len = p - a;
        if (p == len || s[p] != '=')
            return nn_error_set(err, NN_ERR_FORMAT, "%s: layer %d (%s): expected key=value at '%.*s'", name,
                                index, spec->kind, (int)(key_len > 40 ? 40 : key_len), s + a);
        p++;
        size_t v0 = p;
        while (p < len && !is_space(s[p])) p++;
        char value[64];
        if (p - v0 == 0 || p - v0 >= sizeof value)
            return nn_error_set(err, NN_ERR_FORMAT, "%s: layer %d (%s): bad value for '%.*s'", name, index,
                                spec->kind, (int)(key_len > 40 ? 40 : key_len), s + a);
        memcpy(value, s + v0, p - v0);
        value[p - v0] = '\0';
        int j = 0;
        while (j < 5 && spec->keys[j] && (strlen(spec->keys[j]) != key_len || strncmp(spec->keys[j], s + a, key_len)))
            j++;
        if (j == 5 || !spec->keys[j])
            return nn_error_set(err, NN_ERR_FORMAT, "%s: layer %d (%s): unknown hyperparameter '%.*s'", name,
                                index, spec->kind, (int)(key_len > 40 ? 40 : key_len), s + a);
        if (seen & (1 << j))
            return nn_error_set(err, NN_ERR_FORMAT, "%s: layer %d (%s): '%s' given twice", name, index,
                                spec->kind, spec->keys[j]);
        seen |= 1 << j;
        char *end;
        errno = 0;
        if (spec->fields[j] == F_RATE) {
            double v = strtod(value, &end);
            if (*end || errno || !(v >= -1e30 && v <= 1e30))
                return nn_error_set(err, NN_ERR_FORMAT, "%s: layer %d (%s): %s=%s is not a number", name,
                                    index, spec->kind, spec->keys[j], value);
            c->rate = (float)v;
        } else if (spec->fields[j] == F_SEED) {
            unsigned long long v = strtoull(value, &end, 10);
            if (*end || errno || value[0] == '-')
                return nn_error_set(err, NN_ERR_FORMAT, "%s: layer %d (%s): %s=%s is not a seed", name,
                                    index, spec->kind, spec->keys[j], value);
            c->seed = v;
        } else {
            long v = strtol(value, &end, 10);
            if (*end || errno || v < -1000000000L || v > 1000000000L)
                return nn_error_set(err, NN_ERR_FORMAT, "%s: layer %d (%s): %s=%s is not an integer", name,
                                    index, spec->kind, spec->keys[j], value);
            *int_field(c, spec->fields[j]) = (int)v;
        }
    }
    for (int j = 0; j < 5 && spec->keys[j]; j++)
        if (!(seen & (1 << j)))
            return nn_error_set(err, NN_ERR_FORMAT, "%s: layer %d (%s): missing hyperparameter '%s'", name,
                                index, spec->kind, spec->keys[j]);
    return NN_OK;
}

/* Parameters a layer of this configuration holds (an upper bound is
 * enough: it only guards against files describing more than they hold). */
static double config_params(const nn_layer_config *c)
{
    double in = c->in, out = c->out, k = c->kernel, layers = c->num_layers;
    if (!strcmp(c->kind, "dense")) return in * out + out;
    if (!strcmp(c->kind, "conv2d")) return in * out * k * k + out;
    if (!strcmp(c->kind, "standardize")) return 2 * in;
    if (!strcmp(c->kind, "embedding")) return in * out;
    if (!strcmp(c->kind, "layernorm")) return 2 * in;
    if (!strcmp(c->kind, "causal_attention")) return 4 * in * in;
    if (!strcmp(c->kind, "transformer_block")) return 12 * in * in + 4 * in;
    if (!strcmp(c->kind, "gpt"))
        return (in + c->context) * out + layers * (12 * out * out + 4 * out) + 2 * out;
    if (!strcmp(c->kind, "lstm") || !strcmp(c->kind, "rnn")) {
        double g = c->kind[0] == 'l' ? 4 : 1, h = out;
        return g * h * (in + h + 2) + (layers - 1) * g * h * (2 * h + 2);
    }
    return 0;
}

static nn_status build_model(const char *arch, const char *name, double max_params, nn_layer **out,
                             nn_error *err);

nn_status nn_model_from_architecture(const char *arch, const char *name, nn_layer **out, nn_error *err)
{
    return build_model(arch, name, 1e300, out, err);
}

static nn_status build_model(const char *arch, const char *name, double max_params, nn_layer **out,
                             nn_error *err)
{
    *out = NULL;
    double total = 0;
    if (!name) name = "model";
    if (!arch) return nn_error_set(err, NN_ERR_ARG, "%s: no architecture given", name);
    nn_layer *model = nn_sequential_new();
    if (!model) return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", name);
    nn_rng rng;
    nn_rng_seed(&rng, 0);
    const char *s = arch;
    for (int index = 0; *s || index == 0; index++) {
        const char *semi = strchr(s, ';');
        size_t len = semi ? (size_t)(semi - s) : strlen(s);
        nn_layer_config c;
        nn_status st = parse_entry(s, len, name, index, &c, err);
        nn_layer *l = NULL;
        if (!st && (total += config_params(&c)) > max_params)
            st = nn_error_set(err, NN_ERR_FORMAT, "%s: layer %d (%s): the architecture needs more weights "
                              "(%.0f so far) than the file holds (%.0f)", name, index, c.kind, total, max_params);
        int whole = !st && !strcmp(c.kind, "gpt");
        if (whole && (index || semi))
            st = nn_error_set(err, NN_ERR_FORMAT, "%s: layer %d (gpt): a gpt is a whole model and must be "
                              "the only entry of the architecture", name, index);
        if (!st) {
            nn_error sub;
            st = nn_layer_from_config(&c, &rng, &l, &sub);
            if (st) nn_error_set(err, NN_ERR_FORMAT, "%s: layer %d (%s): %s", name, index, c.kind, sub.msg);
            else if (whole) {
                nn_layer_free(model);
                *out = l;
                return NN_OK;
            } else st = nn_sequential_add(model, l) ? nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", name)
                                                  : NN_OK;
        }
        if (st) {
            nn_layer_free(model);
            return st == NN_ERR_MEMORY ? st : NN_ERR_FORMAT;
        }
        if (!semi) break;
        s = semi + 1;
    }
    *out = model;
    return NN_OK;
}

int nn_model_input_shape(const nn_safetensors *st, int shape[3])
{
    const char *v = nn_safetensors_meta(st, NN_MODEL_META_INPUT_SHAPE);
    if (!v) return 0;
    int n = 0;
    while (*v && n < 3) {
        char *end;
        errno = 0;
        long d = strtol(v, &end, 10);
        if (end == v || errno || d < 1 || d > 1000000000L) return 0;
        shape[n++] = (int)d;
        if (*end == ',') end++;
        else if (*end) return 0;
        v = end;
    }
    return *v ? 0 : n;
}

nn_status nn_model_from_safetensors(const nn_safetensors *st, nn_layer **out, nn_error *err)
{
    *out = NULL;
    const char *arch = nn_safetensors_meta(st, NN_MODEL_META_LAYERS);
    if (!arch)
        return nn_error_set(err, NN_ERR_FORMAT, "%s: no \"%s\" metadata: the file holds weights but not the "
                            "architecture (written by an older libnn or another program)", st->path,
                            NN_MODEL_META_LAYERS);
    nn_layer *model;
    nn_status s = build_model(arch, st->path, (double)st->data_len / 4, &model, err);
    if (s) return s;
    nn_params params;
    nn_params_init(&params);
    s = nn_layer_params(model, &params);
    if (s) nn_error_set(err, s, "%s: out of memory", st->path);
    else s = nn_safetensors_load_params(st, &params, err);
    nn_params_free(&params);
    if (s) {
        nn_layer_free(model);
        return s;
    }
    nn_layer_set_training(model, 0); /* a loaded model predicts; fit switches it back */
    *out = model;
    return NN_OK;
}

nn_status nn_model_load(const char *path, nn_layer **out, nn_error *err)
{
    *out = NULL;
    nn_safetensors st;
    nn_status s = nn_safetensors_read(path, &st, err);
    if (s) return s;
    s = nn_model_from_safetensors(&st, out, err);
    nn_safetensors_free(&st);
    return s;
}

nn_status nn_model_save(const char *path, nn_layer *model, const nn_model_save_opts *opts, nn_error *err)
{
    nn_model_save_opts none = {0};
    if (!opts) opts = &none;
    if (!path) return nn_error_set(err, NN_ERR_ARG, "nn_model_save: path is NULL");
    if (opts->meta_count < 0 || (opts->meta_count > 0 && !opts->meta_kv) || opts->input_ndim < 0 ||
        opts->input_ndim > 3)
        return nn_error_set(err, NN_ERR_ARG, "nn_model_save: %s: bad options (metadata count %d, input dims %d)",
                            path, opts->meta_count, opts->input_ndim);
    char *arch;
    nn_status s = nn_model_architecture(model, &arch, err);
    if (s) return s;
    char shape[64] = "";
    for (int i = 0; i < opts->input_ndim; i++)
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), i ? ",%d" : "%d", opts->input_shape[i]);
    int n = 0;
    const char **meta = malloc((size_t)(opts->meta_count + 2) * 2 * sizeof *meta);
    nn_params params;
    nn_params_init(&params);
    if (!meta) {
        s = nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
        goto out;
    }
    meta[2 * n] = NN_MODEL_META_LAYERS;
    meta[2 * n++ + 1] = arch;
    if (opts->input_ndim) {
        meta[2 * n] = NN_MODEL_META_INPUT_SHAPE;
        meta[2 * n++ + 1] = shape;
    }
    for (int i = 0; i < opts->meta_count; i++) {
        meta[2 * n] = opts->meta_kv[2 * i];
        meta[2 * n++ + 1] = opts->meta_kv[2 * i + 1];
    }
    s = nn_layer_params(model, &params);
    if (!s && opts->optim) {
        nn_params names;
        nn_params_init(&names);
        s = nn_layer_params(model, &names);
        if (!s) s = nn_optim_state(opts->optim, &names, &params);
        nn_params_free(&names);
    }
    if (s) {
        nn_error_set(err, s, "%s: cannot list the model's tensors (%s)", path, nn_status_name(s));
        goto out;
    }
    s = nn_safetensors_write(path, &params, meta, n, err);
out:
    nn_params_free(&params);
    free(meta);
    free(arch);
    return s;
}

/* ---- summary ------------------------------------------------------------ */

static void config_text(const nn_layer_config *c, char *buf, size_t n)
{
    buf[0] = '\0';
    const kind_spec *spec = find_kind(c->kind, strlen(c->kind));
    for (int j = 0; spec && j < 5 && spec->keys[j]; j++) {
        size_t used = strlen(buf);
        if (spec->fields[j] == F_RATE) snprintf(buf + used, n - used, "%s%s=%g", j ? " " : "", spec->keys[j], (double)c->rate);
        else if (spec->fields[j] != F_SEED)
            snprintf(buf + used, n - used, "%s%s=%d", j ? " " : "", spec->keys[j], *int_field((nn_layer_config *)c, spec->fields[j]));
    }
}

nn_status nn_model_summary(nn_layer *model, int input_ndim, const int *input_shape, FILE *out, nn_error *err)
{
    if (!model || !out) return nn_error_set(err, NN_ERR_ARG, "nn_model_summary: model or out is NULL");
    int is_seq = !strcmp(nn_layer_kind(model), "sequential");
    int count = is_seq ? nn_sequential_len(model) : 1;
    nn_graph *g = NULL;
    nn_tensor *x = NULL, *input = NULL;
    if (input_ndim > 0) {
        if (input_ndim > 3 || !input_shape)
            return nn_error_set(err, NN_ERR_ARG, "nn_model_summary: input must have 1-3 dims, got %d", input_ndim);
        int shape[4] = {1, 1, 1, 1};
        for (int i = 0; i < input_ndim; i++) shape[i + 1] = input_shape[i];
        input = nn_tensor_new(input_ndim + 1, shape);
        g = nn_graph_new();
        if (!input || !g) {
            nn_tensor_free(input);
            nn_graph_free(g);
            return nn_error_set(err, NN_ERR_MEMORY, "nn_model_summary: out of memory");
        }
        nn_graph_set_abort_on_error(g, 0);
        nn_graph_set_grad_enabled(g, 0);
        x = input;
    }
    int was_training = model->training;
    nn_layer_set_training(model, 0);
    fprintf(out, "%-5s %-12s %-44s %-16s %10s\n", "layer", "kind", "configuration", "output", "params");
    size_t total = 0;
    nn_status s = NN_OK;
    for (int i = 0; i < count; i++) {
        nn_layer *l = is_seq ? nn_sequential_get(model, i) : model;
        nn_layer_config c = nn_layer_get_config(l);
        char cfg[128], shape[64] = "";
        config_text(&c, cfg, sizeof cfg);
        nn_params p;
        nn_params_init(&p);
        nn_layer_params(l, &p);
        size_t numel = nn_params_numel(&p);
        nn_params_free(&p);
        total += numel;
        if (x) {
            x = nn_layer_forward(l, g, x);
            if (!x) {
                s = nn_error_set(err, NN_ERR_SHAPE, "layer %d (%s): %s", i, c.kind, nn_graph_error(g));
                break;
            }
            /* for one example: the batch dimension shows as 1 */
            nn_tensor_shape_str(x, shape, sizeof shape);
        }
        fprintf(out, "%-5d %-12s %-44s %-16s %10zu\n", i, c.kind, cfg, shape, numel);
    }
    if (!s) fprintf(out, "total parameters: %zu\n", total);
    nn_layer_set_training(model, was_training);
    nn_graph_free(g);
    nn_tensor_free(input);
    return s;
}
