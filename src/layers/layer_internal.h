/* Helpers shared by layer implementations. */
#ifndef NN_LAYER_INTERNAL_H
#define NN_LAYER_INTERNAL_H

#include "nn/layers.h"

/* Add t to out as prefix + name (e.g. "0." + "weight"). */
nn_status nn__params_add_prefixed(nn_params *out, const char *prefix, const char *name,
                                  nn_tensor *t);

/* A new persistent parameter tensor with a gradient buffer, or NULL. */
nn_tensor *nn__param_new(int ndim, const int *shape);

/* Layer kinds the sequential container fuses: a conv2d layer, a ReLU layer
 * and a max pooling layer in a row run as one nn_conv2d_maxpool2d_relu; a
 * ReLU layer directly followed by a max pooling layer as one
 * nn_maxpool2d_relu; else a conv2d layer directly followed by a ReLU layer
 * as one nn_conv2d_relu. */
int nn__is_conv_layer(const nn_layer *l);
int nn__is_relu_layer(const nn_layer *l);
int nn__is_maxpool_layer(const nn_layer *l);
nn_tensor *nn__conv_layer_forward(nn_layer *l, nn_graph *g, nn_tensor *x, int relu);
nn_tensor *nn__pool_layer_forward(nn_layer *l, nn_graph *g, nn_tensor *x, int relu);
nn_tensor *nn__conv_relu_maxpool_forward(nn_layer *conv_layer, nn_layer *pool_layer, nn_graph *g,
                                         nn_tensor *x);

/* A conv2d layer's padding of one dimension of size in (NN_PAD_SAME puts
 * the odd extra element after). */
void nn__conv_padding(int in, int k, int stride, int padding, int *before, int *after);

/* Built-in layers whose output for each sample (index along dimension 0)
 * depends on that sample alone, which the sequential container may run a
 * slice of the batch at a time. */
int nn__is_conv_or_pool_layer(const nn_layer *l);
int nn__is_dense_layer(const nn_layer *l);
int nn__is_dropout_or_flatten_layer(const nn_layer *l);
int nn__is_activation_layer(const nn_layer *l);
int nn__is_standardize_layer(const nn_layer *l);

/* Record a constructor's refusal for nn_layer_last_error and return NULL. */
void *nn__layer_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

#endif
