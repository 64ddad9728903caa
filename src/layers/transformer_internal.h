/* What the GPT model (gpt.c) shares with the transformer layers
 * (transformer.c): the block's tensors, its forward pass and token ids. */
#ifndef NN_TRANSFORMER_INTERNAL_H
#define NN_TRANSFORMER_INTERNAL_H

#include "nn/layers.h"

#define NN__LN_EPS 1e-5f

typedef struct nn__block {
    nn_layer base;
    int heads;
    nn_tensor *ln1_w, *ln1_b, *qkv_w, *proj_w, *ln2_w, *ln2_b, *fc_w, *fc_proj_w;
} nn__block;

/* The block's forward over the rows x (B*T, width) of B sequences of T
 * (nn_layer_forward takes and returns (B, T, width)). */
nn_tensor *nn__block_rows(nn__block *b, nn_graph *g, nn_tensor *x, int B, int T);

/* x's values as integer ids in [0, rows), in the graph's arena (valid until
 * it is reset); NULL with a misuse report naming who on a non-integer or out
 * of range value. */
int *nn__token_ids(nn_graph *g, const nn_tensor *x, int rows, const char *who);

#endif
