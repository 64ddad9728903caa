/* y = W x for one vector: the step of generation, where a GEMM's packing
 * of W would cost more than the product. */
#include "kernels.h"

enum { LANES = 16 };

void nn_k_matvec(int n, int k, const float *w, const float *x, float *y)
{
    for (int i = 0; i < n; i++) {
        const float *wi = w + (size_t)i * k;
        float lane[LANES] = {0};
        int j = 0;
        for (; j + LANES <= k; j += LANES)
            for (int l = 0; l < LANES; l++) lane[l] += wi[j + l] * x[j + l];
        for (int l = 0; j + l < k; l++) lane[l] += wi[j + l] * x[j + l];
        float s = 0.0f;
        for (int l = 0; l < LANES; l++) s += lane[l];
        y[i] = s;
    }
}
