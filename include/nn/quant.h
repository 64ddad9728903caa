/* libnn: int8 post-training quantization for inference.
 *
 * nn_quantize turns a trained model into an inference-only int8 model:
 * weights quantized per output channel (symmetric, scale = max|w| / 127),
 * the input of each quantized layer per tensor (symmetric, scale = the
 * largest |input| seen over the calibration examples / 127), products
 * summed in int32 and scaled back to float at each layer's output. Dense
 * and convolution layers are quantized (a convolution over 1-3 channels,
 * such as a first layer over pixels, reads each window row's bytes as one
 * run, so no 4-byte product is mostly padding); a 2x2 max pooling after a
 * convolution runs on its int32 sums; activations and other pooling run in
 * float on the dequantized values. With AVX-512 VNNI, or AVX-VNNI on AVX2
 * CPUs without AVX-512 (in -march=native builds on CPUs that have them),
 * the products run as vpdpbusd; elsewhere a plain C path computes the
 * same integers and outputs.
 *
 * nn_qmodel_save writes a self-describing safetensors file: the
 * architecture ("nn.layers"), the input shape and "nn.quantized": "int8" in
 * the metadata; per quantized layer, under its PyTorch-style name prefix
 * (e.g. "3."), "weight" as I8 in the layer's weight layout, "weight_scale"
 * (F32, one per output: weight = I8 * scale), "input_scale" (F32 [1]: the
 * layer's input is quantized as round(x / input_scale)) and "bias" (F32).
 * nn_qmodel_load rebuilds the same model, bit for bit.
 *
 * Covered models are those nn_predictor plans (see train.h): sequential
 * models of conv2d, maxpool2d, activation, dropout, flatten and dense
 * layers. One example per call, on the calling thread, nothing allocated
 * per call; use one nn_qmodel per thread. */
#ifndef NN_QUANT_H
#define NN_QUANT_H

#include "error.h"
#include "layers.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nn_qmodel nn_qmodel;

/* Quantize model for examples of `shape` (ndim 1: features; 3: C, H, W),
 * calibrated on count examples (count * example size floats, e.g. a few
 * hundred training examples). The model is read here only: it may be
 * changed or freed afterwards. NULL with err set if the model has a layer
 * the int8 path does not cover (named), on bad arguments, NaN or infinite
 * calibration activations, or out of memory. */
nn_qmodel *nn_quantize(nn_layer *model, int ndim, const int *shape, const float *calib, int count,
                       nn_error *err);

/* The output for one example (*out_size floats, valid until the next
 * call), or NULL with err set if q or x is NULL. */
const float *nn_qmodel_run(nn_qmodel *q, const float *x, int *out_size, nn_error *err);

/* The argmax class of one example, or -1 on error. */
int nn_qmodel_class(nn_qmodel *q, const float *x, nn_error *err);

/* Save q to path (atomically), as above. NN_ERR_ARG if the model had no
 * file description (a nested or custom layer), NN_ERR_IO on write errors. */
nn_status nn_qmodel_save(const nn_qmodel *q, const char *path, nn_error *err);

/* Load an int8 model file. NULL with err naming the file and the problem
 * if it is not one (no "nn.quantized": "int8"), or a tensor is missing, of
 * another dtype or shape, a scale is not a finite positive number, a
 * weight is -128, a bias is not finite, or the architecture is refused. */
nn_qmodel *nn_qmodel_load(const char *path, nn_error *err);

/* How many layers run in int8 (the rest run in float). */
int nn_qmodel_quantized_layers(const nn_qmodel *q);

void nn_qmodel_free(nn_qmodel *q);

#ifdef __cplusplus
}
#endif
#endif
