/* The inference plan behind nn_predictor and nn_qmodel: a model's layers
 * turned, once, into a list of steps over buffers allocated up front, with
 * the weights packed for channels-last kernels (float, or int8 once
 * quantized). One example per call, on the
 * calling thread, nothing allocated per call. Covers sequential models of
 * conv2d, maxpool2d, relu / leaky_relu / sigmoid / tanh, dropout (the
 * identity: plans run in evaluation mode), flatten and dense layers; for
 * anything else nn__plan_new returns NULL and the predictor runs the graph. */
#ifndef NN_INFER_PLAN_H
#define NN_INFER_PLAN_H

#include "nn/layers.h"

typedef struct nn__plan nn__plan;

/* A plan for examples of `shape` (ndim 1: features; ndim 3: C, H, W), or
 * NULL if the model has a layer or shape the plan does not cover (or memory
 * runs out). */
nn__plan *nn__plan_new(nn_layer *model, int ndim, const int *shape);

/* Repack the weights after the model's parameters changed. */
void nn__plan_refresh(nn__plan *p);

/* The model's output for one example x (the plan's buffer, valid until the
 * next call), its size in *out_size. */
const float *nn__plan_run(nn__plan *p, const float *x, int *out_size);

void nn__plan_free(nn__plan *p);

/* Calibration: run x through the float plan, recording the largest |input|
 * of every convolution and dense step. */
void nn__plan_observe(nn__plan *p, const float *x);

/* Switch the dense and convolution steps to int8, with per-tensor input
 * scales from the observations and per-output weight scales (max |w| /
 * 127); convolutions with fewer than min_channels input channels read each
 * window row as one run of bytes (nn_k_q8_pack's row_runs). in_scales and
 * wscales, one per conv/dense step in order (both NULL: calibrated),
 * give the scales instead (a loaded file). Returns how many steps were
 * quantized, -1 if out of memory, -2 if a step saw a NaN or infinite input
 * while calibrating. After this the plan no longer reads the model;
 * nn__plan_refresh must not be called. */
int nn__plan_quantize(nn__plan *p, int min_channels, const float *in_scales, const float *const *wscales);

/* The conv and dense layers of the plan's steps, in order, into layers (up
 * to max); returns how many there are. */
int nn__plan_layers(const nn__plan *p, nn_layer **layers, int max);

/* The index-th quantized step as a file holds it; 0 if there is none. */
typedef struct nn__q8_layer {
    const int8_t *weight; /* the layer's weight layout: (out, in) or (out, in, k, k) */
    int ndim, shape[4];
    const float *weight_scale; /* out */
    float input_scale;
    const float *bias;         /* out (and more, padded) */
} nn__q8_layer;
int nn__plan_q8_layer(const nn__plan *p, int index, nn__q8_layer *out);

/* int8 steps on the plain C path even where VNNI is built (tests). */
void nn__plan_set_portable(nn__plan *p, int portable);

#endif
