/* Sums in 16 running lanes (element j goes to lane j mod 16) added in order
 * at the end: loops the compiler vectorizes without reassociating, with the
 * same result on every vector width and thread count. */
#ifndef NN_KERNELS_LANES_H
#define NN_KERNELS_LANES_H

enum { NN_LANES = 16 };

/* Sum of x[0..n). */
static inline float nn_lane_sum(int n, const float *x)
{
    float lane[NN_LANES] = {0};
    int j = 0;
    for (; j + NN_LANES <= n; j += NN_LANES)
        for (int l = 0; l < NN_LANES; l++) lane[l] += x[j + l];
    for (int l = 0; j + l < n; l++) lane[l] += x[j + l];
    float s = 0.0f;
    for (int l = 0; l < NN_LANES; l++) s += lane[l];
    return s;
}

/* Sum of a[j] * b[j] over [0, n). */
static inline float nn_lane_dot(int n, const float *a, const float *b)
{
    float lane[NN_LANES] = {0};
    int j = 0;
    for (; j + NN_LANES <= n; j += NN_LANES)
        for (int l = 0; l < NN_LANES; l++) lane[l] += a[j + l] * b[j + l];
    for (int l = 0; j + l < n; l++) lane[l] += a[j + l] * b[j + l];
    float s = 0.0f;
    for (int l = 0; l < NN_LANES; l++) s += lane[l];
    return s;
}

#endif
