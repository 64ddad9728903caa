/* safetensors reading (validated) and atomic writing. */
#include "nn/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "safetensors_internal.h"
#include "nn/data.h"

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* the format's own limit: 100 MB */
#if SIZE_MAX > 0xffffffffu
#define ST_MAX_FILE ((size_t)1 << 36)
#else /* 32-bit: sizes must stay below SIZE_MAX */
#define ST_MAX_FILE ((size_t)1 << 30)
#endif
#define ST_MAX_TENSORS 100000

static int dtype_size(const char *d)
{
    static const struct { const char *name; int size; } types[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
        {"I8", 1},  {"U64", 8}, {"U32", 4}, {"U16", 2},  {"U8", 1},  {"BOOL", 1},
        {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(d, types[i].name)) return types[i].size;
    return 0;
}

void nn_safetensors_free(nn_safetensors *st)
{
    if (!st) return;
    for (int i = 0; i < st->count; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->meta_count; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_values);
    free(st->file);
    free(st->path);
    memset(st, 0, sizeof *st);
}

/* Parse one tensor entry {"dtype":..., "shape":[...], "data_offsets":[b,e]}. */
static int parse_entry(json_reader *r, nn_st_tensor *t)
{
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    if (!json_expect(r, '{')) return 0;
    if (json_accept(r, '}')) goto check;
    do {
        char *key;
        if (!json_string(r, &key)) return 0;
        int ok = json_expect(r, ':');
        if (ok && !strcmp(key, "dtype")) {
            char *d;
            ok = json_string(r, &d);
            if (ok && strlen(d) >= sizeof t->dtype) {
                r->err = "unknown dtype";
                ok = 0;
            }
            if (ok) strcpy(t->dtype, d);
            free(d);
            have_dtype = 1;
        } else if (ok && !strcmp(key, "shape")) {
            ok = json_expect(r, '[');
            t->ndim = 0;
            if (ok && !json_accept(r, ']')) {
                do {
                    if (t->ndim == NN_ST_MAX_DIMS) {
                        r->err = "too many dimensions";
                        ok = 0;
                        break;
                    }
                    ok = json_uint(r, &t->shape[t->ndim++]);
                } while (ok && json_accept(r, ','));
                ok = ok && json_expect(r, ']');
            }
            have_shape = 1;
        } else if (ok && !strcmp(key, "data_offsets")) {
            uint64_t b = 0, e = 0;
            ok = json_expect(r, '[') && json_uint(r, &b) && json_expect(r, ',') &&
                 json_uint(r, &e) && json_expect(r, ']');
            t->begin = (size_t)b;
            t->end = (size_t)e;
            have_offsets = 1;
        } else if (ok) {
            ok = json_skip_value(r);
        }
        free(key);
        if (!ok) return 0;
    } while (json_accept(r, ','));
    if (!json_expect(r, '}')) return 0;
check:
    if (!have_dtype || !have_shape || !have_offsets) {
        r->err = "tensor entry lacks dtype, shape or data_offsets";
        return 0;
    }
    return 1;
}

static int parse_metadata(json_reader *r, nn_safetensors *st)
{
    if (!json_expect(r, '{')) return 0;
    if (json_accept(r, '}')) return 1;
    do {
        char *k = NULL, *v = NULL;
        if (!json_string(r, &k) || !json_expect(r, ':') || !json_string(r, &v)) {
            free(k);
            if (!r->err || !strcmp(r->err, "expected a string")) r->err = "metadata values must be strings";
            return 0;
        }
        char **nk = realloc(st->meta_keys, (size_t)(st->meta_count + 1) * sizeof *nk);
        if (nk) st->meta_keys = nk;
        char **nv = nk ? realloc(st->meta_values, (size_t)(st->meta_count + 1) * sizeof *nv) : NULL;
        if (nv) st->meta_values = nv;
        if (!nk || !nv) {
            free(k);
            free(v);
            r->err = "out of memory";
            return 0;
        }
        st->meta_keys[st->meta_count] = k;
        st->meta_values[st->meta_count++] = v;
    } while (json_accept(r, ','));
    return json_expect(r, '}');
}

static int by_begin(const void *a, const void *b)
{
    const nn_st_tensor *x = *(nn_st_tensor *const *)a, *y = *(nn_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Check every tensor's dtype, size and range, and that no two overlap. */
static nn_status validate(nn_safetensors *st, nn_error *err)
{
    const char *p = st->path;
    for (int i = 0; i < st->count; i++) {
        nn_st_tensor *t = &st->tensors[i];
        int es = dtype_size(t->dtype);
        if (!es)
            return nn_error_set(err, NN_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%s'", p,
                                t->name, t->dtype);
        uint64_t bytes = (uint64_t)es;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] && bytes > UINT64_MAX / t->shape[d])
                return nn_error_set(err, NN_ERR_FORMAT, "%s: tensor '%s' shape overflows", p,
                                    t->name);
            bytes *= t->shape[d];
        }
        if (t->begin > t->end || t->end > st->data_len)
            return nn_error_set(err, NN_ERR_FORMAT,
                                "%s: tensor '%s' data_offsets [%zu, %zu] outside the %zu-byte data "
                                "section",
                                p, t->name, t->begin, t->end, st->data_len);
        if (t->end - t->begin != bytes)
            return nn_error_set(err, NN_ERR_FORMAT,
                                "%s: tensor '%s' data_offsets span %zu bytes but its shape and "
                                "dtype need %llu",
                                p, t->name, t->end - t->begin, (unsigned long long)bytes);
        for (int j = 0; j < i; j++)
            if (!strcmp(st->tensors[j].name, t->name))
                return nn_error_set(err, NN_ERR_FORMAT, "%s: tensor name '%s' appears twice", p,
                                    t->name);
    }
    if (st->count > 1) {
        nn_st_tensor **order = malloc((size_t)st->count * sizeof *order);
        if (!order) return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", p);
        for (int i = 0; i < st->count; i++) order[i] = &st->tensors[i];
        qsort(order, (size_t)st->count, sizeof *order, by_begin);
        for (int i = 1; i < st->count; i++)
            if (order[i]->begin < order[i - 1]->end) {
                nn_status s = nn_error_set(err, NN_ERR_FORMAT,
                                           "%s: tensors '%s' and '%s' have overlapping data", p,
                                           order[i - 1]->name, order[i]->name);
                free(order);
                return s;
            }
        free(order);
    }
    return NN_OK;
}

static nn_status parse_header(nn_safetensors *st, const char *hdr, size_t len, nn_error *err)
{
    json_reader r = {hdr, len, 0, 0, NULL};
    int cap = 0;
    if (!json_expect(&r, '{')) goto bad;
    if (!json_accept(&r, '}')) {
        do {
            char *name;
            if (!json_string(&r, &name)) goto bad;
            if (!json_expect(&r, ':')) {
                free(name);
                goto bad;
            }
            if (!strcmp(name, "__metadata__")) {
                free(name);
                if (!parse_metadata(&r, st)) goto bad;
                continue;
            }
            if (st->count == ST_MAX_TENSORS) {
                free(name);
                return nn_error_set(err, NN_ERR_FORMAT, "%s: more than %d tensors", st->path,
                                    ST_MAX_TENSORS);
            }
            if (st->count == cap) {
                cap = cap ? 2 * cap : 16;
                nn_st_tensor *t = realloc(st->tensors, (size_t)cap * sizeof *t);
                if (!t) {
                    free(name);
                    return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", st->path);
                }
                st->tensors = t;
            }
            nn_st_tensor *t = &st->tensors[st->count++];
            memset(t, 0, sizeof *t);
            t->name = name;
            if (!parse_entry(&r, t)) goto bad;
        } while (json_accept(&r, ','));
        if (!json_expect(&r, '}')) goto bad;
    }
    if (json_peek(&r) != -1) {
        r.err = "unexpected text after the header object";
        goto bad;
    }
    return validate(st, err);
bad:
    return nn_error_set(err, NN_ERR_FORMAT, "%s: bad JSON header at byte %zu: %s", st->path,
                        r.pos, r.err ? r.err : "syntax error");
}

/* Validate the file image held in out->file (len bytes). */
static nn_status parse_image(nn_safetensors *out, size_t len, nn_error *err)
{
    const char *path = out->path;
    if (len < 8)
        return nn_error_set(err, NN_ERR_FORMAT, "%s: %s (%zu bytes): not a safetensors file", path,
                            len ? "truncated" : "empty file", len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | out->file[i];
    if (hlen > ST_MAX_HEADER || hlen > len - 8)
        return nn_error_set(err, NN_ERR_FORMAT,
                            "%s: header length %llu is larger than the file (%zu bytes) or the "
                            "100 MB limit",
                            path, (unsigned long long)hlen, len);
    out->data = out->file + 8 + hlen;
    out->data_len = len - 8 - (size_t)hlen;
    return parse_header(out, (const char *)out->file + 8, (size_t)hlen, err);
}

static nn_status set_name(nn_safetensors *out, const char *name, nn_error *err)
{
    size_t n = strlen(name) + 1;
    out->path = malloc(n);
    if (!out->path) return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", name);
    memcpy(out->path, name, n);
    return NN_OK;
}

nn_status nn_safetensors_read(const char *path, nn_safetensors *out, nn_error *err)
{
    memset(out, 0, sizeof *out);
    size_t len;
    nn_status s = nn_read_file(path, ST_MAX_FILE, &out->file, &len, err);
    if (!s) s = set_name(out, path, err);
    if (!s) s = parse_image(out, len, err);
    if (s) nn_safetensors_free(out);
    return s;
}

nn_status nn_safetensors_parse(const uint8_t *buf, size_t len, const char *name,
                               nn_safetensors *out, nn_error *err)
{
    memset(out, 0, sizeof *out);
    if (!name) name = "safetensors data";
    nn_status s = set_name(out, name, err);
    if (!s && !(out->file = malloc(len ? len : 1)))
        s = nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", name);
    if (!s) {
        if (len) memcpy(out->file, buf, len);
        s = parse_image(out, len, err);
    }
    if (s) nn_safetensors_free(out);
    return s;
}

const nn_st_tensor *nn_safetensors_find(const nn_safetensors *st, const char *name)
{
    for (int i = 0; i < st->count; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

const char *nn_safetensors_meta(const nn_safetensors *st, const char *key)
{
    for (int i = 0; i < st->meta_count; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_values[i];
    return NULL;
}

static int host_little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

static void shape_text(const uint64_t *shape, int ndim, char *buf, size_t n)
{
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%llu", i ? ", " : "",
                                 (unsigned long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

nn_status nn_safetensors_load_params(const nn_safetensors *st, const nn_params *params,
                                     nn_error *err)
{
    for (int i = 0; i < params->count; i++) {
        const char *name = params->names[i];
        nn_tensor *t = params->tensors[i];
        const nn_st_tensor *e = nn_safetensors_find(st, name);
        if (!e)
            return nn_error_set(err, NN_ERR_FORMAT, "%s: no tensor named '%s'", st->path, name);
        if (strcmp(e->dtype, "F32"))
            return nn_error_set(err, NN_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected F32",
                                st->path, name, e->dtype);
        int same = e->ndim == t->ndim;
        uint64_t want[NN_ST_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) {
            want[d] = (uint64_t)t->shape[d];
            same = same && e->shape[d] == want[d];
        }
        if (!same) {
            char a[128], b[128];
            shape_text(e->shape, e->ndim, a, sizeof a);
            shape_text(want, t->ndim, b, sizeof b);
            return nn_error_set(err, NN_ERR_SHAPE, "%s: tensor '%s' has shape %s, the model needs %s",
                                st->path, name, a, b);
        }
        const uint8_t *src = st->data + e->begin;
        if (host_little_endian()) {
            memcpy(t->data, src, t->size * sizeof(float));
        } else {
            for (size_t k = 0; k < t->size; k++) {
                uint32_t v = src[4 * k] | (uint32_t)src[4 * k + 1] << 8 |
                             (uint32_t)src[4 * k + 2] << 16 | (uint32_t)src[4 * k + 3] << 24;
                memcpy(&t->data[k], &v, 4);
            }
        }
    }
    return NN_OK;
}

/* ---- writing ---- */

typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->failed = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_printf(strbuf *b, const char *fmt, unsigned long long v)
{
    char tmp[64];
    int n = snprintf(tmp, sizeof tmp, fmt, v);
    sb_put(b, tmp, (size_t)n);
}

static void sb_json_string(strbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04llx", c);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return 0;
        }
        p += w;
        n -= (size_t)w;
    }
    return 1;
}

static int write_floats_le(int fd, const float *v, size_t n)
{
    if (host_little_endian()) return write_all(fd, v, n * sizeof(float));
    uint8_t buf[4096];
    while (n) {
        size_t k = n < sizeof buf / 4 ? n : sizeof buf / 4;
        for (size_t i = 0; i < k; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            buf[4 * i] = (uint8_t)u;
            buf[4 * i + 1] = (uint8_t)(u >> 8);
            buf[4 * i + 2] = (uint8_t)(u >> 16);
            buf[4 * i + 3] = (uint8_t)(u >> 24);
        }
        if (!write_all(fd, buf, 4 * k)) return 0;
        v += k;
        n -= k;
    }
    return 1;
}

/* fsync the folder holding path so the rename itself is durable. */
static void sync_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else {
        size_t n = (size_t)(slash - path);
        if (n == 0) n = 1;
        if (n >= sizeof dir) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

nn_status nn__safetensors_write_items(const char *path, const nn__st_item *items, int count,
                                     const char *const *meta_kv, int meta_count, nn_error *err)
{
    strbuf h = {0};
    sb_put(&h, "{", 1);
    int first = 1;
    if (meta_count > 0) {
        sb_put(&h, "\"__metadata__\":{", 16);
        for (int i = 0; i < meta_count; i++) {
            if (i) sb_put(&h, ",", 1);
            sb_json_string(&h, meta_kv[2 * i]);
            sb_put(&h, ":", 1);
            sb_json_string(&h, meta_kv[2 * i + 1]);
        }
        sb_put(&h, "}", 1);
        first = 0;
    }
    size_t offset = 0;
    for (int i = 0; i < count; i++) {
        const nn__st_item *t = &items[i];
        size_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
        if (!first) sb_put(&h, ",", 1);
        first = 0;
        sb_json_string(&h, t->name);
        sb_put(&h, t->f32 ? ":{\"dtype\":\"F32\",\"shape\":[" : ":{\"dtype\":\"I8\",\"shape\":[",
               t->f32 ? 25 : 24);
        for (int d = 0; d < t->ndim; d++) sb_printf(&h, d ? ",%llu" : "%llu", (unsigned long long)t->shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%llu,", offset);
        offset += n * (t->f32 ? sizeof(float) : 1);
        sb_printf(&h, "%llu]}", offset);
    }
    sb_put(&h, "}", 1);
    while (!h.failed && h.len % 8) sb_put(&h, " ", 1); /* data starts 8-byte aligned */
    if (h.failed) {
        free(h.s);
        return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
    }

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp) {
        free(h.s);
        return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
    }
    /* A unique temporary name beside the target (same filesystem, so the
     * rename is atomic), created with O_EXCL and the usual permissions. */
    static unsigned counter;
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, plen + 32, "%s.tmp-%ld-%u", path, (long)getpid(), counter++);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    nn_status s = NN_OK;
    if (fd < 0) {
        s = nn_error_set(err, NN_ERR_IO, "%s: cannot create temporary file %s: %s", path, tmp,
                         strerror(errno));
        goto out;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    int ok = write_all(fd, len8, 8) && write_all(fd, h.s, h.len);
    for (int i = 0; ok && i < count; i++) {
        size_t n = 1;
        for (int d = 0; d < items[i].ndim; d++) n *= (size_t)items[i].shape[d];
        ok = items[i].f32 ? write_floats_le(fd, items[i].data, n) : write_all(fd, items[i].data, n);
    }
    ok = ok && fsync(fd) == 0;
    int saved_errno = errno;
    if (close(fd) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) saved_errno = errno;
        s = nn_error_set(err, NN_ERR_IO, "%s: write failed: %s (the previous file is unchanged)",
                         path, strerror(saved_errno));
        unlink(tmp);
        goto out;
    }
    sync_parent_dir(path);
out:
    free(tmp);
    free(h.s);
    return s;
}

nn_status nn_safetensors_write(const char *path, const nn_params *params,
                               const char *const *meta_kv, int meta_count, nn_error *err)
{
    nn__st_item *items = calloc((size_t)(params->count ? params->count : 1), sizeof *items);
    if (!items) return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
    for (int i = 0; i < params->count; i++) {
        const nn_tensor *t = params->tensors[i];
        items[i] = (nn__st_item){params->names[i], 1, t->ndim, {0}, t->data};
        for (int d = 0; d < t->ndim; d++) items[i].shape[d] = t->shape[d];
    }
    nn_status s = nn__safetensors_write_items(path, items, params->count, meta_kv, meta_count, err);
    free(items);
    return s;
}

nn_status nn_save_params(const char *path, const nn_params *params, nn_error *err)
{
    return nn_safetensors_write(path, params, NULL, 0, err);
}

nn_status nn_load_params(const char *path, const nn_params *params, nn_error *err)
{
    nn_safetensors st;
    nn_status s = nn_safetensors_read(path, &st, err);
    if (s) return s;
    s = nn_safetensors_load_params(&st, params, err);
    nn_safetensors_free(&st);
    return s;
}
