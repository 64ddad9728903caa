/* nn_info: describe a model file: its metadata, the layers with their
 * hyperparameters, output shapes and parameter counts, and any other tensors
 * (optimizer state); for int8 files (quant.h) their tensors, checked by
 * loading them. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "nn.h"
#include "nn/quant.h"

/* An int8 file: its tensors, and whether it loads. */
static int describe_int8(const nn_safetensors *st, const char *path)
{
    printf("\n%-28s %-5s shape\n", "tensor", "dtype");
    for (int i = 0; i < st->count; i++) {
        const nn_st_tensor *t = &st->tensors[i];
        printf("%-28s %-5s [", t->name, t->dtype);
        for (int d = 0; d < t->ndim; d++) printf(d ? ", %" PRIu64 : "%" PRIu64, t->shape[d]);
        printf("]\n");
    }
    nn_error err;
    if (nn_safetensors_meta(st, "nn.recurrent")) {
        nn_qrecurrent *q = nn_qrecurrent_load(path, &err);
        if (!q) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        printf("int8 recurrent layers: loads with nn_qrecurrent_load (hidden size %d)\n", nn_qrecurrent_hidden_size(q));
        nn_qrecurrent_free(q);
        return 0;
    }
    nn_qmodel *q = nn_qmodel_load(path, &err);
    if (!q) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    printf("int8 model: loads with nn_qmodel_load; layers in int8: %d\n", nn_qmodel_quantized_layers(q));
    nn_qmodel_free(q);
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: nn_info FILE\n"
            "Describe a model file (safetensors written by libnn: nn_model_save, the trainers' --save).\n"
            "Prints the metadata, a summary of the layers (output shapes when the file records its\n"
            "input shape) and the tensors that are not model weights; for int8 files (nn_qmodel_save,\n"
            "nn_qrecurrent_save) the tensors, and whether the file loads.\n\n"
            "  --help   this text\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "error: expected one model file (see --help)\n");
        return 2;
    }
    nn_safetensors st;
    nn_error err;
    if (nn_safetensors_read(argv[1], &st, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    printf("%s: %d tensors, %zu bytes of data\n", argv[1], st.count, st.data_len);
    for (int i = 0; i < st.meta_count; i++)
        if (strcmp(st.meta_keys[i], NN_MODEL_META_LAYERS))
            printf("  %s = %.100s%s\n", st.meta_keys[i], st.meta_values[i], strlen(st.meta_values[i]) > 100 ? "..." : "");
    nn_layer *model;
    int status = 0;
    const char *quantized = nn_safetensors_meta(&st, "nn.quantized");
    if (quantized && !strcmp(quantized, "int8")) {
        status = describe_int8(&st, argv[1]);
    } else if (nn_model_from_safetensors(&st, &model, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        status = 1;
    } else {
        int shape[3], ndim = nn_model_input_shape(&st, shape);
        printf("\n");
        if (nn_model_summary(model, ndim, shape, stdout, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            status = 1;
        }
        nn_params p;
        nn_params_init(&p);
        nn_layer_params(model, &p);
        int extra = 0;
        for (int i = 0; i < st.count; i++)
            if (!nn_params_find(&p, st.tensors[i].name)) extra++;
        if (extra) printf("other tensors: %d (optimizer state or extra data)\n", extra);
        nn_params_free(&p);
        nn_layer_free(model);
    }
    nn_safetensors_free(&st);
    return status;
}
