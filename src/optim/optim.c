/* SGD (momentum, Nesterov, weight decay), Adam, AdamW and gradient clipping.
 * State buffers are allocated at creation, so a step never allocates. */
#if !defined(__STDC_VERSION__) || __STDC_VERSION__ < 201112L
#error "libnn is C11: build it with -std=c11 (this file uses _Thread_local or aligned_alloc)"
#endif
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/optim.h"
#include "../kernels/kernels.h"

typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_ADAMAX } optim_kind;

struct nn_optim {
    optim_kind kind;
    int count;
    nn_tensor **params;
    nn_tensor **state1, **state2; /* SGD: momentum buffer; Adam: first and second moments */
    float *decay;                 /* each parameter's weight decay (parameter groups) */
    nn_sgd_opts sgd;
    nn_adam_opts adam;
    long steps;
};

nn_adam_opts nn_adam_defaults(float lr)
{
    nn_adam_opts o = {lr, 0.9f, 0.999f, 1e-8f, 0.0f};
    return o;
}

nn_adam_opts nn_adamw_defaults(float lr)
{
    nn_adam_opts o = {lr, 0.9f, 0.999f, 1e-8f, 0.01f};
    return o;
}

nn_sgd_opts nn_sgd_defaults(float lr)
{
    nn_sgd_opts o = {lr, 0.0f, 0.0f, 0};
    return o;
}

static _Thread_local char last_error[NN_ERROR_MSG_MAX];

const char *nn_optim_last_error(void) { return last_error; }

static nn_optim *refuse(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static nn_optim *refuse(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return NULL;
}

static nn_optim *optim_new(const nn_params *p, optim_kind kind, int n_states)
{
    if (!p) return refuse("optimizer: the parameter list is NULL");
    nn_optim *o = calloc(1, sizeof *o);
    if (!o) return refuse("optimizer: out of memory");
    o->kind = kind;
    o->count = p->count;
    size_t n = p->count > 0 ? (size_t)p->count : 1;
    o->params = calloc(n, sizeof *o->params);
    o->state1 = calloc(n, sizeof *o->state1);
    o->state2 = calloc(n, sizeof *o->state2);
    o->decay = calloc(n, sizeof *o->decay);
    if (!o->params || !o->state1 || !o->state2 || !o->decay) goto fail;
    for (int i = 0; i < p->count; i++) {
        nn_tensor *t = p->tensors[i];
        if (!t || !t->grad) { /* every parameter needs a gradient */
            nn_optim_free(o);
            return refuse("optimizer: parameter %d (%s) has no gradient buffer", i,
                          p->names && p->names[i] ? p->names[i] : "?");
        }
        o->params[i] = t;
        if (n_states >= 1 && !(o->state1[i] = nn_tensor_new(t->ndim, t->shape))) goto fail;
        if (n_states >= 2 && !(o->state2[i] = nn_tensor_new(t->ndim, t->shape))) goto fail;
    }
    return o;
fail:
    nn_optim_free(o);
    return refuse("optimizer: out of memory for its state");
}

/* Every parameter starts in the one group of the options' weight decay. */
static nn_optim *set_decay(nn_optim *o, float weight_decay)
{
    for (int i = 0; o && i < o->count; i++) o->decay[i] = weight_decay;
    return o;
}

nn_optim *nn_optim_sgd_new(const nn_params *params, nn_sgd_opts opts)
{
    if (!(opts.lr >= 0.0f) || !(opts.momentum >= 0.0f) || !(opts.weight_decay >= 0.0f) ||
        (opts.nesterov && opts.momentum <= 0.0f))
        return refuse("nn_optim_sgd_new: need lr >= 0, momentum >= 0, weight_decay >= 0 and momentum > 0 "
                      "for Nesterov, got lr %g, momentum %g, weight_decay %g, nesterov %d", (double)opts.lr,
                      (double)opts.momentum, (double)opts.weight_decay, opts.nesterov);
    nn_optim *o = optim_new(params, OPT_SGD, opts.momentum > 0.0f ? 1 : 0);
    if (o) o->sgd = opts;
    return set_decay(o, opts.weight_decay);
}

static int adam_opts_valid(nn_adam_opts o)
{
    return o.lr >= 0.0f && o.beta1 >= 0.0f && o.beta1 < 1.0f && o.beta2 >= 0.0f &&
           o.beta2 < 1.0f && o.eps >= 0.0f && o.weight_decay >= 0.0f;
}

static nn_optim *refuse_adam(const char *fn, nn_adam_opts o)
{
    return refuse("%s: need lr >= 0, betas in [0, 1), eps >= 0 and weight_decay >= 0, got lr %g, betas %g "
                  "%g, eps %g, weight_decay %g", fn, (double)o.lr, (double)o.beta1, (double)o.beta2,
                  (double)o.eps, (double)o.weight_decay);
}

nn_optim *nn_optim_adam_new(const nn_params *params, nn_adam_opts opts)
{
    if (!adam_opts_valid(opts)) return refuse_adam("nn_optim_adam_new", opts);
    nn_optim *o = optim_new(params, OPT_ADAM, 2);
    if (o) o->adam = opts;
    return set_decay(o, opts.weight_decay);
}

nn_optim *nn_optim_adamw_new(const nn_params *params, nn_adam_opts opts)
{
    if (!adam_opts_valid(opts)) return refuse_adam("nn_optim_adamw_new", opts);
    nn_optim *o = optim_new(params, OPT_ADAMW, 2);
    if (o) o->adam = opts;
    return set_decay(o, opts.weight_decay);
}

nn_optim *nn_optim_adamax_new(const nn_params *params, nn_adam_opts opts)
{
    if (!adam_opts_valid(opts)) return refuse_adam("nn_optim_adamax_new", opts);
    nn_optim *o = optim_new(params, OPT_ADAMAX, 2);
    if (o) o->adam = opts;
    return set_decay(o, opts.weight_decay);
}

typedef struct adam_step {
    nn_optim *o;
    float c1, c2;
} adam_step;

#define ADAM_CHUNK 4096    /* parameters per unit of work */
#define ADAM_PAR_MIN 32768 /* parameters below which threads cost more than they save */

/* Adam on chunks [c0, c1) of the concatenated trainable parameters. */
static void adam_chunks(void *ctx, int c0, int c1, int slot)
{
    const adam_step *s = ctx;
    const nn_optim *o = s->o;
    const nn_adam_opts *a = &o->adam;
    size_t lo = (size_t)c0 * ADAM_CHUNK, hi = (size_t)c1 * ADAM_CHUNK, at = 0;
    (void)slot;
    for (int i = 0; i < o->count && at < hi; i++) {
        nn_tensor *p = o->params[i];
        if (!(p->flags & NN_REQUIRES_GRAD)) continue; /* frozen */
        size_t from = lo > at ? lo - at : 0, to = hi - at < p->size ? hi - at : p->size;
        if (from < to)
            nn_k_adam(to - from, p->data + from, p->grad + from, o->state1[i]->data + from,
                      o->state2[i]->data + from, a->lr, a->beta1, a->beta2, a->eps, o->decay[i], s->c1, s->c2,
                      o->kind == OPT_ADAMW);
        at += p->size;
    }
}

void nn_optim_step(nn_optim *o)
{
    o->steps++;
    if (o->kind == OPT_SGD) {
        const nn_sgd_opts *s = &o->sgd;
        for (int i = 0; i < o->count; i++) {
            nn_tensor *p = o->params[i];
            if (!(p->flags & NN_REQUIRES_GRAD)) continue; /* frozen */
            nn_k_sgd(p->size, p->data, p->grad, o->state1[i] ? o->state1[i]->data : NULL, s->lr, s->momentum,
                     o->decay[i], s->nesterov, o->steps == 1);
        }
        return;
    }
    const nn_adam_opts *a = &o->adam;
    float c1 = 1.0f - powf(a->beta1, (float)o->steps);
    float c2 = 1.0f - powf(a->beta2, (float)o->steps);
    if (o->kind == OPT_ADAMAX) {
        for (int i = 0; i < o->count; i++) {
            nn_tensor *p = o->params[i];
            if (!(p->flags & NN_REQUIRES_GRAD)) continue; /* frozen */
            nn_k_adamax(p->size, p->data, p->grad, o->state1[i]->data, o->state2[i]->data, a->lr, a->beta1,
                        a->beta2, a->eps, o->decay[i], c1);
        }
        return;
    }
    /* All parameters in one parallel region, the threads taking equal
     * shares of their concatenation: a model of many small tensors (a
     * transformer's 36) would otherwise enter a region per large tensor
     * and run the small ones on one thread. Elementwise, so the split
     * changes no result. */
    size_t total = 0;
    for (int i = 0; i < o->count; i++)
        if (o->params[i]->flags & NN_REQUIRES_GRAD) total += o->params[i]->size;
    adam_step ctx = {o, c1, c2};
    int chunks = (int)((total + ADAM_CHUNK - 1) / ADAM_CHUNK);
    nn_k_parallel_rows(chunks, 1, total > ADAM_PAR_MIN, adam_chunks, &ctx);
}

nn_status nn_optim_set_weight_decay(nn_optim *o, const nn_tensor *param, float weight_decay)
{
    if (!o || !param || !(weight_decay >= 0.0f) || !(weight_decay < 1e30f)) return NN_ERR_ARG;
    for (int i = 0; i < o->count; i++)
        if (o->params[i] == param) {
            o->decay[i] = weight_decay;
            return NN_OK;
        }
    return NN_ERR_ARG;
}

int nn_optim_decay_matrices_only(nn_optim *o)
{
    int exempt = 0;
    for (int i = 0; o && i < o->count; i++)
        if (o->params[i]->ndim < 2) {
            o->decay[i] = 0.0f;
            exempt++;
        }
    return exempt;
}

/* Parameters at which splitting whole tensors between threads pays. */
#define PARAMS_PAR_MIN 65536

static size_t params_numel(nn_tensor *const *t, int count)
{
    size_t n = 0;
    for (int i = 0; i < count; i++) n += t[i]->size;
    return n;
}

void nn_optim_zero_grad(nn_optim *o)
{
    /* many small tensors: whole tensors to each thread */
#pragma omp parallel for schedule(static) if (params_numel(o->params, o->count) > PARAMS_PAR_MIN)
    for (int i = 0; i < o->count; i++) {
        nn_tensor *p = o->params[i];
        if (p->grad) memset(p->grad, 0, p->size * sizeof(float));
    }
}

void nn_optim_set_lr(nn_optim *o, float lr)
{
    if (o->kind == OPT_SGD)
        o->sgd.lr = lr;
    else
        o->adam.lr = lr;
}

float nn_optim_lr(const nn_optim *o) { return o->kind == OPT_SGD ? o->sgd.lr : o->adam.lr; }

long nn_optim_steps(const nn_optim *o) { return o->steps; }

void nn_optim_set_steps(nn_optim *o, long steps) { o->steps = steps >= 0 ? steps : 0; }

const char *nn_optim_name(const nn_optim *o)
{
    return o->kind == OPT_SGD ? "sgd" : o->kind == OPT_ADAM ? "adam" : o->kind == OPT_ADAMW ? "adamw" : "adamax";
}

nn_status nn_optim_state(nn_optim *o, const nn_params *names, nn_params *out)
{
    if (names->count != o->count) return NN_ERR_ARG;
    const char *k1 = o->kind == OPT_SGD ? "momentum_buffer" : "exp_avg";
    for (int i = 0; i < o->count; i++) {
        if (names->tensors[i] != o->params[i]) return NN_ERR_ARG;
        char name[512];
        nn_status s;
        if (o->state1[i]) {
            snprintf(name, sizeof name, "optim.%s.%s", k1, names->names[i]);
            if ((s = nn_params_add(out, name, o->state1[i]))) return s;
        }
        if (o->state2[i]) {
            snprintf(name, sizeof name, "optim.%s.%s", o->kind == OPT_ADAMAX ? "exp_inf" : "exp_avg_sq",
                     names->names[i]);
            if ((s = nn_params_add(out, name, o->state2[i]))) return s;
        }
    }
    return NN_OK;
}

void nn_optim_free(nn_optim *o)
{
    if (!o) return;
    for (int i = 0; i < o->count; i++) {
        if (o->state1) nn_tensor_free(o->state1[i]);
        if (o->state2) nn_tensor_free(o->state2[i]);
    }
    free(o->state1);
    free(o->state2);
    free(o->params);
    free(o->decay);
    free(o);
}

float nn_clip_grad_norm(const nn_params *params, float max_norm)
{
    /* each tensor's sum of squares on one thread, then added in order: the
     * same norm on any thread count (in groups of 256 tensors: no allocation) */
    enum { GROUP = 256 };
    double sq = 0.0, part[GROUP];
    int par = params_numel(params->tensors, params->count) > PARAMS_PAR_MIN;
    (void)par; /* read only by the OpenMP pragmas */
    for (int g0 = 0; g0 < params->count; g0 += GROUP) {
        int n = params->count - g0 < GROUP ? params->count - g0 : GROUP;
#pragma omp parallel for schedule(static) if (par)
        for (int i = 0; i < n; i++) {
            const nn_tensor *t = params->tensors[g0 + i];
            part[i] = t->grad ? nn_k_sum_sq(t->size, t->grad) : 0.0;
        }
        for (int i = 0; i < n; i++) sq += part[i];
    }
    float norm = (float)sqrt(sq);
    if (norm > max_norm && norm > 0.0f) {
        float s = max_norm / (norm + 1e-6f); /* as torch.nn.utils.clip_grad_norm_ */
#pragma omp parallel for schedule(static) if (par)
        for (int i = 0; i < params->count; i++) {
            nn_tensor *t = params->tensors[i];
            if (t->grad) nn_k_scale(t->size, s, t->grad, t->grad);
        }
    }
    return norm;
}

float nn_lr_cosine(float base_lr, float min_lr, long step, long total_steps, long warmup_steps)
{
    if (warmup_steps > 0 && step < warmup_steps)
        return base_lr * (float)(step + 1) / (float)warmup_steps;
    long span = total_steps - warmup_steps;
    if (span <= 0) return base_lr;
    double t = (double)(step - warmup_steps) / (double)span;
    if (t > 1.0) t = 1.0;
    return min_lr + (base_lr - min_lr) * (float)(0.5 * (1.0 + cos(3.141592653589793 * t)));
}

float nn_lr_stable_decay(float base_lr, float min_lr, long step, long total_steps, long decay_steps)
{
    long start = total_steps - decay_steps;
    if (decay_steps <= 0 || step < start) return base_lr;
    return nn_lr_cosine(base_lr, min_lr, step - start, decay_steps, 0);
}

float nn_lr_step(float base_lr, float gamma, long step, long every)
{
    return every > 0 ? base_lr * powf(gamma, (float)(step / every)) : base_lr;
}

void nn_params_freeze(const nn_params *params, int frozen)
{
    for (int i = 0; i < params->count; i++) nn_tensor_requires_grad(params->tensors[i], !frozen);
}
