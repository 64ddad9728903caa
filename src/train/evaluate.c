/* nn_evaluate, nn_predict and the single-example predictor: forward passes
 * in evaluation mode without gradients, one graph reset per batch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/ops.h"
#include "nn/train.h"
#include "train_internal.h"
#include "../infer/plan.h"

double nn__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

nn_status nn__loss_for(nn_loss_kind want, const nn_data *d, const char *fn, nn_loss_kind *out,
                       nn_error *err)
{
    if (d->target == NN_TARGET_NONE)
        return nn_error_set(err, NN_ERR_ARG, "%s: the data set has no targets", fn);
    nn_loss_kind k = want != NN_LOSS_AUTO ? want
                     : d->target == NN_TARGET_CLASS ? NN_LOSS_CROSS_ENTROPY : NN_LOSS_MSE;
    if (k == NN_LOSS_CROSS_ENTROPY && d->target != NN_TARGET_CLASS)
        return nn_error_set(err, NN_ERR_ARG, "%s: cross-entropy needs class targets, the data has float targets", fn);
    if (k == NN_LOSS_MSE && d->target != NN_TARGET_VALUE)
        return nn_error_set(err, NN_ERR_ARG, "%s: MSE needs float targets, the data has class targets", fn);
    *out = k;
    return NN_OK;
}

nn_tensor *nn__loss(nn_graph *g, nn_loss_kind kind, nn_tensor *out, const nn_data_batcher *b,
                    float smoothing, int num_classes)
{
    if (!out) return NULL;
    if (kind == NN_LOSS_MSE) return nn_mse(g, out, b->y);
    if (out->ndim != 2 || out->shape[1] < num_classes) return NULL; /* the caller reports it */
    return smoothing > 0.0f ? nn_softmax_cross_entropy_smoothed(g, out, b->labels, smoothing)
                            : nn_softmax_cross_entropy(g, out, b->labels);
}

static int argmax_row(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int nn__count_correct(const nn_tensor *out, const int *labels, int n)
{
    int c = out->size / (size_t)n > 0 ? (int)(out->size / (size_t)n) : 1, correct = 0;
    for (int i = 0; i < n; i++) correct += argmax_row(out->data + (size_t)i * c, c) == labels[i];
    return correct;
}

void nn__print_epoch(FILE *f, const nn_epoch_stats *s, int epochs, nn_loss_kind kind)
{
    fprintf(f, "epoch %d/%d | loss %.4f | ", s->epoch, epochs, (double)s->train_loss);
    if (kind == NN_LOSS_MSE) fprintf(f, "mse %.4g", (double)s->train_metric);
    else fprintf(f, "acc %.2f%%", 100.0 * s->train_metric);
    if (!isnan(s->val_loss)) {
        if (kind == NN_LOSS_MSE) fprintf(f, " | val_mse %.4g", (double)s->val_metric);
        else fprintf(f, " | val_loss %.4f | val_acc %.2f%%", (double)s->val_loss, 100.0 * s->val_metric);
        if (s->best) fprintf(f, " *");
    }
    fprintf(f, " | %.2f s\n", s->seconds);
}

/* Run model over d batch by batch in eval mode without gradients, handing
 * each batch's output to visit. */
typedef nn_status (*visit_fn)(void *ctx, const nn_tensor *out, const nn_data_batcher *b, int n, int first,
                              nn_error *err);

static nn_status run_batches(nn_layer *model, const nn_data *d, int batch_size, const char *fn, visit_fn visit,
                             void *ctx, nn_error *err)
{
    if (!model || !d) return nn_error_set(err, NN_ERR_ARG, "%s: %s is NULL", fn, model ? "data" : "model");
    if (batch_size < 0) return nn_error_set(err, NN_ERR_ARG, "%s: batch size %d", fn, batch_size);
    nn_data_batcher b;
    nn_status s = nn_data_batcher_init(&b, d, batch_size ? batch_size : 256, 0, 0, err);
    if (s) return s;
    nn_graph *g = nn_graph_new();
    if (!g) {
        nn_data_batcher_free(&b);
        return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", fn);
    }
    nn_graph_set_abort_on_error(g, 0);
    nn_graph_set_grad_enabled(g, 0);
    int was_training = model->training;
    nn_layer_set_training(model, 0);
    int n, first = 1;
    while ((n = nn_data_batcher_next(&b)) > 0) {
        nn_graph_reset(g);
        nn_tensor *out = nn_layer_forward(model, g, b.x);
        if (!out) {
            s = nn_error_set(err, NN_ERR_SHAPE, "%s: %s", fn, nn_graph_error(g) ? nn_graph_error(g) : "forward failed");
            break;
        }
        s = visit(ctx, out, &b, n, first, err);
        if (s) break;
        first = 0;
    }
    nn_layer_set_training(model, was_training);
    nn_graph_free(g);
    nn_data_batcher_free(&b);
    return s;
}

typedef struct eval_ctx {
    nn_loss_kind kind;
    int num_classes;
    double loss, sq;
    long correct;
    size_t values;
} eval_ctx;

static nn_status eval_visit(void *p, const nn_tensor *out, const nn_data_batcher *b, int n, int first, nn_error *err)
{
    (void)first;
    eval_ctx *c = p;
    size_t width = out->size / (size_t)n;
    if (c->kind == NN_LOSS_MSE) {
        if (out->size != b->y->size)
            return nn_error_set(err, NN_ERR_SHAPE, "nn_evaluate: the model gives %zu values per example, the "
                                "targets have %d", width, b->data->target_size);
        for (size_t i = 0; i < out->size; i++) {
            double e = (double)out->data[i] - b->y->data[i];
            c->sq += e * e;
        }
        c->values += out->size;
        return NN_OK;
    }
    if (width < (size_t)c->num_classes)
        return nn_error_set(err, NN_ERR_SHAPE, "nn_evaluate: the model gives %zu outputs per example for %d classes",
                            width, c->num_classes);
    for (int i = 0; i < n; i++) {
        const float *row = out->data + (size_t)i * width;
        double m = row[0], sum = 0.0;
        for (size_t j = 1; j < width; j++) m = row[j] > m ? row[j] : m;
        for (size_t j = 0; j < width; j++) sum += exp((double)row[j] - m);
        c->loss += m + log(sum) - row[b->labels[i]];
        c->correct += argmax_row(row, (int)width) == b->labels[i];
    }
    return NN_OK;
}

nn_status nn_evaluate(nn_layer *model, const nn_data *d, int batch_size, nn_eval *out, nn_error *err)
{
    if (!out) return nn_error_set(err, NN_ERR_ARG, "nn_evaluate: out is NULL");
    memset(out, 0, sizeof *out);
    if (!d) return nn_error_set(err, NN_ERR_ARG, "nn_evaluate: data is NULL");
    eval_ctx c = {0};
    c.num_classes = d->num_classes;
    nn_status s = nn__loss_for(NN_LOSS_AUTO, d, "nn_evaluate", &c.kind, err);
    if (!s) s = run_batches(model, d, batch_size, "nn_evaluate", eval_visit, &c, err);
    if (s) return s;
    out->count = d->count;
    if (c.kind == NN_LOSS_MSE) {
        out->mse = out->loss = (float)(c.sq / (double)c.values);
        out->accuracy = NAN;
    } else {
        out->loss = (float)(c.loss / d->count);
        out->accuracy = (float)((double)c.correct / d->count);
        out->mse = NAN;
    }
    return NN_OK;
}

typedef struct predict_ctx {
    float *out;
    size_t out_len, used;
    int *classes;
    int done;
} predict_ctx;

static nn_status predict_visit(void *p, const nn_tensor *out, const nn_data_batcher *b, int n, int first,
                               nn_error *err)
{
    predict_ctx *c = p;
    size_t width = out->size / (size_t)n;
    if (c->classes) {
        for (int i = 0; i < n; i++) c->classes[c->done + i] = argmax_row(out->data + (size_t)i * width, (int)width);
    } else {
        if (first && width * (size_t)b->data->count > c->out_len)
            return nn_error_set(err, NN_ERR_ARG, "nn_predict: the output needs %zu floats (%d examples x %zu), "
                                "out_len is %zu", width * (size_t)b->data->count, b->data->count, width, c->out_len);
        memcpy(c->out + c->used, out->data, out->size * sizeof(float));
        c->used += out->size;
    }
    c->done += n;
    return NN_OK;
}

nn_status nn_predict(nn_layer *model, const nn_data *d, int batch_size, float *out, size_t out_len, nn_error *err)
{
    if (!out) return nn_error_set(err, NN_ERR_ARG, "nn_predict: out is NULL");
    predict_ctx c = {out, out_len, 0, NULL, 0};
    return run_batches(model, d, batch_size, "nn_predict", predict_visit, &c, err);
}

nn_status nn_predict_classes(nn_layer *model, const nn_data *d, int batch_size, int *out, nn_error *err)
{
    if (!out) return nn_error_set(err, NN_ERR_ARG, "nn_predict_classes: out is NULL");
    predict_ctx c = {NULL, 0, 0, out, 0};
    return run_batches(model, d, batch_size, "nn_predict_classes", predict_visit, &c, err);
}

/* ---- one example at a time ---------------------------------------------- */

struct nn_predictor {
    nn_layer *model;
    nn_graph *g;
    nn_tensor *x;  /* (1, shape...) */
    nn__plan *plan; /* the fast path, for the models it covers */
};

nn_predictor *nn_predictor_new(nn_layer *model, int ndim, const int *shape, nn_error *err)
{
    if (!model || !shape || ndim < 1 || ndim > 3) {
        nn_error_set(err, NN_ERR_ARG, "nn_predictor_new: need a model and a 1-3 dim example shape");
        return NULL;
    }
    int full[4] = {1, 1, 1, 1};
    for (int i = 0; i < ndim; i++) full[i + 1] = shape[i];
    nn_predictor *p = calloc(1, sizeof *p);
    if (p) {
        p->model = model;
        p->g = nn_graph_new();
        p->x = nn_tensor_new(ndim + 1, full);
    }
    if (!p || !p->g || !p->x) {
        nn_predictor_free(p);
        nn_error_set(err, NN_ERR_MEMORY, "nn_predictor_new: out of memory or a bad shape");
        return NULL;
    }
    nn_graph_set_abort_on_error(p->g, 0);
    nn_graph_set_grad_enabled(p->g, 0);
    p->plan = nn__plan_new(model, ndim, shape);
    return p;
}

void nn_predictor_refresh(nn_predictor *p)
{
    if (p) nn__plan_refresh(p->plan);
}

const float *nn_predictor_run(nn_predictor *p, const float *x, int *out_size, nn_error *err)
{
    if (!p || !x) {
        nn_error_set(err, NN_ERR_ARG, "nn_predictor_run: %s is NULL", p ? "the example" : "the predictor");
        return NULL;
    }
    if (p->plan) return nn__plan_run(p->plan, x, out_size);
    memcpy(p->x->data, x, p->x->size * sizeof(float));
    nn_graph_reset(p->g);
    int was_training = p->model->training;
    if (was_training) nn_layer_set_training(p->model, 0);
    nn_tensor *y = nn_layer_forward(p->model, p->g, p->x);
    if (was_training) nn_layer_set_training(p->model, 1);
    if (!y) {
        nn_error_set(err, NN_ERR_SHAPE, "nn_predictor_run: %s", nn_graph_error(p->g));
        return NULL;
    }
    if (out_size) *out_size = (int)y->size;
    return y->data;
}

int nn_predictor_class(nn_predictor *p, const float *x, nn_error *err)
{
    int n;
    const float *y = nn_predictor_run(p, x, &n, err);
    return y ? argmax_row(y, n) : -1;
}

const nn_graph *nn_predictor_graph(const nn_predictor *p) { return p ? p->g : NULL; }

void nn_predictor_free(nn_predictor *p)
{
    if (!p) return;
    nn_graph_free(p->g);
    nn_tensor_free(p->x);
    nn__plan_free(p->plan);
    free(p);
}
