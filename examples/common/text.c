#include "text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int text_read(const char *path, uint8_t **text, size_t *len)
{
    char file[4096];
    struct stat st;
    snprintf(file, sizeof file, "%s", path);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(file, sizeof file, "%s/input.txt", path);
    nn_error err;
    if (nn_read_file(file, (size_t)1 << 31, text, len, &err)) {
        fprintf(stderr, "error: %s\n  (pass --data FILE or set NN_DATA_DIR)\n", err.msg);
        return 0;
    }
    if (*len < 1000) {
        fprintf(stderr, "error: %s: only %zu bytes; need at least 1000 characters of text\n", file, *len);
        free(*text);
        *text = NULL;
        return 0;
    }
    return 1;
}

static void set_vocab(char_vocab *v, const uint8_t *chars, int n)
{
    v->size = n;
    for (int i = 0; i < 256; i++) v->index_of[i] = -1;
    for (int i = 0; i < n; i++) {
        v->char_of[i] = chars[i];
        v->index_of[chars[i]] = i;
    }
}

void vocab_of_text(char_vocab *v, const uint8_t *text, size_t len)
{
    int seen[256] = {0}, n = 0;
    uint8_t chars[256];
    for (size_t i = 0; i < len; i++) seen[text[i]] = 1;
    for (int b = 0; b < 256; b++)
        if (seen[b]) chars[n++] = (uint8_t)b;
    set_vocab(v, chars, n);
}

void vocab_to_hex(const char_vocab *v, char hex[513])
{
    hex[0] = '\0';
    for (int i = 0; i < v->size; i++) snprintf(hex + 2 * i, 3, "%02x", v->char_of[i]);
}

int vocab_from_hex(char_vocab *v, const char *hex)
{
    size_t hl = hex ? strlen(hex) : 0;
    if (hl < 2 || hl > 512 || hl % 2) return 0;
    uint8_t chars[256];
    int n = (int)(hl / 2);
    for (int i = 0; i < n; i++) {
        unsigned c;
        if (sscanf(hex + 2 * i, "%2x", &c) != 1) return 0;
        chars[i] = (uint8_t)c;
    }
    set_vocab(v, chars, n);
    return 1;
}

int sample_index(const float *logits, int n, float temperature, nn_rng *rng, float *scratch)
{
    double sum = 0, mx = -1e30;
    for (int v = 0; v < n; v++) mx = logits[v] > mx ? logits[v] : mx;
    for (int v = 0; v < n; v++) sum += scratch[v] = expf((float)((logits[v] - mx) / temperature));
    double u = nn_rng_uniform(rng) * sum;
    for (int v = 0; v < n; v++)
        if ((u -= scratch[v]) < 0) return v;
    return n - 1;
}
