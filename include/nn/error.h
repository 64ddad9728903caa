/* libnn: status codes and error messages.
 *
 * Anything that reads files or user data returns an nn_status and, when the
 * caller passes an nn_error, fills it with a message that names the file (or
 * the function) and the problem. Passing NULL for the nn_error is allowed. */
#ifndef NN_ERROR_H
#define NN_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nn_status {
    NN_OK = 0,
    NN_ERR_IO,       /* a file could not be opened, read or written */
    NN_ERR_FORMAT,   /* a file's contents are malformed, truncated or corrupt */
    NN_ERR_SHAPE,    /* tensor shapes do not fit together */
    NN_ERR_MEMORY,   /* an allocation failed or a size overflows */
    NN_ERR_ARG,      /* an argument is out of range */
    NN_ERR_NUMERIC   /* a NaN or Inf appeared where a number was needed */
} nn_status;

#define NN_ERROR_MSG_MAX 512

typedef struct nn_error {
    nn_status code;
    char msg[NN_ERROR_MSG_MAX];
} nn_error;

/* Short constant name of a status, e.g. "NN_ERR_FORMAT". */
const char *nn_status_name(nn_status s);

/* Record code and a printf-style message in err (if err is not NULL) and
 * return code, so callers can write `return nn_error_set(err, ...)`. */
nn_status nn_error_set(nn_error *err, nn_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Clear err to NN_OK with an empty message (err may be NULL). */
void nn_error_clear(nn_error *err);

#ifdef __cplusplus
}
#endif
#endif
