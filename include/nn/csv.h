/* libnn: numeric CSV files as data sets.
 *
 * The first row is a header of column names. One column, named by the
 * caller, is the target; every other column is a numeric feature. Fields are
 * separated by the delimiter (',' by default); a field may be quoted ("a,b",
 * with "" for a quote inside) and quoted fields may span lines; records end
 * in LF or CRLF; blank lines and a UTF-8 byte-order mark are skipped; spaces
 * around a number are allowed. Feature values must be finite numbers.
 *
 * Targets are class labels when opts.classify is 1, or when it is -1 (the
 * default) and any target value is not a number; the class strings (e.g.
 * "setosa") map to indices in the order they are first seen, or sorted
 * (byte order) with NN_CSV_SORTED, and are kept as the data set's
 * class_names. Otherwise targets are floats (regression).
 *
 * A CSV file is user input: every problem is NN_ERR_FORMAT (or NN_ERR_IO)
 * with a message naming the file, the line and the column, e.g.
 * "iris.csv: line 7, column 2 (sepal_width): 'abc' is not a number". */
#ifndef NN_CSV_H
#define NN_CSV_H

#include <stddef.h>
#include "dataset.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nn_csv_class_order {
    NN_CSV_FIRST_SEEN, /* class 0 is the first label in the file, ... */
    NN_CSV_SORTED      /* classes in byte order of their names */
} nn_csv_class_order;

typedef struct nn_csv_opts {
    const char *target;  /* the target column's name; NULL: no target (features only) */
    int classify;        /* -1 auto (default), 0 float targets, 1 class targets */
    nn_csv_class_order order;
    char delimiter;      /* ',' by default */
    int target_optional; /* 1: a file without the target column loads as features only */
    const char *const *class_names; /* with classify 1: use these classes (their
                                       order) and refuse any other label */
    int num_class_names;
} nn_csv_opts;

/* Defaults for a target column: auto classify, first-seen order, ','. */
nn_csv_opts nn_csv_defaults(const char *target);

/* Load path into out (which owns everything, including feature_names: the
 * feature columns' names in file order, example_size of them). */
nn_status nn_csv_load(const char *path, const nn_csv_opts *opts, nn_data *out, nn_error *err);

/* The same from text in memory; name is used in messages. */
nn_status nn_csv_parse(const char *text, size_t len, const char *name, const nn_csv_opts *opts,
                       nn_data *out, nn_error *err);

#ifdef __cplusplus
}
#endif
#endif
