/* libnn: whole-model files and model summaries.
 *
 * A model file is a safetensors file holding the weights under PyTorch's
 * names ("0.weight", ...) and, in its "__metadata__", the architecture: each
 * layer's kind and hyperparameters, so that nn_model_load rebuilds a ready
 * model with no code describing it. The metadata keys:
 *   "nn.layers"       the architecture, one entry per layer of the top-level
 *                     nn_sequential, separated by "; ", each the layer's kind
 *                     and its hyperparameters as key=value, e.g.
 *                     "conv2d in=1 out=32 kernel=3 stride=1 padding=0; relu;
 *                      maxpool2d kernel=2 stride=2 padding=0; flatten; ..."
 *                     (keys per kind: see nn_model_architecture below)
 *   "nn.input_shape"  optional per-example input shape, e.g. "1,28,28"
 * Files may carry other metadata (the trainers' checkpoint fields) and other
 * tensors (optimizer state), which loading a model ignores.
 *
 * Built only on the public API of the layers below it. */
#ifndef NN_MODEL_H
#define NN_MODEL_H

#include <stdio.h>
#include "error.h"
#include "io.h"
#include "layers.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NN_MODEL_META_LAYERS "nn.layers"
#define NN_MODEL_META_INPUT_SHAPE "nn.input_shape"

/* A new layer from its configuration (see nn_layer_config), with fresh
 * weights drawn from rng (layers without weights ignore it). NN_ERR_ARG with
 * the constructor's message if the configuration is refused. */
nn_status nn_layer_from_config(const nn_layer_config *c, nn_rng *rng, nn_layer **out, nn_error *err);

/* The architecture of an nn_sequential of built-in layers as the "nn.layers"
 * string (malloc'd; free with free()). Keys per kind:
 *   dense in out | conv2d in out kernel stride padding | maxpool2d, avgpool2d
 *   kernel stride padding | leaky_relu slope | dropout p seed | lstm, rnn in
 *   hidden layers batch_first | select_step step batch_first | standardize
 *   features inverse | relu, sigmoid, tanh, flatten: none.
 * NN_ERR_ARG if model is not a sequential or holds a nested container or a
 * custom layer (named in the message). */
nn_status nn_model_architecture(nn_layer *model, char **out, nn_error *err);

/* Build an nn_sequential from an "nn.layers" string (weights freshly
 * initialised from seed 0). name (a file name) is used in messages, which
 * name the layer's position and the problem: unknown kind, unknown or
 * missing hyperparameter, a value that is not a number or is refused. */
nn_status nn_model_from_architecture(const char *arch, const char *name, nn_layer **out,
                                     nn_error *err);

/* What nn_model_save writes beside the weights; every field may be 0/NULL. */
typedef struct nn_model_save_opts {
    int input_ndim;            /* per-example input dims (1-3), 0 if unknown */
    int input_shape[3];
    nn_optim *optim;           /* its state is saved too (as a checkpoint) */
    const char *const *meta_kv; /* extra metadata: key0, value0, key1, ... */
    int meta_count;            /* number of key/value pairs in meta_kv */
} nn_model_save_opts;

/* Write model (an nn_sequential of built-in layers) with its architecture
 * to path, atomically. opts may be NULL. */
nn_status nn_model_save(const char *path, nn_layer *model, const nn_model_save_opts *opts,
                        nn_error *err);

/* Rebuild the model a file describes and load its weights: every tensor must
 * be present with the shape the architecture gives, else an error names the
 * file, the tensor and the problem. On success *out is the caller's (free
 * with nn_layer_free); on failure *out is NULL. */
nn_status nn_model_load(const char *path, nn_layer **out, nn_error *err);
/* The same from a file already read with nn_safetensors_read (so the caller
 * can also read its other metadata and tensors). */
nn_status nn_model_from_safetensors(const nn_safetensors *st, nn_layer **out, nn_error *err);

/* The per-example input shape a file records ("nn.input_shape"): returns
 * its number of dims (1-3) and fills shape, or 0 if absent or malformed. */
int nn_model_input_shape(const nn_safetensors *st, int shape[3]);

/* Print a table of the model's layers (index, kind, hyperparameters, output
 * shape for one example of the given input shape, parameter count) and the
 * totals to out. input_ndim 0 prints no shapes. Returns NN_ERR_SHAPE with
 * the op's message if the input shape does not fit the model. */
nn_status nn_model_summary(nn_layer *model, int input_ndim, const int *input_shape, FILE *out,
                           nn_error *err);

#ifdef __cplusplus
}
#endif
#endif
