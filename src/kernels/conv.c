/* Convolution by im2col + GEMM over NCHW tensors (pooling: pool.c; the
 * direct path for few taps: conv_direct.c).
 *
 * conv2d runs as one GEMM over the whole batch: im2col lays the input out as
 * col[C*KH*KW][N*OH*OW], so W[OC][C*KH*KW] x col gives the output as
 * [OC][N*OH*OW], which goes to NCHW with the bias added. col is never
 * stored whole: the GEMM asks for it a panel at a time, built from the
 * input (which stays in cache) where the panel is packed, instead of
 * writing and reading back nine copies of the input through memory; and
 * the output's panels are written to NCHW as the GEMM finishes them. */
#include <string.h>

#include "kernels.h"
#include "simd.h"

#define GATHER_MAX 256 /* rows or columns of col located at a time */

/* Loops below split work by image or channel: each thread owns distinct
 * outputs, so results do not depend on the thread count. */
#define PAR_MIN_WORK 100000 /* elements below which threads cost more than they save */

void nn_k_conv_valid_cols(const nn_conv_shape *s, int kj, int *lo, int *hi)
{
    int off = kj - s->pl; /* iw = ow * sw + off */
    int a = off >= 0 ? 0 : (-off + s->sw - 1) / s->sw;
    int b = s->w - off <= 0 ? 0 : (s->w - off + s->sw - 1) / s->sw; /* first ow with iw >= w */
    if (b > s->ow) b = s->ow;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* Where an entry of col reads x. An output position (image n, output row
 * oh, column ow) and a tap (channel c, kernel row ki, column kj) each give
 * an offset into x and a row and column within the input plane; the entry
 * col[tap][position] is x at the sum of the offsets when the summed row and
 * column fall inside the plane, else 0 (padding). So any block of col, or
 * of its transpose, is an outer sum of offsets gathered from x. */
typedef struct col_coords {
    int off[GATHER_MAX], ih[GATHER_MAX], iw[GATHER_MAX];
} col_coords;

/* Coordinates of positions [j0, j0+count), stepped without divisions. */
static void position_coords(const nn_conv_shape *s, int j0, int count, col_coords *o)
{
    int ohw = s->oh * s->ow, n = j0 / ohw, oh = j0 % ohw / s->ow, ow = j0 % s->ow;
    int chw = s->c * s->h * s->w;
    for (int i = 0; i < count; i++) {
        o->ih[i] = oh * s->sh - s->pt;
        o->iw[i] = ow * s->sw - s->pl;
        o->off[i] = n * chw + o->ih[i] * s->w + o->iw[i];
        if (++ow == s->ow) {
            ow = 0;
            if (++oh == s->oh) {
                oh = 0;
                n++;
            }
        }
    }
}

/* Coordinates of taps [k0, k0+count). */
static void tap_coords(const nn_conv_shape *s, int k0, int count, col_coords *o)
{
    int kk = s->kh * s->kw, c = k0 / kk, ki = k0 % kk / s->kw, kj = k0 % s->kw;
    for (int i = 0; i < count; i++) {
        o->ih[i] = ki;
        o->iw[i] = kj;
        o->off[i] = (c * s->h + ki) * s->w + kj;
        if (++kj == s->kw) {
            kj = 0;
            if (++ki == s->kh) {
                ki = 0;
                c++;
            }
        }
    }
}

/* Every window lies inside the input: no entry of col is padding. */
static int conv_interior(const nn_conv_shape *s)
{
    return s->pt == 0 && s->pl == 0 && (s->oh - 1) * s->sh + s->kh <= s->h &&
           (s->ow - 1) * s->sw + s->kw <= s->w;
}

/* d[j] = x[roff + col->off[j]] for j < n, or 0 where row (rih + ih[j]) or
 * column (riw + iw[j]) falls outside the h x w plane (checked only when
 * padded is set). With AVX-512, 16 at a time by gathers: the offsets
 * follow the image's layout, not memory order, so there is no contiguous
 * run to copy longer than a kernel row. */
static void gather_row(const float *x, int roff, int rih, int riw, const col_coords *col, int n,
                       int padded, const nn_conv_shape *s, float *restrict d)
{
#if defined(__AVX512F__)
    const __m512i vroff = _mm512_set1_epi32(roff), vrih = _mm512_set1_epi32(rih),
                  vriw = _mm512_set1_epi32(riw), vh = _mm512_set1_epi32(s->h),
                  vw = _mm512_set1_epi32(s->w);
    for (int j = 0; j < n; j += 16) {
        __mmask16 lanes = first_lanes(n - j), m = lanes;
        __m512i idx = _mm512_add_epi32(vroff, _mm512_maskz_loadu_epi32(m, col->off + j));
        if (padded) {
            __m512i ih = _mm512_add_epi32(vrih, _mm512_maskz_loadu_epi32(m, col->ih + j));
            __m512i iw = _mm512_add_epi32(vriw, _mm512_maskz_loadu_epi32(m, col->iw + j));
            m &= _mm512_cmplt_epu32_mask(ih, vh) & _mm512_cmplt_epu32_mask(iw, vw);
        }
        __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, x, 4);
        _mm512_mask_storeu_ps(d + j, lanes, v);
    }
#else
    for (int j = 0; j < n; j++) {
        unsigned ih = (unsigned)(rih + col->ih[j]), iw = (unsigned)(riw + col->iw[j]);
        d[j] = !padded || (ih < (unsigned)s->h && iw < (unsigned)s->w) ? x[roff + col->off[j]] : 0.0f;
    }
#endif
}

#if defined(__AVX512F__)
/* Columns [at, at+len) of a block row whose offsets are consecutive (an
 * output row's positions, len <= 16): one masked load and store each. */
typedef struct col_run {
    int at, off;
    __mmask16 lanes;
} col_run;

/* Split n columns into runs; 0 if they are too short to beat gathers. */
static int column_runs(const col_coords *col, int n, col_run *runs)
{
    int count = 0;
    for (int j = 0; j < n;) {
        int len = 1;
        while (j + len < n && len < 16 && col->off[j + len] == col->off[j] + len) len++;
        runs[count++] = (col_run){j, col->off[j], first_lanes(len)};
        j += len;
    }
    return 2 * count <= n / 4 + 1 ? count : 0; /* runs of 8 or more on average */
}
#endif

void nn_k_im2col_block(const float *x, const nn_conv_shape *s, int transposed, int r0, int nrows,
                       int c0, int ncols, float *dst, int ldd)
{
    col_coords rows, cols;
    int padded = !conv_interior(s);
#if defined(__AVX512F__)
    col_run run[GATHER_MAX];
    int runs = 0;
#endif
    for (int cd = 0; cd < ncols; cd += GATHER_MAX) {
        int cn = ncols - cd < GATHER_MAX ? ncols - cd : GATHER_MAX;
        (transposed ? tap_coords : position_coords)(s, c0 + cd, cn, &cols);
#if defined(__AVX512F__)
        if (!padded) runs = column_runs(&cols, cn, run);
#endif
        for (int rd = 0; rd < nrows; rd += GATHER_MAX) {
            int rn = nrows - rd < GATHER_MAX ? nrows - rd : GATHER_MAX;
            (transposed ? position_coords : tap_coords)(s, r0 + rd, rn, &rows);
            for (int r = 0; r < rn; r++) {
                float *d = dst + (size_t)(rd + r) * ldd + cd;
#if defined(__AVX512F__)
                if (runs) { /* whole stretches of image rows: copies */
                    const float *xr = x + rows.off[r];
                    for (int u = 0; u < runs; u++)
                        _mm512_mask_storeu_ps(d + run[u].at, run[u].lanes,
                                              _mm512_maskz_loadu_ps(run[u].lanes, xr + run[u].off));
                    continue;
                }
#endif
                gather_row(x, rows.off[r], rows.ih[r], rows.iw[r], &cols, cn, padded, s, d);
            }
        }
    }
}

/* col (or its transpose) as a GEMM operand, produced a panel at a time. */
typedef struct im2col_source {
    const float *x;
    const nn_conv_shape *s;
    int transposed;
} im2col_source;

static void im2col_source_block(const void *ctx, int r0, int nrows, int c0, int ncols, float *dst,
                                int ldd)
{
    const im2col_source *src = ctx;
    nn_k_im2col_block(src->x, src->s, src->transposed, r0, nrows, c0, ncols, dst, ldd);
}

int nn_k_conv_gemm(const float *w, int oc, const float *x, const nn_conv_shape *s, float *out)
{
    im2col_source src = {x, s, 0};
    nn_k_b_source gen = {im2col_source_block, &src};
    int ckk = s->c * s->kh * s->kw, cols = s->n * s->oh * s->ow;
    return nn_sgemm_generated_b(oc, cols, ckk, 1.0f, w, ckk, &gen, 0.0f, out, cols);
}

/* dst[i] = src[i] + b, clamped at 0 (NaN included) when relu is set: a
 * convolution output row, from the GEMM's panel or its whole output. */
static inline void bias_relu_row(size_t n, const float *restrict src, float b, int relu,
                                 float *restrict dst)
{
    for (size_t i = 0; i < n; i++) {
        float v = src[i] + b;
        dst[i] = relu && !(v > 0.0f) ? 0.0f : v;
    }
}

/* The forward GEMM's output, a column panel at a time, written to NCHW
 * with the bias (and ReLU) as nn_k_cn_to_nc_bias does. */
typedef struct nchw_sink {
    const float *bias;
    float *y;
    int oc, relu;
    size_t ohw;
} nchw_sink;

static void nchw_store(const void *ctx, int i0, int m, int j0, int n, const float *tile, int ldt)
{
    const nchw_sink *t = ctx;
    for (int done = 0; done < n;) { /* the panel's columns image by image */
        size_t img = (size_t)(j0 + done) / t->ohw, pos = (size_t)(j0 + done) % t->ohw;
        int len = (int)(t->ohw - pos) < n - done ? (int)(t->ohw - pos) : n - done;
        for (int r = 0; r < m; r++)
            bias_relu_row((size_t)len, tile + (size_t)r * ldt + done, t->bias ? t->bias[i0 + r] : 0.0f,
                          t->relu, t->y + (img * t->oc + (size_t)(i0 + r)) * t->ohw + pos);
        done += len;
    }
}

int nn_k_conv_forward(const float *w, int oc, const float *x, const nn_conv_shape *s,
                      const float *bias, int relu, float *y)
{
    im2col_source src = {x, s, 0};
    nn_k_b_source gen = {im2col_source_block, &src};
    nchw_sink out = {bias, y, oc, relu, (size_t)s->oh * s->ow};
    nn_k_c_sink sink = {nchw_store, &out};
    int ckk = s->c * s->kh * s->kw, cols = s->n * s->oh * s->ow;
    return nn_sgemm_to_sink(oc, cols, ckk, 1.0f, w, ckk, &gen, &sink);
}

int nn_k_conv_dw_acc(const float *dyt, int oc, const float *x, const nn_conv_shape *s, float *dw)
{
    im2col_source src = {x, s, 1};
    nn_k_b_source gen = {im2col_source_block, &src};
    int ckk = s->c * s->kh * s->kw, cols = s->n * s->oh * s->ow;
    return nn_sgemm_generated_b(oc, ckk, cols, 1.0f, dyt, cols, &gen, 1.0f, dw, ckk);
}

/* col2im, the adjoint of im2col: dx += col scattered back to its inputs. */
static void col2im(const float *col, const nn_conv_shape *s, float *dx)
{
    size_t ohw = (size_t)s->oh * s->ow, cols = (size_t)s->n * ohw;
    for (int c = 0; c < s->c; c++)
        for (int ki = 0; ki < s->kh; ki++)
            for (int kj = 0; kj < s->kw; kj++) {
                const float *src = col + ((size_t)(c * s->kh + ki) * s->kw + kj) * cols;
                int lo, hi, off = kj - s->pl;
                nn_k_conv_valid_cols(s, kj, &lo, &hi); /* the same for every row */
                for (int n = 0; n < s->n; n++) {
                    float *plane = dx + ((size_t)n * s->c + c) * s->h * s->w;
                    for (int oh = 0; oh < s->oh; oh++, src += s->ow) {
                        int ih = oh * s->sh - s->pt + ki;
                        if (ih < 0 || ih >= s->h) continue;
                        float *restrict row = plane + (size_t)ih * s->w + off;
                        const float *restrict from = src;
                        if (s->sw == 1)
                            for (int ow = lo; ow < hi; ow++) row[ow] += from[ow];
                        else
                            for (int ow = lo; ow < hi; ow++) row[ow * s->sw] += from[ow];
                    }
                }
            }
}

#if defined(__AVX512F__)
/* col2im of one input plane for stride 1 without padding, a 16-float piece
 * of an input row at a time in a register: tap (ky, kx) adds output row
 * ih - ky of its row of col, shifted kx lanes to the right, which is one
 * masked load (lanes outside the output row masked off). Adding tap after
 * tap in registers, instead of adding rows into memory that the next row
 * overlaps, makes no store wait for another; masked loads, unlike
 * expanding ones, issue two a cycle. plane (h*w floats) += the taps' rows
 * (src, rows tap_stride apart), or = when fresh (its old contents
 * ignored); taps are added in order, as col2im does, so the sums are the
 * same. */
static void col2im_plane(const nn_conv_shape *s, const float *src, size_t tap_stride, int fresh,
                         float *plane)
{
    int pieces = (s->w + 15) / 16;
    for (int ih = 0; ih < s->h; ih++) {
        int ky_lo = ih - s->oh + 1 > 0 ? ih - s->oh + 1 : 0, ky_hi = ih + 1 < s->kh ? ih + 1 : s->kh;
        float *row = plane + (size_t)ih * s->w;
        for (int p = 0; p < pieces; p++) {
            __mmask16 piece = first_lanes(s->w - 16 * p);
            __m512 acc = fresh ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(piece, row + 16 * p);
            for (int ky = ky_lo; ky < ky_hi; ky++) {
                const float *out_row = src + (size_t)(ih - ky) * s->ow + 16 * p;
                for (int kx = 0; kx < s->kw; kx++) {
                    /* lanes l with 0 <= 16p + l - kx < ow */
                    __mmask16 m = (__mmask16)(first_lanes(kx + s->ow - 16 * p) & ~first_lanes(kx - 16 * p));
                    const float *tap = out_row + (size_t)(ky * s->kw + kx) * tap_stride;
                    if (m) acc = _mm512_mask_add_ps(acc, m, acc, _mm512_maskz_loadu_ps(m, tap - kx));
                }
            }
            _mm512_mask_storeu_ps(row + 16 * p, piece, acc);
        }
    }
}
#endif

typedef struct conv_dx_ctx {
    const float *w, *dyt;
    const nn_conv_shape *s;
    float *scratch, *dx;
    int oc, chunk, overwrite;
} conv_dx_ctx;

/* Images [n_lo, n_hi) of dx, a chunk of images at a time: all their col
 * rows = W^T dy into this thread's scratch slot, then col2im (over zeros
 * when overwriting). Splitting the batch rather than the channels between
 * threads, each thread packs only its own columns of dy. */
static void conv_dx_images(void *ctx, int n_lo, int n_hi, int slot)
{
    const conv_dx_ctx *t = ctx;
    const nn_conv_shape *s = t->s;
    const int kk = s->kh * s->kw, ckk = s->c * kk;
    const size_t ohw = (size_t)s->oh * s->ow, cols = (size_t)s->n * ohw, hw = (size_t)s->h * s->w;
    float *scratch = t->scratch + (size_t)slot * ckk * t->chunk * ohw;
#if defined(__AVX512F__)
    int in_registers = s->sh == 1 && s->sw == 1 && conv_interior(s);
#endif
    for (int n0 = n_lo; n0 < n_hi; n0 += t->chunk) {
        nn_conv_shape part = *s;
        part.n = n_hi - n0 < t->chunk ? n_hi - n0 : t->chunk;
        int pcols = (int)(part.n * ohw);
        nn_sgemm(1, 0, ckk, pcols, t->oc, 1.0f, t->w, ckk, t->dyt + (size_t)n0 * ohw, (int)cols, 0.0f,
                 scratch, pcols);
        float *dx = t->dx + (size_t)n0 * s->c * hw;
#if defined(__AVX512F__)
        if (in_registers) {
            for (int n = 0; n < part.n; n++)
                for (int c = 0; c < s->c; c++)
                    col2im_plane(s, scratch + (size_t)c * kk * pcols + (size_t)n * ohw, (size_t)pcols,
                                 t->overwrite, dx + ((size_t)n * s->c + c) * hw);
            continue;
        }
#endif
        if (t->overwrite) memset(dx, 0, (size_t)part.n * s->c * hw * sizeof(float));
        col2im(scratch, &part, dx);
    }
}

void nn_k_conv_dx(const float *w, int oc, const float *dyt, const nn_conv_shape *s, float *scratch,
                  int chunk, int overwrite, float *dx)
{
    conv_dx_ctx ctx = {w, dyt, s, scratch, dx, oc, chunk, overwrite};
    size_t work = (size_t)s->n * s->oh * s->ow * s->c * s->kh * s->kw * oc;
    nn_k_parallel_rows(s->n, 1, work > PAR_MIN_WORK, conv_dx_images, &ctx);
}

void nn_k_cn_to_nc_bias(int C, int N, size_t inner, const float *src, const float *bias, int relu,
                        float *dst)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C * inner > PAR_MIN_WORK)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const float *s = src + ((size_t)c * N + n) * inner;
            float *d = dst + ((size_t)n * C + c) * inner;
            bias_relu_row(inner, s, bias ? bias[c] : 0.0f, relu, d);
        }
}

void nn_k_nc_to_cn(int N, int C, size_t inner, const float *src, const float *mask, float *dst,
                   float *sums)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C * inner > PAR_MIN_WORK)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            size_t from = ((size_t)n * C + c) * inner;
            float *d = dst + ((size_t)c * N + n) * inner;
            if (!mask)
                memcpy(d, src + from, inner * sizeof(float));
            else
                for (size_t i = 0; i < inner; i++)
                    d[i] = mask[from + i] > 0.0f ? src[from + i] : 0.0f;
            if (sums) sums[(size_t)n * C + c] = nn_k_row_sum(inner, d);
        }
}

void nn_k_sum_rows_acc(int N, int C, const float *sums, float *db)
{
    for (int c = 0; c < C; c++) {
        double t = 0.0;
        for (int n = 0; n < N; n++) t += sums[(size_t)n * C + c];
        db[c] += (float)t;
    }
}
