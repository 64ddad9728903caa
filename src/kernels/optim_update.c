/* Parameter updates of the optimizers (rules as in torch.optim). */
#include <math.h>

#include "kernels.h"

void nn_k_sgd(size_t n, float *p, const float *g, float *buf, float lr, float momentum,
              float weight_decay, int nesterov, int first_step)
{
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + weight_decay * p[i];
        if (momentum != 0.0f) {
            float b = first_step ? d : momentum * buf[i] + d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] -= lr * d;
    }
}

void nn_k_adam(size_t n, float *p, const float *g, float *m, float *v, float lr, float beta1,
               float beta2, float eps, float weight_decay, float bias_c1, float bias_c2,
               int decoupled)
{
    float step = lr / bias_c1;
    float inv_sqrt_c2 = 1.0f / sqrtf(bias_c2);
    /* elementwise, so splitting it between threads changes no result */
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++) {
        float d = g[i];
        if (decoupled)
            p[i] -= lr * weight_decay * p[i];
        else
            d += weight_decay * p[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * d;
        v[i] = beta2 * v[i] + (1.0f - beta2) * d * d;
        p[i] -= step * m[i] / (sqrtf(v[i]) * inv_sqrt_c2 + eps);
    }
}
