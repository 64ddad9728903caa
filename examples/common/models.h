/* The models the MNIST examples train, shared so that a checkpoint written
 * by mnist_train can be read back by mnist_predict. */
#ifndef NN_EXAMPLES_MODELS_H
#define NN_EXAMPLES_MODELS_H

#include "nn.h"

/* "cnn": Conv 32 3x3 ReLU, MaxPool 2, Conv 64 3x3 ReLU, MaxPool 2, Flatten,
 *        Dense 128 ReLU, Dropout 0.5, Dense 10 (225,034 parameters; input
 *        (N, 1, 28, 28)).
 * "mlp": Dense 128 ReLU, Dense 10 (input (N, 784)).
 * Returns NULL for an unknown name; *layout gets the input layout. */
nn_layer *model_build(const char *name, int rows, int cols, uint64_t seed, nn_layout *layout);

#endif
