#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef NN_HAVE_MPI
int cli_dist_start(nn_dist *d, int *argc, char ***argv)
{
    nn_error err;
    if (nn_dist_init(d, argc, argv, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 0;
    }
    return !d->rank || freopen("/dev/null", "w", stdout) != NULL;
}
#endif

int cli_int(const char *flag, const char *value, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < min || v > max) {
        fprintf(stderr, "error: %s expects an integer in [%ld, %ld], got '%s'\n", flag, min, max,
                value);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int cli_float(const char *flag, const char *value, double min, double max, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "error: %s expects a number in [%g, %g], got '%s'\n", flag, min, max,
                value);
        return 0;
    }
    *out = (float)v;
    return 1;
}

int cli_u64(const char *flag, const char *value, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno || end == value || *end || value[0] == '-') {
        fprintf(stderr, "error: %s expects a non-negative integer, got '%s'\n", flag, value);
        return 0;
    }
    *out = (uint64_t)v;
    return 1;
}

const char *cli_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "error: %s needs a value (see --help)\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

const char *cli_data_dir(const char *flag_value, const char *fallback)
{
    if (flag_value) return flag_value;
    const char *env = getenv("NN_DATA_DIR");
    return env && *env ? env : fallback;
}

int cli_load_mnist(const char *dir, nn_dataset *train, nn_dataset *test)
{
    nn_error err;
    if (nn_mnist_load(dir, 1, train, &err) != NN_OK || nn_mnist_load(dir, 0, test, &err) != NN_OK) {
        fprintf(stderr,
                "error: %s\n"
                "  MNIST is read from %s. Get it with `make data` (downloads to data/mnist),\n"
                "  or point --data DIR / NN_DATA_DIR at a folder with the four IDX files.\n",
                err.msg, dir);
        nn_dataset_free(train);
        return 0;
    }
    return 1;
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void progress_start(progress *p, const char *label, int total_batches, const char *unit,
                    int quiet)
{
    p->label = label;
    p->unit = unit;
    p->total = total_batches;
    p->tty = isatty(fileno(stderr));
    p->quiet = quiet;
    p->start = cli_now();
    p->last_draw = 0;
    p->next_plain = 1;
}

void progress_update(progress *p, int done, double loss, double acc, long samples)
{
    if (p->quiet) return;
    double now = cli_now(), elapsed = now - p->start;
    double rate = elapsed > 0 ? samples / elapsed : 0;
    double eta = done > 0 ? elapsed * (p->total - done) / done : 0;
    char acc_text[32] = "";
    if (acc >= 0) snprintf(acc_text, sizeof acc_text, " | acc %.2f%%", 100 * acc);
    if (p->tty) {
        if (now - p->last_draw < 0.1 && done < p->total) return;
        p->last_draw = now;
        int width = 24, filled = p->total ? width * done / p->total : width;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r%s [%s] %d/%d | loss %.4f%s | %.0f %s/s | ETA %.0f s  ", p->label, bar,
                done, p->total, loss, acc_text, rate, p->unit, eta);
    } else if (done * 4 >= p->next_plain * p->total) {
        while (done * 4 >= p->next_plain * p->total) p->next_plain++;
        fprintf(stderr, "%s %d/%d batches | loss %.4f%s | %.0f %s/s | ETA %.0f s\n", p->label, done,
                p->total, loss, acc_text, rate, p->unit, eta);
    }
}

void progress_end(progress *p)
{
    if (!p->quiet && p->tty) fprintf(stderr, "\r\033[K");
}

int argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

double evaluate_accuracy(nn_layer *model, nn_graph *g, const nn_dataset *d, nn_layout layout)
{
    nn_batcher b;
    if (nn_batcher_init(&b, d, 250, layout, 0, 0, NULL) != NN_OK) return 0;
    nn_batcher_normalize(&b, NN_MNIST_MEAN, NN_MNIST_STD);
    int was_training = model->training;
    nn_layer_set_training(model, 0);
    nn_graph_set_grad_enabled(g, 0);
    long correct = 0;
    int n;
    while ((n = nn_batcher_next(&b)) > 0) {
        nn_graph_reset(g);
        nn_tensor *logits = nn_layer_forward(model, g, b.x);
        int classes = logits->shape[1];
        for (int i = 0; i < n; i++)
            correct += argmax(logits->data + (size_t)i * classes, classes) == b.labels[i];
    }
    nn_graph_set_grad_enabled(g, 1);
    nn_layer_set_training(model, was_training);
    nn_batcher_free(&b);
    return (double)correct / d->count;
}

int cli_schedule_ok(const char *name)
{
    if (!strcmp(name, "decay") || !strcmp(name, "cosine") || !strcmp(name, "constant")) return 1;
    fprintf(stderr, "error: --schedule must be decay, cosine or constant, got '%s'\n", name);
    return 0;
}

float cli_schedule_lr(const char *name, float lr, long step, long total_steps)
{
    if (!strcmp(name, "cosine")) return nn_lr_cosine(lr, 0.0f, step, total_steps, 0);
    if (!strcmp(name, "decay")) return nn_lr_stable_decay(lr, 0.0f, step, total_steps, total_steps / 4);
    return lr;
}
