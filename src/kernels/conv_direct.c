/* Direct convolution for layers with few taps per output (c*kh*kw small,
 * such as a first layer over grey or RGB images). There im2col would copy
 * the whole input kh*kw times to feed a GEMM whose K is too short to run
 * fast, and the GEMM's output would need a transpose back to NCHW.
 *
 * Here, for one image and one strip of up to CHUNK output columns of an
 * output row, the input values under every tap are gathered once into a
 * small zero-padded table (taps x CHUNK, in L1); every output channel then
 * accumulates from it with fixed-width vector loops, and writes NCHW with
 * the bias and ReLU applied. The forward sums taps in the GEMM's order
 * (c, ki, kj), from zero, padding included, then adds the bias: the same
 * bits as the im2col path.
 *
 * Threads own whole images (forward, dx) or weight rows (dW, db) and sum
 * in a fixed order: results do not depend on the thread count. The common
 * unpadded stride-1 shapes take the AVX-512 path of conv_direct_fast.c
 * where the build targets it. */
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"
#include "simd.h"

#define PAR_MIN_WORK 100000 /* multiply-adds below which threads cost more than they save */
#define CHUNK (2 * VEC)     /* output columns per strip: two vectors */
#define OB 4                /* output channels computed together (8 accumulators) */
#define TB 4                /* taps accumulated together in dx */
#define TAB_FLOATS 8192     /* gathered taps per thread (32 KB): at least one strip */
#define DW_PART_VECS 512    /* dW partial sums per thread: 32 KB with AVX-512 */
#define G_BLOCK 32          /* output channels' gradients held at a time in dx */

typedef struct strip {
    int n, oh, o0, width; /* image, output row, first column, columns in the strip */
} strip;

/* The columns of nn_k_conv_valid_cols within the strip. */
static void tap_cols(const nn_conv_shape *s, int kj, strip st, int *lo, int *hi)
{
    nn_k_conv_valid_cols(s, kj, lo, hi);
    if (*lo < st.o0) *lo = st.o0;
    if (*hi > st.o0 + st.width) *hi = st.o0 + st.width;
    if (*lo > *hi) *lo = *hi;
}

/* tab[t][j] = the input under tap t for output column o0 + j (0 in the
 * padding and past the strip's width). */
static void gather_taps(const float *x, const nn_conv_shape *s, strip st,
                        float tab[][CHUNK])
{
    const size_t hw = (size_t)s->h * s->w;
    const float *xn = x + (size_t)st.n * s->c * hw;
    int t = 0;
    for (int c = 0; c < s->c; c++)
        for (int ki = 0; ki < s->kh; ki++) {
            int ih = st.oh * s->sh - s->pt + ki;
            const float *row = xn + c * hw + (size_t)ih * s->w;
            for (int kj = 0; kj < s->kw; kj++, t++) {
                float *d = tab[t];
                memset(d, 0, CHUNK * sizeof(float));
                if (ih < 0 || ih >= s->h) continue;
                int lo, hi, off = kj - s->pl;
                tap_cols(s, kj, st, &lo, &hi);
                if (s->sw == 1)
                    memcpy(d + lo - st.o0, row + lo + off, (size_t)(hi - lo) * sizeof(float));
                else
                    for (int ow = lo; ow < hi; ow++) d[ow - st.o0] = row[ow * s->sw + off];
            }
        }
}

/* The adjoint: dx under each tap += dtab[t][j]. */
static void scatter_taps(float dtab[][CHUNK], const nn_conv_shape *s, strip st, float *dx)
{
    const size_t hw = (size_t)s->h * s->w;
    float *dxn = dx + (size_t)st.n * s->c * hw;
    int t = 0;
    for (int c = 0; c < s->c; c++)
        for (int ki = 0; ki < s->kh; ki++) {
            int ih = st.oh * s->sh - s->pt + ki;
            float *row = dxn + c * hw + (size_t)ih * s->w;
            for (int kj = 0; kj < s->kw; kj++, t++) {
                if (ih < 0 || ih >= s->h) continue;
                int lo, hi, off = kj - s->pl;
                tap_cols(s, kj, st, &lo, &hi);
                const float *d = dtab[t] - st.o0;
                if (s->sw == 1)
                    for (int ow = lo; ow < hi; ow++) row[ow + off] += d[ow];
                else
                    for (int ow = lo; ow < hi; ow++) row[ow * s->sw + off] += d[ow];
            }
        }
}

static inline int min_int(int a, int b) { return a < b ? a : b; }

/* Strip q of an image covers output row q / per_row, columns from
 * q % per_row * CHUNK. */
static strip strip_at(const nn_conv_shape *s, int n, int q)
{
    int per_row = (s->ow + CHUNK - 1) / CHUNK, o0 = q % per_row * CHUNK;
    strip st = {n, q / per_row, o0, min_int(s->ow - o0, CHUNK)};
    return st;
}

/* The taps of strips [q0, q1) of image n: strip q's table at
 * tab + (q - q0) * taps * CHUNK. */
static void gather_strips(const float *x, const nn_conv_shape *s, int n, int q0, int q1, float *tab)
{
    const int taps = s->c * s->kh * s->kw;
    for (int q = q0; q < q1; q++)
        gather_taps(x, s, strip_at(s, n, q), (float(*)[CHUNK])(tab + (size_t)(q - q0) * taps * CHUNK));
}

/* v + b, zeroed where not positive (NaN included) when relu is set. */
static inline vf bias_relu(vf v, float b, int relu)
{
    v += VS(b);
    return relu ? (vf)((vi)v & (v > 0.0f)) : v;
}

/* The first width (<= CHUNK) values of the strip [v0 v1] to dst; with
 * room_after set, all CHUNK values may be written (the caller will
 * overwrite those past width later). */
static inline void store_strip(float *dst, int width, int room_after, vf v0, vf v1)
{
    if (width == CHUNK || room_after) {
        vstore(dst, v0);
        vstore(dst + VEC, v1);
        return;
    }
    /* element by element from the registers: a spill to the stack and
     * narrower reloads would stall on store forwarding */
    if (width >= VEC) {
        vstore(dst, v0);
        for (int j = VEC; j < width; j++) dst[j] = v1[j - VEC];
    } else {
        for (int j = 0; j < width; j++) dst[j] = v0[j];
    }
}

void nn_k_conv_direct(const float *x, const nn_conv_shape *s, int oc, const float *w,
                      const float *bias, int relu, float *y)
{
    if (nn_k_conv_direct_fast_taps(s)) {
        nn_k_conv_direct_fast(x, s, oc, w, bias, relu, y);
        return;
    }
    const int taps = s->c * s->kh * s->kw, per_row = (s->ow + CHUNK - 1) / CHUNK;
    const int strips = s->oh * per_row, block = TAB_FLOATS / (taps * CHUNK);
    const size_t ohw = (size_t)s->oh * s->ow;
#pragma omp parallel for schedule(static) if ((size_t)s->n * oc * ohw * taps > PAR_MIN_WORK)
    for (int n = 0; n < s->n; n++) {
        /* the taps of a block of strips, gathered once for all channels;
         * each channel then writes its plane's rows in order */
        float tab[TAB_FLOATS] __attribute__((aligned(64)));
        for (int q0 = 0; q0 < strips; q0 += block) {
            int q1 = min_int(q0 + block, strips);
            gather_strips(x, s, n, q0, q1, tab);
            for (int o = 0; o < oc; o += OB) {
                /* past the last channel, repeat it and drop the result */
                const float *wr[OB];
                for (int i = 0; i < OB; i++) wr[i] = w + (size_t)min_int(o + i, oc - 1) * taps;
                for (int q = q0; q < q1; q++) {
                    const float *tq = tab + (size_t)(q - q0) * taps * CHUNK;
                    vf acc[OB][2];
                    for (int i = 0; i < OB; i++) acc[i][0] = acc[i][1] = (vf){0};
                    for (int t = 0; t < taps; t++) {
                        vf t0 = vload(tq + t * CHUNK), t1 = vload(tq + t * CHUNK + VEC);
                        for (int i = 0; i < OB; i++) {
                            acc[i][0] += VS(wr[i][t]) * t0;
                            acc[i][1] += VS(wr[i][t]) * t1;
                        }
                    }
                    /* a strip ending short of its row may overrun into the
                     * next rows of the same plane, which are written after it */
                    size_t at = (size_t)(q / per_row) * s->ow + q % per_row * CHUNK;
                    int width = min_int(s->ow - q % per_row * CHUNK, CHUNK), room = at + CHUNK <= ohw;
                    for (int i = 0; i < OB && o + i < oc; i++) {
                        float b = bias ? bias[o + i] : 0.0f;
                        store_strip(y + ((size_t)n * oc + o + i) * ohw + at, width, room,
                                    bias_relu(acc[i][0], b, relu), bias_relu(acc[i][1], b, relu));
                    }
                }
            }
        }
    }
}

/* dy over the strip as two vectors, zeroed where the fused ReLU's output y
 * (may be NULL) is not positive and past the strip's width. Built in
 * registers: scalar stores read back as a vector would stall on store
 * forwarding. */
static inline void masked_strip(const float *dy, const float *y, const nn_conv_shape *s, int oc,
                                int o, strip st, vf *g0, vf *g1)
{
    size_t r = (((size_t)st.n * oc + o) * s->oh + st.oh) * s->ow + st.o0;
    size_t total = (size_t)s->n * oc * s->oh * s->ow;
    if (r + CHUNK <= total) { /* whole vectors stay inside dy and y */
        vi keep0 = lanes_below(st.width), keep1 = lanes_below(st.width - VEC);
        if (y) {
            keep0 &= vload(y + r) > 0.0f;
            keep1 &= vload(y + r + VEC) > 0.0f;
        }
        *g0 = (vf)((vi)vload(dy + r) & keep0);
        *g1 = (vf)((vi)vload(dy + r + VEC) & keep1);
        return;
    }
    float g[CHUNK];
    for (int j = 0; j < CHUNK; j++)
        g[j] = j < st.width && (!y || y[r + j] > 0.0f) ? dy[r + j] : 0.0f;
    *g0 = vload(g);
    *g1 = vload(g + VEC);
}

/* dW and db: the weight rows are split into blocks, one per thread if their
 * partial sums fit in DW_PART_VECS vectors. For each block of strips of an
 * image, the taps are gathered once; then for each weight row, TB taps at a
 * time accumulate over the block's strips in registers and are added to the
 * row's per-column partial sums, summed across the columns at the end.
 * Each row is summed by one thread in a fixed order, so how rows are
 * grouped into blocks does not change any sum. */
static void direct_dw(const float *x, const nn_conv_shape *s, int oc, const float *y,
                      const float *dy, float *dw, float *db)
{
    const int taps = s->c * s->kh * s->kw, per_row = (s->ow + CHUNK - 1) / CHUNK;
    const int strips = s->oh * per_row, block = TAB_FLOATS / (taps * CHUNK);
    const size_t ohw = (size_t)s->oh * s->ow;
    const int par = (size_t)s->n * oc * ohw * taps > PAR_MIN_WORK;
    int threads = 1;
#ifdef _OPENMP
    if (par && !omp_in_parallel()) threads = omp_get_max_threads();
#else
    (void)par;
#endif
    int rows = min_int((oc + threads - 1) / threads, DW_PART_VECS / (2 * (taps + 1)));
    const int blocks = (oc + rows - 1) / rows;
#pragma omp parallel for schedule(static) if (par)
    for (int bk = 0; bk < blocks; bk++) {
        const int o_lo = bk * rows, o_n = min_int(oc - o_lo, rows);
        float tab[TAB_FLOATS] __attribute__((aligned(64)));
        float g[TAB_FLOATS] __attribute__((aligned(64))); /* block * CHUNK <= TAB_FLOATS */
        vf part[DW_PART_VECS]; /* row i, tap t, half h at (i * (taps + 1) + t) * 2 + h;
                                  tap index taps holds the bias sums */
        memset(part, 0, (size_t)o_n * (taps + 1) * 2 * sizeof(vf));
        for (int n = 0; n < s->n; n++)
            for (int q0 = 0; q0 < strips; q0 += block) {
                int q1 = min_int(q0 + block, strips), nq = q1 - q0;
                gather_strips(x, s, n, q0, q1, tab);
                for (int i = 0; i < o_n; i++) {
                    vf *pi = part + (size_t)i * (taps + 1) * 2;
                    vf b0 = {0}, b1 = {0};
                    for (int q = 0; q < nq; q++) {
                        vf g0, g1;
                        masked_strip(dy, y, s, oc, o_lo + i, strip_at(s, n, q0 + q), &g0, &g1);
                        vstore(g + q * CHUNK, g0);
                        vstore(g + q * CHUNK + VEC, g1);
                        b0 += g0;
                        b1 += g1;
                    }
                    pi[2 * taps] += b0;
                    pi[2 * taps + 1] += b1;
                    for (int t = 0; t < taps; t += TB) {
                        /* taps past the last repeat it; their sums are dropped */
                        int tq[TB];
                        for (int u = 0; u < TB; u++) tq[u] = min_int(t + u, taps - 1);
                        vf acc[TB][2];
                        for (int u = 0; u < TB; u++) acc[u][0] = acc[u][1] = (vf){0};
                        for (int q = 0; q < nq; q++) {
                            const float *tb = tab + (size_t)q * taps * CHUNK;
                            vf g0 = vload(g + q * CHUNK), g1 = vload(g + q * CHUNK + VEC);
                            for (int u = 0; u < TB; u++) {
                                acc[u][0] += g0 * vload(tb + tq[u] * CHUNK);
                                acc[u][1] += g1 * vload(tb + tq[u] * CHUNK + VEC);
                            }
                        }
                        for (int u = 0; u < TB && t + u < taps; u++) {
                            pi[2 * (t + u)] += acc[u][0];
                            pi[2 * (t + u) + 1] += acc[u][1];
                        }
                    }
                }
            }
        for (int i = 0; i < o_n; i++)
            for (int t = 0; t <= taps; t++) {
                float v[CHUNK], sum = 0.0f;
                vstore(v, part[(i * (taps + 1) + t) * 2]);
                vstore(v + VEC, part[(i * (taps + 1) + t) * 2 + 1]);
                for (int j = 0; j < CHUNK; j++) sum += v[j];
                if (t < taps && dw) dw[(size_t)(o_lo + i) * taps + t] += sum;
                if (t == taps && db) db[o_lo + i] += sum;
            }
    }
}

/* dx: image n owned by one thread. For each strip, the gradient under each
 * tap is summed over the output channels (G_BLOCK channels' masked
 * gradients at a time, TB taps at a time in registers), then scattered to
 * the input. */
static void direct_dx(const nn_conv_shape *s, int oc, const float *w, const float *y,
                      const float *dy, float *dx)
{
    const int taps = s->c * s->kh * s->kw;
#pragma omp parallel for schedule(static) if ((size_t)s->n * oc * s->oh * s->ow * taps > PAR_MIN_WORK)
    for (int n = 0; n < s->n; n++) {
        float dtab[NN_CONV_DIRECT_MAX_TAPS + TB][CHUNK] __attribute__((aligned(64)));
        float g[G_BLOCK][CHUNK] __attribute__((aligned(64)));
        for (int oh = 0; oh < s->oh; oh++)
            for (int o0 = 0; o0 < s->ow; o0 += CHUNK) {
                strip st = {n, oh, o0, min_int(s->ow - o0, CHUNK)};
                memset(dtab, 0, sizeof dtab);
                for (int ob = 0; ob < oc; ob += G_BLOCK) {
                    int gn = min_int(oc - ob, G_BLOCK);
                    for (int i = 0; i < gn; i++) {
                        vf g0, g1;
                        masked_strip(dy, y, s, oc, ob + i, st, &g0, &g1);
                        vstore(g[i], g0);
                        vstore(g[i] + VEC, g1);
                    }
                    for (int t = 0; t < taps; t += TB) {
                        /* taps past the last read the last one's weights;
                         * their sums land in dtab's spare rows, unused */
                        int tq[TB];
                        for (int q = 0; q < TB; q++) tq[q] = min_int(t + q, taps - 1);
                        vf acc[TB][2];
                        for (int q = 0; q < TB; q++) {
                            acc[q][0] = vload(dtab[t + q]);
                            acc[q][1] = vload(dtab[t + q] + VEC);
                        }
                        for (int i = 0; i < gn; i++) {
                            const float *wo = w + (size_t)(ob + i) * taps;
                            vf g0 = vload(g[i]), g1 = vload(g[i] + VEC);
                            for (int q = 0; q < TB; q++) {
                                acc[q][0] += VS(wo[tq[q]]) * g0;
                                acc[q][1] += VS(wo[tq[q]]) * g1;
                            }
                        }
                        for (int q = 0; q < TB; q++) {
                            vstore(dtab[t + q], acc[q][0]);
                            vstore(dtab[t + q] + VEC, acc[q][1]);
                        }
                    }
                }
                scatter_taps(dtab, s, st, dx);
            }
    }
}

void nn_k_conv_direct_bwd(const float *x, const nn_conv_shape *s, int oc, const float *w,
                          const float *y, const float *dy, float *dx, float *dw, float *db)
{
    if ((dw || db) && nn_k_conv_direct_fast_taps(s))
        nn_k_conv_direct_fast_dw(x, s, oc, y, dy, dw, db);
    else if (dw || db)
        direct_dw(x, s, oc, y, dy, dw, db);
    if (dx) direct_dx(s, oc, w, y, dy, dx);
}
