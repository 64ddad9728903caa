/* Numeric CSV reader (header row, a target column, quoted fields, CRLF):
 * a tokenizer that walks the text once per record, and a builder that turns
 * the records into an nn_data. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/csv.h"
#include "nn/data.h"

#define CSV_MAX_FILE ((size_t)1 << 31)
#define CSV_MAX_COLUMNS 100000

nn_csv_opts nn_csv_defaults(const char *target)
{
    nn_csv_opts o;
    memset(&o, 0, sizeof o);
    o.target = target;
    o.classify = -1;
    o.order = NN_CSV_FIRST_SEEN;
    o.delimiter = ',';
    return o;
}

/* ---- tokenizer ---------------------------------------------------------- */

typedef struct reader {
    const char *s;
    size_t len, pos;
    long line;       /* line of pos, 1-based */
    const char *name;
    char delim;
    char *field;     /* the current field, unquoted, NUL-terminated */
    size_t field_len, field_cap;
} reader;

static int put_char(reader *r, char c)
{
    if (r->field_len + 1 >= r->field_cap) {
        size_t cap = r->field_cap ? 2 * r->field_cap : 64;
        char *f = realloc(r->field, cap);
        if (!f) return 0;
        r->field = f;
        r->field_cap = cap;
    }
    r->field[r->field_len++] = c;
    r->field[r->field_len] = '\0';
    return 1;
}

/* Read one field starting at pos. *end_of_record is set when the field ends
 * its record (newline or end of text). */
static nn_status read_field(reader *r, int column, int *end_of_record, nn_error *err)
{
    r->field_len = 0;
    if (!put_char(r, '\0')) return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", r->name);
    r->field_len = 0;
    long start_line = r->line;
    if (r->pos < r->len && r->s[r->pos] == '"') {
        r->pos++;
        for (;;) {
            if (r->pos >= r->len)
                return nn_error_set(err, NN_ERR_FORMAT, "%s: line %ld, column %d: quoted field never closed",
                                    r->name, start_line, column);
            char c = r->s[r->pos++];
            if (c == '"') {
                if (r->pos < r->len && r->s[r->pos] == '"') {
                    r->pos++;
                } else {
                    break;
                }
            }
            if (c == '\n') r->line++;
            if (!put_char(r, c)) return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", r->name);
        }
        if (r->pos < r->len && r->s[r->pos] != r->delim && r->s[r->pos] != '\n' && r->s[r->pos] != '\r')
            return nn_error_set(err, NN_ERR_FORMAT, "%s: line %ld, column %d: text after a closing quote",
                                r->name, r->line, column);
    } else {
        while (r->pos < r->len) {
            char c = r->s[r->pos];
            if (c == r->delim || c == '\n' || c == '\r') break;
            if (c == '"')
                return nn_error_set(err, NN_ERR_FORMAT, "%s: line %ld, column %d: a quote inside an unquoted field",
                                    r->name, r->line, column);
            if (c == '\0')
                return nn_error_set(err, NN_ERR_FORMAT, "%s: line %ld, column %d: a NUL byte (not a text file?)",
                                    r->name, r->line, column);
            if (!put_char(r, c)) return nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", r->name);
            r->pos++;
        }
    }
    *end_of_record = 1;
    if (r->pos >= r->len) return NN_OK;
    char c = r->s[r->pos];
    if (c == r->delim) {
        r->pos++;
        *end_of_record = 0;
    } else if (c == '\r') {
        r->pos += r->pos + 1 < r->len && r->s[r->pos + 1] == '\n' ? 2 : 1;
        r->line++;
    } else if (c == '\n') {
        r->pos++;
        r->line++;
    }
    return NN_OK;
}

/* Skip blank lines; 1 if a record follows. */
static int at_record(reader *r)
{
    while (r->pos < r->len && (r->s[r->pos] == '\n' || r->s[r->pos] == '\r')) {
        if (r->s[r->pos] == '\n' || !(r->pos + 1 < r->len && r->s[r->pos + 1] == '\n')) r->line++;
        r->pos++;
    }
    return r->pos < r->len;
}

/* ---- growing arrays ----------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    if (c > SIZE_MAX / elem) return 0;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void free_strs(char **s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

/* Parse a whole field as a finite float (spaces around allowed). */
static int parse_number(const char *f, float *out)
{
    while (*f == ' ' || *f == '\t') f++;
    if (!*f) return 0;
    char *end;
    errno = 0;
    double v = strtod(f, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (*end || end == f || !isfinite(v) || fabs(v) > 3.4e38) return 0;
    *out = (float)v;
    return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* ---- the data set ------------------------------------------------------- */

typedef struct table {
    char **header;
    int columns, target_col;
    float *x;           /* rows * features */
    size_t x_cap;
    char **targets;     /* the target field of every row */
    size_t t_cap;
    long *lines;        /* each row's line, for messages */
    size_t l_cap;
    int rows;
} table;

static void table_free(table *t)
{
    free_strs(t->header, (size_t)t->columns);
    free(t->x);
    free_strs(t->targets, (size_t)t->rows);
    free(t->lines);
}

static nn_status build(table *t, const char *name, const nn_csv_opts *o, nn_data *out, nn_error *err);

nn_status nn_csv_parse(const char *text, size_t len, const char *name, const nn_csv_opts *opts, nn_data *out,
                       nn_error *err)
{
    if (!out) return nn_error_set(err, NN_ERR_ARG, "nn_csv_parse: out is NULL");
    memset(out, 0, sizeof *out);
    nn_csv_opts o = opts ? *opts : nn_csv_defaults(NULL);
    if (!name) name = "csv";
    if (!text && len) return nn_error_set(err, NN_ERR_ARG, "%s: text is NULL", name);
    if (!o.delimiter || o.delimiter == '"' || o.delimiter == '\n' || o.delimiter == '\r')
        return nn_error_set(err, NN_ERR_ARG, "%s: bad delimiter", name);
    if (o.classify < -1 || o.classify > 1)
        return nn_error_set(err, NN_ERR_ARG, "%s: classify must be -1, 0 or 1, got %d", name, o.classify);
    reader r = {text, len, 0, 1, name, o.delimiter, NULL, 0, 0};
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) r.pos = 3; /* UTF-8 byte-order mark */
    table t;
    memset(&t, 0, sizeof t);
    t.target_col = -1;
    nn_status s = NN_OK;
    size_t h_cap = 0;
    if (!at_record(&r)) {
        s = nn_error_set(err, NN_ERR_FORMAT, "%s: empty file (no header row)", name);
        goto out;
    }
    long header_line = r.line;
    for (int eor = 0; !eor;) {
        if ((s = read_field(&r, t.columns + 1, &eor, err))) goto out;
        if (t.columns >= CSV_MAX_COLUMNS) {
            s = nn_error_set(err, NN_ERR_FORMAT, "%s: line %ld: more than %d columns", name, header_line,
                             CSV_MAX_COLUMNS);
            goto out;
        }
        char *field = dup_str(r.field);
        if (!field || !grow((void **)&t.header, &h_cap, (size_t)t.columns + 1, sizeof *t.header)) {
            free(field);
            s = nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", name);
            goto out;
        }
        for (int c = 0; c < t.columns; c++)
            if (!strcmp(t.header[c], field)) {
                s = nn_error_set(err, NN_ERR_FORMAT, "%s: line %ld: column name '%.60s' appears twice (columns %d "
                                 "and %d)", name, header_line, field, c + 1, t.columns + 1);
                free(field);
                goto out;
            }
        t.header[t.columns++] = field;
    }
    if (o.target) {
        for (int c = 0; c < t.columns; c++)
            if (!strcmp(t.header[c], o.target)) t.target_col = c;
        if (t.target_col < 0 && !o.target_optional) {
            s = nn_error_set(err, NN_ERR_FORMAT, "%s: no column named '%.60s' in the header (line %ld)", name,
                             o.target, header_line);
            goto out;
        }
    }
    int features = t.columns - (t.target_col >= 0);
    if (features < 1) {
        s = nn_error_set(err, NN_ERR_FORMAT, "%s: no feature columns besides the target", name);
        goto out;
    }
    while (at_record(&r)) {
        long line = r.line;
        size_t row = (size_t)t.rows;
        if (row >= (size_t)1 << 30 ||
            !grow((void **)&t.x, &t.x_cap, (row + 1) * (size_t)features, sizeof *t.x) ||
            !grow((void **)&t.targets, &t.t_cap, row + 1, sizeof *t.targets) ||
            !grow((void **)&t.lines, &t.l_cap, row + 1, sizeof *t.lines)) {
            s = nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory at line %ld", name, line);
            goto out;
        }
        t.targets[row] = NULL;
        t.lines[row] = line;
        t.rows++;
        int col = 0, f = 0, eor = 0;
        while (!eor) {
            if ((s = read_field(&r, col + 1, &eor, err))) goto out;
            if (col >= t.columns) {
                s = nn_error_set(err, NN_ERR_FORMAT, "%s: line %ld: more than the header's %d fields", name, line,
                                 t.columns);
                goto out;
            }
            if (col == t.target_col) {
                if (!(t.targets[row] = dup_str(r.field))) {
                    s = nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", name);
                    goto out;
                }
            } else if (!parse_number(r.field, &t.x[row * (size_t)features + (size_t)f++])) {
                s = nn_error_set(err, NN_ERR_FORMAT, "%s: line %ld, column %d (%.60s): %s%.40s%s is not a finite number",
                                 name, line, col + 1, t.header[col], r.field[0] ? "'" : "",
                                 r.field[0] ? r.field : "an empty field", r.field[0] ? "'" : "");
                goto out;
            }
            col++;
        }
        if (col < t.columns) {
            s = nn_error_set(err, NN_ERR_FORMAT, "%s: line %ld: %d field%s, the header has %d", name, line, col,
                             col == 1 ? "" : "s", t.columns);
            goto out;
        }
    }
    if (t.rows == 0) {
        s = nn_error_set(err, NN_ERR_FORMAT, "%s: a header but no data rows", name);
        goto out;
    }
    s = build(&t, name, &o, out, err);
out:
    free(r.field);
    table_free(&t);
    return s;
}

/* Targets and feature names into out. */
static nn_status build(table *t, const char *name, const nn_csv_opts *o, nn_data *out, nn_error *err)
{
    int features = t->columns - (t->target_col >= 0);
    int *labels = NULL;
    float *y = NULL;
    char **classes = NULL, **fnames = NULL;
    int num_classes = 0;
    nn_status s = NN_OK;
    fnames = calloc((size_t)features, sizeof *fnames);
    if (!fnames) goto oom;
    for (int c = 0, f = 0; c < t->columns; c++)
        if (c != t->target_col && !(fnames[f++] = dup_str(t->header[c]))) goto oom;
    if (t->target_col >= 0) {
        int classify = o->classify;
        if (classify < 0) {
            classify = 0;
            float v;
            for (int i = 0; i < t->rows && !classify; i++) classify = !parse_number(t->targets[i], &v);
        }
        if (classify) {
            labels = malloc((size_t)t->rows * sizeof *labels);
            if (!labels) goto oom;
            if (o->class_names) {
                if (o->num_class_names < 1) {
                    s = nn_error_set(err, NN_ERR_ARG, "%s: num_class_names must be >= 1", name);
                    goto fail;
                }
                classes = calloc((size_t)o->num_class_names, sizeof *classes);
                if (!classes) goto oom;
                for (int k = 0; k < o->num_class_names; k++)
                    if (!(classes[num_classes++] = dup_str(o->class_names[k]))) goto oom;
            } else {
                size_t cap = 0;
                for (int i = 0; i < t->rows; i++) {
                    int k = 0;
                    while (k < num_classes && strcmp(classes[k], t->targets[i])) k++;
                    if (k == num_classes) {
                        if (!grow((void **)&classes, &cap, (size_t)num_classes + 1, sizeof *classes)) goto oom;
                        if (!(classes[num_classes] = dup_str(t->targets[i]))) goto oom;
                        num_classes++;
                    }
                }
                if (o->order == NN_CSV_SORTED) qsort(classes, (size_t)num_classes, sizeof *classes, cmp_str);
            }
            for (int i = 0; i < t->rows; i++) {
                int k = 0;
                while (k < num_classes && strcmp(classes[k], t->targets[i])) k++;
                if (k == num_classes) {
                    s = nn_error_set(err, NN_ERR_FORMAT, "%s: line %ld, column %d (%.60s): unknown class '%.40s'",
                                     name, t->lines[i], t->target_col + 1, t->header[t->target_col], t->targets[i]);
                    goto fail;
                }
                labels[i] = k;
            }
        } else {
            y = malloc((size_t)t->rows * sizeof *y);
            if (!y) goto oom;
            for (int i = 0; i < t->rows; i++)
                if (!parse_number(t->targets[i], &y[i])) {
                    s = nn_error_set(err, NN_ERR_FORMAT, "%s: line %ld, column %d (%.60s): '%.40s' is not a finite number",
                                     name, t->lines[i], t->target_col + 1, t->header[t->target_col], t->targets[i]);
                    goto fail;
                }
        }
    }
    s = nn_data_from_arrays(out, t->rows, 1, &features, t->x, labels, num_classes, y, y ? 1 : 0, err);
    if (s) goto fail;
    out->owned[0] = t->x;
    t->x = NULL;
    out->owned[1] = labels;
    out->owned[2] = y;
    out->class_names = classes;
    out->feature_names = fnames;
    return NN_OK;
oom:
    s = nn_error_set(err, NN_ERR_MEMORY, "%s: out of memory", name);
fail:
    free(labels);
    free(y);
    free_strs(classes, (size_t)num_classes);
    free_strs(fnames, (size_t)features);
    memset(out, 0, sizeof *out);
    return s;
}

nn_status nn_csv_load(const char *path, const nn_csv_opts *opts, nn_data *out, nn_error *err)
{
    if (!out) return nn_error_set(err, NN_ERR_ARG, "nn_csv_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return nn_error_set(err, NN_ERR_ARG, "nn_csv_load: path is NULL");
    uint8_t *buf;
    size_t len;
    nn_status s = nn_read_file(path, CSV_MAX_FILE, &buf, &len, err);
    if (s) return s;
    s = nn_csv_parse((const char *)buf, len, path, opts, out, err);
    free(buf);
    return s;
}
