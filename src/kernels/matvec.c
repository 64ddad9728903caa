/* y = W x for one vector: the step of generation, where a GEMM's packing
 * of W would cost more than the product. */
#include "kernels.h"
#include "lanes.h"

void nn_k_matvec(int n, int k, const float *w, const float *x, float *y)
{
    for (int i = 0; i < n; i++) y[i] = nn_lane_dot(k, w + (size_t)i * k, x);
}
