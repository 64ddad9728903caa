/* Parameter updates of the optimizers (rules as in torch.optim). */
#include <math.h>

#include "kernels.h"

/* Optimizer state smaller than this is stored as zero, and gradients
 * smaller than GRAD_FLOOR count as zero. A parameter whose gradient stays
 * 0 (a dead ReLU unit's weights) decays its momentum or first moment
 * geometrically, into subnormal floats within about 800 steps, and x86
 * cores run arithmetic on subnormals through slow microcode: on MNIST,
 * Adam took 2.5x longer per step averaged over 5000 steps. A square of a
 * gradient over GRAD_FLOOR, scaled by 1 - beta2 >= 1e-3, is still normal.
 * With Adam's default eps (1e-8), a gradient under GRAD_FLOOR moves a
 * parameter by less than 1e-9 of an ordinary step, a moment under
 * STATE_FLOOR by less than 1e-21. */
#define STATE_FLOOR 1e-30f
#define GRAD_FLOOR 1e-17f

static inline float floor_to_zero(float x, float floor) { return fabsf(x) < floor ? 0.0f : x; }

void nn_k_sgd(size_t n, float *p, const float *g, float *buf, float lr, float momentum,
              float weight_decay, int nesterov, int first_step)
{
    for (size_t i = 0; i < n; i++) {
        float d = floor_to_zero(g[i], GRAD_FLOOR) + weight_decay * p[i];
        if (momentum != 0.0f) {
            float b = floor_to_zero(first_step ? d : momentum * buf[i] + d, STATE_FLOOR);
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
    for (size_t i = 0; i < n; i++) {
        float d = floor_to_zero(g[i], GRAD_FLOOR);
        if (decoupled)
            p[i] -= lr * weight_decay * p[i];
        else
            d += weight_decay * p[i];
        m[i] = floor_to_zero(beta1 * m[i] + (1.0f - beta1) * d, STATE_FLOOR);
        v[i] = floor_to_zero(beta2 * v[i] + (1.0f - beta2) * d * d, STATE_FLOOR);
        p[i] -= step * m[i] / (sqrtf(v[i]) * inv_sqrt_c2 + eps);
    }
}

void nn_k_adamax(size_t n, float *p, const float *g, float *m, float *u, float lr, float beta1,
                 float beta2, float eps, float weight_decay, float bias_c1)
{
    float step = lr / bias_c1;
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++) {
        float d = floor_to_zero(g[i], GRAD_FLOOR) + weight_decay * p[i];
        m[i] = floor_to_zero(beta1 * m[i] + (1.0f - beta1) * d, STATE_FLOOR);
        u[i] = fmaxf(beta2 * u[i], fabsf(d) + eps);
        p[i] -= step * m[i] / u[i];
    }
}
