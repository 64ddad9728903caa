/* mnist_autoencoder: a dense autoencoder on MNIST (or Fashion-MNIST).
 *
 * 784 -> 256 ReLU -> 64 ReLU -> B (the bottleneck, 16 by default, or 2) ->
 * 64 ReLU -> 256 ReLU -> 784 sigmoid, trained with Adam to minimise the mean
 * squared error against the input in [0, 1]. After each epoch one line:
 *   epoch E/N | train_mse M | test_mse M | S s
 * and at the end an image: 16 test images (top row) above their
 * reconstructions (bottom row). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/image.h"
#include "nn.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mnist_autoencoder [options]\n"
            "Train a dense autoencoder and report reconstruction error on the test set.\n\n"
            "  --data DIR        folder with the IDX files (default: $NN_DATA_DIR, else data/mnist)\n"
            "  --bottleneck N    size of the code (default 16; 2 gives a plottable code)\n"
            "  --epochs N        passes over the training set (default 10)\n"
            "  --batch N         mini-batch size (default 64)\n"
            "  --lr X            Adam learning rate (default 0.001)\n"
            "  --seed N          seed (default 1)\n"
            "  --threads N       threads for the kernels (default: all cores)\n"
            "  --out FILE.png    originals above reconstructions (default autoencoder.png)\n"
            "  --quiet           no progress bar\n"
            "  --help            this text\n\n"
            "Per-epoch output (stdout):\n"
            "  epoch E/N | train_mse M | test_mse M | S s\n");
}

static double test_mse(nn_layer *m, nn_graph *g, const nn_dataset *test)
{
    nn_batcher b;
    if (nn_batcher_init(&b, test, 500, NN_LAYOUT_FLAT, 0, 0, NULL)) return -1;
    nn_graph_set_grad_enabled(g, 0);
    double sum = 0;
    int n;
    while ((n = nn_batcher_next(&b)) > 0) {
        nn_graph_reset(g);
        sum += (double)nn_mse(g, nn_layer_forward(m, g, b.x), b.x)->data[0] * n;
    }
    nn_graph_set_grad_enabled(g, 1);
    nn_batcher_free(&b);
    return sum / test->count;
}

int main(int argc, char **argv)
{
    const char *data_flag = NULL, *out = "autoencoder.png";
    int epochs = 10, batch = 64, threads = 0, quiet = 0, code = 16;
    float lr = 1e-3f;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (strcmp(a, "--data") && strcmp(a, "--out") && strcmp(a, "--epochs") && strcmp(a, "--batch") &&
            strcmp(a, "--lr") && strcmp(a, "--seed") && strcmp(a, "--threads") && strcmp(a, "--bottleneck")) {
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!(v = cli_value(argc, argv, &i))) return 2;
        int ok = 1;
        if (!strcmp(a, "--data")) data_flag = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--epochs")) ok = cli_int(a, v, 1, 100000, &epochs);
        else if (!strcmp(a, "--batch")) ok = cli_int(a, v, 1, 60000, &batch);
        else if (!strcmp(a, "--threads")) ok = cli_int(a, v, 1, 1024, &threads);
        else if (!strcmp(a, "--bottleneck")) ok = cli_int(a, v, 1, 784, &code);
        else if (!strcmp(a, "--lr")) ok = cli_float(a, v, 0.0, 10.0, &lr);
        else ok = cli_u64(a, v, &seed);
        if (!ok) return 2;
    }
    if (threads) nn_set_threads(threads);
    const char *dir = cli_data_dir(data_flag, "data/mnist");
    nn_dataset train, test;
    if (!cli_load_mnist(dir, &train, &test)) return 1;
    int pixels = train.rows * train.cols;

    nn_rng rng;
    nn_rng_seed(&rng, seed);
    const int sizes[] = {pixels, 256, 64, code, 64, 256, pixels};
    nn_layer *m = nn_sequential_new();
    for (int i = 0; i < 6; i++) {
        nn_sequential_add(m, nn_dense_new(sizes[i], sizes[i + 1], i < 5 ? NN_INIT_HE : NN_INIT_XAVIER, &rng));
        if (i == 2) continue; /* a linear code */
        nn_sequential_add(m, nn_activation_new(i < 5 ? NN_ACT_RELU : NN_ACT_SIGMOID));
    }
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(m, &p);
    nn_optim *opt = nn_optim_adam_new(&p, nn_adam_defaults(lr));
    nn_graph *g = nn_graph_new();
    nn_batcher b;
    nn_error err;
    if (!opt || !g || nn_batcher_init(&b, &train, batch, NN_LAYOUT_FLAT, 1, seed, &err)) {
        fprintf(stderr, "error: setup failed (out of memory?)\n");
        return 1;
    }
    printf("mnist_autoencoder: %d train / %d test images from %s; bottleneck %d, %zu parameters; "
           "Adam lr %g, batch %d, %d epochs\n",
           train.count, test.count, dir, code, nn_params_numel(&p), (double)lr, batch, epochs);
    fflush(stdout);
    for (int epoch = 1; epoch <= epochs; epoch++) {
        double t0 = cli_now(), sum = 0;
        long seen = 0;
        int n, done = 0;
        char label[32];
        snprintf(label, sizeof label, "epoch %d/%d", epoch, epochs);
        progress bar;
        progress_start(&bar, label, nn_batcher_num_batches(&b), "img", quiet);
        nn_batcher_start_epoch(&b);
        while ((n = nn_batcher_next(&b)) > 0) {
            nn_graph_reset(g);
            nn_optim_zero_grad(opt);
            nn_tensor *loss = nn_mse(g, nn_layer_forward(m, g, b.x), b.x);
            if (nn_backward(g, loss, NULL) != NN_OK) { /* NaN or infinite loss */
                progress_end(&bar);
                fprintf(stderr, "error: loss became %g at epoch %d, batch %d; stopping (lower --lr)\n",
                        (double)loss->data[0], epoch, done + 1);
                return 3;
            }
            nn_optim_step(opt);
            sum += (double)loss->data[0] * n;
            seen += n;
            progress_update(&bar, ++done, sum / seen, -1, seen);
        }
        progress_end(&bar);
        printf("epoch %d/%d | train_mse %.5f | test_mse %.5f | %.1f s\n", epoch, epochs, sum / seen,
               test_mse(m, g, &test), cli_now() - t0);
        fflush(stdout);
    }
    /* 16 test images and their reconstructions */
    nn_batcher tb;
    if (nn_batcher_init(&tb, &test, 16, NN_LAYOUT_FLAT, 0, 0, &err) == NN_OK && nn_batcher_next(&tb) == 16) {
        nn_graph_reset(g);
        nn_graph_set_grad_enabled(g, 0);
        nn_tensor *rec = nn_layer_forward(m, g, tb.x);
        float *both = malloc(sizeof(float) * 32 * (size_t)pixels);
        memcpy(both, tb.x->data, sizeof(float) * 16 * (size_t)pixels);
        memcpy(both + 16 * (size_t)pixels, rec->data, sizeof(float) * 16 * (size_t)pixels);
        int w, h;
        uint8_t *grid = image_grid(both, 32, train.rows, train.cols, 16, 0.0f, 1.0f, &w, &h);
        if (grid && image_write_png(out, grid, w, h)) printf("wrote %s (originals above reconstructions)\n", out);
        free(grid);
        free(both);
        nn_batcher_free(&tb);
    }
    nn_batcher_free(&b);
    nn_graph_free(g);
    nn_optim_free(opt);
    nn_params_free(&p);
    nn_layer_free(m);
    nn_dataset_free(&train);
    nn_dataset_free(&test);
    return 0;
}
