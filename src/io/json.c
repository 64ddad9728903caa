#include "json.h"

#include <stdlib.h>
#include <string.h>

static int fail(json_reader *r, const char *what)
{
    if (!r->err) r->err = what;
    return 0;
}

int json_peek(json_reader *r)
{
    while (r->pos < r->len) {
        char c = r->s[r->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return (unsigned char)c;
        r->pos++;
    }
    return -1;
}

int json_expect(json_reader *r, char c)
{
    if (json_peek(r) != (unsigned char)c) {
        return fail(r, c == '{' ? "expected '{'" : c == '}' ? "expected '}' or ','"
                       : c == ':' ? "expected ':'" : c == '[' ? "expected '['"
                       : c == ']' ? "expected ']' or ','" : "unexpected character");
    }
    r->pos++;
    return 1;
}

int json_accept(json_reader *r, char c)
{
    if (json_peek(r) != (unsigned char)c) return 0;
    r->pos++;
    return 1;
}

static int hex4(json_reader *r, unsigned *out)
{
    if (r->len - r->pos < 4) return fail(r, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = r->s[r->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return fail(r, "bad hex digit in \\u escape");
    }
    *out = v;
    return 1;
}

/* Append code point cp as UTF-8. */
static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    unsigned cp = c & (0x3F >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 63);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

int json_string(json_reader *r, char **out)
{
    *out = NULL;
    if (json_peek(r) != '"') return fail(r, "expected a string");
    r->pos++;
    char *buf = malloc(JSON_MAX_STRING + 4);
    if (!buf) return fail(r, "out of memory");
    size_t n = 0;
    for (;;) {
        if (r->pos >= r->len) { free(buf); return fail(r, "unterminated string"); }
        if (n > JSON_MAX_STRING) { free(buf); return fail(r, "string too long"); }
        unsigned char c = (unsigned char)r->s[r->pos];
        if (c == '"') { r->pos++; break; }
        if (c < 0x20) { free(buf); return fail(r, "control character in string"); }
        if (c != '\\') {
            size_t l = utf8_len((const unsigned char *)r->s + r->pos, r->len - r->pos);
            if (!l) { free(buf); return fail(r, "string is not valid UTF-8"); }
            memcpy(buf + n, r->s + r->pos, l);
            n += l;
            r->pos += l;
            continue;
        }
        r->pos++;
        if (r->pos >= r->len) { free(buf); return fail(r, "unterminated string"); }
        char e = r->s[r->pos++];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (simple && e) {
            static const char map[] = "\"\\/\b\f\n\r\t";
            buf[n++] = map[simple - "\"\\/bfnrt"];
            continue;
        }
        if (e != 'u') { free(buf); return fail(r, "bad escape in string"); }
        unsigned cp;
        if (!hex4(r, &cp)) { free(buf); return 0; }
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* surrogate pair */
            unsigned lo;
            if (r->len - r->pos < 2 || r->s[r->pos] != '\\' || r->s[r->pos + 1] != 'u') {
                free(buf);
                return fail(r, "unpaired surrogate in string");
            }
            r->pos += 2;
            if (!hex4(r, &lo)) { free(buf); return 0; }
            if (lo < 0xDC00 || lo > 0xDFFF) { free(buf); return fail(r, "unpaired surrogate in string"); }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            free(buf);
            return fail(r, "unpaired surrogate in string");
        }
        if (cp == 0) { free(buf); return fail(r, "NUL character in string"); }
        n += put_utf8(buf + n, cp);
    }
    buf[n] = '\0';
    *out = buf;
    return 1;
}

int json_uint(json_reader *r, uint64_t *out)
{
    int c = json_peek(r);
    if (c < '0' || c > '9') return fail(r, "expected a non-negative integer");
    uint64_t v = 0;
    size_t start = r->pos;
    while (r->pos < r->len && r->s[r->pos] >= '0' && r->s[r->pos] <= '9') {
        v = v * 10 + (uint64_t)(r->s[r->pos++] - '0');
        if (v > ((uint64_t)1 << 53)) return fail(r, "integer too large");
    }
    if (r->s[start] == '0' && r->pos - start > 1) return fail(r, "leading zero in integer");
    if (r->pos < r->len && (r->s[r->pos] == '.' || r->s[r->pos] == 'e' || r->s[r->pos] == 'E'))
        return fail(r, "expected an integer, got a fraction");
    *out = v;
    return 1;
}

static int skip_number(json_reader *r)
{
    size_t p = r->pos;
    if (p < r->len && r->s[p] == '-') p++;
    size_t digits = p;
    while (p < r->len && r->s[p] >= '0' && r->s[p] <= '9') p++;
    if (p == digits) return fail(r, "bad number");
    if (p < r->len && r->s[p] == '.') {
        size_t f = ++p;
        while (p < r->len && r->s[p] >= '0' && r->s[p] <= '9') p++;
        if (p == f) return fail(r, "bad number");
    }
    if (p < r->len && (r->s[p] == 'e' || r->s[p] == 'E')) {
        p++;
        if (p < r->len && (r->s[p] == '+' || r->s[p] == '-')) p++;
        size_t e = p;
        while (p < r->len && r->s[p] >= '0' && r->s[p] <= '9') p++;
        if (p == e) return fail(r, "bad number");
    }
    r->pos = p;
    return 1;
}

static int skip_word(json_reader *r, const char *w)
{
    size_t n = strlen(w);
    if (r->len - r->pos < n || memcmp(r->s + r->pos, w, n) != 0) return fail(r, "unexpected character");
    r->pos += n;
    return 1;
}

int json_skip_value(json_reader *r)
{
    int c = json_peek(r);
    char *s;
    switch (c) {
    case '"':
        if (!json_string(r, &s)) return 0;
        free(s);
        return 1;
    case 't': return skip_word(r, "true");
    case 'f': return skip_word(r, "false");
    case 'n': return skip_word(r, "null");
    case '{':
    case '[': {
        if (++r->depth > JSON_MAX_DEPTH) return fail(r, "nesting too deep");
        r->pos++;
        char close = c == '{' ? '}' : ']';
        if (!json_accept(r, close)) {
            do {
                if (c == '{') {
                    if (!json_string(r, &s)) return 0;
                    free(s);
                    if (!json_expect(r, ':')) return 0;
                }
                if (!json_skip_value(r)) return 0;
            } while (json_accept(r, ','));
            if (!json_expect(r, close)) return 0;
        }
        r->depth--;
        return 1;
    }
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return skip_number(r);
        return fail(r, c < 0 ? "unexpected end of JSON" : "unexpected character");
    }
}
