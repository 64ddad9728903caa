/* fit_regression: the own-data path end to end on a synthetic function.
 * Builds float arrays for y = sin(3 x1) + x2^2 / 2 + noise, trains an MLP
 * with nn_fit (validation fraction, early stopping, cosine schedule), saves
 * the model, loads it back as a second program would, and predicts fresh
 * points one at a time with an nn_predictor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "nn.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fit_regression [options]\n"
            "Fit y = sin(3 x1) + x2^2 / 2 + noise (x uniform in [-1, 1]^2) with an MLP; no data files needed.\n\n"
            "  --samples N    training examples (default 2000)\n"
            "  --epochs N     at most N epochs (default 200, early stopping after 15 without improvement)\n"
            "  --seed N       data, weights and shuffling (default 1)\n"
            "  --save FILE    model file (default build/regression.safetensors)\n"
            "  --quiet        only the summary\n"
            "  --help         this text\n");
}

static float target(float x1, float x2) { return sinf(3.0f * x1) + 0.5f * x2 * x2; }

int main(int argc, char **argv)
{
    int samples = 2000, epochs = 200, quiet = 0;
    uint64_t seed = 1;
    const char *path = "build/regression.safetensors";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (strcmp(a, "--samples") && strcmp(a, "--epochs") && strcmp(a, "--seed") && strcmp(a, "--save")) {
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!(v = cli_value(argc, argv, &i))) return 2;
        if (!strcmp(a, "--samples")) { if (!cli_int(a, v, 10, 10000000, &samples)) return 2; }
        else if (!strcmp(a, "--epochs")) { if (!cli_int(a, v, 1, 100000, &epochs)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!cli_u64(a, v, &seed)) return 2; }
        else path = v;
    }
    nn_rng rng;
    nn_rng_seed(&rng, seed);
    float *x = malloc(sizeof(float) * 2 * (size_t)samples), *y = malloc(sizeof(float) * (size_t)samples);
    if (!x || !y) return 1;
    for (int i = 0; i < samples; i++) {
        x[2 * i] = 2.0f * nn_rng_uniform(&rng) - 1.0f;
        x[2 * i + 1] = 2.0f * nn_rng_uniform(&rng) - 1.0f;
        y[i] = target(x[2 * i], x[2 * i + 1]) + 0.05f * nn_rng_normal(&rng);
    }
    nn_data data;
    nn_error err;
    if (nn_data_from_arrays(&data, samples, 1, (int[]){2}, x, NULL, 0, y, 1, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    nn_layer *model = nn_sequential_new();
    nn_sequential_add(model, nn_dense_new(2, 64, NN_INIT_FAN_IN, &rng));
    nn_sequential_add(model, nn_activation_new(NN_ACT_TANH));
    nn_sequential_add(model, nn_dense_new(64, 64, NN_INIT_FAN_IN, &rng));
    nn_sequential_add(model, nn_activation_new(NN_ACT_TANH));
    nn_sequential_add(model, nn_dense_new(64, 1, NN_INIT_FAN_IN, &rng));
    nn_fit_opts o = nn_fit_defaults();
    o.epochs = epochs;
    o.lr = 3e-3f;
    o.schedule = NN_SCHEDULE_COSINE;
    o.min_lr = 1e-4f;
    o.val_fraction = 0.2f;
    o.patience = 15;
    o.seed = seed;
    o.verbose = !quiet;
    nn_history h;
    if (nn_fit(model, &data, &o, &h, &err) || nn_model_save(path, model, &(nn_model_save_opts){1, {2, 0, 0}, NULL, NULL, 0}, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    printf("best epoch %d of %d | val_mse %.5f (noise variance 0.0025)\n", h.best_epoch, h.count,
           (double)h.epochs[h.best_epoch - 1].val_loss);
    nn_history_free(&h);
    nn_layer_free(model);

    /* a second program would start here: load the file, predict new points */
    nn_layer *loaded;
    if (nn_model_load(path, &loaded, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    nn_predictor *p = nn_predictor_new(loaded, 1, (int[]){2}, &err);
    if (!p) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    double sq = 0;
    int fresh = 1000;
    for (int i = 0; i < fresh; i++) {
        float pt[2] = {2.0f * nn_rng_uniform(&rng) - 1.0f, 2.0f * nn_rng_uniform(&rng) - 1.0f};
        const float *out = nn_predictor_run(p, pt, NULL, &err);
        if (!out) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        double e = out[0] - target(pt[0], pt[1]);
        sq += e * e;
        if (!quiet && i < 3)
            printf("f(%+.3f, %+.3f) = %+.4f, predicted %+.4f\n", (double)pt[0], (double)pt[1],
                   (double)target(pt[0], pt[1]), (double)out[0]);
    }
    printf("loaded %s: mse %.5f against the noiseless function on %d fresh points\n", path, sq / fresh, fresh);
    nn_predictor_free(p);
    nn_layer_free(loaded);
    free(x);
    free(y);
    return 0;
}
