/* Sums in 16 running lanes (element j goes to lane j mod 16) added in a
 * fixed tree at the end: loops the compiler vectorizes without
 * reassociating, with the same result on every vector width and thread
 * count. */
#ifndef NN_KERNELS_LANES_H
#define NN_KERNELS_LANES_H

enum { NN_LANES = 16 };

/* The 16 lanes added as a fixed tree: lane l + lane l+8, then +4, then
 * pairs (in order, 15 dependent additions made a short row's reduction
 * cost more than its arithmetic). */
static inline float nn_lane_total(const float *lane)
{
    float a[8];
    for (int i = 0; i < 8; i++) a[i] = lane[i] + lane[i + 8];
    for (int i = 0; i < 4; i++) a[i] += a[i + 4];
    return (a[0] + a[2]) + (a[1] + a[3]);
}

/* Sum of x[0..n). */
static inline float nn_lane_sum(int n, const float *x)
{
    float lane[NN_LANES] = {0};
    int j = 0;
    for (; j + NN_LANES <= n; j += NN_LANES)
        for (int l = 0; l < NN_LANES; l++) lane[l] += x[j + l];
    for (int l = 0; j + l < n; l++) lane[l] += x[j + l];
    return nn_lane_total(lane);
}

/* Sum of a[j] * b[j] over [0, n). */
static inline float nn_lane_dot(int n, const float *a, const float *b)
{
    float lane[NN_LANES] = {0};
    int j = 0;
    for (; j + NN_LANES <= n; j += NN_LANES)
        for (int l = 0; l < NN_LANES; l++) lane[l] += a[j + l] * b[j + l];
    for (int l = 0; j + l < n; l++) lane[l] += a[j + l] * b[j + l];
    return nn_lane_total(lane);
}

#endif
