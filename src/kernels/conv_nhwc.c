/* Channels-last kernels for one example at a time (the inference plan,
 * src/infer/): a direct convolution whose register tile is up to 12 output
 * positions of a row by two channel vectors, reading the input by
 * broadcast and the weights packed tap by tap, so nothing is packed or
 * copied per call; a 3x3 convolution with 2x2 pooling by Winograd's
 * F(2x2, 3x3); max pooling; and the copies between the channel-major
 * layout of the library's tensors and this one. */
#include "kernels.h"
#include "simd.h"

/* Register budget: accumulators per tile (with NV weight vectors beside
 * them): 32 vector registers with AVX-512, 16 elsewhere. At most two
 * channel vectors per tile: a group's weights (taps x channels x 32
 * floats for a 3x3x32 input) then stay in the 48 KB L1 cache while the
 * tiles of a row pass over them; four vectors with fewer positions ran
 * 12% slower (74 KB of weights streaming from L2). */
#if VEC == 16
enum { MAX_ACC = 24 };
#else
enum { MAX_ACC = 12 };
#endif
enum { MAX_NV = 2, MAX_P = 12 };

int nn_k_nhwc_channel_align(void) { return VEC; }

/* Channel vectors [*v0, *v1) of group g of the ocp / VEC output vectors:
 * the groups are as even as MAX_NV allows. */
static int groups_of(int nvec) { return (nvec + MAX_NV - 1) / MAX_NV; }
static void group_span(int nvec, int g, int *v0, int *v1)
{
    int groups = groups_of(nvec);
    *v0 = nvec * g / groups;
    *v1 = nvec * (g + 1) / groups;
}

static int padded(int oc) { return (oc + VEC - 1) / VEC * VEC; }

size_t nn_k_nhwc_packed_floats(int ocp, int c, int k) { return (size_t)padded(ocp) * c * k * k; }

void nn_k_nhwc_pack_weights(int oc, int ocp, int c, int k, const float *w, float *dst)
{
    int nvec = padded(ocp) / VEC;
    for (int g = 0; g < groups_of(nvec); g++) {
        int v0, v1;
        group_span(nvec, g, &v0, &v1);
        int width = (v1 - v0) * VEC;
        for (int t = 0; t < k * k; t++)
            for (int ci = 0; ci < c; ci++)
                for (int j = 0; j < width; j++) {
                    int o = v0 * VEC + j;
                    *dst++ = o < oc ? w[((size_t)o * c + ci) * k * k + t] : 0.0f;
                }
    }
}

/* P consecutive output positions times NV channel vectors. x points at the
 * first position's window corner; positions are `step` floats apart. */
static inline __attribute__((always_inline)) void
conv_tile(int P, int NV, const nn_nhwc_conv *s, const float *restrict x, const float *restrict w,
          const float *restrict bias, int relu, float *restrict y)
{
    vf acc[MAX_P][MAX_NV];
    for (int p = 0; p < P; p++)
        for (int v = 0; v < NV; v++) acc[p][v] = (vf){0};
    size_t step = (size_t)s->stride * s->cs;
    /* where the channel stride is the channel count, a window row's taps
     * and channels are one run of k * c floats */
    int runs = s->cs == s->c ? 1 : s->k, run = s->cs == s->c ? s->k * s->c : s->c;
    const float *wt = w;
    for (int ky = 0; ky < s->k; ky++)
        for (int r = 0; r < runs; r++) {
            const float *xt = x + ((size_t)ky * s->iw + r) * s->cs;
            for (int j = 0; j < run; j++, wt += NV * VEC) {
                vf b[MAX_NV];
                for (int v = 0; v < NV; v++) b[v] = vload(wt + v * VEC);
                for (int p = 0; p < P; p++) {
                    float a = xt[p * step + j];
                    for (int v = 0; v < NV; v++) acc[p][v] += VS(a) * b[v];
                }
            }
        }
    for (int v = 0; v < NV; v++) {
        vf bv = bias ? vload(bias + v * VEC) : (vf){0};
        for (int p = 0; p < P; p++) {
            vf r = acc[p][v] + bv;
            if (relu) r = (vf)((vi)r & (vi)(r > 0.0f));
            vstore(y + (size_t)p * s->ocp + v * VEC, r);
        }
    }
}

#define TILE_CASE(P, NV)                                                                           \
    case (P) * 8 + (NV):                                                                           \
        conv_tile(P, NV, s, x, w, bias, relu, y);                                                  \
        return;

static void conv_tile_any(int P, int NV, const nn_nhwc_conv *s, const float *x, const float *w,
                          const float *bias, int relu, float *y)
{
    switch (P * 8 + NV) { /* P <= 12 at NV 1; 12 (AVX-512) or 6 at NV 2 */
        TILE_CASE(1, 1) TILE_CASE(2, 1) TILE_CASE(3, 1) TILE_CASE(4, 1) TILE_CASE(5, 1) TILE_CASE(6, 1)
        TILE_CASE(7, 1) TILE_CASE(8, 1) TILE_CASE(9, 1) TILE_CASE(10, 1) TILE_CASE(11, 1) TILE_CASE(12, 1)
        TILE_CASE(1, 2) TILE_CASE(2, 2) TILE_CASE(3, 2) TILE_CASE(4, 2) TILE_CASE(5, 2) TILE_CASE(6, 2)
#if VEC == 16 /* MAX_ACC 24 */
        TILE_CASE(7, 2) TILE_CASE(8, 2) TILE_CASE(9, 2) TILE_CASE(10, 2) TILE_CASE(11, 2) TILE_CASE(12, 2)
#endif
    default:
        break;
    }
}

void nn_k_conv_nhwc(const nn_nhwc_conv *s, const float *x, const float *wp, const float *bias, int relu,
                    float *y)
{
    int nvec = s->ocp / VEC;
    size_t group_floats = (size_t)s->k * s->k * s->c * VEC; /* per channel vector */
    const float *w = wp;
    for (int g = 0; g < groups_of(nvec); g++) {
        int v0, v1;
        group_span(nvec, g, &v0, &v1);
        int nv = v1 - v0;
        int pmax = MAX_ACC / nv < MAX_P ? MAX_ACC / nv : MAX_P;
        int tiles = (s->cols + pmax - 1) / pmax;
        for (int oy = 0; oy < s->rows; oy++)
            for (int t = 0; t < tiles; t++) {
                int c0 = s->cols * t / tiles, c1 = s->cols * (t + 1) / tiles;
                const float *xt = x + ((size_t)oy * s->stride * s->iw + (size_t)c0 * s->stride) * s->cs;
                float *yt = y + ((size_t)oy * s->ow + c0) * s->ocp + (size_t)v0 * VEC;
                conv_tile_any(c1 - c0, nv, s, xt, w, bias ? bias + v0 * VEC : NULL, relu, yt);
            }
        w += group_floats * nv;
    }
}

/* The larger of m and v, or v where v is a NaN (as nn_maxpool2d). */
static inline vf max_or_nan(vf m, vf v)
{
    vi take = ~(v <= m);
    return (vf)(((vi)v & take) | ((vi)m & ~take));
}

void nn_k_maxpool_nhwc(const nn_nhwc_pool *s, const float *x, float *y)
{
    size_t row = (size_t)s->iw * s->cs;
    for (int oy = 0; oy < s->oh; oy++)
        for (int ox = 0; ox < s->ow; ox++) {
            int y0 = oy * s->stride - s->pad, x0 = ox * s->stride - s->pad;
            int ya = y0 < 0 ? 0 : y0, xa = x0 < 0 ? 0 : x0;
            int yb = y0 + s->k > s->ih ? s->ih : y0 + s->k, xb = x0 + s->k > s->iw ? s->iw : x0 + s->k;
            const float *corner = x + (size_t)ya * row + (size_t)xa * s->cs;
            float *out = y + ((size_t)oy * s->ow + ox) * s->cs;
            if (yb - ya == 2 && xb - xa == 2) { /* the common 2x2 window, unrolled */
                for (int c = 0; c < s->cs; c += VEC) {
                    const float *p = corner + c;
                    vf m = max_or_nan(max_or_nan(vload(p), vload(p + s->cs)),
                                      max_or_nan(vload(p + row), vload(p + row + s->cs)));
                    if (s->relu) m = (vf)((vi)m & (vi)(m > 0.0f));
                    vstore(out + c, m);
                }
                continue;
            }
            for (int c = 0; c < s->cs; c += VEC) {
                vf m = vload(corner + c);
                for (int iy = ya; iy < yb; iy++)
                    for (int ix = xa; ix < xb; ix++)
                        m = max_or_nan(m, vload(x + (size_t)iy * row + (size_t)ix * s->cs + c));
                if (s->relu) m = (vf)((vi)m & (vi)(m > 0.0f));
                vstore(out + c, m);
            }
        }
}

/* ---- Winograd F(2x2, 3x3) ------------------------------------------------
 * A 3x3 convolution as 16 products of transformed 4x4 input tiles with
 * transformed filters (Lavin and Gray, 2016): 2.25x fewer multiplications
 * than the direct form, paid for by cheap transforms in the channel
 * vectors. Each 2x2 output tile is exactly one 2x2 pooling window, so the
 * output transform pools as it goes. */

/* Entry (i, j) of G g G^T for one 3x3 filter g (G: rows (1,0,0),
 * (1/2,1/2,1/2), (1/2,-1/2,1/2), (0,0,1)). */
static float filter_transform(const float *g, int i, int j)
{
    static const float G[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
    float sum = 0.0f;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) sum += G[i][a] * g[a * 3 + b] * G[j][b];
    return sum;
}

size_t nn_k_winograd_packed_floats(int ocp, int c) { return 16 * nn_k_nhwc_packed_floats(ocp, c, 1); }

void nn_k_winograd_pack(int oc, int ocp, int c, const float *w, float *dst)
{
    int nvec = padded(ocp) / VEC;
    for (int xi = 0; xi < 16; xi++)
        for (int g = 0; g < groups_of(nvec); g++) {
            int v0, v1;
            group_span(nvec, g, &v0, &v1);
            for (int ci = 0; ci < c; ci++)
                for (int o = v0 * VEC; o < v1 * VEC; o++)
                    *dst++ = o < oc ? filter_transform(w + ((size_t)o * c + ci) * 9, xi / 4, xi % 4) : 0.0f;
        }
}

size_t nn_k_winograd_scratch_floats(const nn_nhwc_conv *s)
{
    size_t tiles = (size_t)(s->rows / 2) * (s->cols / 2);
    return 16 * tiles * ((size_t)padded(s->c) + s->ocp);
}

/* B^T d B for the 4x4 tile of vectors d (B^T: rows (1,0,-1,0), (0,1,1,0),
 * (0,-1,1,0), (0,1,0,-1)), in place. */
static inline void input_transform(vf d[4][4])
{
    for (int j = 0; j < 4; j++) {
        vf a = d[0][j], b = d[1][j], c = d[2][j], e = d[3][j];
        d[0][j] = a - c, d[1][j] = b + c, d[2][j] = c - b, d[3][j] = b - e;
    }
    for (int i = 0; i < 4; i++) {
        vf a = d[i][0], b = d[i][1], c = d[i][2], e = d[i][3];
        d[i][0] = a - c, d[i][1] = b + c, d[i][2] = c - b, d[i][3] = b - e;
    }
}

void nn_k_conv_nhwc_winograd_pool(const nn_nhwc_conv *s, const float *x, const float *wp, const float *bias,
                                  int relu, float *y, float *scratch)
{
    int th = s->rows / 2, tw = s->cols / 2, tiles = th * tw, cp = padded(s->c);
    float *V = scratch, *M = scratch + (size_t)16 * tiles * cp;
    size_t row = (size_t)s->iw * s->cs;
    for (int t = 0; t < tiles; t++) {
        const float *corner = x + (size_t)(t / tw) * 2 * row + (size_t)(t % tw) * 2 * s->cs;
        for (int c = 0; c < cp; c += VEC) {
            vf d[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) d[i][j] = vload(corner + i * row + (size_t)j * s->cs + c);
            input_transform(d);
            for (int xi = 0; xi < 16; xi++) vstore(V + ((size_t)xi * tiles + t) * cp + c, d[xi / 4][xi % 4]);
        }
    }
    /* the 16 products: each a 1x1 convolution over a one-row map of tiles */
    nn_nhwc_conv g = {tiles, cp, s->c, 1, 1, s->ocp, tiles, 1, tiles};
    size_t wstep = nn_k_nhwc_packed_floats(s->ocp, s->c, 1);
    for (int xi = 0; xi < 16; xi++)
        nn_k_conv_nhwc(&g, V + (size_t)xi * tiles * cp, wp + xi * wstep, NULL, 0, M + (size_t)xi * tiles * s->ocp);
    /* A^T m A (A^T: rows (1,1,1,0), (0,1,-1,-1)), then the pooling */
    for (int t = 0; t < tiles; t++)
        for (int o = 0; o < s->ocp; o += VEC) {
            vf m[16];
            for (int xi = 0; xi < 16; xi++) m[xi] = vload(M + ((size_t)xi * tiles + t) * s->ocp + o);
            vf r[2][4];
            for (int j = 0; j < 4; j++) {
                r[0][j] = m[j] + m[4 + j] + m[8 + j];
                r[1][j] = m[4 + j] - m[8 + j] - m[12 + j];
            }
            vf out[4];
            for (int i = 0; i < 2; i++) {
                out[2 * i] = r[i][0] + r[i][1] + r[i][2];
                out[2 * i + 1] = r[i][1] - r[i][2] - r[i][3];
            }
            vf best = max_or_nan(max_or_nan(out[0], out[1]), max_or_nan(out[2], out[3])) + vload(bias + o);
            if (relu) best = (vf)((vi)best & (vi)(best > 0.0f));
            vstore(y + (size_t)t * s->ocp + o, best);
        }
}

void nn_k_copy_map(int c, int h, int w, const float *x, const size_t xs[3], float *y, const size_t ys[3])
{
    for (int ci = 0; ci < c; ci++)
        for (int iy = 0; iy < h; iy++)
            for (int ix = 0; ix < w; ix++)
                y[ci * ys[0] + iy * ys[1] + ix * ys[2]] = x[ci * xs[0] + iy * xs[1] + ix * xs[2]];
}
