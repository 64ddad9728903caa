/* The hot loops. Every loop over float arrays in the library lives in
 * src/kernels/; ops and optimizers call these. Pointers named out/dx/y may
 * not alias inputs unless stated. "acc" kernels add into their output. */
#ifndef NN_KERNELS_H
#define NN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* C = alpha * op(A) op(B) + beta * C, row-major; op(A) is M x K, op(B) is
 * K x N; ta/tb nonzero mean A is stored K x M / B is stored N x K. beta = 0
 * overwrites C (NaNs in C do not propagate). Each element of C is computed
 * by one thread in a fixed order, so results do not depend on thread count. */
void nn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

/* For many products with the same op(B) (a recurrent weight, once per
 * step): nn_k_pack_b packs it whole into nn_k_packed_b_floats(K, N) floats,
 * and nn_sgemm_packed_b is nn_sgemm with ta = 0 on one thread that reads
 * the panels from bp instead of packing B again (B itself is read only if
 * memory for packing A runs out). Results are those of nn_sgemm's packed
 * path (the same bits as nn_sgemm for shapes that are neither tiny nor
 * given its long-K treatments). */
size_t nn_k_packed_b_floats(int K, int N);
void nn_k_pack_b(int tb, int K, int N, const float *B, int ldb, float *dst);
void nn_sgemm_packed_b(int tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, const float *bp, float beta, float *C, int ldc);

/* 1 if nn_sgemm with tb = 0, alpha 1 and an M x N x K shape cuts K into
 * kblocks blocks of kc_max (the last may be shorter), each summed on its own
 * from zero in order of k and then added to C in order; 0 if the shape takes
 * another path (tiny products, long K in chunks). */
int nn_k_gemm_k_blocks(int M, int N, int K, int *kblocks, int *kc_max);

/* One-hot products (one_hot.c), with nn_sgemm's results (the same K blocks;
 * a zero term changes no sum but, at most, a zero's sign):
 * nn_k_one_hot_rows: 1 if every one of the rows of x (rows x cols) holds
 * exactly one 1 and zeros elsewhere, with each row's column in idx; else 0.
 * nn_k_one_hot_times_wt: out (rows x n) = X w^T for the one-hot X of idx
 * (rows x k) and w (n x k): row i of out is column idx[i] of w, through
 * wt (k x n floats of scratch); with biases b1, b2 (n each, or both NULL)
 * added as nn_k_add_two_biases adds them.
 * nn_k_one_hot_grad_acc: dw (n x k) += dy^T X for dy (rows x n) and the
 * one-hot X of idx, through sums (k x n floats of scratch), summed in the K
 * blocks nn_k_gemm_k_blocks gives; 0 (nothing done) for shapes where
 * nn_sgemm sums otherwise. */
int nn_k_one_hot_rows(size_t rows, int cols, const float *x, int *idx);
void nn_k_one_hot_times_wt(int rows, int n, int k, const int *idx, const float *w, const float *b1,
                           const float *b2, float *wt, float *out);
int nn_k_one_hot_grad_acc(int rows, int n, int k, const float *dy, const int *idx, float *sums, float *dw);

/* A B operand that is never stored whole (a convolution's im2col columns):
 * block() writes rows [r0, r0+nrows) x columns [c0, c0+ncols) of op(B)
 * to dst, rows ldd apart, when the product packs them (ncols is at most
 * a panel's width, 48 floats or less). nn_sgemm_generated_b is nn_sgemm
 * with ta = 0 over such a B, always on the packed paths: for shapes that
 * are not tiny, the same bits as nn_sgemm over the stored matrix. block()
 * is called from several threads at once. Returns 0 if memory ran out (C
 * is then undefined). */
typedef struct nn_k_b_source {
    void (*block)(const void *ctx, int r0, int nrows, int c0, int ncols, float *dst, int ldd);
    const void *ctx;
} nn_k_b_source;
int nn_sgemm_generated_b(int M, int N, int K, float alpha, const float *A, int lda,
                         const nn_k_b_source *gen, float beta, float *C, int ldc);
/* The same product, C = alpha A op(B), handed out a column panel at a time
 * instead of stored: store() gets rows [i0, i0+m) x columns [j0, j0+n) of C
 * (n at most 48) in tile, rows ldt apart, once each, from several threads
 * at once (a convolution writes them to NCHW with its bias). Only where
 * op(A)'s rows fit in cache (M x K at most 512 KB): returns 0 without
 * computing anything otherwise (or if memory ran out: C is then partly
 * stored). The same bits as nn_sgemm_generated_b with beta 0. */
typedef struct nn_k_c_sink {
    void (*store)(const void *ctx, int i0, int m, int j0, int n, const float *tile, int ldt);
    const void *ctx;
} nn_k_c_sink;
int nn_sgemm_to_sink(int M, int N, int K, float alpha, const float *A, int lda,
                     const nn_k_b_source *gen, const nn_k_c_sink *sink);

/* Run fn over rows [0, rows) split between the threads in contiguous ranges
 * that start at multiples of align (one call per thread, on the whole range
 * when parallel is 0 or there is one thread). For work whose rows are
 * independent, such as a recurrence over a batch or the images of a batch:
 * each row's result is the same whatever the split. slot is the calling
 * thread's index, below nn_get_threads(), for per-thread scratch. */
void nn_k_parallel_rows(int rows, int align, int parallel,
                        void (*fn)(void *ctx, int r0, int r1, int slot), void *ctx);

/* Elementwise arithmetic over n floats. */
void nn_k_add(size_t n, const float *a, const float *b, float *out);
/* out = x; large copies split between threads like nn_k_add, so that each
 * thread copies the rows its next threaded op reads */
void nn_k_copy(size_t n, const float *x, float *out);
void nn_k_sub(size_t n, const float *a, const float *b, float *out);
void nn_k_mul(size_t n, const float *a, const float *b, float *out);
void nn_k_scale(size_t n, float s, const float *a, float *out);
void nn_k_axpy(size_t n, float alpha, const float *x, float *y);          /* y += alpha x */
/* y = x * scale[c] + shift[c] over (n, c, s); the backward adds into the
 * gradients that are not NULL. */
void nn_k_channel_affine(int n, int c, size_t s, const float *x, const float *scale,
                         const float *shift, float *y);
void nn_k_channel_affine_backward(int n, int c, size_t s, const float *x, const float *scale,
                                  const float *dy, float *dx, float *dscale, float *dshift);
void nn_k_mul_acc(size_t n, const float *a, const float *b, float *y);    /* y += a * b */
double nn_k_sum(size_t n, const float *x);
double nn_k_sum_sq(size_t n, const float *x);
/* A short row's sum in float, eight interleaved lanes in a fixed order
 * (vectorizable, unlike one running sum); for rows of a few hundred. */
float nn_k_row_sum(size_t n, const float *x);
void nn_k_fill(size_t n, float v, float *out); /* threaded when large */
void nn_k_add_scalar(size_t n, float c, float *y);                       /* y += c */
/* Sum of (a - b)^2, and y += s * (a - b). */
double nn_k_sq_diff_sum(size_t n, const float *a, const float *b);
void nn_k_diff_scaled_acc(size_t n, float s, const float *a, const float *b, float *y);

/* out[i] = scale * in[i] + shift for bytes in. */
void nn_k_u8_to_float(size_t n, const unsigned char *in, float scale, float shift, float *out);

/* A rows x cols byte image translated by (dy, dx) pixels into floats
 * (scale * p + shift; pixels moved in from outside read as p = 0). */
void nn_k_u8_image_shifted(int rows, int cols, int dy, int dx, const unsigned char *in, float scale,
                           float shift, float *out);

/* count byte images of rows x cols, image i at images + index[i] * rows *
 * cols, converted one after another into out as nn_k_u8_to_float does, or
 * translated by (shifts[2i], shifts[2i+1]) as nn_k_u8_image_shifted does
 * when shifts is not NULL; split between threads by image. */
void nn_k_u8_images(int count, int rows, int cols, const unsigned char *images, const int *index,
                    const int *shifts, float scale, float shift, float *out);

/* x viewed as (N, C, inner): out = x + bias[c]; db[c] += sum of dy over n, inner. */
void nn_k_add_bias(int N, int C, size_t inner, const float *x, const float *bias, float *out);
void nn_k_bias_grad_acc(int N, int C, size_t inner, const float *dy, float *db);
/* The same for two biases over one (N, C) x in one pass (a recurrent
 * layer's input and hidden biases): out = (x + b1[c]) + b2[c], and db1,
 * db2 (either may be NULL) each += dy summed over n. The same bits as two
 * calls of the above; rows (columns for the sums) split between threads. */
void nn_k_add_two_biases(int N, int C, const float *x, const float *b1, const float *b2, float *out);
void nn_k_two_bias_grads_acc(int N, int C, const float *dy, float *db1, float *db2);
/* sums[r / block] += row r of x (rows x cols), rows in order: column sums
 * of a few rows at a time while they are in cache, kept per block of rows
 * so that the result does not depend on how rows are split between threads
 * (splits at multiples of block). */
void nn_k_row_block_sums_acc(int rows, int cols, const float *x, int block, float *sums);

/* Activations: forward y = f(x); backward dx += dy * f'(.) from the saved
 * output y (relu may use y or x: y > 0 iff x > 0). */
void nn_k_relu(size_t n, const float *x, float *y);
void nn_k_relu_bwd_acc(size_t n, const float *y, const float *dy, float *dx);
void nn_k_sigmoid(size_t n, const float *x, float *y);
void nn_k_sigmoid_bwd_acc(size_t n, const float *y, const float *dy, float *dx);
void nn_k_leaky_relu(size_t n, float slope, const float *x, float *y);
void nn_k_leaky_relu_bwd_acc(size_t n, float slope, const float *x, const float *dy, float *dx);
/* Binary cross-entropy on logits: returns the sum over elements; backward
 * dx += scale * (sigmoid(x) - t), dt += scale * (-x). */
double nn_k_bce_logits(size_t n, const float *x, const float *t);
void nn_k_bce_logits_bwd_acc(size_t n, float scale, const float *x, const float *t, float *dx,
                             float *dt);
void nn_k_tanh(size_t n, const float *x, float *y);
void nn_k_tanh_bwd_acc(size_t n, const float *y, const float *dy, float *dx);

/* Row-wise softmax / log-softmax of a rows x cols matrix, and backward
 * passes from the saved outputs. */
void nn_k_softmax_rows(int rows, int cols, const float *x, float *y);
void nn_k_log_softmax_rows(int rows, int cols, const float *x, float *y);
void nn_k_softmax_bwd_acc(int rows, int cols, const float *y, const float *dy, float *dx);
void nn_k_log_softmax_bwd_acc(int rows, int cols, const float *y, const float *dy, float *dx);

/* Fused softmax cross-entropy against targets q = (1 - smoothing) * onehot +
 * smoothing / cols: writes probabilities to prob and returns the mean over
 * rows of -sum q log p (row_loss: rows doubles of scratch). Backward:
 * dx += scale * (p - q). */
double nn_k_softmax_xent(int rows, int cols, const float *x, const int *labels, float smoothing,
                         float *prob, double *row_loss);
void nn_k_softmax_xent_bwd_acc(int rows, int cols, const float *prob, const int *labels,
                               float smoothing, float scale, float *dx);

/* Layer normalisation of rows x cols over each row (layernorm.c): y = (x -
 * mean) * rstd * w + b (w, b: cols each, or NULL for 1 and 0), with the
 * biased variance; stats receives (mean, rstd) per row for the backward.
 * bwd_acc adds the input's gradient to dx and the weight's and bias's to
 * dw and db (any may be NULL), with scratch of nn_k_layernorm_bwd_scratch
 * floats for the given thread count (nn_get_threads()). */
void nn_k_layernorm(int rows, int cols, const float *x, const float *w, const float *b, float eps,
                    float *y, float *stats);
size_t nn_k_layernorm_bwd_scratch(int rows, int cols, int threads);
void nn_k_layernorm_bwd_acc(int rows, int cols, const float *x, const float *w, const float *stats,
                            const float *dy, float *scratch, float *dx, float *dw, float *db);

/* GELU, exact (erf) form (gelu.c): y and, unless deriv is NULL, the
 * derivative at each x, which the backward multiplies dy by and adds to dx
 * (accumulate) or writes over it. */
void nn_k_gelu(size_t n, const float *x, float *y, float *deriv);
void nn_k_gelu_bwd(size_t n, const float *deriv, const float *dy, int accumulate, float *dx);

/* Causal self-attention (attention.c) of qkv (B, T, 3C) holding Q, K and V
 * side by side, C = H * D: y (B, T, C) gets each head's softmax(Q K^T *
 * scale, causal) V in its D columns; probs (B, H, T, T) keeps the
 * probabilities for the backward, which writes (fresh) or adds the
 * gradient of qkv from dy. Scratch per thread: T * D floats forward,
 * T * (T + D) backward. */
void nn_k_causal_attention(int B, int T, int H, int D, const float *qkv, float scale, float *probs,
                           float *y, float *scratch);
void nn_k_causal_attention_bwd(int B, int T, int H, int D, const float *qkv, float scale,
                               const float *probs, const float *dy, float *scratch, int fresh,
                               float *dqkv);
/* y (n) = W x for W (n x k) row-major and x (k), one thread (matvec.c). */
void nn_k_matvec(int n, int k, const float *w, const float *x, float *y);
/* One query q (D floats) against t cached keys and values (rows of D at a
 * stride of ld floats): out = softmax(q K^T * scale) V; scores is t floats
 * of scratch. The incremental step of generation with a key/value cache. */
void nn_k_attention_query(int t, int D, const float *q, const float *k, const float *v, int ld,
                          float scale, float *scores, float *out);

/* Geometry of a convolution or pooling window over an NCHW input:
 * n, c, h, w input; kh, kw window; sh, sw stride; pt, pl padding at the top
 * and left (bottom/right padding is implied by oh, ow). */
typedef struct nn_conv_shape {
    int n, c, h, w, kh, kw, sh, sw, pt, pl, oh, ow;
} nn_conv_shape;

/* Output columns [*lo, *hi) whose input column ow*sw - pl + kj lies inside
 * the row; outside that range tap kj reads padding. */
void nn_k_conv_valid_cols(const nn_conv_shape *s, int kj, int *lo, int *hi);
/* Rows [r0, r0+nrows) x columns [c0, c0+ncols) of the im2col matrix
 * col[c*kh*kw][n*oh*ow] of x (zeros where the window is in the padding),
 * or of its transpose when transposed is set, into dst, rows ldd apart.
 * Offsets into x are ints: x must hold fewer than 2^31 floats. */
void nn_k_im2col_block(const float *x, const nn_conv_shape *s, int transposed, int r0, int nrows,
                       int c0, int ncols, float *dst, int ldd);
/* The GEMMs of an im2col convolution with weights w (oc x c*kh*kw), without
 * storing col: out[oc][n*oh*ow] = w col, and dw += dyt col^T with dyt the
 * output gradient as [oc][n*oh*ow]. The same bits as nn_sgemm over a stored
 * col (for shapes that are not tiny). 0 if memory ran out. */
int nn_k_conv_gemm(const float *w, int oc, const float *x, const nn_conv_shape *s, float *out);
/* The whole forward, y (NCHW) = w col + bias (may be NULL), clamped at 0
 * when relu is set, the GEMM's output written to y a panel at a time (no
 * [oc][n*oh*ow] buffer and transpose pass); the same bits as
 * nn_k_conv_gemm then nn_k_cn_to_nc_bias. 0 (nothing written) where
 * nn_sgemm_to_sink does not apply. */
int nn_k_conv_forward(const float *w, int oc, const float *x, const nn_conv_shape *s,
                      const float *bias, int relu, float *y);
int nn_k_conv_dw_acc(const float *dyt, int oc, const float *x, const nn_conv_shape *s, float *dw);
/* Direct convolution, used instead of im2col + GEMM when c*kh*kw is at most
 * NN_CONV_DIRECT_MAX_TAPS: y (N, oc, oh, ow) = w (oc, c, kh, kw) * x + bias
 * (may be NULL), clamped at 0 when relu is set. Backward from dy, with the
 * fused ReLU's mask taken from y (NULL: no ReLU): dx, dw, db (each may be
 * NULL) accumulate. */
#define NN_CONV_DIRECT_MAX_TAPS 32
void nn_k_conv_direct(const float *x, const nn_conv_shape *s, int oc, const float *w,
                      const float *bias, int relu, float *y);
void nn_k_conv_direct_bwd(const float *x, const nn_conv_shape *s, int oc, const float *w,
                          const float *y, const float *dy, float *dx, float *dw, float *db);
/* The direct convolution's fast path (stride 1, no padding, 9, 25 or 27
 * taps, AVX-512 builds): the tap count where it applies to s, else 0; its
 * forward and its weight/bias gradient, as nn_k_conv_direct and the dw/db
 * part of nn_k_conv_direct_bwd (which call them where it applies). */
int nn_k_conv_direct_fast_taps(const nn_conv_shape *s);
void nn_k_conv_direct_fast(const float *x, const nn_conv_shape *s, int oc, const float *w,
                           const float *bias, int relu, float *y);
void nn_k_conv_direct_fast_dw(const float *x, const nn_conv_shape *s, int oc, const float *y,
                              const float *dy, float *dw, float *db);
/* A direct convolution followed by max pooling (pool: its window over the
 * convolution's output) and ReLU, run together where
 * nn_k_conv_direct_pool_fusable(s) (stride 1 without padding, few taps,
 * AVX-512): y (N, oc, pool oh, ow) = relu(maxpool(conv)), with argmax as
 * nn_k_maxpool, the convolution's output made and pooled an image at a
 * time in scratch (threads x oc x s->oh x s->ow floats) and never stored.
 * The backward adds the weight and bias gradients (dw, db; either may be
 * NULL) from the pooled output's gradient dy, spreading it over the
 * convolution's output in scratch (oc x s->oh x s->ow floats); not the
 * input's gradient. The same bits as the three kernels in turn. */
int nn_k_conv_direct_pool_fusable(const nn_conv_shape *s);
void nn_k_conv_direct_maxpool_relu(const float *x, const nn_conv_shape *s, int oc, const float *w,
                                   const float *bias, const nn_conv_shape *pool, float *scratch,
                                   float *y, int *argmax);
void nn_k_conv_direct_maxpool_relu_bwd(const float *x, const nn_conv_shape *s, int oc,
                                       const nn_conv_shape *pool, const float *dy,
                                       const int *argmax, const float *y, float *scratch, float *dw,
                                       float *db);
/* dx += col2im(W^T dyt), the input gradient of an im2col convolution with
 * weights w (oc x c*kh*kw) and output gradient dyt ([oc][n*oh*ow]),
 * computed chunk images at a time in scratch (c*kh*kw x chunk*oh*ow floats
 * per thread: nn_get_threads() times that) so that the columns stay in
 * cache. Each thread owns whole images; the same bits as one GEMM over the
 * batch followed by col2im.
 * With overwrite set, dx's old contents are ignored (zeroed first, by the
 * threads that own them). */
void nn_k_conv_dx(const float *w, int oc, const float *dyt, const nn_conv_shape *s, float *scratch,
                  int chunk, int overwrite, float *dx);
/* dst[n][c][i] = src[c][n][i] + bias[c] (bias may be NULL), clamped at 0 when
 * relu is set; and the transpose the other way, where an element is zeroed if
 * mask (same layout as src, may be NULL) is not positive there: the backward
 * of a fused ReLU, with mask its output. */
void nn_k_cn_to_nc_bias(int C, int N, size_t inner, const float *src, const float *bias, int relu,
                        float *dst);
void nn_k_nc_to_cn(int N, int C, size_t inner, const float *src, const float *mask, float *dst,
                   float *sums);
/* With sums (N x C, may be NULL), nn_k_nc_to_cn also stores each (n, c)
 * row's sum (after the mask); nn_k_sum_rows_acc then adds them up over n:
 * db[c] += sum of sums[n][c]. Together: a convolution's bias gradient in
 * the same pass as the transpose. */
void nn_k_sum_rows_acc(int N, int C, const float *sums, float *db);

/* Pooling over s (c = channels, output oh x ow). maxpool stores, per output,
 * the index of the chosen input within its plane; with relu set, outputs
 * that are not positive become 0 (relu after pooling). */
void nn_k_maxpool(const float *x, const nn_conv_shape *s, int relu, float *y, int *argmax);
/* Backward from dy into dx: added, or with overwrite set written whole
 * (dx's old contents are ignored). relu_y, when not NULL, is the forward's
 * ReLU'd output: gradients of outputs that are not positive are dropped. */
void nn_k_maxpool_bwd(const float *dy, const int *argmax, const nn_conv_shape *s,
                      const float *relu_y, int overwrite, float *dx);
/* nn_k_maxpool_bwd overwriting, with dx laid out [c][n][h*w] (the layout
 * an im2col convolution's backward takes its output gradient in) and, when
 * sums is not NULL, each (n, c) plane's sum in sums[n][c]: the same values
 * as nn_k_maxpool_bwd then nn_k_nc_to_cn, in one pass. */
void nn_k_maxpool_bwd_cn(const float *dy, const int *argmax, const nn_conv_shape *s,
                         const float *relu_y, float *dx_cn, float *sums);
/* The same for one plane (s->n and s->c are not read), on the calling
 * thread. */
void nn_k_maxpool_plane(const float *x, const nn_conv_shape *s, int relu, float *y, int *argmax);
void nn_k_maxpool_bwd_plane(const float *dy, const int *argmax, const nn_conv_shape *s,
                            const float *relu_y, int overwrite, float *dx);
void nn_k_avgpool(const float *x, const nn_conv_shape *s, float *y);
void nn_k_avgpool_bwd_acc(const float *dy, const nn_conv_shape *s, float *dx);

/* Inverted dropout: mask[i] = 0 with probability p, else 1 / (1 - p). */
struct nn_rng;
void nn_k_dropout_mask(size_t n, float p, struct nn_rng *rng, float *mask);

/* Recurrent cells over a batch of B rows, hidden size H.
 * LSTM: z holds the pre-activations [B][4H] in gate order i, f, g, o and is
 * overwritten with the activated gates; c = f*c_prev + i*g, h = o*tanh(c).
 * Backward: from dh (gradient reaching h) and dc (gradient reaching c from
 * the next step, replaced by the gradient for c_prev), writes the
 * pre-activation gradients dz [B][4H]. c_prev may be NULL (zeros). */
void nn_k_lstm_cell(int B, int H, float *z, const float *c_prev, float *c, float *h);
void nn_k_lstm_cell_bwd(int B, int H, const float *gates, const float *c_prev, const float *c,
                        const float *dh, float *dc, float *dz);
/* Elman RNN: h = tanh(z) in place of z's copy; backward dz = dh * (1 - h^2). */
void nn_k_rnn_cell_bwd(size_t n, const float *h, const float *dh, float *dz);

/* Optimizer updates over n parameters p with gradients g. */
void nn_k_sgd(size_t n, float *p, const float *g, float *buf, float lr, float momentum,
              float weight_decay, int nesterov, int first_step);
/* Adamax (torch.optim.Adamax): u = max(beta2 u, |g| + eps),
 * p -= lr / bias_c1 * m / u. */
void nn_k_adamax(size_t n, float *p, const float *g, float *m, float *u, float lr, float beta1,
                 float beta2, float eps, float weight_decay, float bias_c1);
void nn_k_adam(size_t n, float *p, const float *g, float *m, float *v, float lr, float beta1,
               float beta2, float eps, float weight_decay, float bias_c1, float bias_c2,
               int decoupled);


/* Channels-last inference kernels for one example (conv_nhwc.c). A feature
 * map is (h, w, cs) with channel stride cs >= channels; convolution outputs
 * use cs = ocp, the output channels rounded up to nn_k_nhwc_channel_align()
 * (the padding channels hold 0 + 0 bias). */
int nn_k_nhwc_channel_align(void);
typedef struct nn_nhwc_conv {
    int iw, cs;     /* input width (padding included) and channel stride */
    int c, k, stride; /* input channels read, square kernel, stride */
    int ocp, ow;    /* output channel stride and output row width */
    int rows, cols; /* the output rows and columns computed (from 0) */
} nn_nhwc_conv;
/* Floats of the packed weights for an output channel stride ocp, and the
 * packing of w (oc, c, k, k) (outputs oc..ocp - 1 get zero weights). */
size_t nn_k_nhwc_packed_floats(int ocp, int c, int k);
void nn_k_nhwc_pack_weights(int oc, int ocp, int c, int k, const float *w, float *dst);
/* y = conv(x) + bias (ocp floats), clamped at 0 if relu; x's window for
 * output (oy, ox) starts at (oy * stride, ox * stride): padding is already
 * in x. */
void nn_k_conv_nhwc(const nn_nhwc_conv *s, const float *x, const float *wp, const float *bias, int relu,
                    float *y);
/* A 3x3 stride-1 convolution followed by 2x2 stride-2 max pooling, by
 * Winograd's F(2x2, 3x3): y (rows / 2, cols / 2, ocp) pooled, rows and cols
 * even, s->cs a multiple of the alignment; weights packed by
 * nn_k_winograd_pack into nn_k_winograd_packed_floats(ocp, c) floats;
 * scratch of nn_k_winograd_scratch_floats(s). Equal to the direct form to
 * rounding. */
size_t nn_k_winograd_packed_floats(int ocp, int c);
void nn_k_winograd_pack(int oc, int ocp, int c, const float *w, float *dst);
size_t nn_k_winograd_scratch_floats(const nn_nhwc_conv *s);
void nn_k_conv_nhwc_winograd_pool(const nn_nhwc_conv *s, const float *x, const float *wp, const float *bias,
                                  int relu, float *y, float *scratch);
typedef struct nn_nhwc_pool {
    int ih, iw, cs; /* input and output channel stride (a multiple of the alignment) */
    int k, stride, pad, oh, ow;
    int relu; /* clamp the maxima at 0 */
} nn_nhwc_pool;
/* Max pooling, padding excluded from the windows; a NaN wins. */
void nn_k_maxpool_nhwc(const nn_nhwc_pool *s, const float *x, float *y);
/* y[ci*ys[0] + iy*ys[1] + ix*ys[2]] = x[ci*xs[0] + iy*xs[1] + ix*xs[2]] over
 * a (c, h, w) block: the moves between channel-major and channels-last
 * layouts and into a zero-bordered copy. */
void nn_k_copy_map(int c, int h, int w, const float *x, const size_t xs[3], float *y, const size_t ys[3]);
/* y = W x + bias for one example and W (n x k) row-major, clamped at 0
 * if relu: nn_k_dense_pack copies W transposed into
 * nn_k_dense_packed_floats(n, k) floats, and nn_k_dense_packed computes from
 * that copy, with bias and y padded to a multiple of
 * nn_k_nhwc_channel_align() floats. */
size_t nn_k_dense_packed_floats(int n, int k);
/* Packs the k inputs' columns of w (n x w_cols): column source[i] for
 * input i (-1: a zero column), or column i if source is NULL. */
void nn_k_dense_pack(int n, int k, const float *w, int w_cols, const int *source, float *dst);
void nn_k_dense_packed(int n, int k, const float *wp, const float *x, const float *bias, int relu, float *y);


/* int8 inference (int8.c): activations as bytes q + 128 with q =
 * round(x / scale) clamped to [-127, 127], channels-last with the channels
 * rounded up to nn_k_q8_channels(c) (a multiple of 4; the extra bytes 128);
 * weights per output channel, packed by nn_k_q8_pack in groups of 16
 * outputs. nn_k_q8_vnni() is 1 where the AVX-512 VNNI path is built. */
int nn_k_q8_vnni(void);
int nn_k_q8_channels(int c);
/* The largest |x| over the first c of every cs floats of `positions`
 * (a NaN if there is one): calibration and per-output weight scales. */
float nn_k_max_abs(int positions, int c, int cs, const float *x);
/* Per-output weight scales: the largest |w| of each output's per_output
 * weights over 127 (1 for an all-zero output, which rounds to 0 anyway);
 * and the n weights rounded to int8 with them (clamped to [-127, 127]). */
void nn_k_q8_weight_scales(int outputs, size_t per_output, const float *w, float *scale);
void nn_k_q8_round_weights(size_t n, size_t per_output, const float *w, const float *scale, int8_t *q);
/* q (positions, cq) from x (positions, stride cs), the first c channels. */
void nn_k_q8_quantize(int positions, int c, int cs, const float *x, float inv_scale, int cq, uint8_t *q);
/* Bytes of w (oc, c, k, k) packed, and the packing: w[o] / scale[o]
 * rounded and clamped, wsum (oc rounded up to 16) the sum of each output's
 * packed weights. row_runs: for an input whose positions hold c bytes (not
 * rounded up): each window row's k * c bytes are read as one run (rounded
 * up to 4 with zero weights), so a one-channel first layer fills the
 * 4-byte products (3 per window instead of 9 with one useful byte); the
 * input buffer then needs 3 bytes of slack at its end. */
size_t nn_k_q8_packed_bytes(int oc, int c, int k, int row_runs);
void nn_k_q8_pack(int oc, int c, int k, int row_runs, const float *w, const float *scale, int8_t *dst,
                  int32_t *wsum);
/* The same for a dense layer's w (n x w_cols) read through source as
 * nn_k_dense_pack does: k inputs, grouped for a single position (more
 * output vectors per group: more independent sums). */
void nn_k_q8_pack_dense(int n, int k, const float *w, int w_cols, const int *source, const float *scale,
                        int8_t *dst, int32_t *wsum);
typedef struct nn_q8_conv {
    int iw, cq;      /* input row width and bytes per position */
    int k, stride;
    int ocp, ow;     /* output channel stride (a multiple of 16 floats), row width */
    int rows, cols;  /* outputs computed */
    int dense;       /* weights from nn_k_q8_pack_dense (rows = cols = k = 1) */
    int pool2;       /* 2 x 2 stride-2 max pooling folded in: rows and cols even,
                        y (rows / 2, cols / 2) with ow its row width */
    int row_runs;    /* weights packed with row_runs (cq is then the channel count) */
} nn_q8_conv;
/* y (rows, cols, ocp) = (sum of products - 128 * wsum) * scale + bias,
 * clamped at 0 if relu; scale and bias per output (ocp each). portable: use
 * the plain C path even where VNNI is built (the tests compare them). */
void nn_k_q8_conv(const nn_q8_conv *s, const uint8_t *x, const int8_t *wp, const int32_t *wsum, const float *scale,
                  const float *bias, int relu, int portable, float *y);

#endif
