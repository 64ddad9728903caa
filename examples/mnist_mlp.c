/* mnist_mlp: train a 784-128-10 MLP on MNIST with Adam.
 *
 * After each epoch it prints one summary line on stdout, in this format:
 *   epoch E/N | loss L | train_acc A% | test_acc T% | S s | R img/s
 * where loss and train_acc are averages over the epoch's training batches
 * and test_acc is measured on the 10,000 test images afterwards. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "nn.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mnist_mlp [options]\n"
            "Train a 784-128-10 MLP (ReLU, softmax cross-entropy, Adam) on MNIST.\n\n"
            "  --data DIR     folder with the MNIST IDX files, raw or .gz\n"
            "                 (default: $NN_DATA_DIR, else data/mnist)\n"
            "  --epochs N     passes over the training set (default 5)\n"
            "  --batch N      mini-batch size (default 64)\n"
            "  --lr X         Adam learning rate (default 0.001)\n"
            "  --seed N       seed for initialisation and shuffling (default 1)\n"
            "  --quiet        no progress bar, only the per-epoch lines\n"
            "  --help         this text\n\n"
            "Per-epoch output (stdout):\n"
            "  epoch E/N | loss L | train_acc A%% | test_acc T%% | S s | R img/s\n");
}

int main(int argc, char **argv)
{
    const char *data_flag = NULL;
    int epochs = 5, batch = 64, quiet = 0;
    float lr = 1e-3f;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--data") || !strcmp(a, "--epochs") || !strcmp(a, "--batch") ||
                   !strcmp(a, "--lr") || !strcmp(a, "--seed")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            int ok = 1;
            if (!strcmp(a, "--data")) data_flag = v;
            else if (!strcmp(a, "--epochs")) ok = cli_int(a, v, 1, 100000, &epochs);
            else if (!strcmp(a, "--batch")) ok = cli_int(a, v, 1, 60000, &batch);
            else if (!strcmp(a, "--lr")) ok = cli_float(a, v, 0.0, 1e9, &lr);
            else ok = cli_u64(a, v, &seed);
            if (!ok) return 2;
        } else {
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }

    const char *dir = cli_data_dir(data_flag, "data/mnist");
    nn_dataset train, test;
    if (!cli_load_mnist(dir, &train, &test)) return 1;
    int features = train.rows * train.cols;

    nn_rng rng;
    nn_rng_seed(&rng, seed);
    nn_layer *model = nn_sequential_new();
    nn_sequential_add(model, nn_dense_new(features, 128, NN_INIT_HE, &rng));
    nn_sequential_add(model, nn_activation_new(NN_ACT_RELU));
    nn_sequential_add(model, nn_dense_new(128, 10, NN_INIT_XAVIER, &rng));
    nn_params params;
    nn_params_init(&params);
    nn_layer_params(model, &params);
    nn_optim *opt = nn_optim_adam_new(&params, nn_adam_defaults(lr));
    nn_graph *g = nn_graph_new();
    nn_batcher batches;
    nn_error err;
    if (!opt || !g || nn_batcher_init(&batches, &train, batch, NN_LAYOUT_FLAT, 1, seed, &err)) {
        fprintf(stderr, "error: setting up training failed (out of memory?)\n");
        return 1;
    }
    nn_batcher_normalize(&batches, NN_MNIST_MEAN, NN_MNIST_STD);
    printf("mnist_mlp: %d train / %d test images from %s; %zu parameters; batch %d, Adam lr %g\n",
           train.count, test.count, dir, nn_params_numel(&params), batch, (double)lr);
    fflush(stdout);

    int status = 0;
    for (int epoch = 1; epoch <= epochs && !status; epoch++) {
        double t0 = cli_now(), loss_sum = 0;
        long seen = 0, correct = 0;
        int n, done = 0;
        char label[32];
        snprintf(label, sizeof label, "epoch %d/%d", epoch, epochs);
        progress bar;
        progress_start(&bar, label, nn_batcher_num_batches(&batches), "img", quiet);
        nn_batcher_start_epoch(&batches);
        while ((n = nn_batcher_next(&batches)) > 0) {
            nn_graph_reset(g);
            nn_optim_zero_grad(opt);
            nn_tensor *logits = nn_layer_forward(model, g, batches.x);
            nn_tensor *loss = nn_softmax_cross_entropy(g, logits, batches.labels);
            if (!isfinite(loss->data[0])) {
                fprintf(stderr, "\nerror: loss became %g at epoch %d batch %d; lower --lr\n",
                        (double)loss->data[0], epoch, done + 1);
                status = 3;
                break;
            }
            nn_backward(g, loss, NULL);
            nn_optim_step(opt);
            loss_sum += (double)loss->data[0] * n;
            for (int i = 0; i < n; i++)
                correct += argmax(logits->data + (size_t)i * 10, 10) == batches.labels[i];
            seen += n;
            progress_update(&bar, ++done, loss_sum / seen, (double)correct / seen, seen);
        }
        progress_end(&bar);
        if (status) break;
        double train_s = cli_now() - t0;
        double test_acc = evaluate_accuracy(model, g, &test, NN_LAYOUT_FLAT);
        printf("epoch %d/%d | loss %.4f | train_acc %.2f%% | test_acc %.2f%% | %.1f s | %.0f img/s\n",
               epoch, epochs, loss_sum / seen, 100.0 * correct / seen, 100.0 * test_acc, train_s,
               seen / train_s);
        fflush(stdout);
    }

    nn_batcher_free(&batches);
    nn_graph_free(g);
    nn_optim_free(opt);
    nn_params_free(&params);
    nn_layer_free(model);
    nn_dataset_free(&train);
    nn_dataset_free(&test);
    return status;
}
