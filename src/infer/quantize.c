/* nn_quantize and the int8 model: a calibrated, quantized inference plan. */
#include <stdlib.h>
#include <string.h>

#include "nn/quant.h"
#include "plan.h"

/* Convolutions over fewer input channels read window rows as byte runs. */
enum { MIN_QUANTIZED_CHANNELS = 4 };

struct nn_qmodel {
    nn__plan *plan;
    int quantized;
};

nn_qmodel *nn_quantize(nn_layer *model, int ndim, const int *shape, const float *calib, int count,
                       nn_error *err)
{
    if (!model || !shape || !calib || count < 1 || (ndim != 1 && ndim != 3)) {
        nn_error_set(err, NN_ERR_ARG, "nn_quantize: need a model, a 1- or 3-dim example shape and at least "
                                      "one calibration example");
        return NULL;
    }
    size_t size = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) {
            nn_error_set(err, NN_ERR_ARG, "nn_quantize: example dimension %d is %d", i, shape[i]);
            return NULL;
        }
        size *= (size_t)shape[i];
    }
    nn__plan *p = nn__plan_new(model, ndim, shape);
    if (!p) {
        nn_error_set(err, NN_ERR_ARG,
                     "nn_quantize: the %s model does not fit the int8 path (sequential conv2d, maxpool2d, "
                     "activation, dropout, flatten and dense layers over examples of this shape), or memory "
                     "ran out",
                     nn_layer_kind(model));
        return NULL;
    }
    for (int i = 0; i < count; i++) nn__plan_observe(p, calib + (size_t)i * size);
    int quantized = nn__plan_quantize(p, MIN_QUANTIZED_CHANNELS);
    if (quantized == -2) {
        nn__plan_free(p);
        nn_error_set(err, NN_ERR_NUMERIC, "nn_quantize: the calibration examples give a NaN or infinite value "
                                          "inside the model; no scale can be calibrated");
        return NULL;
    }
    nn_qmodel *q = quantized >= 0 ? calloc(1, sizeof *q) : NULL;
    if (!q) {
        nn__plan_free(p);
        nn_error_set(err, NN_ERR_MEMORY, "nn_quantize: out of memory");
        return NULL;
    }
    q->plan = p;
    q->quantized = quantized;
    return q;
}

const float *nn_qmodel_run(nn_qmodel *q, const float *x, int *out_size, nn_error *err)
{
    if (!q || !x) {
        nn_error_set(err, NN_ERR_ARG, "nn_qmodel_run: %s is NULL", q ? "the example" : "the model");
        return NULL;
    }
    return nn__plan_run(q->plan, x, out_size);
}

int nn_qmodel_class(nn_qmodel *q, const float *x, nn_error *err)
{
    int n;
    const float *y = nn_qmodel_run(q, x, &n, err);
    if (!y) return -1;
    int best = 0;
    for (int i = 1; i < n; i++)
        if (y[i] > y[best]) best = i;
    return best;
}

int nn_qmodel_quantized_layers(const nn_qmodel *q) { return q ? q->quantized : 0; }

void nn_qmodel_free(nn_qmodel *q)
{
    if (!q) return;
    nn__plan_free(q->plan);
    free(q);
}
