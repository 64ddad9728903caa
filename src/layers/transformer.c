/* Transformer layers: embedding, layer norm, causal self-attention and the
 * pre-norm block, with PyTorch's parameter names and layouts. */
#include <math.h>
#include <stdlib.h>

#include "nn/ops.h"
#include "layer_internal.h"
#include "transformer_internal.h"
#include "../ops/ops_internal.h"
#include "../autograd/graph_internal.h"

int *nn__token_ids(nn_graph *g, const nn_tensor *x, int rows, const char *who)
{
    int *ids = nn__arena_alloc(g, (x->size ? x->size : 1) * sizeof(int));
    if (!ids) return NULL;
    for (size_t i = 0; i < x->size; i++) {
        float v = x->data[i];
        if (!(v >= 0.0f && v < (float)rows) || v != floorf(v)) {
            nn__fail(g, who, "input element %zu is %g, not a token id in [0, %d)", i, (double)v, rows);
            return NULL;
        }
        ids[i] = (int)v;
    }
    return ids;
}

/* ---- embedding ---------------------------------------------------------- */

typedef struct embedding {
    nn_layer base;
    nn_tensor *weight;
} embedding;

static nn_tensor *embedding_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    embedding *e = (embedding *)l;
    if (!nn__inputs_ok(g, "embedding", &x, 1)) return NULL;
    if (x->ndim > NN_MAX_DIMS - 1) {
        nn__shape_buf sx;
        return nn__fail(g, "embedding", "input of ids must have at most %d dims, got %s",
                        NN_MAX_DIMS - 1, nn__shape(x, &sx));
    }
    int *ids = nn__token_ids(g, x, e->weight->shape[0], "embedding");
    return ids ? nn_embedding(g, e->weight, ids, x->ndim, x->shape) : NULL;
}

static nn_status embedding_params(nn_layer *l, const char *prefix, nn_params *out)
{
    return nn__params_add_prefixed(out, prefix, "weight", ((embedding *)l)->weight);
}

static void embedding_destroy(nn_layer *l)
{
    nn_tensor_free(((embedding *)l)->weight);
    free(l);
}

static void embedding_config(const nn_layer *l, nn_layer_config *c)
{
    const nn_tensor *w = ((const embedding *)l)->weight;
    c->in = w->shape[0];
    c->out = w->shape[1];
}

static const nn_layer_vtable embedding_vt = {"embedding", embedding_forward, embedding_params, NULL,
                                             embedding_destroy, embedding_config};

nn_layer *nn_embedding_new(int rows, int width, nn_rng *rng)
{
    if (rows < 1 || width < 1 || !rng)
        return nn__layer_fail("nn_embedding_new: need rows >= 1, width >= 1 and an rng, got %d, %d, %s",
                              rows, width, rng ? "an rng" : "NULL");
    embedding *e = calloc(1, sizeof *e);
    if (!e) return nn__layer_fail("nn_embedding_new: out of memory");
    e->base.vt = &embedding_vt;
    e->base.training = 1;
    e->weight = nn__param_new(2, (int[]){rows, width});
    if (!e->weight) {
        free(e);
        return nn__layer_fail("nn_embedding_new: out of memory for a %d x %d table", rows, width);
    }
    nn_tensor_normal(e->weight, rng, 0.0f, 1.0f);
    return &e->base;
}

/* ---- layer norm --------------------------------------------------------- */

typedef struct layernorm {
    nn_layer base;
    nn_tensor *weight, *bias;
} layernorm;

static nn_tensor *layernorm_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    layernorm *n = (layernorm *)l;
    return nn_layernorm(g, x, n->weight, n->bias, NN__LN_EPS);
}

static nn_status layernorm_params(nn_layer *l, const char *prefix, nn_params *out)
{
    layernorm *n = (layernorm *)l;
    nn_status s = nn__params_add_prefixed(out, prefix, "weight", n->weight);
    return s ? s : nn__params_add_prefixed(out, prefix, "bias", n->bias);
}

static void layernorm_destroy(nn_layer *l)
{
    layernorm *n = (layernorm *)l;
    nn_tensor_free(n->weight);
    nn_tensor_free(n->bias);
    free(n);
}

static void layernorm_config(const nn_layer *l, nn_layer_config *c)
{
    c->in = c->out = (int)((const layernorm *)l)->weight->size;
}

static const nn_layer_vtable layernorm_vt = {"layernorm", layernorm_forward, layernorm_params, NULL,
                                             layernorm_destroy, layernorm_config};

nn_layer *nn_layernorm_new(int features)
{
    if (features < 1) return nn__layer_fail("nn_layernorm_new: features must be >= 1, got %d", features);
    layernorm *n = calloc(1, sizeof *n);
    if (!n) return nn__layer_fail("nn_layernorm_new: out of memory");
    n->base.vt = &layernorm_vt;
    n->base.training = 1;
    n->weight = nn__param_new(1, &features);
    n->bias = nn__param_new(1, &features);
    if (!n->weight || !n->bias) {
        layernorm_destroy(&n->base);
        return nn__layer_fail("nn_layernorm_new: out of memory");
    }
    nn_tensor_fill(n->weight, 1.0f);
    return &n->base;
}

/* ---- causal self-attention ------------------------------------------------ */

/* proj(attention(x qkv^T)) for the rows x (B*T, C) of B sequences of T:
 * 2-D in and out, as the products want them; only the attention op sees
 * (B, T, 3C). */
static nn_tensor *attention_rows(nn_graph *g, nn_tensor *x, int B, int T, nn_tensor *qkv_w,
                                 nn_tensor *proj_w, int heads)
{
    int C = proj_w->shape[0];
    nn_tensor *qkv = nn_reshape(g, nn_matmul_ex(g, x, qkv_w, 0, 1), 3, (int[]){B, T, 3 * C});
    nn_tensor *att = nn_reshape(g, nn_causal_attention(g, qkv, heads), 2, (int[]){B * T, C});
    return nn_matmul_ex(g, att, proj_w, 0, 1);
}

/* x must be (B, T, C): returns it as rows (B*T, C), or NULL with an error. */
static nn_tensor *as_rows(nn_graph *g, nn_tensor *x, int C, const char *who)
{
    if (!nn__inputs_ok(g, who, &x, 1)) return NULL;
    if (x->ndim != 3 || x->shape[2] != C) {
        nn__shape_buf sx;
        return nn__fail(g, who, "input must be (B, T, %d), got %s", C, nn__shape(x, &sx));
    }
    return nn_reshape(g, x, 2, (int[]){x->shape[0] * x->shape[1], C});
}

typedef struct attention {
    nn_layer base;
    int heads;
    nn_tensor *qkv_w, *proj_w;
} attention;

static nn_tensor *attention_layer_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    attention *a = (attention *)l;
    int C = a->proj_w->shape[0];
    nn_tensor *rows = as_rows(g, x, C, "causal_attention");
    if (!rows) return NULL;
    nn_tensor *y = attention_rows(g, rows, x->shape[0], x->shape[1], a->qkv_w, a->proj_w, a->heads);
    return nn_reshape(g, y, 3, (int[]){x->shape[0], x->shape[1], C});
}

static nn_status attention_params(nn_layer *l, const char *prefix, nn_params *out)
{
    attention *a = (attention *)l;
    nn_status s = nn__params_add_prefixed(out, prefix, "qkv.weight", a->qkv_w);
    return s ? s : nn__params_add_prefixed(out, prefix, "proj.weight", a->proj_w);
}

static void attention_destroy(nn_layer *l)
{
    attention *a = (attention *)l;
    nn_tensor_free(a->qkv_w);
    nn_tensor_free(a->proj_w);
    free(a);
}

static void attention_config(const nn_layer *l, nn_layer_config *c)
{
    const attention *a = (const attention *)l;
    c->in = c->out = a->proj_w->shape[0];
    c->heads = a->heads;
}

static const nn_layer_vtable attention_vt = {"causal_attention", attention_layer_forward,
                                             attention_params, NULL, attention_destroy,
                                             attention_config};

static const char *width_heads_error(int width, int heads)
{
    if (width < 1 || heads < 1) return "width and heads must be >= 1";
    if (width % heads) return "width must be a multiple of heads";
    return NULL;
}

nn_layer *nn_causal_self_attention_new(int width, int heads, nn_rng *rng)
{
    const char *why = width_heads_error(width, heads);
    if (why || !rng)
        return nn__layer_fail("nn_causal_self_attention_new: %s, got width %d, heads %d%s",
                              why ? why : "need an rng", width, heads, rng ? "" : ", NULL rng");
    attention *a = calloc(1, sizeof *a);
    if (!a) return nn__layer_fail("nn_causal_self_attention_new: out of memory");
    a->base.vt = &attention_vt;
    a->base.training = 1;
    a->heads = heads;
    a->qkv_w = nn__param_new(2, (int[]){3 * width, width});
    a->proj_w = nn__param_new(2, (int[]){width, width});
    if (!a->qkv_w || !a->proj_w) {
        attention_destroy(&a->base);
        return nn__layer_fail("nn_causal_self_attention_new: out of memory");
    }
    nn_tensor_normal(a->qkv_w, rng, 0.0f, 0.02f);
    nn_tensor_normal(a->proj_w, rng, 0.0f, 0.02f);
    return &a->base;
}

/* ---- transformer block ---------------------------------------------------- */

nn_tensor *nn__block_rows(nn__block *b, nn_graph *g, nn_tensor *x, int B, int T)
{
    /* the products' outputs are read only by the GELU and the residual
     * additions, which write over them: a smaller working set (46 -> 37 MB
     * a step for the character GPT) and no misses on fresh memory */
    nn_tensor *h = nn_layernorm(g, x, b->ln1_w, b->ln1_b, NN__LN_EPS);
    x = nn__add_over(g, x, attention_rows(g, h, B, T, b->qkv_w, b->proj_w, b->heads));
    h = nn_layernorm(g, x, b->ln2_w, b->ln2_b, NN__LN_EPS);
    h = nn_matmul_ex(g, nn__gelu_over(g, nn_matmul_ex(g, h, b->fc_w, 0, 1)), b->fc_proj_w, 0, 1);
    return nn__add_over(g, x, h);
}

static nn_tensor *block_layer_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    nn__block *b = (nn__block *)l;
    int C = b->proj_w->shape[0];
    nn_tensor *rows = as_rows(g, x, C, "transformer_block");
    if (!rows) return NULL;
    return nn_reshape(g, nn__block_rows(b, g, rows, x->shape[0], x->shape[1]), 3,
                      (int[]){x->shape[0], x->shape[1], C});
}

static nn_status block_params(nn_layer *l, const char *prefix, nn_params *out)
{
    nn__block *b = (nn__block *)l;
    const char *names[8] = {"ln1.weight", "ln1.bias", "qkv.weight", "proj.weight",
                            "ln2.weight", "ln2.bias", "fc.weight",  "fc_proj.weight"};
    nn_tensor *t[8] = {b->ln1_w, b->ln1_b, b->qkv_w, b->proj_w, b->ln2_w, b->ln2_b, b->fc_w, b->fc_proj_w};
    for (int i = 0; i < 8; i++) {
        nn_status s = nn__params_add_prefixed(out, prefix, names[i], t[i]);
        if (s) return s;
    }
    return NN_OK;
}

static void block_destroy(nn_layer *l)
{
    nn__block *b = (nn__block *)l;
    nn_tensor *t[8] = {b->ln1_w, b->ln1_b, b->qkv_w, b->proj_w, b->ln2_w, b->ln2_b, b->fc_w, b->fc_proj_w};
    for (int i = 0; i < 8; i++) nn_tensor_free(t[i]);
    free(b);
}

static void block_config(const nn_layer *l, nn_layer_config *c)
{
    const nn__block *b = (const nn__block *)l;
    c->in = c->out = b->proj_w->shape[0];
    c->heads = b->heads;
}

static const nn_layer_vtable block_vt = {"transformer_block", block_layer_forward, block_params,
                                         NULL, block_destroy, block_config};

nn_layer *nn_transformer_block_new(int width, int heads, int num_blocks, nn_rng *rng)
{
    const char *why = width_heads_error(width, heads);
    if (why || !rng || num_blocks < 1)
        return nn__layer_fail("nn_transformer_block_new: %s, got width %d, heads %d, num_blocks %d%s",
                              why ? why : "need num_blocks >= 1 and an rng", width, heads, num_blocks,
                              rng ? "" : ", NULL rng");
    nn__block *b = calloc(1, sizeof *b);
    if (!b) return nn__layer_fail("nn_transformer_block_new: out of memory");
    b->base.vt = &block_vt;
    b->base.training = 1;
    b->heads = heads;
    b->ln1_w = nn__param_new(1, &width);
    b->ln1_b = nn__param_new(1, &width);
    b->qkv_w = nn__param_new(2, (int[]){3 * width, width});
    b->proj_w = nn__param_new(2, (int[]){width, width});
    b->ln2_w = nn__param_new(1, &width);
    b->ln2_b = nn__param_new(1, &width);
    b->fc_w = nn__param_new(2, (int[]){4 * width, width});
    b->fc_proj_w = nn__param_new(2, (int[]){width, 4 * width});
    if (!b->ln1_w || !b->ln1_b || !b->qkv_w || !b->proj_w || !b->ln2_w || !b->ln2_b || !b->fc_w ||
        !b->fc_proj_w) {
        block_destroy(&b->base);
        return nn__layer_fail("nn_transformer_block_new: out of memory");
    }
    float residual_std = 0.02f / sqrtf(2.0f * (float)num_blocks);
    nn_tensor_fill(b->ln1_w, 1.0f);
    nn_tensor_fill(b->ln2_w, 1.0f);
    nn_tensor_normal(b->qkv_w, rng, 0.0f, 0.02f);
    nn_tensor_normal(b->proj_w, rng, 0.0f, residual_std);
    nn_tensor_normal(b->fc_w, rng, 0.0f, 0.02f);
    nn_tensor_normal(b->fc_proj_w, rng, 0.0f, residual_std);
    return &b->base;
}
