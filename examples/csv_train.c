/* csv_train: train an MLP on a numeric CSV file with one call to nn_fit.
 * Classification when the target column holds non-numeric labels (or with
 * --classify), else regression. Features are standardised with the training
 * rows' statistics, kept in the model as its first layer; regression
 * targets likewise, undone by the last layer, so predictions come out in
 * the target's own units. The validation rows are drawn at random with the
 * seed (CSV files often come sorted by class). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "nn.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: csv_train --csv FILE --target COLUMN [options]\n"
            "Train an MLP on a numeric CSV file (header row; every column but the target is a feature).\n\n"
            "  --csv FILE          the data (also: --data FILE)\n"
            "  --target COLUMN     the column to predict\n"
            "  --classify          class targets even if the column is numeric\n"
            "  --sorted-classes    class indices in sorted order of the labels (default: first seen)\n"
            "  --hidden N,N,...    hidden layer widths, ReLU (default 64,64; 0 for none)\n"
            "  --epochs N          at most N epochs (default 200)\n"
            "  --batch N           batch size (default 16)\n"
            "  --lr X              Adam learning rate (default 0.003)\n"
            "  --val-fraction F    share of rows held out for validation, at random (default 0.2)\n"
            "  --patience N        stop after N epochs without a better validation loss (default 20; 0 off)\n"
            "  --seed N            weights, shuffling and the validation split (default 1)\n"
            "  --save FILE         write the model (architecture, weights, column names) as safetensors\n"
            "  --dist              data-parallel across the processes of mpirun (MPI builds: make MPI=1);\n"
            "                      rank 0 alone prints and saves\n"
            "  --quiet             only the final line\n"
            "  --help              this text\n");
}

typedef struct options {
    const char *csv, *target, *save, *hidden;
    int classify, sorted, epochs, batch, patience, quiet, dist;
    float lr, val_fraction;
    uint64_t seed;
} options;

static int parse(int argc, char **argv, options *o)
{
    *o = (options){NULL, NULL, NULL, "64,64", -1, 0, 200, 16, 20, 0, 0, 3e-3f, 0.2f, 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--classify")) { o->classify = 1; continue; }
        if (!strcmp(a, "--sorted-classes")) { o->sorted = 1; continue; }
        if (!strcmp(a, "--quiet")) { o->quiet = 1; continue; }
        if (!strcmp(a, "--dist")) {
#ifndef NN_HAVE_MPI
            fprintf(stderr, "error: --dist needs the MPI build of libnn: make MPI=1, then run "
                            "mpirun -np N build/mpi/examples/csv_train --dist ...\n");
            return 0;
#endif
            o->dist = 1;
            continue;
        }
        static const char *valued[] = {"--csv", "--data", "--target", "--hidden", "--epochs", "--batch", "--lr",
                                       "--val-fraction", "--patience", "--seed", "--save"};
        int known = 0;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) known |= !strcmp(a, valued[k]);
        if (!known) {
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", a);
            return 0;
        }
        if (!(v = cli_value(argc, argv, &i))) return 0;
        if (!strcmp(a, "--csv") || !strcmp(a, "--data")) o->csv = v;
        else if (!strcmp(a, "--target")) o->target = v;
        else if (!strcmp(a, "--hidden")) o->hidden = v;
        else if (!strcmp(a, "--save")) o->save = v;
        else if (!strcmp(a, "--epochs")) { if (!cli_int(a, v, 1, 1000000, &o->epochs)) return 0; }
        else if (!strcmp(a, "--batch")) { if (!cli_int(a, v, 1, 1 << 20, &o->batch)) return 0; }
        else if (!strcmp(a, "--patience")) { if (!cli_int(a, v, 0, 1000000, &o->patience)) return 0; }
        else if (!strcmp(a, "--lr")) { if (!cli_float(a, v, 1e-9, 10, &o->lr)) return 0; }
        else if (!strcmp(a, "--val-fraction")) { if (!cli_float(a, v, 0.001, 0.999, &o->val_fraction)) return 0; }
        else if (!cli_u64(a, v, &o->seed)) return 0;
    }
    if (!o->csv || !o->target) {
        fprintf(stderr, "error: --csv FILE and --target COLUMN are required (see --help)\n");
        return 0;
    }
    return 1;
}

/* standardize -> [dense, relu] per hidden width -> dense [-> standardize back]. */
static nn_layer *build_mlp(const options *o, const nn_data *train, int outputs, nn_rng *rng)
{
    int f = (int)train->example_size;
    float *mean = malloc(sizeof(float) * (size_t)f), *sd = malloc(sizeof(float) * (size_t)f);
    nn_layer *m = nn_sequential_new();
    if (!mean || !sd || !m || nn_data_feature_stats(train, mean, sd, NULL)) goto fail;
    nn_sequential_add(m, nn_standardize_new(f, mean, sd, 0));
    int in = f;
    for (const char *p = o->hidden; *p;) {
        char *end;
        long w = strtol(p, &end, 10);
        if (end == p || w < 0 || w > 100000 || (*end && *end != ',')) {
            fprintf(stderr, "error: --hidden expects widths like 64,64, got '%s'\n", o->hidden);
            goto fail;
        }
        if (w > 0) {
            if (nn_sequential_add(m, nn_dense_new(in, (int)w, NN_INIT_FAN_IN, rng))) goto fail;
            nn_sequential_add(m, nn_activation_new(NN_ACT_RELU));
            in = (int)w;
        }
        p = *end ? end + 1 : end;
    }
    if (nn_sequential_add(m, nn_dense_new(in, outputs, NN_INIT_FAN_IN, rng))) goto fail;
    if (train->target == NN_TARGET_VALUE) { /* the target's scale, undone at the output */
        double s = 0, s2 = 0;
        for (int i = 0; i < train->count; i++) {
            s += train->y[i];
            s2 += (double)train->y[i] * train->y[i];
        }
        float ym = (float)(s / train->count), ysd = (float)sqrt(s2 / train->count - (s / train->count) * (s / train->count));
        if (!(ysd > 1e-12f)) ysd = 1.0f;
        nn_sequential_add(m, nn_standardize_new(1, &ym, &ysd, 1));
    }
    free(mean);
    free(sd);
    return m;
fail:
    free(mean);
    free(sd);
    nn_layer_free(m);
    return NULL;
}

typedef struct progress_ctx {
    int quiet, epochs, regression;
} progress_ctx;

static int print_epoch(const nn_epoch_stats *s, void *user)
{
    const progress_ctx *c = user;
    if (c->quiet) return 0;
    if (c->regression)
        printf("epoch %d/%d | loss %.4f | val_mse %.6g | val_rmse %.6g%s\n", s->epoch, c->epochs,
               (double)s->train_loss, (double)s->val_metric, sqrt((double)s->val_metric), s->best ? " *" : "");
    else
        printf("epoch %d/%d | loss %.4f | val_loss %.4f | val_acc %.2f%%%s\n", s->epoch, c->epochs,
               (double)s->train_loss, (double)s->val_loss, 100.0 * s->val_metric, s->best ? " *" : "");
    return 0;
}

/* The CSV columns and split go into the model file, so csv_predict can read
 * a file of the same layout and find the same validation rows. */
static int save(const options *o, nn_layer *model, const nn_data *d, nn_error *err)
{
    int nf = (int)d->example_size, nc = d->num_classes;
    int n = 0, cap = 2 * (nf + nc + 8);
    const char **meta = calloc((size_t)cap, sizeof *meta);
    char (*num)[32] = calloc((size_t)(nf + nc + 8), sizeof *num);
    if (!meta || !num) return 0;
    int k = 0;
#define META(key, value) (meta[2 * n] = (key), meta[2 * n++ + 1] = (value))
    META("csv.target", o->target);
    META("csv.task", d->target == NN_TARGET_CLASS ? "classify" : "regress");
    snprintf(num[k], 32, "%d", nf);
    META("csv.num_features", num[k++]);
    snprintf(num[k], 32, "%d", nc);
    META("csv.num_classes", num[k++]);
    snprintf(num[k], 32, "%.9g", (double)o->val_fraction);
    META("csv.val_fraction", num[k++]);
    snprintf(num[k], 32, "%llu", (unsigned long long)o->seed);
    META("csv.seed", num[k++]);
    char (*keys)[32] = calloc((size_t)(nf + nc), sizeof *keys);
    if (!keys) return 0;
    for (int i = 0; i < nf; i++) {
        snprintf(keys[i], 32, "csv.feature.%d", i);
        META(keys[i], d->feature_names[i]);
    }
    for (int i = 0; i < nc; i++) {
        snprintf(keys[nf + i], 32, "csv.class.%d", i);
        META(keys[nf + i], d->class_names[i]);
    }
#undef META
    nn_model_save_opts so = {1, {nf, 0, 0}, NULL, meta, n};
    int ok = nn_model_save(o->save, model, &so, err) == NN_OK;
    free(meta);
    free(num);
    free(keys);
    return ok;
}

int main(int argc, char **argv)
{
    options o;
    if (!parse(argc, argv, &o)) return 2;
#ifdef NN_HAVE_MPI
    nn_dist dist = {0};
    if (o.dist) {
        if (!cli_dist_start(&dist, &argc, &argv)) return 1;
        if (dist.rank) o.save = NULL; /* rank 0 writes for the job */
    }
#endif
    nn_csv_opts co = nn_csv_defaults(o.target);
    co.classify = o.classify;
    co.order = o.sorted ? NN_CSV_SORTED : NN_CSV_FIRST_SEEN;
    nn_data all, train, val;
    nn_error err;
    if (nn_csv_load(o.csv, &co, &all, &err) || nn_data_split(&all, o.val_fraction, o.seed, &train, &val, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    int regression = all.target == NN_TARGET_VALUE;
    if (!o.quiet)
        printf("%s: %d rows, %zu features, %s (%d classes); %d train / %d validation rows\n", o.csv, all.count,
               all.example_size, regression ? "regression" : "classification", all.num_classes, train.count,
               val.count);
    nn_rng rng;
    nn_rng_seed(&rng, o.seed);
    nn_layer *model = build_mlp(&o, &train, regression ? 1 : all.num_classes, &rng);
    if (!model) return 1;
    nn_fit_opts fo = nn_fit_defaults();
    fo.epochs = o.epochs;
    fo.batch_size = o.batch;
    fo.lr = o.lr;
    fo.val = &val;
    fo.patience = o.patience;
    fo.seed = o.seed;
    progress_ctx pc = {o.quiet, o.epochs, regression};
    fo.on_epoch = print_epoch;
    fo.user = &pc;
#ifdef NN_HAVE_MPI
    if (o.dist) {
        nn_params p;
        nn_params_init(&p);
        if (nn_layer_params(model, &p) || nn_dist_broadcast(&dist, &p, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        nn_params_free(&p);
        nn_dist_fit_opts(&dist, &fo);
        if (!o.quiet) printf("distributed: %d processes, each with its shard of every batch of %d\n", dist.size, o.batch);
    }
#endif
    nn_history h;
    int status = 0;
    if (nn_fit(model, &train, &fo, &h, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        status = 1;
    } else {
        nn_eval ev;
        nn_evaluate(model, &val, 0, &ev, NULL);
        if (regression)
            printf("best epoch %d of %d%s | val_mse %.6g | val_rmse %.6g\n", h.best_epoch, h.count,
                   h.stopped_early ? " (stopped early)" : "", (double)ev.mse, sqrt((double)ev.mse));
        else
            printf("best epoch %d of %d%s | val_loss %.4f | val_acc %.2f%% (%d rows)\n", h.best_epoch, h.count,
                   h.stopped_early ? " (stopped early)" : "", (double)ev.loss, 100.0 * ev.accuracy, val.count);
        if (o.save) {
            if (!save(&o, model, &all, &err)) {
                fprintf(stderr, "error: %s\n", err.msg);
                status = 1;
            } else if (!o.quiet) {
                printf("saved %s\n", o.save);
            }
        }
        nn_history_free(&h);
    }
    nn_layer_free(model);
    nn_data_free(&train);
    nn_data_free(&val);
    nn_data_free(&all);
#ifdef NN_HAVE_MPI
    if (o.dist) nn_dist_finalize(&dist);
#endif
    return status;
}
