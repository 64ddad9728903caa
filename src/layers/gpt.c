/* A GPT language model (token + position embeddings, pre-norm transformer
 * blocks, final layer norm, head tied to the token embedding) and its
 * key/value cache for generation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"
#include "layer_internal.h"
#include "transformer_internal.h"
#include "../autograd/graph_internal.h"
#include "../kernels/kernels.h"

typedef struct gpt {
    nn_layer base;
    nn_gpt_config cfg;
    nn_tensor *wte, *wpe, *lnf_w, *lnf_b;
    nn_layer **blocks;
} gpt;

static nn_tensor *gpt_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    gpt *m = (gpt *)l;
    if (!nn__inputs_ok(g, "gpt", &x, 1)) return NULL;
    nn__shape_buf sx;
    if (x->ndim != 2 || x->shape[1] > m->cfg.context)
        return nn__fail(g, "gpt", "input must be (B, T) token ids with T <= %d, got %s", m->cfg.context,
                        nn__shape(x, &sx));
    int B = x->shape[0], T = x->shape[1];
    int *ids = nn__token_ids(g, x, m->cfg.vocab, "gpt");
    int *pos = nn__arena_alloc(g, (size_t)B * T * sizeof(int));
    if (!ids || !pos) return NULL;
    for (int i = 0; i < B * T; i++) pos[i] = i % T;
    int rows = B * T;
    nn_tensor *h = nn_add(g, nn_embedding(g, m->wte, ids, 1, &rows), nn_embedding(g, m->wpe, pos, 1, &rows));
    for (int i = 0; i < m->cfg.num_blocks; i++) h = nn__block_rows((nn__block *)m->blocks[i], g, h, B, T);
    h = nn_layernorm(g, h, m->lnf_w, m->lnf_b, NN__LN_EPS);
    return nn_reshape(g, nn_matmul_ex(g, h, m->wte, 0, 1), 3, (int[]){B, T, m->cfg.vocab});
}

static nn_status gpt_params(nn_layer *l, const char *prefix, nn_params *out)
{
    gpt *m = (gpt *)l;
    nn_status s = nn__params_add_prefixed(out, prefix, "wte.weight", m->wte);
    if (!s) s = nn__params_add_prefixed(out, prefix, "wpe.weight", m->wpe);
    for (int i = 0; !s && i < m->cfg.num_blocks; i++) {
        char p[200];
        snprintf(p, sizeof p, "%sblocks.%d.", prefix, i);
        s = m->blocks[i]->vt->collect_params(m->blocks[i], p, out);
    }
    if (!s) s = nn__params_add_prefixed(out, prefix, "ln_f.weight", m->lnf_w);
    if (!s) s = nn__params_add_prefixed(out, prefix, "ln_f.bias", m->lnf_b);
    return s;
}

static void gpt_destroy(nn_layer *l)
{
    gpt *m = (gpt *)l;
    nn_tensor_free(m->wte);
    nn_tensor_free(m->wpe);
    nn_tensor_free(m->lnf_w);
    nn_tensor_free(m->lnf_b);
    for (int i = 0; m->blocks && i < m->cfg.num_blocks; i++) nn_layer_free(m->blocks[i]);
    free(m->blocks);
    free(m);
}

static void gpt_config(const nn_layer *l, nn_layer_config *c)
{
    const gpt *m = (const gpt *)l;
    c->in = m->cfg.vocab;
    c->out = m->cfg.width;
    c->num_layers = m->cfg.num_blocks;
    c->heads = m->cfg.heads;
    c->context = m->cfg.context;
}

static const nn_layer_vtable gpt_vt = {"gpt", gpt_forward, gpt_params, NULL, gpt_destroy, gpt_config};

nn_layer *nn_gpt_new(nn_gpt_config c, nn_rng *rng)
{
    if (c.vocab < 1 || c.context < 1 || c.num_blocks < 1 || c.heads < 1 || c.width < 1 ||
        c.width % c.heads || !rng || c.vocab > (1 << 24) || c.context > (1 << 16))
        return nn__layer_fail("nn_gpt_new: need vocab in [1, 2^24], context in [1, 65536], num_blocks >= 1, "
                              "heads >= 1 and width a multiple of heads, and an rng; got vocab %d, "
                              "context %d, num_blocks %d, heads %d, width %d%s", c.vocab, c.context,
                              c.num_blocks, c.heads, c.width, rng ? "" : ", NULL rng");
    gpt *m = calloc(1, sizeof *m);
    if (!m) return nn__layer_fail("nn_gpt_new: out of memory");
    m->base.vt = &gpt_vt;
    m->base.training = 1;
    m->cfg = c;
    m->wte = nn__param_new(2, (int[]){c.vocab, c.width});
    m->wpe = nn__param_new(2, (int[]){c.context, c.width});
    m->lnf_w = nn__param_new(1, &c.width);
    m->lnf_b = nn__param_new(1, &c.width);
    m->blocks = calloc((size_t)c.num_blocks, sizeof *m->blocks);
    int ok = m->wte && m->wpe && m->lnf_w && m->lnf_b && m->blocks;
    if (ok) {
        nn_tensor_normal(m->wte, rng, 0.0f, 0.02f);
        nn_tensor_normal(m->wpe, rng, 0.0f, 0.02f);
        nn_tensor_fill(m->lnf_w, 1.0f);
    }
    for (int i = 0; ok && i < c.num_blocks; i++)
        ok = (m->blocks[i] = nn_transformer_block_new(c.width, c.heads, c.num_blocks, rng)) != NULL;
    if (!ok) {
        gpt_destroy(&m->base);
        return nn__layer_fail("nn_gpt_new: out of memory");
    }
    return &m->base;
}

nn_gpt_config nn_gpt_get_config(const nn_layer *l)
{
    nn_gpt_config none = {0, 0, 0, 0, 0};
    return l && l->vt == &gpt_vt ? ((const gpt *)l)->cfg : none;
}

/* ---- generation with a key/value cache ------------------------------------ */

struct nn_gpt_cache {
    gpt *m;
    int len;
    float *keys, *values; /* per block: context x width, rows by position */
    float *x, *h, *qkv, *att, *mlp, *scores, *stats;
};

nn_gpt_cache *nn_gpt_cache_new(nn_layer *l)
{
    if (!l || l->vt != &gpt_vt) return NULL;
    gpt *m = (gpt *)l;
    nn_gpt_config c = m->cfg;
    nn_gpt_cache *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->m = m;
    size_t kv = (size_t)c.num_blocks * c.context * c.width;
    k->keys = malloc(kv * sizeof(float));
    k->values = malloc(kv * sizeof(float));
    k->x = malloc((size_t)c.width * sizeof(float));
    k->h = malloc((size_t)c.width * sizeof(float));
    k->qkv = malloc((size_t)3 * c.width * sizeof(float));
    k->att = malloc((size_t)c.width * sizeof(float));
    k->mlp = malloc((size_t)4 * c.width * sizeof(float));
    k->scores = malloc((size_t)c.context * sizeof(float));
    k->stats = malloc(2 * sizeof(float));
    if (!k->keys || !k->values || !k->x || !k->h || !k->qkv || !k->att || !k->mlp || !k->scores ||
        !k->stats) {
        nn_gpt_cache_free(k);
        return NULL;
    }
    return k;
}

void nn_gpt_cache_reset(nn_gpt_cache *c)
{
    if (c) c->len = 0;
}

int nn_gpt_cache_len(const nn_gpt_cache *c) { return c ? c->len : 0; }

void nn_gpt_cache_free(nn_gpt_cache *c)
{
    if (!c) return;
    free(c->keys);
    free(c->values);
    free(c->x);
    free(c->h);
    free(c->qkv);
    free(c->att);
    free(c->mlp);
    free(c->scores);
    free(c->stats);
    free(c);
}

nn_status nn_gpt_cache_step(nn_gpt_cache *c, int token, float *logits)
{
    if (!c || !logits) return NN_ERR_ARG;
    gpt *m = c->m;
    nn_gpt_config cfg = m->cfg;
    if (token < 0 || token >= cfg.vocab || c->len >= cfg.context) return NN_ERR_ARG;
    int C = cfg.width, D = C / cfg.heads, t = c->len;
    float scale = 1.0f / sqrtf((float)D);
    for (int j = 0; j < C; j++)
        c->x[j] = m->wte->data[(size_t)token * C + j] + m->wpe->data[(size_t)t * C + j];
    for (int i = 0; i < cfg.num_blocks; i++) {
        const nn__block *b = (const nn__block *)m->blocks[i];
        float *keys = c->keys + (size_t)i * cfg.context * C, *values = c->values + (size_t)i * cfg.context * C;
        nn_k_layernorm(1, C, c->x, b->ln1_w->data, b->ln1_b->data, NN__LN_EPS, c->h, c->stats);
        nn_k_matvec(3 * C, C, b->qkv_w->data, c->h, c->qkv);
        memcpy(keys + (size_t)t * C, c->qkv + C, (size_t)C * sizeof(float));
        memcpy(values + (size_t)t * C, c->qkv + 2 * C, (size_t)C * sizeof(float));
        for (int hd = 0; hd < cfg.heads; hd++)
            nn_k_attention_query(t + 1, D, c->qkv + hd * D, keys + hd * D, values + hd * D, C, scale,
                                 c->scores, c->att + hd * D);
        nn_k_matvec(C, C, b->proj_w->data, c->att, c->h);
        nn_k_add((size_t)C, c->x, c->h, c->x);
        nn_k_layernorm(1, C, c->x, b->ln2_w->data, b->ln2_b->data, NN__LN_EPS, c->h, c->stats);
        nn_k_matvec(4 * C, C, b->fc_w->data, c->h, c->mlp);
        nn_k_gelu((size_t)4 * C, c->mlp, c->mlp, NULL);
        nn_k_matvec(C, 4 * C, b->fc_proj_w->data, c->mlp, c->h);
        nn_k_add((size_t)C, c->x, c->h, c->x);
    }
    nn_k_layernorm(1, C, c->x, m->lnf_w->data, m->lnf_b->data, NN__LN_EPS, c->h, c->stats);
    nn_k_matvec(cfg.vocab, C, m->wte->data, c->h, logits);
    c->len++;
    return NN_OK;
}
