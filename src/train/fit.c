/* nn_fit: the explicit training loop (batches -> forward -> loss -> backward
 * -> clip -> step -> reset) with a schedule, validation, early stopping and
 * a history, written once for every model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"
#include "nn/train.h"
#include "train_internal.h"

nn_fit_opts nn_fit_defaults(void)
{
    nn_fit_opts o;
    memset(&o, 0, sizeof o);
    o.epochs = 10;
    o.batch_size = 32;
    o.lr = 1e-3f;
    o.decay_fraction = 0.25f;
    o.step_gamma = 0.1f;
    o.step_epochs = 10;
    o.restore_best = 1;
    o.shuffle = 1;
    o.seed = 1;
    return o;
}

void nn_history_free(nn_history *h)
{
    if (!h) return;
    free(h->epochs);
    memset(h, 0, sizeof *h);
}

static float schedule_lr(const nn_fit_opts *o, long step, long total, int epoch)
{
    switch (o->schedule) {
    case NN_SCHEDULE_COSINE: return nn_lr_cosine(o->lr, o->min_lr, step, total, o->warmup_steps);
    case NN_SCHEDULE_STABLE_DECAY:
        return nn_lr_stable_decay(o->lr, o->min_lr, step, total, (long)ceil(o->decay_fraction * (double)total));
    case NN_SCHEDULE_STEP: return nn_lr_step(o->lr, o->step_gamma, epoch, o->step_epochs);
    case NN_SCHEDULE_CONSTANT: break;
    }
    return o->lr;
}

static nn_status check_opts(const nn_fit_opts *o, const nn_data *train, nn_error *err)
{
    if (o->epochs < 1 || o->batch_size < 1)
        return nn_error_set(err, NN_ERR_ARG, "nn_fit: epochs and batch_size must be >= 1, got %d and %d",
                            o->epochs, o->batch_size);
    if (!(o->lr >= 0.0f) || !(o->min_lr >= 0.0f) || !isfinite(o->lr))
        return nn_error_set(err, NN_ERR_ARG, "nn_fit: learning rates must be >= 0, got lr %g, min_lr %g",
                            (double)o->lr, (double)o->min_lr);
    if ((unsigned)o->schedule > NN_SCHEDULE_STEP || (unsigned)o->loss > NN_LOSS_MSE)
        return nn_error_set(err, NN_ERR_ARG, "nn_fit: unknown schedule %d or loss %d", (int)o->schedule,
                            (int)o->loss);
    if (o->schedule == NN_SCHEDULE_STABLE_DECAY && !(o->decay_fraction > 0.0f && o->decay_fraction <= 1.0f))
        return nn_error_set(err, NN_ERR_ARG, "nn_fit: decay_fraction must be in (0, 1], got %g",
                            (double)o->decay_fraction);
    if (o->schedule == NN_SCHEDULE_STEP && (o->step_epochs < 1 || !(o->step_gamma > 0.0f)))
        return nn_error_set(err, NN_ERR_ARG, "nn_fit: the step schedule needs step_epochs >= 1 and step_gamma > 0");
    if (!(o->val_fraction >= 0.0f && o->val_fraction < 1.0f))
        return nn_error_set(err, NN_ERR_ARG, "nn_fit: val_fraction must be in [0, 1), got %g",
                            (double)o->val_fraction);
    if (o->patience < 0 || !(o->clip_norm >= 0.0f) || !(o->label_smoothing >= 0.0f && o->label_smoothing < 1.0f))
        return nn_error_set(err, NN_ERR_ARG, "nn_fit: patience %d, clip_norm %g or label_smoothing %g out of range",
                            o->patience, (double)o->clip_norm, (double)o->label_smoothing);
    if (o->shard_count > 1 && (!o->reduce_grads || !o->reduce_sums || o->shard_rank < 0 ||
                               o->shard_rank >= o->shard_count))
        return nn_error_set(err, NN_ERR_ARG, "nn_fit: shard %d of %d needs 0 <= shard_rank < shard_count and both "
                                             "reduce_grads and reduce_sums", o->shard_rank, o->shard_count);
    if (o->patience > 0 && !o->val && o->val_fraction == 0.0f)
        return nn_error_set(err, NN_ERR_ARG, "nn_fit: early stopping (patience %d) needs validation data: "
                            "set val or val_fraction", o->patience);
    if (o->val && (o->val->ndim != train->ndim || o->val->example_size != train->example_size ||
                   o->val->target != train->target || o->val->target_size != train->target_size))
        return nn_error_set(err, NN_ERR_ARG, "nn_fit: the validation data's examples or targets differ from the "
                            "training data's");
    return NN_OK;
}

/* Weights of the best epoch, copied out and back. */
typedef struct snapshot {
    float *data;
    size_t size;
} snapshot;

static nn_status snapshot_take(snapshot *s, const nn_params *p)
{
    size_t n = nn_params_numel(p);
    if (!s->data) {
        s->data = malloc((n ? n : 1) * sizeof(float));
        if (!s->data) return NN_ERR_MEMORY;
        s->size = n;
    }
    size_t off = 0;
    for (int i = 0; i < p->count; i++) {
        memcpy(s->data + off, p->tensors[i]->data, p->tensors[i]->size * sizeof(float));
        off += p->tensors[i]->size;
    }
    return NN_OK;
}

static void snapshot_restore(const snapshot *s, const nn_params *p)
{
    size_t off = 0;
    for (int i = 0; i < p->count; i++) {
        memcpy(p->tensors[i]->data, s->data + off, p->tensors[i]->size * sizeof(float));
        off += p->tensors[i]->size;
    }
}

nn_status nn_fit(nn_layer *model, const nn_data *train, const nn_fit_opts *opts, nn_history *history,
                 nn_error *err)
{
    nn_fit_opts o = opts ? *opts : nn_fit_defaults();
    if (history) memset(history, 0, sizeof *history);
    if (!model || !train) return nn_error_set(err, NN_ERR_ARG, "nn_fit: %s is NULL", model ? "train" : "model");
    nn_status s = check_opts(&o, train, err);
    if (s) return s;
    nn_loss_kind loss_kind;
    s = nn__loss_for(o.loss, train, "nn_fit", &loss_kind, err);
    if (s) return s;

    nn_data split_train, split_val;
    memset(&split_train, 0, sizeof split_train);
    memset(&split_val, 0, sizeof split_val);
    const nn_data *tr = train, *val = o.val;
    nn_params params;
    nn_params_init(&params);
    nn_graph *g = NULL;
    nn_optim *own_optim = NULL;
    nn_data_batcher batches;
    memset(&batches, 0, sizeof batches);
    snapshot best = {0};
    nn_epoch_stats *hist = NULL;

    if (!val && o.val_fraction > 0.0f) {
        s = nn_data_split(train, o.val_fraction, o.seed ^ 0x9e3779b97f4a7c15ull, &split_train, &split_val, err);
        if (s) goto out;
        tr = &split_train;
        val = &split_val;
    }
    s = nn_layer_params(model, &params);
    if (s) {
        nn_error_set(err, s, "nn_fit: cannot list the model's parameters");
        goto out;
    }
    nn_optim *opt = o.optim;
    if (!opt) {
        opt = own_optim = nn_optim_adam_new(&params, nn_adam_defaults(o.lr));
        if (!opt) {
            s = nn_error_set(err, NN_ERR_MEMORY, "nn_fit: cannot create the Adam optimizer");
            goto out;
        }
    }
    g = nn_graph_new();
    hist = calloc((size_t)o.epochs, sizeof *hist);
    if (!g || !hist) {
        s = nn_error_set(err, NN_ERR_MEMORY, "nn_fit: out of memory");
        goto out;
    }
    nn_graph_set_abort_on_error(g, 0);
    s = nn_data_batcher_init(&batches, tr, o.batch_size, o.shuffle, o.seed, err);
    if (!s && o.shard_count > 1) s = nn_data_batcher_shard(&batches, o.shard_rank, o.shard_count, err);
    if (s) goto out;
    int sharded = o.shard_count > 1;

    long total_steps = (long)o.epochs * nn_data_batcher_num_batches(&batches), step = 0;
    float best_loss = INFINITY;
    int since_best = 0, best_epoch = 0, stopped = 0, epochs_run = 0;
    for (int epoch = 0; epoch < o.epochs && !stopped; epoch++) {
        double t0 = nn__now();
        nn_layer_set_training(model, 1);
        nn_graph_set_grad_enabled(g, 1);
        nn_data_batcher_start_epoch(&batches);
        double loss_sum = 0.0, metric_sum = 0.0;
        long seen = 0;
        int n;
        float lr = o.lr;
        while ((n = nn_data_batcher_next(&batches)) > 0) {
            lr = schedule_lr(&o, step, total_steps, epoch);
            nn_optim_set_lr(opt, lr);
            nn_graph_reset(g);
            nn_optim_zero_grad(opt);
            nn_tensor *out = nn_layer_forward(model, g, batches.x);
            nn_tensor *loss = nn__loss(g, loss_kind, out, &batches, o.label_smoothing, train->num_classes);
            if (!loss) {
                char shape[64] = "(none)";
                if (out) nn_tensor_shape_str(out, shape, sizeof shape);
                if (nn_graph_error(g))
                    s = nn_error_set(err, NN_ERR_SHAPE, "nn_fit: %s", nn_graph_error(g));
                else
                    s = nn_error_set(err, NN_ERR_SHAPE, "nn_fit: the model's output %s cannot be logits for %d "
                                     "classes (want (N, %d))", shape, train->num_classes, train->num_classes);
                goto out;
            }
            if (sharded) { /* the whole batch's loss, so that a bad value stops every process */
                double whole = (double)loss->data[0] * n / batches.global_n;
                s = o.reduce_sums(&whole, 1, o.reduce_ctx, err);
                if (!s && !isfinite(whole))
                    s = nn_error_set(err, NN_ERR_NUMERIC, "nn_fit: the loss is %g at step %ld", whole, step + 1);
                if (s) {
                    if (s == NN_ERR_NUMERIC && o.restore_best && best.data) snapshot_restore(&best, &params);
                    goto out;
                }
            }
            s = nn_backward(g, loss, err);
            if (s) {
                if (s == NN_ERR_NUMERIC && o.restore_best && best.data) snapshot_restore(&best, &params);
                goto out;
            }
            if (sharded) {
                s = o.reduce_grads(&params, (float)n / (float)batches.global_n, o.reduce_ctx, err);
                if (s) goto out;
            }
            if (o.clip_norm > 0.0f) nn_clip_grad_norm(&params, o.clip_norm);
            nn_optim_step(opt);
            loss_sum += (double)loss->data[0] * n;
            metric_sum += loss_kind == NN_LOSS_MSE ? (double)loss->data[0] * n
                                                   : (double)nn__count_correct(out, batches.labels, n);
            seen += n;
            step++;
        }
        if (sharded) { /* the epoch's totals over every process */
            double totals[3] = {loss_sum, metric_sum, (double)seen};
            s = o.reduce_sums(totals, 3, o.reduce_ctx, err);
            if (s) goto out;
            loss_sum = totals[0];
            metric_sum = totals[1];
            seen = (long)totals[2];
        }
        nn_epoch_stats *st = &hist[epoch];
        st->epoch = epoch + 1;
        st->train_loss = (float)(loss_sum / (double)seen);
        st->train_metric = (float)(metric_sum / (double)seen);
        st->val_loss = st->val_metric = NAN;
        st->lr = lr;
        if (val) {
            nn_eval ev;
            s = nn_evaluate(model, val, 0, &ev, err);
            if (s) goto out;
            st->val_loss = ev.loss;
            st->val_metric = loss_kind == NN_LOSS_MSE ? ev.mse : ev.accuracy;
            if (ev.loss < best_loss - o.min_delta) {
                best_loss = ev.loss;
                best_epoch = epoch + 1;
                since_best = 0;
                st->best = 1;
                if (o.restore_best && snapshot_take(&best, &params)) {
                    s = nn_error_set(err, NN_ERR_MEMORY, "nn_fit: out of memory for the best weights");
                    goto out;
                }
            } else if (o.patience > 0 && ++since_best >= o.patience) {
                stopped = 1;
            }
        }
        st->seconds = nn__now() - t0;
        epochs_run = epoch + 1;
        if (o.verbose) nn__print_epoch(stdout, st, o.epochs, loss_kind);
        if (o.on_epoch && o.on_epoch(st, o.user)) stopped = 1;
    }
    if (val && o.restore_best && best.data) snapshot_restore(&best, &params);
    if (history) {
        history->count = epochs_run;
        history->epochs = hist;
        history->best_epoch = best_epoch;
        history->stopped_early = stopped;
        hist = NULL;
    }
out:
    if (s && history) nn_history_free(history);
    nn_layer_set_training(model, 0);
    free(hist);
    free(best.data);
    nn_data_batcher_free(&batches);
    nn_graph_free(g);
    nn_optim_free(own_optim);
    nn_params_free(&params);
    nn_data_free(&split_train);
    nn_data_free(&split_val);
    return s;
}
