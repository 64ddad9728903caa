/* Seeded random numbers (xoshiro256**, seeded through splitmix64) and
 * initializers. */
#include <math.h>
#include <stdio.h>

#include "nn/tensor.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void nn_rng_seed(nn_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t next_u64(nn_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static inline float uniform_of(uint64_t u) { return (float)(u >> 40) * (1.0f / 16777216.0f); } /* 24 bits */

uint64_t nn_rng_u64(nn_rng *r) { return next_u64(r); }

float nn_rng_uniform(nn_rng *r) { return uniform_of(next_u64(r)); }

void nn_rng_uniform_fill(nn_rng *r, size_t n, float *out)
{
    nn_rng local = *r; /* the state in registers for the whole loop, not in memory per call */
    for (size_t i = 0; i < n; i++) out[i] = uniform_of(next_u64(&local));
    *r = local;
}

float nn_rng_normal(nn_rng *r)
{
    /* Box-Muller on doubles; u1 in (0, 1] so the log is finite. */
    double u1 = ((double)(nn_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(nn_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t nn_rng_below(nn_rng *r, uint64_t n)
{
    /* Rejection sampling removes modulo bias. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = nn_rng_u64(r);
    while (x >= limit);
    return x % n;
}

void nn_rng_shuffle(nn_rng *r, int *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)nn_rng_below(r, i);
        int t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

void nn_tensor_uniform(nn_tensor *t, nn_rng *r, float lo, float hi)
{
    for (size_t i = 0; i < t->size; i++) t->data[i] = lo + (hi - lo) * nn_rng_uniform(r);
}

void nn_tensor_normal(nn_tensor *t, nn_rng *r, float mean, float std)
{
    for (size_t i = 0; i < t->size; i++) t->data[i] = mean + std * nn_rng_normal(r);
}

void nn_init_he(nn_tensor *t, int fan_in, nn_rng *r)
{
    nn_tensor_normal(t, r, 0.0f, sqrtf(2.0f / (float)(fan_in > 0 ? fan_in : 1)));
}

void nn_init_xavier(nn_tensor *t, int fan_in, int fan_out, nn_rng *r)
{
    int fans = fan_in + fan_out;
    float a = sqrtf(6.0f / (float)(fans > 0 ? fans : 1));
    nn_tensor_uniform(t, r, -a, a);
}

nn_status nn_init_orthogonal(nn_tensor *t, float gain, nn_rng *r)
{
    if (t->ndim != 2 || t->shape[0] % t->shape[1]) return NN_ERR_SHAPE;
    int n = t->shape[1];
    for (int b = 0; b < t->shape[0] / n; b++) {
        float *m = t->data + (size_t)b * n * n;
        for (int i = 0; i < n; i++) {
            float *row = m + (size_t)i * n;
            double norm;
            do { /* a normal row, minus its projections on the rows before */
                for (int j = 0; j < n; j++) row[j] = nn_rng_normal(r);
                for (int k = 0; k < i; k++) {
                    const float *q = m + (size_t)k * n;
                    double dot = 0;
                    for (int j = 0; j < n; j++) dot += (double)row[j] * q[j];
                    for (int j = 0; j < n; j++) row[j] -= (float)dot * q[j];
                }
                norm = 0;
                for (int j = 0; j < n; j++) norm += (double)row[j] * row[j];
            } while (norm < 1e-6);
            float inv = (float)(1.0 / sqrt(norm));
            for (int j = 0; j < n; j++) row[j] *= inv;
        }
        for (size_t i = 0; i < (size_t)n * n; i++) m[i] *= gain;
    }
    return NN_OK;
}

void nn_rng_to_string(const nn_rng *r, char out[NN_RNG_STRING_MAX])
{
    snprintf(out, NN_RNG_STRING_MAX, "%016llx:%016llx:%016llx:%016llx", (unsigned long long)r->s[0],
             (unsigned long long)r->s[1], (unsigned long long)r->s[2], (unsigned long long)r->s[3]);
}

int nn_rng_from_string(nn_rng *r, const char *text)
{
    uint64_t s[4] = {0, 0, 0, 0};
    if (!text) return 0;
    for (int i = 0; i < 4; i++) {
        for (int d = 0; d < 16; d++) {
            char c = *text++;
            unsigned v = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                         : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                         : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16u;
            if (v > 15) return 0;
            s[i] = s[i] << 4 | v;
        }
        if (*text++ != (i < 3 ? ':' : '\0')) return 0;
    }
    if (!(s[0] | s[1] | s[2] | s[3])) return 0;
    for (int i = 0; i < 4; i++) r->s[i] = s[i];
    return 1;
}
