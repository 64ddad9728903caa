/* csv_predict: load a model written by csv_train --save and print one
 * prediction per row of a CSV file with the same columns (the target column
 * may be absent; when present, the accuracy or MSE is printed last). With
 * --validation, only the rows csv_train held out for validation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "nn.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: csv_predict --model FILE --csv FILE [options]\n"
            "Predict every row of a CSV file with a model written by csv_train --save.\n\n"
            "  --model FILE     the model (safetensors, from csv_train --save)\n"
            "  --csv FILE       rows to predict, with the training file's feature columns (also: --data)\n"
            "  --validation     only the rows csv_train held out (same file, same split)\n"
            "  --quiet          only the summary line (needs the target column)\n"
            "  --help           this text\n"
            "Output: row number (1 = first data row), prediction, and the target if the file has it.\n");
}

static const char *meta_or(const nn_safetensors *st, const char *key, const char *fallback)
{
    const char *v = nn_safetensors_meta(st, key);
    return v ? v : fallback;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *csv_path = NULL;
    int validation = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--validation")) { validation = 1; continue; }
        if (!strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (strcmp(a, "--model") && strcmp(a, "--csv") && strcmp(a, "--data")) {
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!(v = cli_value(argc, argv, &i))) return 2;
        if (!strcmp(a, "--model")) model_path = v;
        else csv_path = v;
    }
    if (!model_path || !csv_path) {
        fprintf(stderr, "error: --model FILE and --csv FILE are required (see --help)\n");
        return 2;
    }
    nn_safetensors st;
    nn_error err;
    nn_layer *model;
    if (nn_safetensors_read(model_path, &st, &err) || nn_model_from_safetensors(&st, &model, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    const char *target = nn_safetensors_meta(&st, "csv.target");
    int nf = atoi(meta_or(&st, "csv.num_features", "0")), nc = atoi(meta_or(&st, "csv.num_classes", "0"));
    int classify = !strcmp(meta_or(&st, "csv.task", ""), "classify");
    if (!target || nf < 1 || nc < 0 || nc > 1000000 || nf > 1000000 || (classify && nc < 1)) {
        fprintf(stderr, "error: %s: not a model written by csv_train (no csv.* metadata)\n", model_path);
        return 1;
    }
    const char **classes = calloc((size_t)nc + 1, sizeof *classes);
    for (int i = 0; classes && i < nc; i++) {
        char key[32];
        snprintf(key, sizeof key, "csv.class.%d", i);
        if (!(classes[i] = nn_safetensors_meta(&st, key))) {
            fprintf(stderr, "error: %s: metadata %s is missing\n", model_path, key);
            return 1;
        }
    }
    nn_csv_opts co = nn_csv_defaults(target);
    co.target_optional = 1;
    co.classify = classify;
    if (classify) {
        co.class_names = classes;
        co.num_class_names = nc;
    }
    nn_data all, train, rows;
    if (nn_csv_load(csv_path, &co, &all, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    /* the same feature columns, in the same order */
    int ok = (int)all.example_size == nf;
    for (int i = 0; ok && i < nf; i++) {
        char key[32];
        snprintf(key, sizeof key, "csv.feature.%d", i);
        const char *want = nn_safetensors_meta(&st, key);
        ok = want && !strcmp(want, all.feature_names[i]);
    }
    if (!ok) {
        fprintf(stderr, "error: %s: its feature columns differ from those %s was trained on (%d:", csv_path, model_path, nf);
        for (int i = 0; i < nf; i++) {
            char key[32];
            snprintf(key, sizeof key, "csv.feature.%d", i);
            fprintf(stderr, " %s", meta_or(&st, key, "?"));
        }
        fprintf(stderr, ")\n");
        return 1;
    }
    int *row_of = malloc(sizeof(int) * (size_t)all.count);
    for (int i = 0; row_of && i < all.count; i++) row_of[i] = i;
    const nn_data *d = &all;
    if (validation) {
        /* nn_data_split draws the same rows for the same count and seed */
        float vf = (float)atof(meta_or(&st, "csv.val_fraction", "0.2"));
        uint64_t seed = strtoull(meta_or(&st, "csv.seed", "1"), NULL, 10);
        float *ids = malloc(sizeof(float) * (size_t)all.count);
        nn_data idx_all, idx_train, idx_val;
        for (int i = 0; ids && i < all.count; i++) ids[i] = (float)i;
        if (!ids || nn_data_from_arrays(&idx_all, all.count, 1, (int[]){1}, ids, NULL, 0, NULL, 0, &err) ||
            nn_data_split(&idx_all, vf, seed, &idx_train, &idx_val, &err) ||
            nn_data_split(&all, vf, seed, &train, &rows, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        for (int i = 0; i < idx_val.count; i++) row_of[i] = (int)idx_val.x[i];
        nn_data_free(&idx_train);
        nn_data_free(&idx_val);
        free(ids);
        d = &rows;
    }
    size_t width = classify ? (size_t)nc : 1;
    float *out = malloc(sizeof(float) * width * (size_t)d->count);
    if (!out || !row_of || nn_predict(model, d, 0, out, width * (size_t)d->count, &err)) {
        fprintf(stderr, "error: %s\n", out && row_of ? err.msg : "out of memory");
        return 1;
    }
    long correct = 0;
    double sq = 0;
    if (!quiet) printf("row\tprediction%s\n", d->target != NN_TARGET_NONE ? "\ttarget" : "");
    for (int i = 0; i < d->count; i++) {
        const float *y = out + (size_t)i * width;
        if (classify) {
            int best = 0;
            for (int k = 1; k < nc; k++)
                if (y[k] > y[best]) best = k;
            if (!quiet) printf("%d\t%s", row_of[i] + 1, classes[best]);
            if (d->target == NN_TARGET_CLASS) {
                correct += best == d->labels[i];
                if (!quiet) printf("\t%s", classes[d->labels[i]]);
            }
        } else {
            if (!quiet) printf("%d\t%.6g", row_of[i] + 1, (double)y[0]);
            if (d->target == NN_TARGET_VALUE) {
                sq += ((double)y[0] - d->y[i]) * ((double)y[0] - d->y[i]);
                if (!quiet) printf("\t%.6g", (double)d->y[i]);
            }
        }
        if (!quiet) putchar('\n');
    }
    if (d->target == NN_TARGET_CLASS)
        printf("accuracy %.2f%% (%ld of %d rows)\n", 100.0 * (double)correct / d->count, correct, d->count);
    else if (d->target == NN_TARGET_VALUE)
        printf("mse %.6g | rmse %.6g (%d rows)\n", sq / d->count, sqrt(sq / d->count), d->count);
    free(out);
    free(row_of);
    free(classes);
    if (validation) {
        nn_data_free(&train);
        nn_data_free(&rows);
    }
    nn_data_free(&all);
    nn_layer_free(model);
    nn_safetensors_free(&st);
    return 0;
}
