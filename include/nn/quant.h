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

/* ---- recurrent layers ----------------------------------------------------
 * An LSTM or Elman RNN layer (nn_lstm_new / nn_rnn_new, any number of
 * stacked layers) quantized for inference: at every step the products
 * W_ih x and W_hh h run in int8 (weights per gate row, symmetric; x per
 * layer and h per layer per tensor, calibrated) with int32 sums; the
 * gates, the cell state and the outputs stay float. A sequence model's
 * output layer (a dense head) quantizes separately with nn_quantize.
 * Files: per layer k, "weight_ih_lK" and "weight_hh_lK" as I8 in PyTorch's
 * layout with "..._scale" (F32, one per row), "bias_lK" (F32, b_ih + b_hh),
 * "input_scale_lK" and "hidden_scale_lK" (F32 [1]); metadata
 * "nn.quantized": "int8", "nn.recurrent": "lstm" or "rnn" and
 * "nn.recurrent_sizes": "input,hidden,layers,batch_first". */
typedef struct nn_qrecurrent nn_qrecurrent;

/* Quantize rnn, calibrated on calib: T x B steps of inputs in the layer's
 * layout ((T, B, input), or (B, T, input) if batch-first), run from a
 * zero state (a few thousand steps of real inputs). The layer is read
 * here only. NULL with err set if rnn is not an LSTM or RNN layer, on bad
 * arguments, NaN or infinite values in the calibration run, or out of
 * memory. */
nn_qrecurrent *nn_quantize_recurrent(nn_layer *rnn, int T, int B, const float *calib, nn_error *err);

/* Run x (T x B steps in the layer's layout) into out (T x B x hidden, the
 * same layout), from state h and c ((layers, B, hidden) each, updated to
 * the final state, as nn_recurrent_forward's h0/h_n; NULL: start from
 * zeros and keep no state; c is unused by an RNN). Working memory grows
 * to the largest T x B seen and is then reused; use one nn_qrecurrent per
 * thread. */
nn_status nn_qrecurrent_run(nn_qrecurrent *q, int T, int B, const float *x, float *h, float *c, float *out,
                            nn_error *err);

/* Hidden units per layer (the width of out), 0 if q is NULL. */
int nn_qrecurrent_hidden_size(const nn_qrecurrent *q);

/* Save q to path (atomically), as above; load it back, bit for bit.
 * Loading refuses (NULL, err naming the file and the problem) a file that
 * is not one, a missing tensor or one of another dtype or shape, a scale
 * that is not a finite positive number, a -128 weight, a non-finite bias
 * or sizes beyond limits. */
nn_status nn_qrecurrent_save(const nn_qrecurrent *q, const char *path, nn_error *err);
nn_qrecurrent *nn_qrecurrent_load(const char *path, nn_error *err);

void nn_qrecurrent_free(nn_qrecurrent *q);

#ifdef __cplusplus
}
#endif
#endif
