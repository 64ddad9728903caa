#include "nn/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *nn_status_name(nn_status s)
{
    switch (s) {
    case NN_OK: return "NN_OK";
    case NN_ERR_IO: return "NN_ERR_IO";
    case NN_ERR_FORMAT: return "NN_ERR_FORMAT";
    case NN_ERR_SHAPE: return "NN_ERR_SHAPE";
    case NN_ERR_MEMORY: return "NN_ERR_MEMORY";
    case NN_ERR_ARG: return "NN_ERR_ARG";
    case NN_ERR_NUMERIC: return "NN_ERR_NUMERIC";
    }
    return "NN_ERR_UNKNOWN";
}

nn_status nn_error_set(nn_error *err, nn_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void nn_error_clear(nn_error *err)
{
    if (err) {
        err->code = NN_OK;
        err->msg[0] = '\0';
    }
}
