/* A small pull parser for JSON text, enough for safetensors headers: strict
 * syntax, UTF-8 validated strings, bounded nesting, no recursion on input it
 * does not need. Every function returns 1 on success, 0 on error with
 * r->err set to a constant description and r->pos at the problem. */
#ifndef NN_JSON_H
#define NN_JSON_H

#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 64
#define JSON_MAX_STRING 4096

typedef struct json_reader {
    const char *s;
    size_t len, pos;
    int depth;
    const char *err;
} json_reader;

/* Skip whitespace; return the next character or -1 at the end. */
int json_peek(json_reader *r);
/* Consume character c (after whitespace). */
int json_expect(json_reader *r, char c);
/* Consume c if it is next (after whitespace); returns 1 if it was. */
int json_accept(json_reader *r, char c);
/* A string value, decoded into a malloc'd NUL-terminated buffer. Strings
 * containing NUL (\u0000) are refused. */
int json_string(json_reader *r, char **out);
/* A non-negative integer without fraction or exponent, at most 2^53. */
int json_uint(json_reader *r, uint64_t *out);
/* Skip any value (depth-limited). */
int json_skip_value(json_reader *r);

#endif
