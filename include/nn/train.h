/* libnn: one-call training, evaluation and prediction.
 *
 * nn_fit trains a model on an nn_data (dataset.h) with mini-batches, an
 * optimizer, a learning-rate schedule it drives itself, an optional
 * validation set (given, or a random fraction held out), early stopping that
 * can restore the best epoch's weights, and a per-epoch callback and
 * history. nn_evaluate and nn_predict run a model over a data set in
 * evaluation mode without gradients; an nn_predictor answers one example at
 * a time with no graph handling by the caller and no allocation per call
 * after the first.
 *
 * This layer only calls the explicit API (graph, ops, layers, optim): what
 * it does, a program can do by hand, one step at a time. */
#ifndef NN_TRAIN_H
#define NN_TRAIN_H

#include "dataset.h"
#include "graph.h"
#include "layers.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nn_schedule {
    NN_SCHEDULE_CONSTANT,     /* lr throughout */
    NN_SCHEDULE_COSINE,       /* warm-up, then cosine from lr to min_lr (nn_lr_cosine) */
    NN_SCHEDULE_STABLE_DECAY, /* lr, then cosine to min_lr over the last decay_fraction */
    NN_SCHEDULE_STEP          /* lr * step_gamma every step_epochs epochs */
} nn_schedule;

typedef enum nn_loss_kind {
    NN_LOSS_AUTO,          /* cross-entropy for class targets, MSE for float targets */
    NN_LOSS_CROSS_ENTROPY, /* softmax cross-entropy over the model's logits */
    NN_LOSS_MSE            /* mean squared error against float targets */
} nn_loss_kind;

/* One epoch's figures. The metric is accuracy (0..1) for class targets and
 * the mean squared error for float targets; val_* are NaN without
 * validation data. */
typedef struct nn_epoch_stats {
    int epoch;          /* 1-based */
    float train_loss;   /* mean over the epoch's batches (dropout on) */
    float train_metric;
    float val_loss, val_metric;
    float lr;           /* the rate of the epoch's last step */
    double seconds;
    int best;           /* 1 if the validation loss is the best so far */
} nn_epoch_stats;

typedef struct nn_fit_opts {
    int epochs;          /* default 10 */
    int batch_size;      /* default 32 */
    nn_optim *optim;     /* NULL (default): Adam over the model's parameters */
    float lr;            /* base learning rate, default 1e-3 (set on optim too) */
    nn_schedule schedule;
    float min_lr;        /* floor of the cosine schedules, default 0 */
    int warmup_steps;    /* NN_SCHEDULE_COSINE */
    float decay_fraction; /* NN_SCHEDULE_STABLE_DECAY, default 0.25 */
    float step_gamma;    /* NN_SCHEDULE_STEP, default 0.1 */
    int step_epochs;     /* NN_SCHEDULE_STEP, default 10 */
    nn_loss_kind loss;
    float label_smoothing; /* cross-entropy only */
    float clip_norm;     /* global gradient-norm clipping, 0 (default) off */
    const nn_data *val;  /* validation data, or NULL */
    float val_fraction;  /* with val NULL and > 0: hold out this fraction of train at random */
    int patience;        /* stop after this many epochs without a better validation loss; 0 off */
    float min_delta;     /* an improvement must beat the best loss by more than this */
    int restore_best;    /* with validation data: end with the best epoch's weights (default 1) */
    int shuffle;         /* default 1 */
    uint64_t seed;       /* shuffling and the validation split, default 1 */
    int verbose;         /* print one line per epoch to stdout */
    /* Called after every epoch; a nonzero return stops training. */
    int (*on_epoch)(const nn_epoch_stats *stats, void *user);
    void *user;
    /* Data parallelism (nn_dist_fit_opts in dist.h fills these for MPI):
     * this process trains on shard shard_rank of shard_count of every
     * batch (nn_data_batcher_shard); after each backward pass
     * reduce_grads must replace every gradient by the sum over processes
     * of weight * gradient (weight: the shard's share of the batch), and
     * reduce_sums sums values over processes (each step's loss, each
     * epoch's totals). Validation runs whole on every process (the same
     * weights give the same result, so early stopping agrees). Zero /
     * NULL (the default): one process. */
    int shard_rank, shard_count;
    nn_status (*reduce_grads)(const nn_params *params, float weight, void *ctx, nn_error *err);
    nn_status (*reduce_sums)(double *values, int n, void *ctx, nn_error *err);
    void *reduce_ctx;
} nn_fit_opts;

/* The defaults above. */
nn_fit_opts nn_fit_defaults(void);

typedef struct nn_history {
    int count;               /* epochs run */
    nn_epoch_stats *epochs;  /* count entries (malloc'd) */
    int best_epoch;          /* 1-based; 0 without validation data */
    int stopped_early;       /* 1 if patience ran out (or the callback stopped it) */
} nn_history;

void nn_history_free(nn_history *h);

/* Train model on train. opts NULL means nn_fit_defaults(). history may be
 * NULL. The model is left in evaluation mode. Errors: NN_ERR_ARG for bad
 * options or a target kind the loss cannot use, NN_ERR_SHAPE with the op's
 * message if the data does not fit the model, NN_ERR_NUMERIC if the loss
 * becomes NaN or infinite (the weights are then those of the last good
 * step, or the best epoch's with restore_best). */
nn_status nn_fit(nn_layer *model, const nn_data *train, const nn_fit_opts *opts, nn_history *history,
                 nn_error *err);

typedef struct nn_eval {
    int count;
    float loss;      /* cross-entropy (class targets) or MSE (float targets) */
    float accuracy;  /* class targets: fraction correct; else NaN */
    float mse;       /* float targets: mean squared error; else NaN */
} nn_eval;

/* Loss and accuracy / MSE of model on d (which must have targets), in
 * evaluation mode without gradients; batch_size 0 means 256. */
nn_status nn_evaluate(nn_layer *model, const nn_data *d, int batch_size, nn_eval *out, nn_error *err);

/* The model's outputs for every example of d: out receives count rows of
 * the model's output size (out_len floats available; NN_ERR_ARG naming the
 * size needed if too few). batch_size 0 means 256. */
nn_status nn_predict(nn_layer *model, const nn_data *d, int batch_size, float *out, size_t out_len,
                     nn_error *err);

/* The predicted class (argmax of the output) of every example of d. */
nn_status nn_predict_classes(nn_layer *model, const nn_data *d, int batch_size, int *out, nn_error *err);

/* Single-example prediction (latency): always in evaluation mode, on the
 * calling thread. Sequential models of conv2d, maxpool2d, activation,
 * dropout, flatten and dense layers over (C, H, W) or (features) examples
 * run through a plan made when the predictor is made: buffers allocated up
 * front, channels-last direct convolutions and dense layers from copies of
 * their weights packed for them. Other models run the graph
 * (nn_layer_forward) with a graph and input buffer of the predictor's own.
 * Both give the model's output to rounding (the plan sums in another
 * order). */
typedef struct nn_predictor nn_predictor;

/* A predictor for examples of the given shape (ndim 1-3). NULL with err set
 * on bad arguments or out of memory. The model must outlive it. The plan
 * works from copies of the weights: after changing the model's parameters
 * (training, loading) call nn_predictor_refresh. */
nn_predictor *nn_predictor_new(nn_layer *model, int ndim, const int *shape, nn_error *err);

/* Take the model's current parameters (repacks the copied weights). */
void nn_predictor_refresh(nn_predictor *p);

/* Run one example (example_size floats). Returns the output (*out_size
 * floats, valid until the next call) or NULL with the message in err. After
 * the first call it allocates nothing. */
const float *nn_predictor_run(nn_predictor *p, const float *x, int *out_size, nn_error *err);

/* The argmax class of one example, or -1 on error. */
int nn_predictor_class(nn_predictor *p, const float *x, nn_error *err);

/* The predictor's graph (for its memory counters). */
const nn_graph *nn_predictor_graph(const nn_predictor *p);

void nn_predictor_free(nn_predictor *p);

#ifdef __cplusplus
}
#endif
#endif
