/* What the character-level language models (char_rnn, char_gpt) share:
 * reading the text, its alphabet (also as checkpoint metadata) and drawing
 * the next character. */
#ifndef NN_EXAMPLES_TEXT_H
#define NN_EXAMPLES_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "nn.h"

/* A sorted alphabet: char_of[index] and index_of[byte] (-1 when absent). */
typedef struct char_vocab {
    int size;
    uint8_t char_of[256];
    int index_of[256];
} char_vocab;

/* Read path (a file, or a folder holding input.txt) whole; it must hold at
 * least 1000 bytes. Prints the error (with a hint on --data) and returns 0
 * on failure. */
int text_read(const char *path, uint8_t **text, size_t *len);

/* The alphabet of the bytes in text. */
void vocab_of_text(char_vocab *v, const uint8_t *text, size_t len);

/* The alphabet as hex digits, two per character (at most 512 and a NUL),
 * and back; vocab_from_hex returns 0 on malformed text. */
void vocab_to_hex(const char_vocab *v, char hex[513]);
int vocab_from_hex(char_vocab *v, const char *hex);

/* The index of a character drawn from softmax(logits / temperature) over n
 * (scratch: n floats). */
int sample_index(const float *logits, int n, float temperature, nn_rng *rng, float *scratch);

#endif
