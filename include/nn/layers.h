/* libnn: layers, the sequential container and named parameters.
 *
 * A layer is an object with a forward function that records ops on a graph;
 * its parameters are persistent tensors with gradients. Layers are built with
 * nn_*_new, used through the generic nn_layer_* functions and freed with
 * nn_layer_free. A container owns the layers added to it.
 *
 * Parameter names follow PyTorch's state_dict convention: a dense layer has
 * "weight" (out x in) and "bias" (out); inside a sequential container at
 * position i they become "i.weight" and "i.bias" (activations take a position
 * too, as in torch.nn.Sequential). */
#ifndef NN_LAYERS_H
#define NN_LAYERS_H

#include "graph.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- named parameter lists --------------------------------------------- */

typedef struct nn_params {
    int count;
    int capacity;
    nn_tensor **tensors; /* not owned: they belong to their layers */
    char **names;        /* owned copies */
} nn_params;

void nn_params_init(nn_params *p);
/* Append (a copy of) name and t. NN_ERR_MEMORY on allocation failure. */
nn_status nn_params_add(nn_params *p, const char *name, nn_tensor *t);
/* The tensor named name, or NULL. */
nn_tensor *nn_params_find(const nn_params *p, const char *name);
/* Total number of scalar parameters. */
size_t nn_params_numel(const nn_params *p);
/* Free the list (names and arrays), not the tensors. */
void nn_params_free(nn_params *p);

/* ---- the generic layer interface --------------------------------------- */

typedef struct nn_layer nn_layer;

/* A layer's kind and hyperparameters: what a model file records and what
 * nn_layer_from_config (model.h) rebuilds the layer from. Fields a kind does
 * not use are 0.
 *   kind         "dense", "conv2d", "maxpool2d", "avgpool2d", "relu",
 *                "sigmoid", "tanh", "leaky_relu", "dropout", "flatten",
 *                "lstm", "rnn", "select_step", "standardize", "embedding",
 *                "layernorm", "causal_attention", "transformer_block", "gpt",
 *                "sequential", or a custom layer's vtable kind
 *   in, out      dense: features; conv2d: channels; lstm/rnn: input and
 *                hidden size; standardize, layernorm: features (in = out);
 *                embedding: rows and width; causal_attention,
 *                transformer_block: width (in = out); gpt: vocabulary and width
 *   kernel, stride, padding   conv2d and pooling (padding NN_PAD_SAME = -1)
 *   num_layers, batch_first   lstm/rnn
 *   step, batch_first         select_step (step < 0 counts from the end)
 *   rate         dropout probability; leaky_relu slope
 *   inverse      standardize: 1 for y = x * std + mean
 *   seed         dropout's mask seed
 *   heads        causal_attention, transformer_block, gpt: attention heads
 *   context      gpt: positions (the longest sequence); num_layers: blocks */
typedef struct nn_layer_config {
    const char *kind;
    int in, out;
    int kernel, stride, padding;
    int num_layers, batch_first, step;
    float rate;
    int inverse;
    uint64_t seed;
    int heads, context;
} nn_layer_config;

/* What a layer implementation provides; custom layers fill one in and embed
 * nn_layer as their first member. */
typedef struct nn_layer_vtable {
    const char *kind; /* e.g. "dense" */
    nn_tensor *(*forward)(nn_layer *self, nn_graph *g, nn_tensor *x);
    /* Append the layer's parameters to out, each name prefixed by prefix
     * (which is "" or ends in '.'). May be NULL for parameterless layers. */
    nn_status (*collect_params)(nn_layer *self, const char *prefix, nn_params *out);
    /* Propagate a mode change to children; may be NULL. */
    void (*set_training)(nn_layer *self, int training);
    void (*destroy)(nn_layer *self);
    /* Fill in the hyperparameters (kind is set by the caller); may be NULL. */
    void (*get_config)(const nn_layer *self, nn_layer_config *out);
} nn_layer_vtable;

struct nn_layer {
    const nn_layer_vtable *vt;
    int training; /* 1 in training mode (the default), 0 in evaluation mode */
};

/* Run the layer on x, recording on g. Returns NULL (or aborts, see graph.h)
 * on misuse such as a wrong input shape. */
nn_tensor *nn_layer_forward(nn_layer *l, nn_graph *g, nn_tensor *x);

/* Fill out (initialised by the caller with nn_params_init) with the layer's
 * parameters and their names. */
nn_status nn_layer_params(nn_layer *l, nn_params *out);

/* Switch between training (1) and evaluation (0) mode, recursively; layers
 * such as dropout behave differently in each. */
void nn_layer_set_training(nn_layer *l, int training);

/* Free a layer, its parameters and (for containers) its children. */
void nn_layer_free(nn_layer *l);

/* The layer's kind ("dense", "relu", ...; see nn_layer_config), or "" for
 * NULL. */
const char *nn_layer_kind(const nn_layer *l);

/* The layer's kind and hyperparameters (all zero with kind "" for NULL). */
nn_layer_config nn_layer_get_config(const nn_layer *l);

/* The message of the last constructor of this thread that returned NULL
 * (bad arguments or out of memory), e.g. "nn_dense_new: in_features must
 * be >= 1, got 0"; "" if none has failed. */
const char *nn_layer_last_error(void);

/* ---- concrete layers --------------------------------------------------- */

typedef enum nn_init {
    NN_INIT_HE,     /* He normal: for layers followed by ReLU */
    NN_INIT_XAVIER, /* Xavier uniform: for tanh/sigmoid or the output layer */
    NN_INIT_FAN_IN  /* PyTorch's nn.Linear default: weight and bias U(-1/sqrt(in),
                       1/sqrt(in)); smaller than He, it generalises better on
                       small tabular data sets */
} nn_init;

/* Fully connected layer: y = x W^T + b with W (out x in), b (out); x is
 * (N, in). Weights drawn with init from rng; bias zero. NULL on bad sizes or
 * out of memory. */
nn_layer *nn_dense_new(int in_features, int out_features, nn_init init, nn_rng *rng);
/* The dense layer's weight and bias tensors (NULL if l is not dense). */
nn_tensor *nn_dense_weight(nn_layer *l);
nn_tensor *nn_dense_bias(nn_layer *l);

typedef enum nn_activation {
    NN_ACT_RELU,
    NN_ACT_SIGMOID,
    NN_ACT_TANH
} nn_activation;

/* A parameterless elementwise activation layer. */
nn_layer *nn_activation_new(nn_activation kind);

/* Leaky ReLU layer: max(x, slope * x), slope in [0, 1) (0.2 is usual in GANs). */
nn_layer *nn_leaky_relu_new(float slope);

/* Padding argument of nn_conv2d_new: "same" keeps H/stride x W/stride
 * (rounded up), putting any odd extra row/column at the bottom/right. Any
 * value >= 0 pads every side by that much (0 is "valid"). */
#define NN_PAD_SAME (-1)

/* 2-D convolution layer over (N, in_channels, H, W) with a square kernel:
 * weight (out, in, k, k) He-initialised for a following ReLU, bias (out)
 * zero. Parameters "weight" and "bias" as in torch.nn.Conv2d. */
nn_layer *nn_conv2d_new(int in_channels, int out_channels, int kernel, int stride, int padding,
                        nn_rng *rng);
nn_tensor *nn_conv2d_weight(nn_layer *l);
nn_tensor *nn_conv2d_bias(nn_layer *l);

/* Max / average pooling with a square window; stride 0 means stride =
 * kernel; padding on every side (see nn_maxpool2d for the rules). */
nn_layer *nn_maxpool2d_new(int kernel, int stride, int padding);
nn_layer *nn_avgpool2d_new(int kernel, int stride, int padding);

/* Inverted dropout with probability p in [0, 1) in training mode, the
 * identity in evaluation mode. Masks come from the layer's own RNG seeded
 * with seed, so runs are reproducible. */
nn_layer *nn_dropout_new(float p, uint64_t seed);

/* The layer's own random generator (a dropout layer's mask generator), or
 * NULL for layers without one: checkpoints save and restore its state
 * (nn_rng_to_string) so that a resumed run draws the same masks. */
nn_rng *nn_layer_rng(nn_layer *l);

/* (N, ...) -> (N, product of the rest). */
nn_layer *nn_flatten_new(void);

/* Stacked recurrent layers over sequences (T, B, input_size), returning
 * every hidden state of the last layer (T, B, hidden_size).
 *
 * Parameters per layer k, named and shaped as in torch.nn.LSTM / nn.RNN so
 * weights can be exchanged through safetensors:
 *   weight_ih_l<k>  (G*hidden, in)   in = input_size for k = 0, else hidden
 *   weight_hh_l<k>  (G*hidden, hidden)
 *   bias_ih_l<k>, bias_hh_l<k>  (G*hidden)
 * with G = 4 gate blocks in the order input, forget, cell (g), output for
 * LSTM and G = 1 for RNN (h = tanh(W_ih x + b_ih + W_hh h + b_hh)).
 * Initialisation as PyTorch: every weight and bias U(-1/sqrt(hidden),
 * 1/sqrt(hidden)), except that the LSTM forget-gate block of bias_ih is set
 * to 1 and that of bias_hh to 0, so the total forget bias starts at 1 and
 * early training keeps the cell state (Jozefowicz et al., 2015). */
nn_layer *nn_lstm_new(int input_size, int hidden_size, int num_layers, nn_rng *rng);
nn_layer *nn_rnn_new(int input_size, int hidden_size, int num_layers, nn_rng *rng);

/* Run a recurrent layer with explicit state. h0, c0: initial states of
 * shape (num_layers, B, hidden) or NULL for zeros (c0 is LSTM only);
 * gradients flow into them if they require one. h_n, c_n: NULL or tensors of
 * the same shape receiving the final states (not differentiated: carry them
 * across batches for truncated BPTT; they may be the same tensors as h0/c0).
 * nn_layer_forward(l, g, x) is this with all four NULL. */
nn_tensor *nn_recurrent_forward(nn_layer *l, nn_graph *g, nn_tensor *x, nn_tensor *h0,
                                nn_tensor *c0, nn_tensor *h_n, nn_tensor *c_n);

/* Make a recurrent layer take (B, T, input_size) and return (B, T, hidden)
 * (batch first, the layout nn_data_batcher makes by default) instead of
 * time-major. NN_ERR_ARG if l is not an LSTM or RNN. */
nn_status nn_recurrent_set_batch_first(nn_layer *l, int batch_first);

/* A layer that keeps one time step of a sequence: (T, B, F) -> (B, F), or
 * (B, T, F) -> (B, F) with batch_first. step < 0 counts from the end, so
 * nn_select_step_new(-1, 1) after a batch-first LSTM makes
 * LSTM -> last step -> dense one nn_sequential. */
nn_layer *nn_select_step_new(int step, int batch_first);

/* Per-feature standardisation with fixed statistics: y = (x - mean) / std
 * over dimension 1 (x is (N, features) or (N, features, ...)), or with
 * inverse y = x * std + mean (to put a regression output back into the
 * target's units). mean and std (features values each, std > 0) are
 * copied; NULL gives 0 and 1. They are parameters named "mean" and "std",
 * so model files carry them, but frozen: optimizers never change them. */
nn_layer *nn_standardize_new(int features, const float *mean, const float *std, int inverse);

/* ---- transformer layers (PyTorch's parameter names and layouts) -------- */

/* Embedding table "weight" (rows, width), initialised N(0, 1) as
 * nn.Embedding. The input holds integer indices stored as floats, any shape
 * of up to 3 dims; the output appends width: (B, T) -> (B, T, width). */
nn_layer *nn_embedding_new(int rows, int width, nn_rng *rng);

/* Layer normalisation over the last dimension, "weight" (1s) and "bias"
 * (0s) of features elements, eps 1e-5 (nn.LayerNorm). */
nn_layer *nn_layernorm_new(int features);

/* Causal multi-head self-attention over (B, T, width): "qkv.weight"
 * (3 width, width) makes queries, keys and values in one product,
 * nn_causal_attention mixes them, "proj.weight" (width, width) projects
 * back; no biases. width must be a multiple of heads. Weights N(0, 0.02). */
nn_layer *nn_causal_self_attention_new(int width, int heads, nn_rng *rng);

/* A pre-norm transformer block over (B, T, width):
 * x + proj(attention(ln1(x))), then x + fc_proj(gelu(fc(ln2(x)))) with a
 * 4x wide MLP. Parameters "ln1.weight", "ln1.bias", "qkv.weight",
 * "proj.weight", "ln2.weight", "ln2.bias", "fc.weight" (4 width, width),
 * "fc_proj.weight" (width, 4 width): the names of nanoGPT-style PyTorch
 * blocks. Matrices N(0, 0.02), the two projections into the residual
 * stream N(0, 0.02 / sqrt(2 num_blocks)) (num_blocks >= 1 is the depth of
 * the model the block is part of). */
nn_layer *nn_transformer_block_new(int width, int heads, int num_blocks, nn_rng *rng);

/* A GPT language model: token and position embeddings "wte.weight"
 * (vocab, width) and "wpe.weight" (context, width), num_blocks transformer
 * blocks "blocks.<i>.*", a final layer norm "ln_f.weight" / "ln_f.bias" and
 * an output head tied to wte (the same tensor, listed and saved once).
 * Input: (B, T) token ids as floats, T <= context; output: logits
 * (B, T, vocab). The parameter names and layouts are those of a PyTorch
 * model built the same way (nanoGPT's, and shared/bench/torch_ref.py's
 * CharGPT), so state dicts move both ways as safetensors files. */
typedef struct nn_gpt_config {
    int vocab, context, num_blocks, heads, width;
} nn_gpt_config;
nn_layer *nn_gpt_new(nn_gpt_config config, nn_rng *rng);
/* The configuration of a GPT layer (all 0 if l is not one). */
nn_gpt_config nn_gpt_get_config(const nn_layer *l);

/* Generation without recomputing earlier positions: a key/value cache of
 * every block for up to context positions. nn_gpt_cache_step feeds the next
 * token and writes vocab logits for the position after it; NN_ERR_ARG when
 * the cache is full (reset it, e.g. to refeed a shorter window) or the
 * token is outside the vocabulary. The model must not change while a cache
 * is in use; one cache per thread. Inference only (no graph, no gradient);
 * the same logits as nn_layer_forward up to float rounding. */
typedef struct nn_gpt_cache nn_gpt_cache;
nn_gpt_cache *nn_gpt_cache_new(nn_layer *gpt);
void nn_gpt_cache_reset(nn_gpt_cache *c);
int nn_gpt_cache_len(const nn_gpt_cache *c);
nn_status nn_gpt_cache_step(nn_gpt_cache *c, int token, float *logits);
void nn_gpt_cache_free(nn_gpt_cache *c);

/* Hidden size and layer count of a recurrent layer (0 if l is not one). */
int nn_recurrent_hidden_size(const nn_layer *l);
int nn_recurrent_num_layers(const nn_layer *l);

/* A container that applies its layers in order. A conv2d layer, a ReLU
 * layer and a max pooling layer in a row run as one nn_conv2d_maxpool2d_relu;
 * else a ReLU layer followed by a max pooling layer runs as one
 * nn_maxpool2d_relu, and a conv2d layer followed by a ReLU layer as one
 * nn_conv2d_relu (the same values and gradients). In eval mode on a graph with
 * gradients disabled, a batch of more than 64 samples through layers that
 * each treat samples separately (the built-in conv2d, pooling, dense,
 * activation, dropout and flatten layers) runs 32 samples at a time, each
 * slice's intermediate tensors released before the next: the same output,
 * bit for bit, with the activations kept in cache. */
nn_layer *nn_sequential_new(void);
/* Append layer (ownership passes to seq, also on failure). NN_ERR_ARG if seq
 * is not sequential or layer is NULL; NN_ERR_MEMORY on allocation failure. */
nn_status nn_sequential_add(nn_layer *seq, nn_layer *layer);
/* Number of layers / the i-th layer (NULL if out of range). */
int nn_sequential_len(const nn_layer *seq);
nn_layer *nn_sequential_get(nn_layer *seq, int i);

#ifdef __cplusplus
}
#endif
#endif
