/* libFuzzer harness: safetensors files (header length, JSON header,
 * offsets, metadata), loading them into a small model, and model files
 * (the architecture in the metadata rebuilt and loaded). */
#include <stdint.h>
#include <stdlib.h>

#include "nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static nn_params params;
    static int ready;
    if (!ready) { /* a fixed target model: names "w" (2x3) and "b" (3) */
        nn_params_init(&params);
        nn_params_add(&params, "w", nn_tensor_new2(2, 3));
        nn_params_add(&params, "b", nn_tensor_new1(3));
        ready = 1;
    }
    nn_safetensors st;
    nn_error err;
    if (nn_safetensors_parse(data, size, "fuzz.safetensors", &st, &err) == NN_OK) {
        nn_safetensors_load_params(&st, &params, &err);
        nn_safetensors_meta(&st, "format");
        nn_layer *model; /* a model file: architecture in the metadata */
        if (nn_model_from_safetensors(&st, &model, &err) == NN_OK) nn_layer_free(model);
        nn_safetensors_free(&st);
    }
    return 0;
}
