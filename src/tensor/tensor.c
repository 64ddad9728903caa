/* Persistent tensors: creation, shape helpers, fill/copy, printing. */
#if !defined(__STDC_VERSION__) || __STDC_VERSION__ < 201112L
#error "libnn is C11: build it with -std=c11 (this file uses _Thread_local or aligned_alloc)"
#endif
#include "nn/tensor.h"

#include <stdlib.h>
#include <string.h>

#include "tensor_internal.h"

int nn__shape_size(int ndim, const int *shape, size_t *size)
{
    if (ndim < 1 || ndim > NN_MAX_DIMS || !shape) return 0;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) return 0;
        if (n > NN__MAX_ELEMENTS / (size_t)shape[i]) return 0;
        n *= (size_t)shape[i];
    }
    *size = n;
    return 1;
}

void nn__set_shape(nn_tensor *t, int ndim, const int *shape, size_t size)
{
    t->ndim = ndim;
    for (int i = 0; i < NN_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
    t->size = size;
}

/* n zeroed floats on a 64-byte boundary (a cache line, an AVX-512 vector):
 * the GEMM's and convolutions' rows then start on a line, where calloc's
 * 16-byte alignment makes every 48-float panel row of a large matrix span
 * an extra cache line. Freed with free(). */
static float *zeroed_floats(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p) memset(p, 0, bytes);
    return p;
}

nn_tensor *nn_tensor_new(int ndim, const int *shape)
{
    size_t size;
    if (!nn__shape_size(ndim, shape, &size)) return NULL;
    nn_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->data = zeroed_floats(size);
    if (!t->data) {
        free(t);
        return NULL;
    }
    nn__set_shape(t, ndim, shape, size);
    t->capacity = size;
    t->flags = NN_OWNS_DATA;
    return t;
}

nn_tensor *nn_tensor_new1(int d0) { return nn_tensor_new(1, (int[]){d0}); }
nn_tensor *nn_tensor_new2(int d0, int d1) { return nn_tensor_new(2, (int[]){d0, d1}); }
nn_tensor *nn_tensor_new3(int d0, int d1, int d2) { return nn_tensor_new(3, (int[]){d0, d1, d2}); }
nn_tensor *nn_tensor_new4(int d0, int d1, int d2, int d3)
{
    return nn_tensor_new(4, (int[]){d0, d1, d2, d3});
}

void nn_tensor_free(nn_tensor *t)
{
    if (!t) return;
    if (t->flags & NN_IN_ARENA) return; /* owned by a graph: ignore */
    if (t->flags & NN_OWNS_DATA) {
        free(t->data);
        free(t->grad);
    }
    free(t);
}

void nn_tensor_zero(nn_tensor *t) { memset(t->data, 0, t->size * sizeof(float)); }

void nn_tensor_fill(nn_tensor *t, float value)
{
    for (size_t i = 0; i < t->size; i++) t->data[i] = value;
}

void nn_tensor_zero_grad(nn_tensor *t)
{
    if (t && t->grad) memset(t->grad, 0, t->size * sizeof(float));
}

nn_status nn_tensor_copy(nn_tensor *dst, const nn_tensor *src, nn_error *err)
{
    if (!nn_tensor_same_shape(dst, src)) {
        char a[64], b[64];
        return nn_error_set(err, NN_ERR_SHAPE, "nn_tensor_copy: shape mismatch: dst %s vs src %s",
                            nn_tensor_shape_str(dst, a, sizeof a),
                            nn_tensor_shape_str(src, b, sizeof b));
    }
    memmove(dst->data, src->data, src->size * sizeof(float));
    return NN_OK;
}

nn_status nn_tensor_requires_grad(nn_tensor *t, int on)
{
    if (!(t->flags & NN_OWNS_DATA)) {
        /* op outputs get gradients from the engine */
        if (on) t->flags |= NN_REQUIRES_GRAD;
        return NN_OK;
    }
    if (!on) { /* frozen: keep the buffer so the tensor can be thawed */
        t->flags &= ~(unsigned)NN_REQUIRES_GRAD;
        return NN_OK;
    }
    if (!t->grad) {
        t->grad = zeroed_floats(t->capacity);
        if (!t->grad) return NN_ERR_MEMORY;
    }
    t->flags |= NN_REQUIRES_GRAD;
    return NN_OK;
}

nn_status nn_tensor_reshape(nn_tensor *t, int ndim, const int *shape, nn_error *err)
{
    size_t size;
    if (!nn__shape_size(ndim, shape, &size) || size > t->capacity) {
        char a[64];
        return nn_error_set(err, NN_ERR_SHAPE,
                            "nn_tensor_reshape: cannot give tensor %s (capacity %zu) %d dims "
                            "of that size",
                            nn_tensor_shape_str(t, a, sizeof a), t->capacity, ndim);
    }
    nn__set_shape(t, ndim, shape, size);
    return NN_OK;
}

int nn_tensor_dim(const nn_tensor *t, int i)
{
    return (i >= 0 && i < t->ndim) ? t->shape[i] : 1;
}

int nn_tensor_same_shape(const nn_tensor *a, const nn_tensor *b)
{
    if (!a || !b || a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

char *nn_tensor_shape_str(const nn_tensor *t, char *buf, size_t n)
{
    if (!n) return buf;
    if (!t) {
        snprintf(buf, n, "(null)");
        return buf;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < t->ndim && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%d", i ? "x" : "[", t->shape[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

void nn_tensor_print(const nn_tensor *t, const char *name, int max_items, FILE *out)
{
    char s[64];
    fprintf(out, "%s %s:", name ? name : "tensor", nn_tensor_shape_str(t, s, sizeof s));
    size_t n = t->size < (size_t)(max_items > 0 ? max_items : 0) ? t->size : (size_t)max_items;
    for (size_t i = 0; i < n; i++) fprintf(out, " %.6g", (double)t->data[i]);
    if (n < t->size) fprintf(out, " ... (%zu more)", t->size - n);
    fputc('\n', out);
    if (t->grad) {
        fprintf(out, "  grad:");
        for (size_t i = 0; i < n; i++) fprintf(out, " %.6g", (double)t->grad[i]);
        if (n < t->size) fprintf(out, " ...");
        fputc('\n', out);
    }
}
