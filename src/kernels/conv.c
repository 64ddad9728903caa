/* Convolution and pooling loops over NCHW tensors.
 *
 * conv2d runs as one GEMM over the whole batch: im2col lays the input out as
 * col[C*KH*KW][N*OH*OW], so W[OC][C*KH*KW] x col gives the output as
 * [OC][N*OH*OW], which is then transposed to NCHW with the bias added. col
 * is never stored whole: the GEMM asks for it a panel at a time, built from
 * the input (which stays in cache) where the panel is packed, instead of
 * writing and reading back nine copies of the input through memory. */
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"
#include "simd.h"

#define GATHER_MAX 256 /* rows or columns of col located at a time */

/* Loops below split work by channel or plane: each thread owns distinct
 * output rows, so results do not depend on the thread count. */
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
        __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        __m512i idx = _mm512_add_epi32(vroff, _mm512_maskz_loadu_epi32(m, col->off + j));
        if (padded) {
            __m512i ih = _mm512_add_epi32(vrih, _mm512_maskz_loadu_epi32(m, col->ih + j));
            __m512i iw = _mm512_add_epi32(vriw, _mm512_maskz_loadu_epi32(m, col->iw + j));
            m &= _mm512_cmplt_epu32_mask(ih, vh) & _mm512_cmplt_epu32_mask(iw, vw);
        }
        __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, x, 4);
        _mm512_mask_storeu_ps(d + j, n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1), v);
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
    int padded = !conv_interior(s), runs = 0;
#if defined(__AVX512F__)
    col_run run[GATHER_MAX];
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
    (void)runs;
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
        for (int r = 0; r < m; r++) {
            float b = t->bias ? t->bias[i0 + r] : 0.0f;
            const float *restrict src = tile + (size_t)r * ldt + done;
            float *restrict dst = t->y + (img * t->oc + (size_t)(i0 + r)) * t->ohw + pos;
            for (int j = 0; j < len; j++) {
                float v = src[j] + b;
                dst[j] = t->relu && !(v > 0.0f) ? 0.0f : v;
            }
        }
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

/* col2im (the adjoint of im2col, adding into dx) for input channels
 * [c0, c1) only (col still holds every channel's rows): the unit of work
 * of one thread. */
static void col2im_channels(const float *col, const nn_conv_shape *s, int c0, int c1, float *dx)
{
    size_t ohw = (size_t)s->oh * s->ow, cols = (size_t)s->n * ohw;
    for (int c = c0; c < c1; c++)
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
/* col2im of a whole input plane held in registers, for stride 1 without
 * padding: each 16-float piece of the plane takes, from every tap's row of
 * col, the entries that land in it - consecutive in col (a window row's
 * columns, then the next row's), so one expanding load puts them in their
 * lanes. Adding tap after tap in registers, instead of adding 11-float
 * rows into memory that the next row's vector overlaps, makes no store
 * wait for another. Per tap and piece: which lanes, and where in the
 * tap's row of col they start. */
#define C2I_TAPS_MAX 25
#define C2I_VECS_MAX 64 /* planes of up to 1024 floats */
#define C2I_BLOCK 8     /* pieces accumulated at a time */
typedef struct col2im_plan {
    int taps, vecs;
    __mmask16 lanes[C2I_TAPS_MAX][C2I_VECS_MAX];
    int start[C2I_TAPS_MAX][C2I_VECS_MAX];
} col2im_plan;

static int col2im_plan_make(const nn_conv_shape *s, col2im_plan *p)
{
    int hw = s->h * s->w;
    p->taps = s->kh * s->kw;
    p->vecs = (hw + 15) / 16;
    if (s->sh != 1 || s->sw != 1 || !conv_interior(s) || p->taps > C2I_TAPS_MAX ||
        p->vecs > C2I_VECS_MAX)
        return 0;
    memset(p->lanes, 0, sizeof p->lanes); /* pieces past the plane take nothing */
    for (int t = 0; t < p->taps; t++)
        for (int v = 0; v < p->vecs; v++) {
            p->start[t][v] = 0;
            for (int l = 0; l < 16 && 16 * v + l < hw; l++) {
                int oh = (16 * v + l) / s->w - t / s->kw, ow = (16 * v + l) % s->w - t % s->kw;
                if (oh < 0 || oh >= s->oh || ow < 0 || ow >= s->ow) continue;
                if (!p->lanes[t][v]) p->start[t][v] = oh * s->ow + ow;
                p->lanes[t][v] |= (__mmask16)(1u << l);
            }
        }
    return 1;
}

/* plane (h*w floats) += col2im of its taps' rows (src, rows tap_stride
 * apart), or = when fresh (its old contents ignored). Taps are added in
 * order, as col2im_channels does, so the sums are the same. */
static void col2im_plane(const col2im_plan *p, const float *src, size_t tap_stride, int hw, int fresh,
                         float *plane)
{
    for (int v0 = 0; v0 < p->vecs; v0 += C2I_BLOCK) {
        __m512 acc[C2I_BLOCK];
        for (int b = 0; b < C2I_BLOCK; b++)
            acc[b] = fresh ? _mm512_setzero_ps()
                           : _mm512_maskz_loadu_ps(first_lanes(hw - 16 * (v0 + b)), plane + 16 * (v0 + b));
        for (int t = 0; t < p->taps; t++) {
            const float *row = src + (size_t)t * tap_stride;
            for (int b = 0; b < C2I_BLOCK; b++) {
                __mmask16 m = p->lanes[t][v0 + b];
                acc[b] = _mm512_mask_add_ps(acc[b], m, acc[b],
                                            _mm512_maskz_expandloadu_ps(m, row + p->start[t][v0 + b]));
            }
        }
        for (int b = 0; b < C2I_BLOCK; b++)
            if (16 * (v0 + b) < hw)
                _mm512_mask_storeu_ps(plane + 16 * (v0 + b), first_lanes(hw - 16 * (v0 + b)), acc[b]);
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
 * rows = W^T dy into this thread's scratch, then col2im (over zeros when
 * overwriting). Splitting the batch rather than the channels between
 * threads, each thread packs only its own columns of dy. */
static void conv_dx_images(const conv_dx_ctx *t, int n_lo, int n_hi, float *scratch)
{
    const nn_conv_shape *s = t->s;
    const int kk = s->kh * s->kw, ckk = s->c * kk;
    const size_t ohw = (size_t)s->oh * s->ow, cols = (size_t)s->n * ohw, hw = (size_t)s->h * s->w;
#if defined(__AVX512F__)
    col2im_plan plan;
    int in_registers = col2im_plan_make(s, &plan);
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
                    col2im_plane(&plan, scratch + (size_t)c * kk * pcols + (size_t)n * ohw, (size_t)pcols,
                                 (int)hw, t->overwrite, dx + ((size_t)n * s->c + c) * hw);
            continue;
        }
#endif
        if (t->overwrite) memset(dx, 0, (size_t)part.n * s->c * hw * sizeof(float));
        col2im_channels(scratch, &part, 0, s->c, dx);
    }
}

void nn_k_conv_dx(const float *w, int oc, const float *dyt, const nn_conv_shape *s, float *scratch,
                  int chunk, int overwrite, float *dx)
{
    conv_dx_ctx ctx = {w, dyt, s, scratch, dx, oc, chunk, overwrite};
    size_t work = (size_t)s->n * s->oh * s->ow * s->c * s->kh * s->kw * oc;
    size_t slot = (size_t)s->c * s->kh * s->kw * chunk * s->oh * s->ow;
    (void)work; /* read only by the OpenMP pragma */
#pragma omp parallel if (work > PAR_MIN_WORK)
    {
        int nt = 1, me = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads();
        me = omp_get_thread_num();
#endif
        int lo = (int)((long)s->n * me / nt), hi = (int)((long)s->n * (me + 1) / nt);
        if (lo < hi) conv_dx_images(&ctx, lo, hi, scratch + (size_t)me * slot);
    }
}

void nn_k_cn_to_nc_bias(int C, int N, size_t inner, const float *src, const float *bias, int relu,
                        float *dst)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C * inner > PAR_MIN_WORK)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const float *s = src + ((size_t)c * N + n) * inner;
            float *d = dst + ((size_t)n * C + c) * inner;
            float b = bias ? bias[c] : 0.0f;
            for (size_t i = 0; i < inner; i++) {
                float v = s[i] + b;
                d[i] = relu && !(v > 0.0f) ? 0.0f : v;
            }
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

/* 1 if v takes the place of best, the earlier candidate: v is greater, or v
 * is a NaN and best is not (a NaN wins, so it propagates). Branch-free. */
static inline int beats(float v, float best) { return v > best || (v != v && best == best); }

#if !defined(__AVX512F__)
/* The common 2x2 stride-2 unpadded case, without bounds checks and without
 * branches (data-dependent branches mispredict about half the time here): a
 * tournament, which keeps the first maximum (or the first NaN) in row-major
 * order like the general loop.
 *
 * With an even width, the pairs of a block of whole input rows are
 * consecutive in memory, so the horizontal round runs as one long loop the
 * compiler vectorizes (rows of a small image are too short for that); the
 * vertical round then compares pairs of those rows. */
#define POOL_BLOCK 1024 /* horizontal maxima held at a time */
static void maxpool_2x2_plain(const float *restrict in, const nn_conv_shape *s, float *restrict y,
                              int *restrict argmax)
{
    /* shape in locals: stores through argmax (int) could otherwise alias s */
    const int w = s->w, oh_n = s->oh, ow_n = s->ow;
    if (w % 2 == 0 && 2 * ow_n == w && 2 * w <= POOL_BLOCK) {
        float hm[POOL_BLOCK];
        int hi[POOL_BLOCK];
        const int rows_per = POOL_BLOCK / w / 2 * 2; /* even: whole output rows */
        for (int r0 = 0; r0 < 2 * oh_n; r0 += rows_per) {
            int rows = 2 * oh_n - r0 < rows_per ? 2 * oh_n - r0 : rows_per;
            const float *p = in + (size_t)r0 * w;
            int pairs = rows * w / 2;
            for (int i = 0; i < pairs; i++) {
                float a = p[2 * i], b = p[2 * i + 1];
                int right = beats(b, a);
                hm[i] = right ? b : a;
                hi[i] = r0 * w + 2 * i + right;
            }
            for (int r = 0; r < rows; r += 2) {
                int oh = (r0 + r) / 2;
                const float *m0 = hm + (size_t)r * ow_n, *m1 = m0 + ow_n;
                const int *i0 = hi + (size_t)r * ow_n, *i1 = i0 + ow_n;
                float *yr = y + (size_t)oh * ow_n;
                int *ar = argmax + (size_t)oh * ow_n;
                for (int j = 0; j < ow_n; j++) {
                    int bottom = beats(m1[j], m0[j]);
                    yr[j] = bottom ? m1[j] : m0[j];
                    ar[j] = bottom ? i1[j] : i0[j];
                }
            }
        }
        return;
    }
    for (int oh = 0; oh < oh_n; oh++) {
        const float *r0 = in + (size_t)(2 * oh) * w, *r1 = r0 + w;
        float *yr = y + (size_t)oh * ow_n;
        int *ar = argmax + (size_t)oh * ow_n;
        const int row0 = 2 * oh * w;
        for (int ow = 0; ow < ow_n; ow++) {
            int j = 2 * ow;
            float a = r0[j], b = r0[j + 1], c = r1[j], d = r1[j + 1];
            int top_right = beats(b, a), bottom_right = beats(d, c);
            float m0 = top_right ? b : a, m1 = bottom_right ? d : c;
            int i0 = row0 + j + top_right, i1 = row0 + w + j + bottom_right;
            int bottom = beats(m1, m0);
            yr[ow] = bottom ? m1 : m0;
            ar[ow] = bottom ? i1 : i0;
        }
    }
}
#endif

#if defined(__AVX512F__)
/* beats() for 16 lanes at once. */
static inline __mmask16 beats16(__m512 v, __m512 best)
{
    return _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |
           (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q));
}

/* Outputs [ow0, ow0+n) (n <= 16) of one output row from input rows top and
 * bottom: the row pairs' 2n inputs in two masked loads each, split into
 * left and right columns by two-source permutes, then the same tournament
 * as maxpool_2x2_plain on 16 windows at once. idx0 is the plane index of
 * the top-left input of window ow0. */
static inline void maxpool_2x2_row16(const float *top, const float *bottom, int w, int idx0, int n,
                                     int relu, float *y, int *argmax)
{
    const __m512i left = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i right = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    __mmask16 m0 = first_lanes(2 * n), m1 = first_lanes(2 * n - 16 > 0 ? 2 * n - 16 : 0);
    __m512 t0 = _mm512_maskz_loadu_ps(m0, top), t1 = _mm512_maskz_loadu_ps(m1, top + 16);
    __m512 b0 = _mm512_maskz_loadu_ps(m0, bottom), b1 = _mm512_maskz_loadu_ps(m1, bottom + 16);
    __m512 a = _mm512_permutex2var_ps(t0, left, t1), b = _mm512_permutex2var_ps(t0, right, t1);
    __m512 c = _mm512_permutex2var_ps(b0, left, b1), d = _mm512_permutex2var_ps(b0, right, b1);
    __mmask16 top_right = beats16(b, a), bottom_right = beats16(d, c);
    __m512 top_max = _mm512_mask_blend_ps(top_right, a, b), bottom_max = _mm512_mask_blend_ps(bottom_right, c, d);
    __mmask16 down = beats16(bottom_max, top_max);
    __m512 best = _mm512_mask_blend_ps(down, top_max, bottom_max);
    __mmask16 to_right = (__mmask16)((down & bottom_right) | (~down & top_right));
    __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(idx0), left); /* left lane i is 2i */
    idx = _mm512_mask_add_epi32(idx, down, idx, _mm512_set1_epi32(w));
    idx = _mm512_mask_add_epi32(idx, to_right, idx, _mm512_set1_epi32(1));
    if (relu) /* ReLU(NaN) = 0, as nn_k_relu */
        best = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(best, _mm512_setzero_ps(), _CMP_GT_OQ), best);
    _mm512_mask_storeu_ps(y, first_lanes(n), best);
    _mm512_mask_storeu_epi32(argmax, first_lanes(n), idx);
}
#endif

/* 2x2 stride-2 unpadded pooling of one plane, then ReLU if relu is set. */
static void maxpool_2x2(const float *restrict in, const nn_conv_shape *s, int relu, float *restrict y,
                        int *restrict argmax)
{
#if defined(__AVX512F__)
    const int w = s->w;
    for (int oh = 0; oh < s->oh; oh++) {
        const float *top = in + (size_t)(2 * oh) * w;
        for (int ow0 = 0; ow0 < s->ow; ow0 += 16)
            maxpool_2x2_row16(top + 2 * ow0, top + w + 2 * ow0, w, 2 * oh * w + 2 * ow0,
                              s->ow - ow0 < 16 ? s->ow - ow0 : 16, relu,
                              y + (size_t)oh * s->ow + ow0, argmax + (size_t)oh * s->ow + ow0);
    }
#else
    maxpool_2x2_plain(in, s, y, argmax);
    if (relu) nn_k_relu((size_t)s->oh * s->ow, y, y);
#endif
}

/* 2x2 windows at stride 2 without padding, all inside the input. */
static int is_2x2_stride2(const nn_conv_shape *s)
{
    return s->kh == 2 && s->kw == 2 && s->sh == 2 && s->sw == 2 && s->pt == 0 && s->pl == 0 &&
           2 * s->oh <= s->h && 2 * s->ow <= s->w;
}

static void maxpool_plane(const float *in, const nn_conv_shape *s, int fast, int relu, float *y,
                          int *argmax)
{
    if (fast) {
        maxpool_2x2(in, s, relu, y, argmax);
        return;
    }
    for (int oh = 0; oh < s->oh; oh++)
        for (int ow = 0; ow < s->ow; ow++) {
            /* The first maximum in row-major window order wins ties; a NaN
             * wins over everything so it propagates. */
            float best = 0.0f;
            int idx = -1;
            for (int ki = 0; ki < s->kh; ki++) {
                int ih = oh * s->sh - s->pt + ki;
                if (ih < 0 || ih >= s->h) continue;
                for (int kj = 0; kj < s->kw; kj++) {
                    int iw = ow * s->sw - s->pl + kj;
                    if (iw < 0 || iw >= s->w) continue;
                    float v = in[ih * s->w + iw];
                    if (idx < 0 || beats(v, best)) {
                        best = v;
                        idx = ih * s->w + iw;
                    }
                }
            }
            y[oh * s->ow + ow] = best;
            argmax[oh * s->ow + ow] = idx;
        }
    if (relu) nn_k_relu((size_t)s->oh * s->ow, y, y);
}

void nn_k_maxpool_plane(const float *x, const nn_conv_shape *s, int relu, float *y, int *argmax)
{
    maxpool_plane(x, s, is_2x2_stride2(s), relu, y, argmax);
}

void nn_k_maxpool(const float *x, const nn_conv_shape *s, int relu, float *y, int *argmax)
{
    size_t planes = (size_t)s->n * s->c, ohw = (size_t)s->oh * s->ow;
    int fast = is_2x2_stride2(s);
#pragma omp parallel for schedule(static) if (planes * s->h * s->w > PAR_MIN_WORK)
    for (size_t p = 0; p < planes; p++)
        maxpool_plane(x + p * s->h * s->w, s, fast, relu, y + p * ohw, argmax + p * ohw);
}

#define MASK_BLOCK 256 /* outputs whose ReLU mask is applied at a time */

#if defined(__AVX512F__)
/* The gradient of one plane of 2x2 stride-2 unpadded pooling, overwriting
 * dx: every input written once, in order - the window's gradient where the
 * argmax points, zeros elsewhere (and in the rows and columns no window
 * covers) - instead of a memset and a scattered store per output. Each
 * output's gradient and argmax are spread to the two input columns under
 * it by a permute, and kept where the argmax is that input. */
static void maxpool_2x2_bwd_plane(const float *dy, const float *relu_y, const int *argmax,
                                  const nn_conv_shape *s, float *dx)
{
    const int w = s->w, ow_n = s->ow;
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i under[2] = {_mm512_srli_epi32(lane, 1), /* input lane -> output lane */
                              _mm512_add_epi32(_mm512_srli_epi32(lane, 1), _mm512_set1_epi32(8))};
    for (int oh = 0; oh < s->oh; oh++) {
        float *top = dx + (size_t)(2 * oh) * w;
        for (int ow0 = 0; ow0 < ow_n; ow0 += 16) {
            int n = ow_n - ow0 < 16 ? ow_n - ow0 : 16;
            __mmask16 m = first_lanes(n);
            size_t o = (size_t)oh * ow_n + ow0;
            __m512 g = _mm512_maskz_loadu_ps(m, dy + o);
            if (relu_y) /* the fused ReLU's mask, as the scalar path */
                g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m, relu_y + o),
                                                           _mm512_setzero_ps(), _CMP_GT_OQ), g);
            __m512i am = _mm512_maskz_loadu_epi32(m, argmax + o);
            for (int half = 0; half < 2 && 2 * n > 16 * half; half++) {
                __m512 gh = _mm512_permutexvar_ps(under[half], g);
                __m512i ah = _mm512_permutexvar_epi32(under[half], am);
                int col = 2 * ow0 + 16 * half;
                __mmask16 keep = first_lanes(2 * n - 16 * half);
                __m512i at = _mm512_add_epi32(_mm512_set1_epi32(2 * oh * w + col), lane);
                _mm512_mask_storeu_ps(top + col, keep,
                                      _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(ah, at), gh));
                at = _mm512_add_epi32(at, _mm512_set1_epi32(w));
                _mm512_mask_storeu_ps(top + w + col, keep,
                                      _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(ah, at), gh));
            }
        }
        for (int col = 2 * ow_n; col < w; col++) top[col] = top[w + col] = 0.0f;
    }
    if (s->h > 2 * s->oh) memset(dx + (size_t)(2 * s->oh) * w, 0, (size_t)(s->h - 2 * s->oh) * w * sizeof(float));
}
#endif

void nn_k_maxpool_bwd_plane(const float *dy, const int *argmax, const nn_conv_shape *s,
                            const float *relu_y, int overwrite, float *dx)
{
    size_t ohw = (size_t)s->oh * s->ow, hw = (size_t)s->h * s->w;
#if defined(__AVX512F__)
    if (overwrite && is_2x2_stride2(s)) {
        maxpool_2x2_bwd_plane(dy, relu_y, argmax, s, dx);
        return;
    }
#endif
    /* Windows that do not overlap (stride >= window): each input gets at
     * most one gradient, so a zeroed plane takes plain stores - a vector
     * memset and one store per output, where adding would read back every
     * store. */
    int disjoint = s->sh >= s->kh && s->sw >= s->kw;
    if (overwrite) memset(dx, 0, hw * sizeof(float));
    for (size_t i0 = 0; i0 < ohw; i0 += MASK_BLOCK) {
        size_t n = ohw - i0 < MASK_BLOCK ? ohw - i0 : MASK_BLOCK;
        const float *v = dy + i0;
        float masked[MASK_BLOCK];
        if (relu_y) { /* a vector select first: a branch per output mispredicts */
            for (size_t i = 0; i < n; i++) masked[i] = relu_y[i0 + i] > 0.0f ? v[i] : 0.0f;
            v = masked;
        }
        if (overwrite && disjoint)
            for (size_t i = 0; i < n; i++) dx[argmax[i0 + i]] = v[i];
        else
            for (size_t i = 0; i < n; i++) dx[argmax[i0 + i]] += v[i];
    }
}

void nn_k_maxpool_bwd(const float *dy, const int *argmax, const nn_conv_shape *s,
                      const float *relu_y, int overwrite, float *dx)
{
    size_t planes = (size_t)s->n * s->c, ohw = (size_t)s->oh * s->ow, hw = (size_t)s->h * s->w;
#pragma omp parallel for schedule(static) if (planes * hw > PAR_MIN_WORK)
    for (size_t p = 0; p < planes; p++)
        nn_k_maxpool_bwd_plane(dy + p * ohw, argmax + p * ohw, s, relu_y ? relu_y + p * ohw : NULL,
                               overwrite, dx + p * hw);
}

void nn_k_maxpool_bwd_cn(const float *dy, const int *argmax, const nn_conv_shape *s,
                         const float *relu_y, float *dx_cn, float *sums)
{
    size_t planes = (size_t)s->n * s->c, ohw = (size_t)s->oh * s->ow, hw = (size_t)s->h * s->w;
#pragma omp parallel for schedule(static) if (planes * hw > PAR_MIN_WORK)
    for (size_t p = 0; p < planes; p++) { /* plane p = (image n, channel c) goes to row c, block n */
        float *d = dx_cn + ((p % s->c) * s->n + p / s->c) * hw;
        nn_k_maxpool_bwd_plane(dy + p * ohw, argmax + p * ohw, s, relu_y ? relu_y + p * ohw : NULL, 1, d);
        if (sums) sums[p] = nn_k_row_sum(hw, d);
    }
}

/* Average pooling divides by the full window (padding counts as zeros), as
 * PyTorch's default count_include_pad=True. */
void nn_k_avgpool(const float *x, const nn_conv_shape *s, float *y)
{
    size_t planes = (size_t)s->n * s->c;
    float inv = 1.0f / (float)(s->kh * s->kw);
    for (size_t p = 0; p < planes; p++) {
        const float *in = x + p * s->h * s->w;
        for (int oh = 0; oh < s->oh; oh++)
            for (int ow = 0; ow < s->ow; ow++) {
                float sum = 0.0f;
                for (int ki = 0; ki < s->kh; ki++) {
                    int ih = oh * s->sh - s->pt + ki;
                    if (ih < 0 || ih >= s->h) continue;
                    for (int kj = 0; kj < s->kw; kj++) {
                        int iw = ow * s->sw - s->pl + kj;
                        if (iw >= 0 && iw < s->w) sum += in[ih * s->w + iw];
                    }
                }
                y[(p * s->oh + oh) * s->ow + ow] = sum * inv;
            }
    }
}

void nn_k_avgpool_bwd_acc(const float *dy, const nn_conv_shape *s, float *dx)
{
    size_t planes = (size_t)s->n * s->c;
    float inv = 1.0f / (float)(s->kh * s->kw);
    for (size_t p = 0; p < planes; p++) {
        float *out = dx + p * s->h * s->w;
        for (int oh = 0; oh < s->oh; oh++)
            for (int ow = 0; ow < s->ow; ow++) {
                float g = dy[(p * s->oh + oh) * s->ow + ow] * inv;
                for (int ki = 0; ki < s->kh; ki++) {
                    int ih = oh * s->sh - s->pt + ki;
                    if (ih < 0 || ih >= s->h) continue;
                    for (int kj = 0; kj < s->kw; kj++) {
                        int iw = ow * s->sw - s->pl + kj;
                        if (iw >= 0 && iw < s->w) out[ih * s->w + iw] += g;
                    }
                }
            }
    }
}
