/* The reverse-mode engine: an arena of op outputs, a tape of op records, and
 * the backward walk over it. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_internal.h"
#include "../tensor/tensor_internal.h"

#define ARENA_ALIGN 64
#define ARENA_MIN_BLOCK ((size_t)1 << 20)

typedef struct arena_block {
    struct arena_block *next;
    size_t cap, used;
    unsigned char *mem; /* ARENA_ALIGN-aligned start of cap bytes */
} arena_block;

struct nn_graph {
    arena_block *first, *cur;
    nn_node *tape;
    size_t tape_len, tape_cap;
    int grad_enabled;
    int abort_on_error;
    int has_error;
    char error[NN_ERROR_MSG_MAX];
    char context[64]; /* prefix of misuse messages, e.g. "layer 3 (dense)" */
    size_t mallocs, arena_bytes, arena_used;
    struct spare_grad *spare; /* released gradient buffers (see release_grad) */
};

/* A gradient buffer of an op's output whose backward has run: nothing reads
 * it again, so the next gradient of the same size takes it over. The
 * backward pass then works in a few buffers that are still in cache, where
 * fresh arena memory for every gradient (a transformer step's 35 MB) went
 * out to memory and back. The list lives in the buffers themselves (arena
 * allocations are at least ARENA_ALIGN bytes). */
typedef struct spare_grad {
    struct spare_grad *next;
    size_t bytes;
} spare_grad;

_Static_assert(sizeof(spare_grad) <= ARENA_ALIGN, "a spare buffer holds its list entry");

nn_graph *nn_graph_new(void)
{
    nn_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->grad_enabled = 1;
    g->abort_on_error = 1;
    g->mallocs = 1;
    return g;
}

void nn_graph_free(nn_graph *g)
{
    if (!g) return;
    for (arena_block *b = g->first, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(g->tape);
    free(g);
}

void nn_graph_reset(nn_graph *g)
{
    if (!g) return;
    for (arena_block *b = g->first; b; b = b->next) b->used = 0;
    g->cur = g->first;
    g->spare = NULL;
    g->tape_len = 0;
    g->arena_used = 0;
    g->has_error = 0;
    g->error[0] = '\0';
}

void nn_graph_set_grad_enabled(nn_graph *g, int enabled)
{
    if (g) g->grad_enabled = enabled != 0;
}
int nn_graph_grad_enabled(const nn_graph *g) { return g && g->grad_enabled; }
void nn_graph_set_abort_on_error(nn_graph *g, int on)
{
    if (g) g->abort_on_error = on != 0;
}
const char *nn_graph_error(const nn_graph *g)
{
    if (!g) return "graph is NULL";
    return g->has_error ? g->error : NULL;
}

nn_graph_stats nn_graph_get_stats(const nn_graph *g)
{
    nn_graph_stats s = {g->arena_bytes, g->arena_used, g->mallocs, g->tape_len};
    return s;
}

static arena_block *new_block(nn_graph *g, size_t need)
{
    size_t cap = need > ARENA_MIN_BLOCK ? need : ARENA_MIN_BLOCK;
    arena_block *b = malloc(sizeof *b + cap + ARENA_ALIGN);
    if (!b) return NULL;
    uintptr_t start = ((uintptr_t)(b + 1) + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
    b->mem = (unsigned char *)start;
    b->cap = cap;
    b->used = 0;
    b->next = NULL;
    g->mallocs++;
    g->arena_bytes += cap;
    return b;
}

/* Bytes the arena takes for an allocation of `bytes` (fewer if that overflows). */
static size_t arena_bytes_for(size_t bytes)
{
    return (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

void *nn__arena_alloc(nn_graph *g, size_t bytes)
{
    size_t need = arena_bytes_for(bytes);
    if (need < bytes) return NULL;
    if (!g->cur) {
        if (!g->first && !(g->first = new_block(g, need))) goto oom;
        g->cur = g->first;
    }
    /* Walk forward through blocks kept from earlier steps; a step that repeats
     * the previous one's allocations finds room without calling malloc. */
    while (g->cur->cap - g->cur->used < need) {
        arena_block *next = g->cur->next;
        if (!next || next->cap < need) {
            arena_block *b = new_block(g, need);
            if (!b) goto oom;
            b->next = next;
            g->cur->next = b;
            next = b;
        }
        g->cur = next;
    }
    void *p = g->cur->mem + g->cur->used;
    g->cur->used += need;
    g->arena_used += need;
    return p;
oom:
    nn__fail(g, "arena", "out of memory allocating %zu bytes", bytes);
    return NULL;
}

nn__arena_mark nn__arena_mark_now(nn_graph *g)
{
    nn__arena_mark m = {g->cur, g->cur ? g->cur->used : 0, g->arena_used};
    return m;
}

void nn__arena_rewind(nn_graph *g, nn__arena_mark m)
{
    arena_block *mark = m.block;
    if (!mark) { /* the arena was empty: everything goes */
        for (arena_block *b = g->first; b; b = b->next) b->used = 0;
        g->cur = g->first;
        g->arena_used = 0;
        return;
    }
    /* blocks past the current one are always empty, so only those from
     * the mark up to the current one were used since */
    for (arena_block *b = mark->next; b && b != (g->cur ? g->cur->next : NULL); b = b->next)
        b->used = 0;
    mark->used = m.used;
    g->cur = mark;
    g->arena_used = m.total;
}

static nn_tensor *arena_tensor(nn_graph *g, int ndim, const int *shape, float *data)
{
    size_t size;
    if (!nn__shape_size(ndim, shape, &size)) {
        nn__fail(g, "arena", "invalid tensor shape (%d dims)", ndim);
        return NULL;
    }
    nn_tensor *t = nn__arena_alloc(g, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    if (!data && !(data = nn__arena_alloc(g, size * sizeof(float)))) return NULL;
    t->data = data;
    nn__set_shape(t, ndim, shape, size);
    t->capacity = size;
    t->flags = NN_IN_ARENA;
    return t;
}

nn_tensor *nn__new_output(nn_graph *g, int ndim, const int *shape)
{
    return arena_tensor(g, ndim, shape, NULL);
}

nn_tensor *nn__new_zeroed(nn_graph *g, int ndim, const int *shape)
{
    nn_tensor *t = arena_tensor(g, ndim, shape, NULL);
    if (t) memset(t->data, 0, t->size * sizeof(float));
    return t;
}

nn_tensor *nn__new_alias(nn_graph *g, nn_tensor *x, int ndim, const int *shape)
{
    return arena_tensor(g, ndim, shape, x->data);
}

nn_tensor *nn_graph_tensor(nn_graph *g, int ndim, const int *shape)
{
    return nn__new_zeroed(g, ndim, shape);
}

int nn__wants_grad(const nn_graph *g, nn_tensor *const *in, int n)
{
    if (!g->grad_enabled) return 0;
    for (int i = 0; i < n; i++)
        if (in[i] && (in[i]->flags & NN_REQUIRES_GRAD)) return 1;
    return 0;
}

nn_node *nn__record(nn_graph *g, nn__backward_fn backward, nn_tensor *out, nn_tensor *const *in,
                    int n_in)
{
    if (!out || !nn__wants_grad(g, in, n_in)) return NULL;
    if (g->tape_len == g->tape_cap) {
        size_t cap = g->tape_cap ? 2 * g->tape_cap : 64;
        nn_node *t = realloc(g->tape, cap * sizeof *t);
        if (!t) {
            nn__fail(g, "tape", "out of memory recording op %zu", g->tape_len);
            return NULL;
        }
        g->mallocs++;
        g->tape = t;
        g->tape_cap = cap;
    }
    nn_node *n = &g->tape[g->tape_len++];
    memset(n, 0, sizeof *n);
    n->backward = backward;
    n->out = out;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    out->flags |= NN_REQUIRES_GRAD;
    return n;
}

/* The most recently released spare buffer of exactly this (rounded) size,
 * or NULL. */
static float *take_spare_grad(nn_graph *g, size_t bytes)
{
    size_t need = arena_bytes_for(bytes);
    for (spare_grad **at = &g->spare; *at; at = &(*at)->next)
        if ((*at)->bytes == need) {
            spare_grad *s = *at;
            *at = s->next;
            return (float *)(void *)s;
        }
    return NULL;
}

/* After node n's backward: its output's gradient is used up. Unless an
 * input adopted the buffer (reshape, addition), it becomes spare and the
 * output's grad is cleared (as in PyTorch, intermediate results keep no
 * gradient; inputs and parameters keep theirs). */
static void release_grad(nn_graph *g, const nn_node *n)
{
    nn_tensor *out = n->out;
    if (!out->grad || !(out->flags & NN_IN_ARENA) || out->size == 0) return;
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] && n->in[i]->grad == out->grad) { /* now the input's */
            out->grad = NULL;
            return;
        }
    spare_grad *s = (spare_grad *)(void *)out->grad;
    s->bytes = arena_bytes_for(out->size * sizeof(float));
    s->next = g->spare;
    g->spare = s;
    out->grad = NULL;
}

float *nn__grad_fresh(nn_graph *g, nn_tensor *t, int *fresh)
{
    *fresh = 0;
    if (!t || !(t->flags & NN_REQUIRES_GRAD)) return NULL;
    if (!t->grad) {
        t->grad = take_spare_grad(g, t->size * sizeof(float));
        if (!t->grad) t->grad = nn__arena_alloc(g, t->size * sizeof(float));
        *fresh = t->grad != NULL;
    }
    return t->grad;
}

int nn__grad_adopt(nn_tensor *t, float *buf)
{
    if (!t || !(t->flags & NN_REQUIRES_GRAD) || t->grad || !buf) return 0;
    t->grad = buf;
    return 1;
}

float *nn__grad(nn_graph *g, nn_tensor *t)
{
    int fresh;
    float *grad = nn__grad_fresh(g, t, &fresh);
    if (fresh) memset(grad, 0, t->size * sizeof(float));
    return grad;
}

const char *nn__shape(const nn_tensor *t, nn__shape_buf *b)
{
    return nn_tensor_shape_str(t, b->s, sizeof b->s);
}

nn_tensor *nn__fail(nn_graph *g, const char *op, const char *fmt, ...)
{
    char msg[NN_ERROR_MSG_MAX];
    int w = g->context[0] ? snprintf(msg, sizeof msg, "%s: %s: ", g->context, op)
                          : snprintf(msg, sizeof msg, "%s: ", op);
    if (w < 0 || (size_t)w >= sizeof msg) w = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + w, sizeof msg - (size_t)w, fmt, ap);
    va_end(ap);
    if (g->abort_on_error) {
        fprintf(stderr, "libnn: %s\n", msg);
        abort();
    }
    if (!g->has_error) {
        g->has_error = 1;
        memcpy(g->error, msg, sizeof msg);
    }
    return NULL;
}

void nn__set_context(nn_graph *g, const char *context)
{
    snprintf(g->context, sizeof g->context, "%s", context ? context : "");
}

int nn__inputs_ok(nn_graph *g, const char *op, nn_tensor *const *in, int n)
{
    for (int i = 0; i < n; i++) {
        if (in[i]) continue;
        if (!g->has_error) nn__fail(g, op, "input %d is NULL", i);
        return 0;
    }
    return 1;
}

/* 1 if t is the output of an op recorded on g's tape since the last reset. */
static int on_tape(const nn_graph *g, const nn_tensor *t)
{
    for (size_t i = g->tape_len; i-- > 0;)
        if (g->tape[i].out == t) return 1;
    return 0;
}

nn_status nn_backward(nn_graph *g, nn_tensor *loss, nn_error *err)
{
    if (!g) return nn_error_set(err, NN_ERR_ARG, "nn_backward: graph is NULL");
    if (g->has_error)
        return nn_error_set(err, NN_ERR_ARG, "nn_backward: an op failed earlier: %s", g->error);
    if (!loss) return nn_error_set(err, NN_ERR_ARG, "nn_backward: loss is NULL");
    if (loss->size != 1) {
        nn__shape_buf b;
        return nn_error_set(err, NN_ERR_ARG, "nn_backward: loss must have 1 element, got %s",
                            nn__shape(loss, &b));
    }
    if (!isfinite(loss->data[0]))
        return nn_error_set(err, NN_ERR_NUMERIC,
                            "nn_backward: loss is %g; gradients would be meaningless (diverged "
                            "training? lower the learning rate)",
                            (double)loss->data[0]);
    if (!(loss->flags & NN_IN_ARENA) || !(loss->flags & NN_REQUIRES_GRAD) || !on_tape(g, loss))
        return nn_error_set(err, NN_ERR_ARG,
                            "nn_backward: loss was not computed on this graph from any tensor "
                            "that requires a gradient");
    /* Intermediate gradients start from zero on every backward pass, so the
     * same recorded graph may be differentiated more than once. */
    for (size_t i = 0; i < g->tape_len; i++) g->tape[i].out->grad = NULL;
    g->spare = NULL;
    float *seed = nn__grad(g, loss);
    if (!seed) return nn_error_set(err, NN_ERR_MEMORY, "nn_backward: out of memory");
    seed[0] = 1.0f;
    for (size_t i = g->tape_len; i-- > 0;) {
        const nn_node *n = &g->tape[i];
        if (n->out->grad) n->backward(g, n);
        if (g->has_error)
            return nn_error_set(err, NN_ERR_MEMORY, "nn_backward: %s", g->error);
        if (n->out != loss) release_grad(g, n);
    }
    return NN_OK;
}
