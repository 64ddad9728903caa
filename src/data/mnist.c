/* MNIST-style data sets: image and label IDX files checked against each
 * other. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn/data.h"

nn_status nn_dataset_from_idx(nn_idx *images, nn_idx *labels, const char *images_name,
                              const char *labels_name, nn_dataset *out, nn_error *err)
{
    memset(out, 0, sizeof *out);
    if (images->ndim != 3)
        return nn_error_set(err, NN_ERR_FORMAT,
                            "%s: images must be a 3-D IDX array (count, rows, cols), got %d-D",
                            images_name, images->ndim);
    if (labels->ndim != 1)
        return nn_error_set(err, NN_ERR_FORMAT, "%s: labels must be a 1-D IDX array, got %d-D",
                            labels_name, labels->ndim);
    if (images->dims[0] != labels->dims[0])
        return nn_error_set(err, NN_ERR_FORMAT, "%s has %d images but %s has %d labels",
                            images_name, images->dims[0], labels_name, labels->dims[0]);
    for (int i = 0; i < labels->dims[0]; i++)
        if (labels->data[i] >= 10)
            return nn_error_set(err, NN_ERR_FORMAT, "%s: label %u of example %d is not in 0-9",
                                labels_name, labels->data[i], i);
    out->images = images->data;
    out->labels = labels->data;
    out->count = images->dims[0];
    out->rows = images->dims[1];
    out->cols = images->dims[2];
    images->data = NULL;
    labels->data = NULL;
    return NN_OK;
}

/* Load dir/base.gz if it exists, else dir/base. */
static nn_status load_either(const char *dir, const char *base, char *used, size_t used_n,
                             nn_idx *out, nn_error *err)
{
    char gz[4096];
    struct stat st;
    snprintf(gz, sizeof gz, "%s/%s.gz", dir, base);
    snprintf(used, used_n, "%s/%s", dir, base);
    if (stat(gz, &st) == 0) {
        snprintf(used, used_n, "%s", gz);
    } else if (stat(used, &st) != 0) {
        return nn_error_set(err, NN_ERR_IO, "%s: no such file (nor %s)", gz, used);
    }
    return nn_idx_load(used, out, err);
}

nn_status nn_mnist_load(const char *dir, int train, nn_dataset *out, nn_error *err)
{
    memset(out, 0, sizeof *out);
    const char *split = train ? "train" : "t10k";
    char img_base[64], lbl_base[64], img_path[4096], lbl_path[4096];
    snprintf(img_base, sizeof img_base, "%s-images-idx3-ubyte", split);
    snprintf(lbl_base, sizeof lbl_base, "%s-labels-idx1-ubyte", split);
    nn_idx images = {0}, labels = {0};
    nn_status st = load_either(dir, img_base, img_path, sizeof img_path, &images, err);
    if (!st) st = load_either(dir, lbl_base, lbl_path, sizeof lbl_path, &labels, err);
    if (!st) st = nn_dataset_from_idx(&images, &labels, img_path, lbl_path, out, err);
    nn_idx_free(&images);
    nn_idx_free(&labels);
    return st;
}

void nn_dataset_truncate(nn_dataset *d, int n)
{
    if (n > 0 && n < d->count) d->count = n;
}

void nn_dataset_free(nn_dataset *d)
{
    if (!d) return;
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof *d);
}
