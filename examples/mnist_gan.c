/* mnist_gan: a generative adversarial network on MNIST (or Fashion-MNIST).
 *
 * Generator: z (64) -> Dense 256 LeakyReLU -> Dense 512 LeakyReLU -> Dense 784
 * tanh. Discriminator: 784 -> Dense 512 LeakyReLU -> Dense 256 LeakyReLU ->
 * Dense 1 (a logit). Images are scaled to [-1, 1]. Each step trains D on a
 * real and a generated batch (the generated one detached, so no gradient
 * reaches G), then G with the non-saturating loss -log D(G(z)) while D's
 * parameters are frozen: the gradient flows through D into G but D does not
 * move. Both use Adam (lr 2e-4, beta1 0.5). After each epoch the program
 * prints one line and writes a grid of 64 samples from fixed noise:
 *   epoch E/N | loss_d L | loss_g L | D(x) P | D(G(z)) P | S s
 * to OUT/epoch_EE.png. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cli.h"
#include "common/image.h"
#include "nn.h"

#define ZDIM 64

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mnist_gan [options]\n"
            "Train an MLP GAN on MNIST and write sample grids as PNG after every epoch.\n\n"
            "  --data DIR     folder with the IDX files (default: $NN_DATA_DIR, else data/mnist)\n"
            "  --out DIR      where the PNG grids go (default gan_out; created if missing)\n"
            "  --epochs N     passes over the training set (default 20)\n"
            "  --batch N      mini-batch size (default 64)\n"
            "  --lr X         Adam learning rate of both networks (default 0.0002)\n"
            "  --seed N       seed (default 1)\n"
            "  --threads N    threads for the kernels (default: all cores)\n"
            "  --quiet        no progress bar\n"
            "  --help         this text\n\n"
            "Per-epoch output (stdout):\n"
            "  epoch E/N | loss_d L | loss_g L | D(x) P | D(G(z)) P | S s\n");
}

/* Dense layers of the given sizes with LeakyReLU(0.2) between them and an
 * optional tanh at the end. */
static nn_layer *mlp(const int *sizes, int n, int tanh_out, nn_rng *rng)
{
    nn_layer *m = nn_sequential_new();
    for (int i = 0; i + 1 < n; i++) {
        nn_sequential_add(m, nn_dense_new(sizes[i], sizes[i + 1], NN_INIT_XAVIER, rng));
        if (i + 2 < n) nn_sequential_add(m, nn_leaky_relu_new(0.2f));
    }
    if (tanh_out) nn_sequential_add(m, nn_activation_new(NN_ACT_TANH));
    return m;
}

static double mean_sigmoid(const nn_tensor *logits)
{
    double s = 0;
    for (size_t i = 0; i < logits->size; i++) s += 1.0 / (1.0 + exp(-(double)logits->data[i]));
    return s / (double)logits->size;
}

static int diverged(int epoch, int step)
{
    fprintf(stderr, "\nerror: a loss became NaN or infinite at epoch %d, step %d; stopping "
                    "(try a lower --lr)\n", epoch, step);
    return 3;
}

int main(int argc, char **argv)
{
    const char *data_flag = NULL, *out_dir = "gan_out";
    int epochs = 20, batch = 64, threads = 0, quiet = 0;
    float lr = 2e-4f;
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
            strcmp(a, "--lr") && strcmp(a, "--seed") && strcmp(a, "--threads")) {
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!(v = cli_value(argc, argv, &i))) return 2;
        int ok = 1;
        if (!strcmp(a, "--data")) data_flag = v;
        else if (!strcmp(a, "--out")) out_dir = v;
        else if (!strcmp(a, "--epochs")) ok = cli_int(a, v, 1, 100000, &epochs);
        else if (!strcmp(a, "--batch")) ok = cli_int(a, v, 1, 60000, &batch);
        else if (!strcmp(a, "--threads")) ok = cli_int(a, v, 1, 1024, &threads);
        else if (!strcmp(a, "--lr")) ok = cli_float(a, v, 0.0, 10.0, &lr);
        else ok = cli_u64(a, v, &seed);
        if (!ok) return 2;
    }
    if (threads) nn_set_threads(threads);
    const char *dir = cli_data_dir(data_flag, "data/mnist");
    nn_dataset train, test;
    if (!cli_load_mnist(dir, &train, &test)) return 1;
    nn_dataset_free(&test);
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "error: cannot create %s: %s\n", out_dir, strerror(errno));
        return 1;
    }
    int pixels = train.rows * train.cols;

    nn_rng rng;
    nn_rng_seed(&rng, seed);
    nn_layer *gen = mlp((int[]){ZDIM, 256, 512, pixels}, 4, 1, &rng);
    nn_layer *dis = mlp((int[]){pixels, 512, 256, 1}, 4, 0, &rng);
    nn_params gp, dp;
    nn_params_init(&gp);
    nn_params_init(&dp);
    nn_layer_params(gen, &gp);
    nn_layer_params(dis, &dp);
    nn_adam_opts ao = nn_adam_defaults(lr);
    ao.beta1 = 0.5f;
    nn_optim *gopt = nn_optim_adam_new(&gp, ao), *dopt = nn_optim_adam_new(&dp, ao);
    nn_graph *g = nn_graph_new();
    nn_batcher b;
    nn_error err;
    if (!gopt || !dopt || !g || nn_batcher_init(&b, &train, batch, NN_LAYOUT_FLAT, 1, seed, &err)) {
        fprintf(stderr, "error: setup failed (out of memory?)\n");
        return 1;
    }
    nn_batcher_normalize(&b, 0.5f, 0.5f); /* pixels to [-1, 1], like tanh */
    nn_tensor *z = nn_tensor_new2(batch, ZDIM), *fixed_z = nn_tensor_new2(64, ZDIM);
    nn_tensor *ones = nn_tensor_new2(batch, 1), *zeros = nn_tensor_new2(batch, 1);
    nn_tensor_normal(fixed_z, &rng, 0, 1);
    printf("mnist_gan: %d images from %s; generator %zu, discriminator %zu parameters; "
           "Adam lr %g beta1 0.5, batch %d, %d epochs; grids in %s/\n",
           train.count, dir, nn_params_numel(&gp), nn_params_numel(&dp), (double)lr, batch, epochs,
           out_dir);
    fflush(stdout);

    for (int epoch = 1; epoch <= epochs; epoch++) {
        double t0 = cli_now(), sum_d = 0, sum_g = 0, sum_real = 0, sum_fake = 0;
        int n, steps = 0;
        char label[32];
        snprintf(label, sizeof label, "epoch %d/%d", epoch, epochs);
        progress bar;
        progress_start(&bar, label, nn_batcher_num_batches(&b), "img", quiet);
        nn_batcher_start_epoch(&b);
        while ((n = nn_batcher_next(&b)) > 0) {
            int shape[2] = {n, ZDIM}, shape1[2] = {n, 1};
            nn_tensor_reshape(z, 2, shape, NULL);
            nn_tensor_reshape(ones, 2, shape1, NULL);
            nn_tensor_reshape(zeros, 2, shape1, NULL);
            nn_tensor_fill(ones, 1.0f);
            nn_tensor_zero(zeros);
            /* discriminator: real -> 1, generated (detached) -> 0 */
            nn_tensor_normal(z, &rng, 0, 1);
            nn_graph_reset(g);
            nn_optim_zero_grad(dopt);
            nn_tensor *real = nn_layer_forward(dis, g, b.x);
            nn_tensor *fake = nn_layer_forward(dis, g, nn_detach(g, nn_layer_forward(gen, g, z)));
            nn_tensor *loss_d = nn_add(g, nn_bce_with_logits(g, real, ones),
                                       nn_bce_with_logits(g, fake, zeros));
            if (nn_backward(g, loss_d, NULL) != NN_OK) return diverged(epoch, steps + 1);
            nn_optim_step(dopt);
            /* read what we report now: the next nn_graph_reset reuses this memory */
            sum_d += loss_d->data[0];
            sum_real += mean_sigmoid(real);
            sum_fake += mean_sigmoid(fake);
            /* generator: make D say 1, through a frozen D */
            nn_tensor_normal(z, &rng, 0, 1);
            nn_graph_reset(g);
            nn_optim_zero_grad(gopt);
            nn_params_freeze(&dp, 1);
            nn_tensor *loss_g =
                nn_bce_with_logits(g, nn_layer_forward(dis, g, nn_layer_forward(gen, g, z)), ones);
            nn_status st = nn_backward(g, loss_g, NULL);
            nn_params_freeze(&dp, 0);
            if (st != NN_OK) return diverged(epoch, steps + 1);
            nn_optim_step(gopt);
            sum_g += loss_g->data[0];
            steps++;
            progress_update(&bar, steps, sum_d / steps, -1, (long)steps * n);
        }
        progress_end(&bar);
        /* samples from fixed noise, so the grids show progress */
        nn_graph_reset(g);
        nn_graph_set_grad_enabled(g, 0);
        nn_tensor *samples = nn_layer_forward(gen, g, fixed_z);
        nn_graph_set_grad_enabled(g, 1);
        int w, h;
        uint8_t *grid = image_grid(samples->data, 64, train.rows, train.cols, 8, -1.0f, 1.0f, &w, &h);
        char path[4096];
        snprintf(path, sizeof path, "%s/epoch_%02d.png", out_dir, epoch);
        int ok = grid && image_write_png(path, grid, w, h);
        free(grid);
        printf("epoch %d/%d | loss_d %.4f | loss_g %.4f | D(x) %.3f | D(G(z)) %.3f | %.1f s\n", epoch,
               epochs, sum_d / steps, sum_g / steps, sum_real / steps, sum_fake / steps,
               cli_now() - t0);
        fflush(stdout);
        if (!ok) return 1;
    }
    nn_tensor_free(z);
    nn_tensor_free(fixed_z);
    nn_tensor_free(ones);
    nn_tensor_free(zeros);
    nn_batcher_free(&b);
    nn_graph_free(g);
    nn_optim_free(gopt);
    nn_optim_free(dopt);
    nn_params_free(&gp);
    nn_params_free(&dp);
    nn_layer_free(gen);
    nn_layer_free(dis);
    nn_dataset_free(&train);
    return 0;
}
