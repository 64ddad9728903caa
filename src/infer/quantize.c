/* nn_quantize and the int8 model: a calibrated, quantized inference plan,
 * and its files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model.h"
#include "nn/quant.h"
#include "../io/safetensors_internal.h"
#include "plan.h"
#include "quant_internal.h"

/* Convolutions over fewer input channels read window rows as byte runs. */
enum { MIN_QUANTIZED_CHANNELS = 4 };

#define META_QUANTIZED "nn.quantized"
#define QUANTIZED_FORMAT "int8"

struct nn_qmodel {
    nn__plan *plan;
    int quantized;
    char *arch;      /* the model's "nn.layers", or NULL if it has none (not savable) */
    int ndim, shape[3];
    char **prefixes; /* each quantized layer's parameter name prefix, e.g. "3." */
};

static void free_prefixes(char **p, int n)
{
    for (int i = 0; p && i < n; i++) free(p[i]);
    free(p);
}

/* Each of the plan's conv/dense layers' parameter name prefix in model. */
static char **layer_prefixes(nn_layer *model, nn__plan *p, int n)
{
    nn_layer **layers = calloc((size_t)n, sizeof *layers);
    char **prefixes = calloc((size_t)n, sizeof *prefixes);
    nn_params params;
    nn_params_init(&params);
    int ok = layers && prefixes && nn_layer_params(model, &params) == NN_OK;
    if (ok) nn__plan_layers(p, layers, n);
    for (int i = 0; ok && i < n; i++) {
        nn_tensor *w = nn_dense_weight(layers[i]) ? nn_dense_weight(layers[i]) : nn_conv2d_weight(layers[i]);
        ok = 0;
        for (int j = 0; j < params.count; j++) {
            size_t len = strlen(params.names[j]);
            if (params.tensors[j] != w || len < 6 || strcmp(params.names[j] + len - 6, "weight")) continue;
            prefixes[i] = malloc(len - 5);
            if (prefixes[i]) {
                memcpy(prefixes[i], params.names[j], len - 6);
                prefixes[i][len - 6] = '\0';
                ok = 1;
            }
            break;
        }
    }
    nn_params_free(&params);
    free(layers);
    if (!ok) {
        free_prefixes(prefixes, n);
        return NULL;
    }
    return prefixes;
}

/* The model description a file needs (left NULL where the model has
 * none: such a model quantizes but does not save). */
static void describe(nn_qmodel *q, nn_layer *model, int ndim, const int *shape)
{
    q->ndim = ndim;
    for (int i = 0; i < ndim; i++) q->shape[i] = shape[i];
    if (nn_model_architecture(model, &q->arch, NULL) != NN_OK) q->arch = NULL;
    q->prefixes = layer_prefixes(model, q->plan, q->quantized);
}

static nn_qmodel *wrap(nn__plan *p, int quantized, nn_error *err, const char *who)
{
    if (quantized == -2) {
        nn__plan_free(p);
        nn_error_set(err, NN_ERR_NUMERIC, "%s: the calibration examples give a NaN or infinite value "
                                          "inside the model; no scale can be calibrated", who);
        return NULL;
    }
    nn_qmodel *q = quantized >= 0 ? calloc(1, sizeof *q) : NULL;
    if (!q) {
        nn__plan_free(p);
        nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", who);
        return NULL;
    }
    q->plan = p;
    q->quantized = quantized;
    return q;
}

/* ndim and shape as an example shape; its size in *size. */
static int shape_ok(int ndim, const int *shape, size_t *size)
{
    if (!shape || (ndim != 1 && ndim != 3)) return 0;
    *size = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) return 0;
        *size *= (size_t)shape[i];
    }
    return 1;
}

static void unsupported(nn_error *err, const char *who, const nn_layer *model)
{
    nn_error_set(err, NN_ERR_ARG,
                 "%s: the %s model does not fit the int8 path (sequential conv2d, maxpool2d, activation, "
                 "dropout, flatten and dense layers over examples of this shape), or memory ran out",
                 who, nn_layer_kind(model));
}

nn_qmodel *nn_quantize(nn_layer *model, int ndim, const int *shape, const float *calib, int count,
                       nn_error *err)
{
    size_t size;
    if (!model || !calib || count < 1 || !shape_ok(ndim, shape, &size)) {
        nn_error_set(err, NN_ERR_ARG, "nn_quantize: need a model, a 1- or 3-dim example shape of positive sizes "
                                      "and at least one calibration example");
        return NULL;
    }
    nn__plan *p = nn__plan_new(model, ndim, shape);
    if (!p) {
        unsupported(err, "nn_quantize", model);
        return NULL;
    }
    for (int i = 0; i < count; i++) nn__plan_observe(p, calib + (size_t)i * size);
    nn_qmodel *q = wrap(p, nn__plan_quantize(p, MIN_QUANTIZED_CHANNELS, NULL, NULL), err, "nn_quantize");
    if (q) describe(q, model, ndim, shape);
    return q;
}

const float *nn_qmodel_run(nn_qmodel *q, const float *x, int *out_size, nn_error *err)
{
    if (!q || !x) {
        nn_error_set(err, NN_ERR_ARG, "nn_qmodel_run: %s is NULL", q ? "the example" : "the model");
        return NULL;
    }
    return nn__plan_run(q->plan, x, out_size);
}

int nn_qmodel_class(nn_qmodel *q, const float *x, nn_error *err)
{
    int n;
    const float *y = nn_qmodel_run(q, x, &n, err);
    if (!y) return -1;
    int best = 0;
    for (int i = 1; i < n; i++)
        if (y[i] > y[best]) best = i;
    return best;
}

int nn_qmodel_quantized_layers(const nn_qmodel *q) { return q ? q->quantized : 0; }

void nn_qmodel_free(nn_qmodel *q)
{
    if (!q) return;
    nn__plan_free(q->plan);
    free(q->arch);
    free_prefixes(q->prefixes, q->quantized);
    free(q);
}

/* ---- files ---------------------------------------------------------------- */

nn_status nn_qmodel_save(const nn_qmodel *q, const char *path, nn_error *err)
{
    if (!q || !path) return nn_error_set(err, NN_ERR_ARG, "nn_qmodel_save: %s is NULL", q ? "path" : "the model");
    if (!q->arch || !q->prefixes)
        return nn_error_set(err, NN_ERR_ARG, "nn_qmodel_save: %s: the model has no file description (only a "
                                             "sequential of built-in layers, not nested, can be saved)", path);
    int n = q->quantized;
    nn__st_item *items = calloc((size_t)(4 * n + 1), sizeof *items);
    char *names = calloc((size_t)(4 * n + 1), 256);
    if (!items || !names) {
        free(items);
        free(names);
        return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
    }
    float *input_scales = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!input_scales) {
        free(items);
        free(names);
        return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
    }
    static const char *const suffix[4] = {"weight", "weight_scale", "input_scale", "bias"};
    for (int i = 0; i < n; i++) {
        nn__q8_layer l;
        nn__plan_q8_layer(q->plan, i, &l);
        input_scales[i] = l.input_scale;
        const void *data[4] = {l.weight, l.weight_scale, &input_scales[i], l.bias};
        for (int k = 0; k < 4; k++) {
            char *name = names + (size_t)(4 * i + k) * 256;
            snprintf(name, 256, "%s%s", q->prefixes[i], suffix[k]);
            nn__st_item *it = &items[4 * i + k];
            it->name = name;
            it->f32 = k > 0;
            it->ndim = k == 0 ? l.ndim : 1;
            if (k == 0) memcpy(it->shape, l.shape, sizeof it->shape);
            else it->shape[0] = k == 2 ? 1 : l.shape[0];
            it->data = data[k];
        }
    }
    char shape[64];
    if (q->ndim == 3)
        snprintf(shape, sizeof shape, "%d,%d,%d", q->shape[0], q->shape[1], q->shape[2]);
    else
        snprintf(shape, sizeof shape, "%d", q->shape[0]);
    const char *meta[] = {NN_MODEL_META_LAYERS, q->arch, NN_MODEL_META_INPUT_SHAPE, shape, META_QUANTIZED,
                          QUANTIZED_FORMAT};
    nn_status s = nn__safetensors_write_items(path, items, 4 * n, meta, 3, err);
    free(input_scales);
    free(items);
    free(names);
    return s;
}

const uint8_t *nn__q8_tensor_of(const nn_safetensors *st, const char *name, const char *dtype, int ndim,
                                const int *shape, nn_error *err)
{
    const nn_st_tensor *t = nn_safetensors_find(st, name);
    if (!t) {
        nn_error_set(err, NN_ERR_FORMAT, "%s: tensor '%s' is missing", st->path, name);
        return NULL;
    }
    int same = !strcmp(t->dtype, dtype) && t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == (uint64_t)shape[d];
    if (!same) {
        char want[64];
        int len = snprintf(want, sizeof want, "%s [", dtype);
        for (int d = 0; d < ndim && len < (int)sizeof want; d++)
            len += snprintf(want + len, sizeof want - (size_t)len, d ? ", %d" : "%d", shape[d]);
        nn_error_set(err, NN_ERR_FORMAT, "%s: tensor '%s' is %s with %d dims, expected %s]", st->path, name,
                     t->dtype, t->ndim, want);
        return NULL;
    }
    return st->data + t->begin;
}

int nn__q8_floats_of(const nn_safetensors *st, const char *name, const uint8_t *bytes, int n, int positive,
                     float *out, nn_error *err)
{
    for (int i = 0; i < n; i++) {
        uint32_t u = (uint32_t)bytes[4 * i] | (uint32_t)bytes[4 * i + 1] << 8 | (uint32_t)bytes[4 * i + 2] << 16 |
                     (uint32_t)bytes[4 * i + 3] << 24;
        memcpy(&out[i], &u, 4);
        if (!isfinite(out[i]) || (positive && !(out[i] > 0.0f))) {
            nn_error_set(err, NN_ERR_FORMAT, "%s: tensor '%s' element %d is %g, expected a finite%s number",
                         st->path, name, i, (double)out[i], positive ? " positive" : "");
            return 0;
        }
    }
    return 1;
}

/* Set layer's float weights from a file's int8 weights and scales, and
 * its bias; keep the scales for the plan. */
static int load_layer(const nn_safetensors *st, const char *prefix, nn_layer *layer, float *in_scale,
                      float *wscale, nn_error *err)
{
    nn_tensor *w = nn_dense_weight(layer) ? nn_dense_weight(layer) : nn_conv2d_weight(layer);
    nn_tensor *b = nn_dense_weight(layer) ? nn_dense_bias(layer) : nn_conv2d_bias(layer);
    int oc = w->shape[0];
    size_t per_output = w->size / (size_t)oc;
    char name[300];
    snprintf(name, sizeof name, "%sweight", prefix);
    const uint8_t *qw = nn__q8_tensor_of(st, name, "I8", w->ndim, w->shape, err);
    if (!qw) return 0;
    for (size_t i = 0; i < w->size; i++)
        if (qw[i] == 0x80) {
            nn_error_set(err, NN_ERR_FORMAT, "%s: tensor '%s' element %zu is -128 (int8 weights are in [-127, 127])",
                         st->path, name, i);
            return 0;
        }
    snprintf(name, sizeof name, "%sweight_scale", prefix);
    const uint8_t *ws = nn__q8_tensor_of(st, name, "F32", 1, &oc, err);
    if (!ws || !nn__q8_floats_of(st, name, ws, oc, 1, wscale, err)) return 0;
    snprintf(name, sizeof name, "%sinput_scale", prefix);
    const uint8_t *is = nn__q8_tensor_of(st, name, "F32", 1, (int[]){1}, err);
    if (!is || !nn__q8_floats_of(st, name, is, 1, 1, in_scale, err)) return 0;
    snprintf(name, sizeof name, "%sbias", prefix);
    const uint8_t *bb = nn__q8_tensor_of(st, name, "F32", 1, &oc, err);
    if (!bb || !nn__q8_floats_of(st, name, bb, oc, 0, b->data, err)) return 0;
    /* dequantized: quantizing with the same scale gives the same bytes */
    for (size_t i = 0; i < w->size; i++) w->data[i] = (float)(int8_t)qw[i] * wscale[i / per_output];
    return 1;
}

nn_qmodel *nn_qmodel_load(const char *path, nn_error *err)
{
    if (!path) {
        nn_error_set(err, NN_ERR_ARG, "nn_qmodel_load: path is NULL");
        return NULL;
    }
    nn_safetensors st;
    if (nn_safetensors_read(path, &st, err)) return NULL;
    nn_layer *model = NULL, **layers = NULL;
    nn__plan *p = NULL;
    nn_qmodel *q = NULL;
    float *in_scales = NULL, **wscales = NULL;
    char **prefixes = NULL;
    int ndim, shape[3], n = 0;
    const char *format = nn_safetensors_meta(&st, META_QUANTIZED), *arch = nn_safetensors_meta(&st, NN_MODEL_META_LAYERS);
    if (!format || strcmp(format, QUANTIZED_FORMAT)) {
        nn_error_set(err, NN_ERR_FORMAT, "%s: not an int8 model file (metadata %s is %s%s%s, expected \"%s\")", path,
                     META_QUANTIZED, format ? "\"" : "", format ? format : "missing", format ? "\"" : "",
                     QUANTIZED_FORMAT);
        goto out;
    }
    if (!arch) {
        nn_error_set(err, NN_ERR_FORMAT, "%s: metadata %s is missing", path, NN_MODEL_META_LAYERS);
        goto out;
    }
    ndim = nn_model_input_shape(&st, shape);
    if (ndim != 1 && ndim != 3) {
        nn_error_set(err, NN_ERR_FORMAT, "%s: metadata %s is missing or not 1 or 3 sizes", path,
                     NN_MODEL_META_INPUT_SHAPE);
        goto out;
    }
    if (nn_model_from_architecture(arch, path, &model, err)) goto out;
    p = nn__plan_new(model, ndim, shape);
    if (!p) {
        unsupported(err, path, model);
        goto out;
    }
    n = nn__plan_layers(p, NULL, 0);
    layers = calloc((size_t)n + 1, sizeof *layers);
    in_scales = calloc((size_t)n + 1, sizeof *in_scales);
    wscales = calloc((size_t)n + 1, sizeof *wscales);
    prefixes = layer_prefixes(model, p, n);
    if (!layers || !in_scales || !wscales || !prefixes) {
        nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
        goto out;
    }
    nn__plan_layers(p, layers, n);
    for (int i = 0; i < n; i++) {
        nn_tensor *w = nn_dense_weight(layers[i]) ? nn_dense_weight(layers[i]) : nn_conv2d_weight(layers[i]);
        wscales[i] = malloc(sizeof(float) * (size_t)w->shape[0]);
        if (!wscales[i]) {
            nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
            goto out;
        }
        if (!load_layer(&st, prefixes[i], layers[i], &in_scales[i], wscales[i], err)) goto out;
    }
    nn__plan_refresh(p);
    q = wrap(p, nn__plan_quantize(p, MIN_QUANTIZED_CHANNELS, in_scales, (const float *const *)wscales), err, path);
    p = NULL;
    if (q) {
        q->prefixes = prefixes;
        prefixes = NULL;
        q->arch = strdup(arch);
        q->ndim = ndim;
        memcpy(q->shape, shape, sizeof shape);
        if (!q->arch) {
            nn_qmodel_free(q);
            q = NULL;
            nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
        }
    }
out:
    for (int i = 0; wscales && i < n; i++) free(wscales[i]);
    free(wscales);
    free(in_scales);
    free(layers);
    free_prefixes(prefixes, n);
    nn__plan_free(p);
    nn_layer_free(model); /* the plan keeps its own copies */
    nn_safetensors_free(&st);
    return q;
}
