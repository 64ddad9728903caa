/* mnist_predict: evaluate a model saved by mnist_train --save on the test
 * set: accuracy, a 10x10 confusion matrix, and a few misclassified images
 * drawn as text with their true and predicted labels. With --int8, the
 * model quantized to int8 (nn_quantize, calibrated on training images) is
 * evaluated one image at a time beside the float model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/models.h"
#include "nn.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mnist_predict --model FILE [options]\n"
            "Evaluate a checkpoint written by mnist_train --save on the test images.\n\n"
            "  --model FILE     the checkpoint (safetensors)\n"
            "  --arch cnn|mlp   architecture, for files without one (weights only, e.g. from PyTorch)\n"
            "  --data DIR       folder with the IDX files (default: $NN_DATA_DIR, else data/mnist)\n"
            "  --show N         misclassified images to draw (default 4)\n"
            "  --int8           also quantize the model to int8 and evaluate that (the confusion\n"
            "                   matrix and images are then the int8 model's)\n"
            "  --calibrate N    training images that calibrate the int8 activation scales\n"
            "                   (default 500)\n"
            "  --help           this text\n");
}

/* One image as text, two pixel rows per line, darker characters for ink. */
static void draw(const uint8_t *img, int rows, int cols)
{
    static const char ramp[] = " .:-=+*#%@";
    for (int r = 0; r + 1 < rows; r += 2) {
        printf("    ");
        for (int c = 0; c < cols; c++) {
            int v = (img[r * cols + c] + img[(r + 1) * cols + c]) / 2;
            putchar(ramp[v * 9 / 255]);
        }
        putchar('\n');
    }
}

/* The model quantized to int8, calibrated on the first `count` training
 * images normalized as the test images are; NULL (reported) on failure. */
static nn_qmodel *quantize(nn_layer *model, const char *dir, int ndim, const int *shape, int count)
{
    nn_dataset train;
    nn_error err;
    if (nn_mnist_load(dir, 1, &train, &err)) {
        fprintf(stderr, "error: calibration needs the training images: %s\n", err.msg);
        return NULL;
    }
    if (count > train.count) count = train.count;
    size_t size = (size_t)train.rows * train.cols;
    float *x = malloc(sizeof(float) * size * (size_t)count);
    nn_qmodel *q = NULL;
    if (!x) {
        fprintf(stderr, "error: out of memory\n");
    } else {
        for (size_t i = 0; i < size * (size_t)count; i++)
            x[i] = (train.images[i] / 255.0f - NN_MNIST_MEAN) / NN_MNIST_STD;
        q = nn_quantize(model, ndim, shape, x, count, &err);
        if (!q) fprintf(stderr, "error: %s\n", err.msg);
    }
    free(x);
    nn_dataset_free(&train);
    return q;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *arch = NULL, *data_flag = NULL;
    int show = 4, int8 = 0, calibrate = 500;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--int8")) {
            int8 = 1;
            continue;
        }
        if (strcmp(a, "--model") && strcmp(a, "--arch") && strcmp(a, "--data") && strcmp(a, "--show") &&
            strcmp(a, "--calibrate")) {
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!(v = cli_value(argc, argv, &i))) return 2;
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--arch")) arch = v;
        else if (!strcmp(a, "--data")) data_flag = v;
        else if (!strcmp(a, "--calibrate")) {
            if (!cli_int(a, v, 1, 60000, &calibrate)) return 2;
        } else if (!cli_int(a, v, 0, 10000, &show)) return 2;
    }
    if (!model_path) {
        fprintf(stderr, "error: --model FILE is required (see --help)\n");
        return 2;
    }

    nn_safetensors st;
    nn_error err;
    if (nn_safetensors_read(model_path, &st, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    /* The architecture: --arch, else the file's own description, else the
     * older files' "model" name. */
    int self_described = !arch && nn_safetensors_meta(&st, NN_MODEL_META_LAYERS);
    if (!arch && !self_described) arch = nn_safetensors_meta(&st, "model");
    if (!arch && !self_described) {
        fprintf(stderr, "error: %s does not say which model it holds; pass --arch cnn|mlp\n", model_path);
        return 1;
    }
    const char *dir = cli_data_dir(data_flag, "data/mnist");
    nn_dataset test;
    if (nn_mnist_load(dir, 0, &test, &err)) {
        fprintf(stderr, "error: %s\n  (pass --data DIR or set NN_DATA_DIR)\n", err.msg);
        return 1;
    }
    nn_layout layout = NN_LAYOUT_FLAT;
    nn_layer *model = NULL;
    if (self_described) {
        if (nn_model_from_safetensors(&st, &model, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        arch = "from the file";
        if (!strcmp(nn_layer_kind(nn_sequential_get(model, 0)), "conv2d")) layout = NN_LAYOUT_NCHW;
    } else {
        model = model_build(arch, test.rows, test.cols, 0, &layout);
        if (!model) {
            fprintf(stderr, "error: unknown architecture '%s'\n", arch);
            return 1;
        }
        nn_params params;
        nn_params_init(&params);
        nn_layer_params(model, &params);
        if (nn_safetensors_load_params(&st, &params, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        nn_params_free(&params);
    }
    nn_safetensors_free(&st);
    nn_layer_set_training(model, 0);

    nn_qmodel *q = NULL;
    int example[3] = {1, test.rows, test.cols}, flat = test.rows * test.cols;
    if (int8) {
        q = quantize(model, dir, layout == NN_LAYOUT_NCHW ? 3 : 1,
                     layout == NN_LAYOUT_NCHW ? example : &flat, calibrate);
        if (!q) return 1;
    }

    nn_graph *g = nn_graph_new();
    nn_graph_set_grad_enabled(g, 0);
    nn_batcher b;
    if (!g || nn_batcher_init(&b, &test, 250, layout, 0, 0, &err)) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    nn_batcher_normalize(&b, NN_MNIST_MEAN, NN_MNIST_STD);
    int *pred = malloc(sizeof(int) * (size_t)test.count);
    long confusion[10][10] = {{0}};
    int n, done = 0, correct = 0, float_correct = 0;
    while ((n = nn_batcher_next(&b)) > 0) {
        nn_graph_reset(g);
        nn_tensor *logits = nn_layer_forward(model, g, b.x);
        for (int i = 0; i < n; i++) {
            int p = argmax(logits->data + (size_t)i * 10, 10);
            float_correct += p == b.labels[i];
            if (q) p = nn_qmodel_class(q, b.x->data + (size_t)i * flat, NULL);
            pred[done + i] = p;
            confusion[b.labels[i]][p]++;
            correct += p == b.labels[i];
        }
        done += n;
    }
    printf("%s (%s) on %d test images from %s\n", model_path, arch, test.count, dir);
    if (q)
        printf("int8 test_acc %.2f%% (%d errors; %d layers in int8, calibrated on %d training images); "
               "float test_acc %.2f%%\n\n",
               100.0 * correct / test.count, test.count - correct, nn_qmodel_quantized_layers(q), calibrate,
               100.0 * float_correct / test.count);
    else
        printf("test_acc %.2f%% (%d errors)\n\n", 100.0 * correct / test.count, test.count - correct);
    printf("confusion matrix (rows: true label, columns: predicted)\n      ");
    for (int p = 0; p < 10; p++) printf("%6d", p);
    printf("\n");
    for (int t = 0; t < 10; t++) {
        printf("  %2d |", t);
        for (int p = 0; p < 10; p++) printf("%6ld", confusion[t][p]);
        printf("\n");
    }
    int shown = 0;
    for (int i = 0; i < test.count && shown < show; i++) {
        if (pred[i] == test.labels[i]) continue;
        printf("\ntest image %d: true %d, predicted %d\n", i, test.labels[i], pred[i]);
        draw(test.images + (size_t)i * test.rows * test.cols, test.rows, test.cols);
        shown++;
    }
    free(pred);
    nn_qmodel_free(q);
    nn_batcher_free(&b);
    nn_graph_free(g);
    nn_layer_free(model);
    nn_dataset_free(&test);
    return 0;
}
