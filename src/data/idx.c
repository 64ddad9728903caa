/* IDX arrays (the MNIST file format): magic 00 00 <type> <ndim>, ndim
 * big-endian uint32 dimensions, then the elements. Only unsigned bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/data.h"

#define IDX_MAX_FILE ((size_t)1 << 31) /* 2 GiB: far above any IDX data set */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

nn_status nn_idx_parse(const uint8_t *buf, size_t len, const char *name, nn_idx *out,
                       nn_error *err)
{
    if (!name) name = "IDX data";
    memset(out, 0, sizeof *out);
    if (len == 0) return nn_error_set(err, NN_ERR_FORMAT, "%s: empty file", name);
    if (len < 4)
        return nn_error_set(err, NN_ERR_FORMAT, "%s: truncated IDX header (%zu bytes)", name, len);
    if (buf[0] != 0 || buf[1] != 0)
        return nn_error_set(err, NN_ERR_FORMAT,
                            "%s: wrong magic number 0x%02x%02x%02x%02x (not an IDX file)", name,
                            buf[0], buf[1], buf[2], buf[3]);
    if (buf[2] != 0x08)
        return nn_error_set(err, NN_ERR_FORMAT,
                            "%s: unsupported IDX element type 0x%02x (only unsigned byte, 0x08)",
                            name, buf[2]);
    int ndim = buf[3];
    if (ndim < 1 || ndim > 4)
        return nn_error_set(err, NN_ERR_FORMAT, "%s: IDX dimension count %d (must be 1 to 4)",
                            name, ndim);
    size_t header = 4 + 4 * (size_t)ndim;
    if (len < header)
        return nn_error_set(err, NN_ERR_FORMAT,
                            "%s: truncated IDX header: %d dimensions need %zu bytes, file has %zu",
                            name, ndim, header, len);
    size_t size = 1;
    for (int i = 0; i < ndim; i++) {
        uint32_t d = be32(buf + 4 + 4 * i);
        if (d == 0)
            return nn_error_set(err, NN_ERR_FORMAT, "%s: IDX dimension %d is 0", name, i);
        if (d > INT32_MAX || size > IDX_MAX_FILE / d)
            return nn_error_set(err, NN_ERR_FORMAT,
                                "%s: IDX dimensions too large (product overflows at dimension "
                                "%d = %u)",
                                name, i, d);
        size *= d;
        out->dims[i] = (int)d;
    }
    if (len - header < size)
        return nn_error_set(err, NN_ERR_FORMAT,
                            "%s: truncated: header promises %zu data bytes, file has %zu", name,
                            size, len - header);
    if (len - header > size)
        return nn_error_set(err, NN_ERR_FORMAT, "%s: %zu unexpected bytes after the data", name,
                            len - header - size);
    out->data = malloc(size);
    if (!out->data) return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", name);
    memcpy(out->data, buf + header, size);
    out->ndim = ndim;
    out->size = size;
    for (int i = ndim; i < 4; i++) out->dims[i] = 1;
    return NN_OK;
}

nn_status nn_idx_load(const char *path, nn_idx *out, nn_error *err)
{
    memset(out, 0, sizeof *out);
    uint8_t *raw;
    size_t len;
    nn_status st = nn_read_file(path, IDX_MAX_FILE, &raw, &len, err);
    if (st) return st;
    if (len >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
        uint8_t *plain;
        size_t plain_len;
        st = nn_gunzip(raw, len, IDX_MAX_FILE, &plain, &plain_len, path, err);
        free(raw);
        if (st) return st;
        raw = plain;
        len = plain_len;
    }
    st = nn_idx_parse(raw, len, path, out, err);
    free(raw);
    return st;
}

void nn_idx_free(nn_idx *idx)
{
    if (!idx) return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}
