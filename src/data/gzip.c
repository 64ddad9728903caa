/* gzip container (RFC 1952) around nn_inflate, and CRC-32. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/data.h"
#include "inflate_internal.h"

/* Slicing-by-1 table CRC; the table is computed at first use from the
 * polynomial (a pure function, so racing threads write identical values). */
static uint32_t crc_table[256];
static volatile int crc_ready;

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
    crc_ready = 1;
}

uint32_t nn_crc32(uint32_t crc, const void *buf, size_t n)
{
    if (!crc_ready) crc_init();
    const uint8_t *p = buf;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t le32(const uint8_t *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* DEFLATE cannot expand data by more than 1032:1; a trailer promising more
 * than that (plus slack for tiny inputs) is corrupt or hostile. */
static size_t max_expansion(size_t in_len)
{
    return in_len > SIZE_MAX / 1032 - 1024 ? SIZE_MAX : in_len * 1032 + 1024;
}

/* Parse one member header at in[pos]; sets *data to the deflate start. */
static nn_status parse_header(const uint8_t *in, size_t len, size_t pos, size_t *data,
                              const char *name, nn_error *err)
{
    size_t p = pos;
    if (len - p < 10) return nn_error_set(err, NN_ERR_FORMAT, "%s: gzip header truncated", name);
    if (in[p] != 0x1f || in[p + 1] != 0x8b)
        return nn_error_set(err, NN_ERR_FORMAT, "%s: not a gzip file (bad magic bytes)", name);
    if (in[p + 2] != 8)
        return nn_error_set(err, NN_ERR_FORMAT,
                            "%s: unsupported gzip compression method %u (only deflate, 8)", name,
                            in[p + 2]);
    uint8_t flg = in[p + 3];
    if (flg & 0xe0)
        return nn_error_set(err, NN_ERR_FORMAT, "%s: reserved gzip flag bits set (0x%02x)", name,
                            flg);
    p += 10;
    if (flg & 4) { /* FEXTRA */
        if (len - p < 2) goto truncated;
        size_t xlen = in[p] | (size_t)in[p + 1] << 8;
        p += 2;
        if (len - p < xlen) goto truncated;
        p += xlen;
    }
    for (int f = 8; f <= 16; f <<= 1) { /* FNAME, FCOMMENT: zero-terminated */
        if (!(flg & f)) continue;
        const uint8_t *z = memchr(in + p, 0, len - p);
        if (!z) goto truncated;
        p = (size_t)(z - in) + 1;
    }
    if (flg & 2) { /* FHCRC: low 16 bits of the header's CRC-32 */
        if (len - p < 2) goto truncated;
        unsigned want = in[p] | (unsigned)in[p + 1] << 8;
        if ((nn_crc32(0, in + pos, p - pos) & 0xffff) != want)
            return nn_error_set(err, NN_ERR_FORMAT, "%s: gzip header CRC mismatch", name);
        p += 2;
    }
    *data = p;
    return NN_OK;
truncated:
    return nn_error_set(err, NN_ERR_FORMAT, "%s: gzip header truncated", name);
}

nn_status nn_gunzip(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
                    size_t *out_len, const char *name, nn_error *err)
{
    if (!name) name = "gzip data";
    *out = NULL;
    *out_len = 0;
    if (in_len < 18)
        return nn_error_set(err, NN_ERR_FORMAT, "%s: too short for a gzip file (%zu bytes)",
                            name, in_len);
    /* Size the buffer from the last member's trailer; later members (rare)
     * grow it within the expansion bound. */
    size_t declared = le32(in + in_len - 4);
    if (declared > max_out)
        return nn_error_set(err, NN_ERR_FORMAT,
                            "%s: gzip trailer declares %zu bytes, more than the %zu allowed", name,
                            declared, max_out);
    if (declared > max_expansion(in_len))
        return nn_error_set(err, NN_ERR_FORMAT,
                            "%s: gzip trailer declares %zu bytes, impossible for %zu compressed "
                            "bytes",
                            name, declared, in_len);
    size_t cap = declared ? declared : 1;
    uint8_t *buf = malloc(cap);
    if (!buf) return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory (%zu bytes)", name, cap);
    size_t total = 0, pos = 0;
    nn_status st = NN_OK;
    int member = 0;
    while (pos < in_len) {
        size_t data = 0, used = 0, produced = 0;
        int overflowed = 0;
        if (member > 0) {
            size_t more = max_expansion(in_len - pos);
            if (more > max_out - total) more = max_out - total;
            if (cap - total < more) {
                uint8_t *nb = realloc(buf, total + more + 1);
                if (!nb) {
                    st = nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", name);
                    break;
                }
                buf = nb;
                cap = total + more + 1;
            }
        }
        if ((st = parse_header(in, in_len, pos, &data, name, err))) break;
        /* The member may not produce more than its own trailer allows; for
         * the first (usually only) member that is the buffer's size. */
        if ((st = nn__inflate(in + data, in_len - data, buf + total, cap - total, &used,
                              &produced, &overflowed, name, err))) {
            if (member == 0 && overflowed)
                st = nn_error_set(err, NN_ERR_FORMAT,
                                  "%s: data decompresses to more than the %zu bytes the gzip "
                                  "trailer declares (corrupt file or gzip bomb)",
                                  name, declared);
            break;
        }
        pos = data + used;
        if (in_len - pos < 8) {
            st = nn_error_set(err, NN_ERR_FORMAT, "%s: gzip trailer truncated", name);
            break;
        }
        uint32_t crc = le32(in + pos), isize = le32(in + pos + 4);
        pos += 8;
        if (nn_crc32(0, buf + total, produced) != crc) {
            st = nn_error_set(err, NN_ERR_FORMAT, "%s: gzip CRC-32 mismatch (data corrupt)", name);
            break;
        }
        if ((uint32_t)produced != isize) {
            st = nn_error_set(err, NN_ERR_FORMAT,
                              "%s: gzip length mismatch: trailer says %u bytes, data has %zu",
                              name, isize, produced);
            break;
        }
        total += produced;
        member++;
    }
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = total;
    return NN_OK;
}
