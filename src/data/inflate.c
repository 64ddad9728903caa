/* A small DEFLATE decoder (RFC 1951): stored, fixed-Huffman and
 * dynamic-Huffman blocks. Every read is bounds-checked; malformed streams
 * (bad block type, over-subscribed or missing codes, distances reaching
 * before the output, output beyond the caller's capacity, truncation) end
 * with NN_ERR_FORMAT and a message naming the stream and the problem.
 *
 * Decoding uses a FAST_BITS lookup table for short codes and falls back to
 * canonical bit-by-bit decoding for longer ones. */
#include <stdint.h>
#include <string.h>

#include "nn/data.h"
#include "inflate_internal.h"

#define MAX_BITS 15
#define FAST_BITS 10
#define MAX_LITLEN 288
#define MAX_DIST 32

typedef struct {
    uint16_t count[MAX_BITS + 1]; /* codes of each length */
    uint16_t symbol[MAX_LITLEN];  /* symbols ordered by code */
    uint16_t fast[1 << FAST_BITS];/* (length << 9) | symbol, 0 = use slow path */
} huffman;

typedef struct {
    const uint8_t *in;
    size_t in_len, pos;
    uint64_t bits;
    int nbits;
    uint8_t *out;
    size_t out_cap, out_len;
    const char *name;
    nn_error *err;
    int failed;
    int overflowed; /* the stream wanted more than out_cap bytes */
} inflater;

static int fail(inflater *s, const char *what)
{
    if (!s->failed) {
        s->failed = 1;
        nn_error_set(s->err, NN_ERR_FORMAT, "%s: corrupt deflate data: %s (at compressed byte %zu)",
                     s->name, what, s->pos);
    }
    return -1;
}

static int overflow(inflater *s)
{
    s->overflowed = 1;
    return fail(s, "output larger than allowed");
}

static void refill(inflater *s)
{
    while (s->nbits <= 56 && s->pos < s->in_len) {
        s->bits |= (uint64_t)s->in[s->pos++] << s->nbits;
        s->nbits += 8;
    }
}

/* n bits (n <= 16), or -1 if the input ends first. */
static int getbits(inflater *s, int n)
{
    if (s->nbits < n) {
        refill(s);
        if (s->nbits < n) return fail(s, "unexpected end of compressed data");
    }
    int v = (int)(s->bits & ((1u << n) - 1));
    s->bits >>= n;
    s->nbits -= n;
    return v;
}

/* Build a decoder from code lengths; 0 on success, -1 if over-subscribed.
 * Incomplete codes are allowed; an unassigned code fails when decoded. */
static int build(huffman *h, const uint8_t *lengths, int n)
{
    uint16_t offs[MAX_BITS + 2];
    memset(h->count, 0, sizeof h->count);
    memset(h->fast, 0, sizeof h->fast);
    for (int i = 0; i < n; i++) h->count[lengths[i]]++;
    h->count[0] = 0;
    int left = 1;
    for (int len = 1; len <= MAX_BITS; len++) {
        left = (left << 1) - h->count[len];
        if (left < 0) return -1;
    }
    offs[1] = 0;
    for (int len = 1; len <= MAX_BITS; len++) offs[len + 1] = offs[len] + h->count[len];
    for (int i = 0; i < n; i++)
        if (lengths[i]) h->symbol[offs[lengths[i]]++] = (uint16_t)i;
    /* Canonical codes, bit-reversed because the stream is read LSB first. */
    int code = 0, index = 0;
    for (int len = 1; len <= FAST_BITS; len++) {
        for (int k = 0; k < h->count[len]; k++, code++, index++) {
            int rev = 0;
            for (int b = 0; b < len; b++) rev |= ((code >> b) & 1) << (len - 1 - b);
            for (int j = rev; j < (1 << FAST_BITS); j += 1 << len)
                h->fast[j] = (uint16_t)((len << 9) | h->symbol[index]);
        }
        code <<= 1;
    }
    return 0;
}

static int decode(inflater *s, const huffman *h)
{
    if (s->nbits < MAX_BITS) refill(s);
    uint16_t e = h->fast[s->bits & ((1u << FAST_BITS) - 1)];
    if (e && (e >> 9) <= s->nbits) {
        s->bits >>= e >> 9;
        s->nbits -= e >> 9;
        return e & 511;
    }
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= MAX_BITS; len++) {
        int b = getbits(s, 1);
        if (b < 0) return -1;
        code |= b;
        int count = h->count[len];
        if (code - first < count) return h->symbol[index + (code - first)];
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    return fail(s, "invalid Huffman code");
}

static const uint16_t len_base[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                       33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                       1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static int codes(inflater *s, const huffman *lit, const huffman *dist)
{
    for (;;) {
        int sym = decode(s, lit);
        if (sym < 0) return -1;
        if (sym < 256) {
            if (s->out_len >= s->out_cap) return overflow(s);
            s->out[s->out_len++] = (uint8_t)sym;
            continue;
        }
        if (sym == 256) return 0;
        sym -= 257;
        if (sym >= 29) return fail(s, "invalid length symbol");
        int e = getbits(s, len_extra[sym]);
        if (e < 0) return -1;
        size_t len = len_base[sym] + (size_t)e;
        int ds = decode(s, dist);
        if (ds < 0) return -1;
        if (ds >= 30) return fail(s, "invalid distance symbol");
        e = getbits(s, dist_extra[ds]);
        if (e < 0) return -1;
        size_t d = dist_base[ds] + (size_t)e;
        if (d > s->out_len) return fail(s, "distance reaches before the start of the output");
        if (len > s->out_cap - s->out_len) return overflow(s);
        uint8_t *o = s->out + s->out_len;
        for (size_t i = 0; i < len; i++) o[i] = o[(ptrdiff_t)i - (ptrdiff_t)d];
        s->out_len += len;
    }
}

static int stored(inflater *s)
{
    /* Drop the partial byte, then give back whole bytes already buffered. */
    s->bits >>= s->nbits & 7;
    s->nbits -= s->nbits & 7;
    s->pos -= (size_t)(s->nbits / 8);
    s->bits = 0;
    s->nbits = 0;
    if (s->in_len - s->pos < 4) return fail(s, "stored block header truncated");
    unsigned len = s->in[s->pos] | (unsigned)s->in[s->pos + 1] << 8;
    unsigned nlen = s->in[s->pos + 2] | (unsigned)s->in[s->pos + 3] << 8;
    s->pos += 4;
    if (len != (~nlen & 0xffffu)) return fail(s, "stored block length check failed");
    if (s->in_len - s->pos < len) return fail(s, "stored block truncated");
    if (len > s->out_cap - s->out_len) return overflow(s);
    memcpy(s->out + s->out_len, s->in + s->pos, len);
    s->pos += len;
    s->out_len += len;
    return 0;
}

static int fixed(inflater *s, huffman *lit, huffman *dist)
{
    uint8_t lengths[MAX_LITLEN];
    int i = 0;
    for (; i < 144; i++) lengths[i] = 8;
    for (; i < 256; i++) lengths[i] = 9;
    for (; i < 280; i++) lengths[i] = 7;
    for (; i < 288; i++) lengths[i] = 8;
    build(lit, lengths, 288);
    for (i = 0; i < 30; i++) lengths[i] = 5;
    build(dist, lengths, 30);
    return codes(s, lit, dist);
}

static int dynamic(inflater *s, huffman *lit, huffman *dist)
{
    static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    uint8_t lengths[MAX_LITLEN + MAX_DIST];
    int nlen = getbits(s, 5), ndist = getbits(s, 5), ncode = getbits(s, 4);
    if (nlen < 0 || ndist < 0 || ncode < 0) return -1;
    nlen += 257;
    ndist += 1;
    ncode += 4;
    if (nlen > 286 || ndist > 30) return fail(s, "too many length or distance codes");
    memset(lengths, 0, sizeof lengths);
    for (int i = 0; i < ncode; i++) {
        int v = getbits(s, 3);
        if (v < 0) return -1;
        lengths[order[i]] = (uint8_t)v;
    }
    huffman *lencode = lit; /* reuse lit's storage for the code-length code */
    if (build(lencode, lengths, 19) != 0) return fail(s, "over-subscribed code-length code");
    int index = 0;
    while (index < nlen + ndist) {
        int sym = decode(s, lencode);
        if (sym < 0) return -1;
        if (sym < 16) {
            lengths[index++] = (uint8_t)sym;
            continue;
        }
        int rep, val = 0;
        if (sym == 16) {
            if (index == 0) return fail(s, "repeat with no previous length");
            val = lengths[index - 1];
            rep = getbits(s, 2);
            rep = rep < 0 ? -1 : 3 + rep;
        } else if (sym == 17) {
            rep = getbits(s, 3);
            rep = rep < 0 ? -1 : 3 + rep;
        } else {
            rep = getbits(s, 7);
            rep = rep < 0 ? -1 : 11 + rep;
        }
        if (rep < 0) return -1;
        if (index + rep > nlen + ndist) return fail(s, "code lengths overflow the table");
        while (rep--) lengths[index++] = (uint8_t)val;
    }
    if (lengths[256] == 0) return fail(s, "no end-of-block code");
    if (build(lit, lengths, nlen) != 0) return fail(s, "over-subscribed literal/length code");
    if (build(dist, lengths + nlen, ndist) != 0) return fail(s, "over-subscribed distance code");
    return codes(s, lit, dist);
}

nn_status nn__inflate(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                      size_t *in_used, size_t *out_len, int *overflowed, const char *name,
                      nn_error *err)
{
    inflater s = {0};
    huffman lit, dist;
    s.in = in;
    s.in_len = in ? in_len : 0;
    s.out = out;
    s.out_cap = out ? out_cap : 0;
    s.name = name ? name : "deflate stream";
    s.err = err;
    int last;
    do {
        last = getbits(&s, 1);
        int type = getbits(&s, 2);
        if (last < 0 || type < 0) break;
        int rc;
        if (type == 0)
            rc = stored(&s);
        else if (type == 1)
            rc = fixed(&s, &lit, &dist);
        else if (type == 2)
            rc = dynamic(&s, &lit, &dist);
        else
            rc = fail(&s, "invalid block type 3");
        if (rc) break;
    } while (!last);
    if (overflowed) *overflowed = s.overflowed;
    if (s.failed) return NN_ERR_FORMAT;
    /* Whole bytes still buffered were not part of the stream. */
    if (in_used) *in_used = s.pos - (size_t)(s.nbits / 8);
    if (out_len) *out_len = s.out_len;
    return NN_OK;
}

nn_status nn_inflate(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                     size_t *in_used, size_t *out_len, const char *name, nn_error *err)
{
    return nn__inflate(in, in_len, out, out_cap, in_used, out_len, NULL, name, err);
}
