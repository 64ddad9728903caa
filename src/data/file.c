/* Reading whole files with clear errors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn/data.h"

nn_status nn_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *out_len,
                       nn_error *err)
{
    *out = NULL;
    *out_len = 0;
    struct stat st;
    if (stat(path, &st) != 0)
        return nn_error_set(err, NN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return nn_error_set(err, NN_ERR_IO, "%s: is a directory, not a file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return nn_error_set(err, NN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    /* Read in chunks rather than trusting the size from stat, so special
     * files and files that change while read are handled. */
    size_t cap = st.st_size > 0 && (uintmax_t)st.st_size < max_bytes ? (size_t)st.st_size + 1 : 65536;
    uint8_t *buf = malloc(cap);
    size_t len = 0;
    nn_status status = NN_OK;
    if (!buf) status = nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
    while (!status) {
        if (len == cap) {
            if (cap >= max_bytes) {
                status = nn_error_set(err, NN_ERR_IO, "%s: file larger than %zu bytes", path,
                                      max_bytes);
                break;
            }
            size_t ncap = cap * 2 > max_bytes ? max_bytes + 1 : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                status = nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", path);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f))
                status = nn_error_set(err, NN_ERR_IO, "%s: read error: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (!status && len > max_bytes)
        status = nn_error_set(err, NN_ERR_IO, "%s: file larger than %zu bytes", path, max_bytes);
    if (status) {
        free(buf);
        return status;
    }
    *out = buf;
    *out_len = len;
    return NN_OK;
}
