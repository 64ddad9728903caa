#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* length, type, data, CRC-32 of type + data */
static int chunk(FILE *f, const char *type, const uint8_t *data, uint32_t len)
{
    uint8_t head[8], tail[4];
    put32(head, len);
    memcpy(head + 4, type, 4);
    uint32_t crc = nn_crc32(nn_crc32(0, type, 4), data, len);
    put32(tail, crc);
    return fwrite(head, 1, 8, f) == 8 && (len == 0 || fwrite(data, 1, len, f) == len) &&
           fwrite(tail, 1, 4, f) == 4;
}

int image_write_png(const char *path, const uint8_t *pixels, int w, int h)
{
    /* raw scanlines: filter byte 0, then the row */
    size_t raw_len = (size_t)h * (w + 1);
    size_t blocks = (raw_len + 65534) / 65535;
    size_t z_len = 2 + raw_len + 5 * blocks + 4;
    uint8_t *raw = malloc(raw_len), *z = malloc(z_len);
    if (!raw || !z) {
        free(raw);
        free(z);
        fprintf(stderr, "error: %s: out of memory\n", path);
        return 0;
    }
    for (int y = 0; y < h; y++) {
        raw[(size_t)y * (w + 1)] = 0;
        memcpy(raw + (size_t)y * (w + 1) + 1, pixels + (size_t)y * w, (size_t)w);
    }
    /* zlib stream of stored deflate blocks, then Adler-32 of the raw data */
    size_t o = 0;
    z[o++] = 0x78;
    z[o++] = 0x01;
    for (size_t pos = 0; pos < raw_len;) {
        size_t n = raw_len - pos < 65535 ? raw_len - pos : 65535;
        z[o++] = pos + n == raw_len; /* BFINAL, BTYPE 00 */
        z[o++] = (uint8_t)n;
        z[o++] = (uint8_t)(n >> 8);
        z[o++] = (uint8_t)~n;
        z[o++] = (uint8_t)(~n >> 8);
        memcpy(z + o, raw + pos, n);
        o += n;
        pos += n;
    }
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < raw_len; i++) {
        a = (a + raw[i]) % 65521;
        b = (b + a) % 65521;
    }
    put32(z + o, b << 16 | a);
    o += 4;
    uint8_t ihdr[13];
    put32(ihdr, (uint32_t)w);
    put32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 0;  /* grayscale */
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite("\x89PNG\r\n\x1a\n", 1, 8, f) == 8 && chunk(f, "IHDR", ihdr, 13) &&
             chunk(f, "IDAT", z, (uint32_t)o) && chunk(f, "IEND", NULL, 0);
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) fprintf(stderr, "error: %s: cannot write image: %s\n", path, strerror(errno));
    free(raw);
    free(z);
    return ok;
}

uint8_t *image_grid(const float *images, int n, int rows, int cols, int grid_cols, float lo,
                    float hi, int *w, int *h)
{
    const int gap = 2;
    int grid_rows = (n + grid_cols - 1) / grid_cols;
    *w = grid_cols * (cols + gap) + gap;
    *h = grid_rows * (rows + gap) + gap;
    uint8_t *px = calloc((size_t)*w * *h, 1);
    if (!px) return NULL;
    for (int i = 0; i < n; i++) {
        int ox = gap + (i % grid_cols) * (cols + gap), oy = gap + (i / grid_cols) * (rows + gap);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                float v = (images[(size_t)i * rows * cols + r * cols + c] - lo) / (hi - lo);
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                px[(size_t)(oy + r) * *w + ox + c] = (uint8_t)(v * 255.0f + 0.5f);
            }
    }
    return px;
}
