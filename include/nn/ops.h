/* libnn: differentiable ops.
 *
 * Every op takes the graph it records on, returns a new tensor from the
 * graph's arena (valid until nn_graph_reset) and, when any input requires a
 * gradient and the graph has gradients enabled, records its backward step.
 * Inputs may be persistent tensors (parameters, batches) or earlier outputs.
 * Shape rules are checked; a mismatch is reported as described in graph.h.
 */
#ifndef NN_OPS_H
#define NN_OPS_H

#include "graph.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- linear algebra ---------------------------------------------------- */

/* C = A B for 2-D A (M x K) and B (K x N). */
nn_tensor *nn_matmul(nn_graph *g, nn_tensor *a, nn_tensor *b);

/* C = op(A) op(B) where op transposes when trans_a / trans_b is nonzero:
 * e.g. trans_b = 1 takes B as N x K (the weight layout of nn_dense). */
nn_tensor *nn_matmul_ex(nn_graph *g, nn_tensor *a, nn_tensor *b, int trans_a, int trans_b);

/* y = x + bias broadcast along dimension 1: x is (N, C) or (N, C, ...),
 * bias has C elements (any shape with C elements). */
nn_tensor *nn_add_bias(nn_graph *g, nn_tensor *x, nn_tensor *bias);

/* y = x * scale[c] + shift[c] along dimension 1 (x is (N, C) or (N, C, ...);
 * scale and shift have C elements); gradients flow into all three. */
nn_tensor *nn_channel_affine(nn_graph *g, nn_tensor *x, nn_tensor *scale, nn_tensor *shift);

/* ---- elementwise ------------------------------------------------------- */

/* a + b, a - b and a * b (elementwise) for tensors of the same shape. */
nn_tensor *nn_add(nn_graph *g, nn_tensor *a, nn_tensor *b);
nn_tensor *nn_sub(nn_graph *g, nn_tensor *a, nn_tensor *b);
nn_tensor *nn_mul(nn_graph *g, nn_tensor *a, nn_tensor *b);
/* s * a for a constant s. */
nn_tensor *nn_scale(nn_graph *g, nn_tensor *a, float s);

/* Activations, elementwise. */
nn_tensor *nn_relu(nn_graph *g, nn_tensor *x);
nn_tensor *nn_sigmoid(nn_graph *g, nn_tensor *x);
nn_tensor *nn_tanh(nn_graph *g, nn_tensor *x);

/* max(x, slope * x) for a slope in [0, 1). */
nn_tensor *nn_leaky_relu(nn_graph *g, nn_tensor *x, float slope);

/* The same values as x, cut off from the graph: no gradient flows back
 * through the result (e.g. a generator's output fed to the discriminator's
 * own training step). Shares x's data. */
nn_tensor *nn_detach(nn_graph *g, nn_tensor *x);

/* ---- normalisation and losses ------------------------------------------ */

/* Softmax / log-softmax over the last dimension (numerically stable). */
nn_tensor *nn_softmax(nn_graph *g, nn_tensor *x);
nn_tensor *nn_log_softmax(nn_graph *g, nn_tensor *x);

/* Mean over the batch of -log softmax(logits)[i, labels[i]] for logits of
 * shape (N, C) and N integer labels in [0, C). Fused and stable for large
 * logits. labels is read during this call and during nn_backward, so it must
 * stay valid until then. A label outside [0, C) is reported as misuse. */
nn_tensor *nn_softmax_cross_entropy(nn_graph *g, nn_tensor *logits, const int *labels);

/* The same against smoothed targets (1 - smoothing) * onehot + smoothing / C,
 * as PyTorch's label_smoothing; smoothing in [0, 1). */
nn_tensor *nn_softmax_cross_entropy_smoothed(nn_graph *g, nn_tensor *logits, const int *labels,
                                             float smoothing);

/* Binary cross-entropy on logits: mean over elements of
 * -[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], computed stably as
 * max(x, 0) - x t + log(1 + exp(-|x|)). Targets t in [0, 1], same shape as
 * logits; gradient flows to the logits (and to targets if they require one). */
nn_tensor *nn_bce_with_logits(nn_graph *g, nn_tensor *logits, nn_tensor *targets);

/* Mean of (pred - target)^2 over all elements; a scalar. Gradient flows to
 * both pred and target when they require it. */
nn_tensor *nn_mse(nn_graph *g, nn_tensor *pred, nn_tensor *target);

/* ---- convolution, pooling, dropout (NCHW) ------------------------------ */

/* Stride and padding of a 2-D window. Padding may differ per side (e.g.
 * "same" padding of an even kernel); padded positions read as zero for
 * convolution and average pooling and are skipped by max pooling. */
typedef struct nn_window2d {
    int stride_h, stride_w;                       /* >= 1 */
    int pad_top, pad_bottom, pad_left, pad_right; /* >= 0 */
} nn_window2d;

/* Window with the same stride and padding on every side. */
nn_window2d nn_window(int stride, int pad);

/* 2-D convolution (cross-correlation, as PyTorch's conv2d): x (N, C, H, W),
 * weight (OC, C, KH, KW), bias (OC) or NULL. Output (N, OC, OH, OW) with
 * OH = (H + pad_top + pad_bottom - KH) / stride_h + 1 (likewise OW). */
nn_tensor *nn_conv2d(nn_graph *g, nn_tensor *x, nn_tensor *weight, nn_tensor *bias, nn_window2d win);

/* relu(nn_conv2d(...)) in one op: the ReLU runs in the pass that adds the
 * bias, and its mask is applied where the convolution's backward reorders dy,
 * so neither direction makes an extra pass or keeps an extra tensor. Same
 * values and gradients as the two ops. nn_sequential uses it by itself for a
 * conv2d layer followed by a ReLU layer. */
nn_tensor *nn_conv2d_relu(nn_graph *g, nn_tensor *x, nn_tensor *weight, nn_tensor *bias,
                          nn_window2d win);

/* Max / average pooling with a kh x kw window over each channel of x
 * (N, C, H, W). Max pooling: padding must be at most half the window, the
 * first maximum in row-major window order wins ties, a NaN in a window
 * wins (propagates). Average pooling divides
 * by kh*kw, counting padding as zeros (PyTorch's count_include_pad). */
nn_tensor *nn_maxpool2d(nn_graph *g, nn_tensor *x, int kh, int kw, nn_window2d win);
nn_tensor *nn_avgpool2d(nn_graph *g, nn_tensor *x, int kh, int kw, nn_window2d win);

/* nn_maxpool2d(nn_relu(x), ...) as relu(nn_maxpool2d(x, ...)) in one op:
 * away from NaNs, the same values and gradients (a ReLU commutes with a
 * maximum; a window holding a NaN gives 0 here), but the ReLU runs on the pooled output, a quarter of
 * the size for 2x2 windows, and its mask is applied where the pooling's
 * backward scatters dy, so the op before it (a convolution) does no
 * masking and keeps nothing for it. nn_sequential uses it by itself for a
 * ReLU layer followed by a max pooling layer. */
nn_tensor *nn_maxpool2d_relu(nn_graph *g, nn_tensor *x, int kh, int kw, nn_window2d win);

/* nn_maxpool2d_relu(nn_conv2d(x, weight, bias, conv_win), kh, kw, pool_win)
 * in one op, with the same values (bit for bit) and gradients. An im2col
 * convolution whose last output rows or columns no unpadded pooling window
 * reads (11 rows pooled 2 by 2 at stride 2 read 10) is computed without
 * them, forward and backward: the weight and bias gradients then sum fewer
 * terms (the dropped ones are zero) in other groups, equal to rounding;
 * otherwise the gradients are the same bit for bit. Where the
 * convolution runs direct (few taps per output, as in a first layer; stride
 * 1, no padding) on an AVX-512 build, each image's convolution output is
 * made, pooled and dropped while in cache, and the backward spreads the
 * pooled gradient back an image at a time: the convolution's output and its
 * gradient (4x the pooled size for 2x2 windows) are never stored. For an
 * im2col convolution the pooling's backward writes the gradient straight
 * in the layout the convolution's GEMMs read (no transpose pass).
 * nn_sequential uses it by itself for a conv2d layer, a ReLU layer and a
 * max pooling layer in a row. */
nn_tensor *nn_conv2d_maxpool2d_relu(nn_graph *g, nn_tensor *x, nn_tensor *weight, nn_tensor *bias,
                                    nn_window2d conv_win, int kh, int kw, nn_window2d pool_win);

/* Inverted dropout: each element is zeroed with probability p and the rest
 * scaled by 1/(1-p), drawing from rng. Always applies; a dropout layer in
 * evaluation mode simply does not call it. p in [0, 1). */
nn_tensor *nn_dropout(nn_graph *g, nn_tensor *x, float p, nn_rng *rng);

/* ---- recurrent layers -------------------------------------------------- */

typedef enum nn_cell {
    NN_CELL_LSTM, /* 4 gates i, f, g, o (PyTorch order) */
    NN_CELL_RNN   /* Elman: h = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) */
} nn_cell;

/* One recurrent layer over a whole sequence x (T, B, I), returning every
 * hidden state (T, B, H). Weights in PyTorch's layout: w_ih (G*H, I), w_hh
 * (G*H, H), b_ih and b_hh (G*H), with G = 4 for LSTM, 1 for RNN.
 * h0 / c0: the initial state, or NULL for zeros; the layer reads B*H values
 * at element state_offset of each (so one (L, B, H) tensor can hold every
 * layer's state), and gradients flow into them when they require one. c0 is
 * ignored for RNN. h_n / c_n: NULL, or tensors that receive the final state
 * at the same offset (values only: they are not part of the graph, which is
 * what truncated backprop through time wants).
 * The input projections of all T steps are one GEMM; each step is one GEMM
 * for all gates over the batch and one fused pass for the cell update. */
nn_tensor *nn_recurrent(nn_graph *g, nn_cell cell, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh,
                        nn_tensor *b_ih, nn_tensor *b_hh, nn_tensor *h0, nn_tensor *c0,
                        size_t state_offset, nn_tensor *h_n, nn_tensor *c_n);

/* ---- transformer ------------------------------------------------------- */

/* Rows of table (rows, width) picked by ids: the result has the index shape
 * (ndim dims, up to 3) followed by width. The backward adds each position's
 * gradient into its row of the table (rows picked twice get both). ids is
 * read again during nn_backward, so it must stay valid until then; an index
 * outside [0, rows) is reported as misuse. */
nn_tensor *nn_embedding(nn_graph *g, nn_tensor *table, const int *ids, int ndim, const int *shape);

/* Layer normalisation over the last dimension (PyTorch's LayerNorm):
 * (x - mean) / sqrt(var + eps) * weight + bias, biased variance; weight and
 * bias have as many elements as the last dimension, or are NULL (1 and 0;
 * a bias needs a weight). PyTorch's eps is 1e-5. */
nn_tensor *nn_layernorm(nn_graph *g, nn_tensor *x, nn_tensor *weight, nn_tensor *bias, float eps);

/* GELU, x * Phi(x) with the exact normal CDF (PyTorch's default gelu, not
 * the tanh approximation); absolute error under 1e-6 of |x|. */
nn_tensor *nn_gelu(nn_graph *g, nn_tensor *x);

/* Causal multi-head self-attention. qkv (B, T, 3C) holds queries, keys and
 * values side by side along the last axis (one matmul of the input with a
 * (3C, C) weight makes it); C splits into heads of D = C / heads. For each
 * batch item and head: softmax(Q K^T / sqrt(D)) V with position i seeing
 * positions 0..i. Returns (B, T, C), the heads side by side. Keeps the
 * (B, heads, T, T) attention probabilities for the backward. */
nn_tensor *nn_causal_attention(nn_graph *g, nn_tensor *qkv, int heads);

/* ---- shape and reductions ---------------------------------------------- */

/* Same data, new shape (sizes must match). The result shares x's data. */
nn_tensor *nn_reshape(nn_graph *g, nn_tensor *x, int ndim, const int *shape);
/* (N, ...) -> (N, product of the rest). */
nn_tensor *nn_flatten(nn_graph *g, nn_tensor *x);

/* Swap the first two axes: (A, B, ...) -> (B, A, ...), e.g. a batch-first
 * sequence (B, T, F) to the time-major (T, B, F) the recurrent ops take. */
nn_tensor *nn_transpose01(nn_graph *g, nn_tensor *x);

/* One time step of a sequence: x is (T, B, F) with time_axis 0 or (B, T, F)
 * with time_axis 1; returns (B, F). step < 0 counts from the end (-1 is the
 * last step, what a sequence classifier reads). */
nn_tensor *nn_select_step(nn_graph *g, nn_tensor *x, int step, int time_axis);

/* Sum / mean of all elements; a 1-element tensor. */
nn_tensor *nn_sum(nn_graph *g, nn_tensor *x);
nn_tensor *nn_mean(nn_graph *g, nn_tensor *x);

#ifdef __cplusplus
}
#endif
#endif
