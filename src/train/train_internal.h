/* Helpers shared by nn_fit and nn_evaluate. Not part of the public API. */
#ifndef NN_TRAIN_INTERNAL_H
#define NN_TRAIN_INTERNAL_H

#include <stdio.h>
#include "nn/train.h"

/* The loss to use for d's targets (resolving NN_LOSS_AUTO), or NN_ERR_ARG
 * naming fn if the targets do not suit it. */
nn_status nn__loss_for(nn_loss_kind want, const nn_data *d, const char *fn, nn_loss_kind *out,
                       nn_error *err);

/* The batch's loss on out, recorded on g; NULL if shapes do not fit (the
 * graph's error says why, or, for logits narrower than the class count,
 * nothing: the caller names it). */
nn_tensor *nn__loss(nn_graph *g, nn_loss_kind kind, nn_tensor *out, const nn_data_batcher *b,
                    float smoothing, int num_classes);

/* Rows of out (n, C) whose argmax equals the label. */
int nn__count_correct(const nn_tensor *out, const int *labels, int n);

/* Seconds on a monotonic clock. */
double nn__now(void);

/* "epoch 3/10 | loss ... | val_acc ..." */
void nn__print_epoch(FILE *f, const nn_epoch_stats *s, int epochs, nn_loss_kind kind);

#endif
