#include "models.h"

#include <string.h>

nn_layer *model_build(const char *name, int rows, int cols, uint64_t seed, nn_layout *layout)
{
    nn_rng rng;
    nn_rng_seed(&rng, seed);
    nn_layer *m = nn_sequential_new();
    if (!m) return NULL;
    if (!strcmp(name, "cnn")) {
        *layout = NN_LAYOUT_NCHW;
        int h = ((rows - 2) / 2 - 2) / 2, w = ((cols - 2) / 2 - 2) / 2;
        nn_sequential_add(m, nn_conv2d_new(1, 32, 3, 1, 0, &rng));
        nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
        nn_sequential_add(m, nn_maxpool2d_new(2, 2, 0));
        nn_sequential_add(m, nn_conv2d_new(32, 64, 3, 1, 0, &rng));
        nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
        nn_sequential_add(m, nn_maxpool2d_new(2, 2, 0));
        nn_sequential_add(m, nn_flatten_new());
        nn_sequential_add(m, nn_dense_new(64 * h * w, 128, NN_INIT_HE, &rng));
        nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
        nn_sequential_add(m, nn_dropout_new(0.5f, seed ^ 0x5eed));
        nn_sequential_add(m, nn_dense_new(128, 10, NN_INIT_XAVIER, &rng));
    } else if (!strcmp(name, "mlp")) {
        *layout = NN_LAYOUT_FLAT;
        nn_sequential_add(m, nn_dense_new(rows * cols, 128, NN_INIT_HE, &rng));
        nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
        nn_sequential_add(m, nn_dense_new(128, 10, NN_INIT_XAVIER, &rng));
    } else {
        nn_layer_free(m);
        return NULL;
    }
    return m;
}
