/* The transformer's ops against plain reference formulas, its layers and
 * GPT model (PyTorch state dicts, model files, the key/value cache, thread
 * counts, allocation after warm-up), and weight-decay groups. The gradient
 * checks are in test_gradcheck.c. */
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test.h"

static void fill_uniform(nn_tensor *t, uint64_t seed, float lo, float hi)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    nn_tensor_uniform(t, &r, lo, hi);
}

static void test_gelu_matches_erf_formula(void)
{
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new(1, (int[]){2001});
    for (int i = 0; i < 2001; i++) x->data[i] = -10.0f + 0.01f * (float)i;
    nn_tensor *y = nn_gelu(g, x);
    double worst = 0;
    for (int i = 0; i < 2001; i++) {
        double v = x->data[i], want = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
        double err = fabs(y->data[i] - want) / (1.0 + fabs(want));
        worst = err > worst ? err : worst;
    }
    CHECK_MSG(worst < 1e-6, "worst relative error %g", worst);
    nn_tensor_free(x);
    nn_graph_free(g);
}

/* Widths of whole 16-lane groups run in vectors, others in scalar lanes:
 * both against the formula in double. */
static void check_layernorm(int cols)
{
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new(2, (int[]){3, cols}), *w = nn_tensor_new(1, (int[]){cols}),
              *b = nn_tensor_new(1, (int[]){cols});
    fill_uniform(x, 1, -3, 5);
    fill_uniform(w, 2, 0.5f, 1.5f);
    fill_uniform(b, 3, -1, 1);
    nn_tensor *y = nn_layernorm(g, x, w, b, 1e-5f);
    for (int r = 0; r < 3; r++) {
        double mean = 0, var = 0;
        for (int j = 0; j < cols; j++) mean += x->data[r * cols + j] / (double)cols;
        for (int j = 0; j < cols; j++) var += pow(x->data[r * cols + j] - mean, 2) / (double)cols;
        for (int j = 0; j < cols; j++) {
            double want = (x->data[r * cols + j] - mean) / sqrt(var + 1e-5) * w->data[j] + b->data[j];
            CHECK_NEAR(y->data[r * cols + j], want, 2e-5);
        }
    }
    nn_tensor_free(x);
    nn_tensor_free(w);
    nn_tensor_free(b);
    nn_graph_free(g);
}

static void test_layernorm_matches_formula(void)
{
    check_layernorm(37);
    check_layernorm(48);
}

/* softmax(q k^T / sqrt(D)) v per head with j <= i, in double; T = 70 covers
 * the kernel's blocks of 32 rows (the last one short). */
static void check_attention(int B, int T, int H, int D)
{
    int C = H * D;
    nn_graph *g = nn_graph_new();
    nn_tensor *qkv = nn_tensor_new(3, (int[]){B, T, 3 * C});
    fill_uniform(qkv, 4, -2, 2);
    nn_tensor *y = nn_causal_attention(g, qkv, H);
    double *s = malloc(sizeof(double) * (size_t)T);
    int bad = !y || y->ndim != 3 || y->shape[0] != B || y->shape[1] != T || y->shape[2] != C;
    double worst = 0;
    for (int b = 0; !bad && b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const float *q = qkv->data + ((size_t)b * T + i) * 3 * C + h * D;
                double mx = -1e300, sum = 0;
                for (int j = 0; j <= i; j++) {
                    const float *k = qkv->data + ((size_t)b * T + j) * 3 * C + C + h * D;
                    s[j] = 0;
                    for (int d = 0; d < D; d++) s[j] += (double)q[d] * k[d] / sqrt((double)D);
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int j = 0; j <= i; j++) sum += s[j] = exp(s[j] - mx);
                for (int d = 0; d < D; d++) {
                    double want = 0;
                    for (int j = 0; j <= i; j++)
                        want += s[j] / sum * qkv->data[((size_t)b * T + j) * 3 * C + 2 * C + h * D + d];
                    double err = fabs(y->data[((size_t)b * T + i) * C + h * D + d] - want);
                    worst = err > worst ? err : worst;
                }
            }
    free(s);
    nn_tensor_free(qkv);
    nn_graph_free(g);
    CHECK_MSG(!bad && worst < 1e-5, "B %d T %d H %d D %d: worst error %g", B, T, H, D, worst);
}

static void test_causal_attention_matches_formula(void)
{
    check_attention(2, 7, 3, 4);
    check_attention(1, 70, 2, 8);
    check_attention(2, 67, 2, 40); /* head columns in whole vectors and a tail */
}

static nn_layer *small_gpt(uint64_t seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    nn_gpt_config cfg = {13, 9, 2, 2, 16};
    return nn_gpt_new(cfg, &r);
}

static void random_ids(nn_tensor *x, int vocab, uint64_t seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    for (size_t i = 0; i < x->size; i++) x->data[i] = (float)nn_rng_below(&r, (uint64_t)vocab);
}

/* Loss of a GPT on x with next-token targets; gradients into the params. */
static nn_tensor *gpt_loss(nn_layer *m, nn_graph *g, nn_tensor *x, const int *targets)
{
    nn_tensor *logits = nn_layer_forward(m, g, x);
    if (!logits) return NULL;
    return nn_softmax_cross_entropy(
        g, nn_reshape(g, logits, 2, (int[]){logits->shape[0] * logits->shape[1], logits->shape[2]}), targets);
}

static void test_gpt_parameters_named_as_pytorch(void)
{
    nn_layer *m = small_gpt(1);
    CHECK(m && !strcmp(nn_layer_kind(m), "gpt"));
    nn_params p;
    nn_params_init(&p);
    CHECK(nn_layer_params(m, &p) == NN_OK);
    const char *want[] = {"wte.weight", "wpe.weight", "blocks.0.ln1.weight", "blocks.0.ln1.bias",
                          "blocks.0.qkv.weight", "blocks.0.proj.weight", "blocks.0.ln2.weight",
                          "blocks.0.ln2.bias", "blocks.0.fc.weight", "blocks.0.fc_proj.weight",
                          "blocks.1.ln1.weight"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK_MSG(nn_params_find(&p, want[i]), "no parameter %s", want[i]);
    CHECK(!nn_params_find(&p, "head.weight")); /* tied to wte: listed once */
    CHECK(nn_params_find(&p, "ln_f.bias") && p.count == 2 + 2 * 8 + 2);
    CHECK(nn_params_find(&p, "blocks.1.fc.weight")->shape[0] == 64);
    /* 13*16 + 9*16 + 2 * (12*16*16 + 4*16) + 2*16 */
    CHECK(nn_params_numel(&p) == 13 * 16 + 9 * 16 + 2 * (12 * 16 * 16 + 4 * 16) + 32);
    nn_params_free(&p);
    nn_layer_free(m);
}

static void test_gpt_loads_pytorch_state_dict(void)
{
    const char *path = NN_TEST_SOURCE_DIR "/tests/fixtures/gpt-torch.safetensors";
    nn_safetensors st;
    nn_error err;
    CHECK_MSG(nn_safetensors_read(path, &st, &err) == NN_OK, "%s", err.msg);
    nn_rng r;
    nn_rng_seed(&r, 1);
    nn_gpt_config cfg = {11, 8, 2, 2, 16}; /* tests/fixtures/make_gpt_fixture.py */
    nn_layer *m = nn_gpt_new(cfg, &r);
    nn_params p, test;
    nn_params_init(&p);
    nn_params_init(&test);
    nn_tensor *x = nn_tensor_new(2, (int[]){3, 8}), *want = nn_tensor_new(3, (int[]){3, 8, 11});
    nn_params_add(&test, "test.input", x);
    nn_params_add(&test, "test.logits", want);
    CHECK(nn_layer_params(m, &p) == NN_OK);
    CHECK_MSG(nn_safetensors_load_params(&st, &p, &err) == NN_OK, "%s", err.msg);
    CHECK_MSG(nn_safetensors_load_params(&st, &test, &err) == NN_OK, "%s", err.msg);
    nn_layer_set_training(m, 0);
    nn_graph *g = nn_graph_new();
    nn_tensor *y = nn_layer_forward(m, g, x);
    CHECK(y && y->size == want->size);
    double worst = 0;
    for (size_t i = 0; i < y->size; i++) {
        double d = fabs(y->data[i] - want->data[i]);
        worst = d > worst ? d : worst;
    }
    CHECK_MSG(worst <= 1e-4, "logits differ from PyTorch's by up to %g", worst);
    nn_graph_free(g);
    nn_tensor_free(x);
    nn_tensor_free(want);
    nn_params_free(&p);
    nn_params_free(&test);
    nn_layer_free(m);
    nn_safetensors_free(&st);
}

/* The cache's logits at every position equal the whole-window forward's. */
static void test_gpt_cache_matches_forward(void)
{
    nn_layer *m = small_gpt(2);
    nn_tensor *x = nn_tensor_new(2, (int[]){1, 9});
    random_ids(x, 13, 5);
    nn_graph *g = nn_graph_new();
    nn_graph_set_grad_enabled(g, 0);
    nn_tensor *y = nn_layer_forward(m, g, x);
    nn_gpt_cache *c = nn_gpt_cache_new(m);
    CHECK(c && y);
    float logits[13];
    for (int t = 0; t < 9; t++) {
        CHECK(nn_gpt_cache_step(c, (int)x->data[t], logits) == NN_OK);
        for (int v = 0; v < 13; v++) CHECK_NEAR(logits[v], y->data[t * 13 + v], 1e-5);
    }
    CHECK(nn_gpt_cache_len(c) == 9);
    CHECK(nn_gpt_cache_step(c, 0, logits) == NN_ERR_ARG); /* full */
    nn_gpt_cache_reset(c);
    CHECK(nn_gpt_cache_step(c, 13, logits) == NN_ERR_ARG); /* outside the vocabulary */
    CHECK(nn_gpt_cache_step(c, 0, logits) == NN_OK);
    CHECK(nn_gpt_cache_new(NULL) == NULL);
    nn_gpt_cache_free(c);
    nn_tensor_free(x);
    nn_graph_free(g);
    nn_layer_free(m);
}

/* Forward and backward of the whole model give the same bits on 1 and 2
 * threads. */
static void test_gpt_same_bits_any_thread_count(void)
{
    int saved = nn_get_threads();
    float *grads[2] = {NULL, NULL};
    float loss_v[2] = {0, 0};
    size_t n = 0;
    for (int run = 0; run < 2; run++) {
        nn_set_threads(run + 1);
        nn_layer *m = small_gpt(3);
        nn_params p;
        nn_params_init(&p);
        nn_layer_params(m, &p);
        nn_tensor *x = nn_tensor_new(2, (int[]){6, 9});
        random_ids(x, 13, 6);
        int targets[54];
        for (int i = 0; i < 54; i++) targets[i] = (i * 7) % 13;
        nn_graph *g = nn_graph_new();
        nn_tensor *loss = gpt_loss(m, g, x, targets);
        CHECK(loss && nn_backward(g, loss, NULL) == NN_OK);
        loss_v[run] = loss->data[0];
        n = nn_params_numel(&p);
        grads[run] = malloc(n * sizeof(float));
        size_t o = 0;
        for (int i = 0; i < p.count; i++) {
            memcpy(grads[run] + o, p.tensors[i]->grad, p.tensors[i]->size * sizeof(float));
            o += p.tensors[i]->size;
        }
        nn_graph_free(g);
        nn_tensor_free(x);
        nn_params_free(&p);
        nn_layer_free(m);
    }
    nn_set_threads(saved);
    int same = memcmp(&loss_v[0], &loss_v[1], sizeof(float)) == 0 &&
               memcmp(grads[0], grads[1], n * sizeof(float)) == 0;
    free(grads[0]);
    free(grads[1]);
    CHECK(same);
}

/* Training a tiny GPT to continue a repeating sequence: the loss falls far,
 * and steps after the first allocate nothing (engine or process). */
static void test_gpt_learns_and_allocates_nothing_after_warmup(void)
{
    nn_layer *m = small_gpt(4);
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(m, &p);
    nn_adam_opts ao = {3e-3f, 0.9f, 0.99f, 1e-8f, 0.1f};
    nn_optim *opt = nn_optim_adamw_new(&p, ao);
    CHECK(nn_optim_decay_matrices_only(opt) == 1 + 2 * 4 + 1);
    nn_graph *g = nn_graph_new();
    nn_tensor *x = nn_tensor_new(2, (int[]){4, 9});
    int targets[36];
    float first = 0, last = 0;
    nn_graph_stats warm = {0};
    for (int step = 0; step < 150; step++) {
        for (int b = 0; b < 4; b++)
            for (int t = 0; t < 9; t++) {
                x->data[b * 9 + t] = (float)((b + step + t) % 5);
                targets[b * 9 + t] = (b + step + t + 1) % 5;
            }
        nn_graph_reset(g);
        nn_optim_zero_grad(opt);
        nn_tensor *loss = gpt_loss(m, g, x, targets);
        CHECK(loss && nn_backward(g, loss, NULL) == NN_OK);
        nn_clip_grad_norm(&p, 1.0f);
        nn_optim_step(opt);
        if (step == 0) {
            first = loss->data[0];
            warm = nn_graph_get_stats(g);
        }
        last = loss->data[0];
    }
    nn_graph_stats end = nn_graph_get_stats(g);
    CHECK_MSG(last < 0.05f * first, "loss %g -> %g", (double)first, (double)last);
    CHECK(end.mallocs == warm.mallocs && end.arena_bytes == warm.arena_bytes);
    nn_optim_free(opt);
    nn_params_free(&p);
    nn_tensor_free(x);
    nn_graph_free(g);
    nn_layer_free(m);
}

static void test_gpt_model_file_round_trip(void)
{
    nn_layer *m = small_gpt(5);
    char path[512];
    snprintf(path, sizeof path, "%s/gpt.safetensors", test_tmpdir());
    nn_error err;
    CHECK_MSG(nn_model_save(path, m, NULL, &err) == NN_OK, "%s", err.msg);
    nn_layer *back;
    CHECK_MSG(nn_model_load(path, &back, &err) == NN_OK, "%s", err.msg);
    nn_gpt_config a = nn_gpt_get_config(m), b = nn_gpt_get_config(back);
    CHECK(!memcmp(&a, &b, sizeof a));
    nn_tensor *x = nn_tensor_new(2, (int[]){2, 9});
    random_ids(x, 13, 8);
    nn_graph *g = nn_graph_new();
    nn_layer_set_training(m, 0);
    nn_tensor *y1 = nn_layer_forward(m, g, x), *y2 = nn_layer_forward(back, g, x);
    CHECK(y1 && y2 && !memcmp(y1->data, y2->data, y1->size * sizeof(float)));
    /* a gpt inside a sequential is refused: its names would not be PyTorch's */
    nn_layer *seq = nn_sequential_new();
    nn_sequential_add(seq, back);
    CHECK(nn_model_save(path, seq, NULL, &err) == NN_ERR_ARG && strstr(err.msg, "gpt"));
    nn_layer_free(seq);
    nn_graph_free(g);
    nn_tensor_free(x);
    nn_layer_free(m);
}

static void test_transformer_layers_shapes_and_errors(void)
{
    nn_rng r;
    nn_rng_seed(&r, 9);
    nn_layer *emb = nn_embedding_new(10, 8, &r), *ln = nn_layernorm_new(8);
    nn_layer *att = nn_causal_self_attention_new(8, 2, &r), *blk = nn_transformer_block_new(8, 2, 3, &r);
    CHECK(emb && ln && att && blk);
    CHECK(!nn_causal_self_attention_new(8, 3, &r) && strstr(nn_layer_last_error(), "multiple of heads"));
    CHECK(!nn_embedding_new(0, 8, &r));
    nn_gpt_config bad = {10, 8, 1, 3, 8};
    CHECK(!nn_gpt_new(bad, &r) && strstr(nn_layer_last_error(), "nn_gpt_new"));
    nn_graph *g = nn_graph_new();
    nn_graph_set_abort_on_error(g, 0);
    nn_tensor *ids = nn_tensor_new(2, (int[]){2, 5});
    random_ids(ids, 10, 1);
    nn_tensor *h = nn_layer_forward(emb, g, ids);
    CHECK(h && h->ndim == 3 && h->shape[2] == 8);
    h = nn_layer_forward(blk, g, nn_layer_forward(att, g, nn_layer_forward(ln, g, h)));
    CHECK(h && h->ndim == 3 && h->shape[0] == 2 && h->shape[1] == 5 && h->shape[2] == 8);
    ids->data[3] = 10.0f; /* outside the table */
    CHECK(!nn_layer_forward(emb, g, ids) && strstr(nn_graph_error(g), "token id"));
    nn_graph_free(g);
    g = nn_graph_new();
    nn_graph_set_abort_on_error(g, 0);
    nn_tensor *wrong = nn_tensor_new(3, (int[]){2, 5, 7});
    CHECK(!nn_layer_forward(blk, g, wrong) && strstr(nn_graph_error(g), "transformer_block") &&
          strstr(nn_graph_error(g), "[2x5x7]"));
    nn_graph_free(g);
    nn_layer_config c = nn_layer_get_config(blk);
    CHECK(!strcmp(c.kind, "transformer_block") && c.in == 8 && c.heads == 2);
    nn_tensor_free(ids);
    nn_tensor_free(wrong);
    nn_layer_free(emb);
    nn_layer_free(ln);
    nn_layer_free(att);
    nn_layer_free(blk);
}

/* AdamW with decay on matrices only: with zero gradients, a matrix shrinks
 * by lr * wd per step and a vector stays. */
static void test_weight_decay_groups(void)
{
    nn_tensor *w = nn_tensor_new(2, (int[]){2, 2}), *b = nn_tensor_new(1, (int[]){2});
    nn_tensor_requires_grad(w, 1);
    nn_tensor_requires_grad(b, 1);
    nn_tensor_fill(w, 1.0f);
    nn_tensor_fill(b, 1.0f);
    nn_params p;
    nn_params_init(&p);
    nn_params_add(&p, "w", w);
    nn_params_add(&p, "b", b);
    nn_adam_opts ao = {0.1f, 0.9f, 0.99f, 1e-8f, 0.5f};
    nn_optim *o = nn_optim_adamw_new(&p, ao);
    CHECK(nn_optim_decay_matrices_only(o) == 1);
    nn_optim_step(o);
    CHECK_NEAR(w->data[0], 1.0 - 0.1 * 0.5, 1e-7);
    CHECK(b->data[0] == 1.0f);
    CHECK(nn_optim_set_weight_decay(o, b, 1.0f) == NN_OK);
    nn_optim_step(o);
    CHECK_NEAR(b->data[0], 0.9, 1e-7);
    nn_tensor *other = nn_tensor_new(1, (int[]){1});
    CHECK(nn_optim_set_weight_decay(o, other, 0.1f) == NN_ERR_ARG);
    CHECK(nn_optim_set_weight_decay(o, w, -1.0f) == NN_ERR_ARG);
    nn_tensor_free(other);
    nn_optim_free(o);
    nn_params_free(&p);
    nn_tensor_free(w);
    nn_tensor_free(b);
}

const test_case transformer_tests[] = {
    {"gelu_matches_erf_formula", test_gelu_matches_erf_formula},
    {"layernorm_matches_formula", test_layernorm_matches_formula},
    {"causal_attention_matches_formula", test_causal_attention_matches_formula},
    {"gpt_parameters_named_as_pytorch", test_gpt_parameters_named_as_pytorch},
    {"gpt_loads_pytorch_state_dict", test_gpt_loads_pytorch_state_dict},
    {"gpt_cache_matches_forward", test_gpt_cache_matches_forward},
    {"gpt_same_bits_any_thread_count", test_gpt_same_bits_any_thread_count},
    {"gpt_learns_and_allocates_nothing_after_warmup", test_gpt_learns_and_allocates_nothing_after_warmup},
    {"gpt_model_file_round_trip", test_gpt_model_file_round_trip},
    {"transformer_layers_shapes_and_errors", test_transformer_layers_shapes_and_errors},
    {"weight_decay_groups", test_weight_decay_groups},
    {NULL, NULL}};
