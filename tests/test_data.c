/* Compression, IDX and MNIST loading, batching - good files and bad ones.
 * Fixtures: the .gz files in tests/fixtures (made by make_fixtures.py) and IDX images
 * built here in memory. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../src/kernels/kernels.h"
#include "nn.h"
#include "test.h"

#ifndef NN_TEST_SOURCE_DIR
#define NN_TEST_SOURCE_DIR "."
#endif
#define FIXTURES NN_TEST_SOURCE_DIR "/tests/fixtures"

static size_t fixture_text(char *out, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < 200; i++) {
        int w = snprintf(out ? out + n : NULL, out ? cap - n : 0,
                         "line %d: the quick brown fox jumps over %d lazy dogs\n", i, i * 7 % 13);
        n += (size_t)w;
    }
    return n;
}

static uint8_t *read_fixture(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", FIXTURES, name);
    uint8_t *buf = NULL;
    nn_error err;
    if (nn_read_file(path, 1 << 20, &buf, len, &err) != NN_OK) {
        fprintf(stderr, "    %s\n", err.msg);
        return NULL;
    }
    return buf;
}

static int write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(buf, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static char *tmp_path(const char *name)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    return path;
}

/* An IDX byte image: 00 00 08 ndim, big-endian dims, then data. */
static size_t make_idx(uint8_t *out, int ndim, const uint32_t *dims, const uint8_t *data,
                       size_t data_len)
{
    size_t n = 0;
    out[n++] = 0;
    out[n++] = 0;
    out[n++] = 8;
    out[n++] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++) {
        out[n++] = (uint8_t)(dims[i] >> 24);
        out[n++] = (uint8_t)(dims[i] >> 16);
        out[n++] = (uint8_t)(dims[i] >> 8);
        out[n++] = (uint8_t)dims[i];
    }
    memcpy(out + n, data, data_len);
    return n + data_len;
}

/* ---- gzip / inflate ---- */

static void test_crc32_known_value(void)
{
    CHECK(nn_crc32(0, "123456789", 9) == 0xCBF43926u);
    CHECK(nn_crc32(nn_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u);
}

static void check_gunzip_fixture(const char *name, size_t expect_len)
{
    char want[16384];
    size_t full = fixture_text(want, sizeof want);
    if (!expect_len) expect_len = full;
    size_t len;
    uint8_t *gz = read_fixture(name, &len);
    CHECK(gz);
    uint8_t *out;
    size_t out_len;
    nn_error err;
    nn_status st = nn_gunzip(gz, len, 1 << 20, &out, &out_len, name, &err);
    free(gz);
    CHECK_MSG(st == NN_OK, "%s: %s", name, err.msg);
    CHECK_MSG(out_len == expect_len && memcmp(out, want, out_len) == 0, "%s: wrong output", name);
    free(out);
}

static void test_gunzip_dynamic_huffman(void) { check_gunzip_fixture("text-dynamic.gz", 0); }
static void test_gunzip_fixed_huffman(void) { check_gunzip_fixture("text-fixed.gz", 0); }
static void test_gunzip_stored_blocks(void) { check_gunzip_fixture("text-stored.gz", 600); }
static void test_gunzip_two_members(void) { check_gunzip_fixture("text-two-members.gz", 0); }
static void test_gunzip_header_fields(void) { check_gunzip_fixture("text-header-fields.gz", 0); }

static void test_gunzip_every_truncation_fails_cleanly(void)
{
    const char *names[] = {"text-dynamic.gz", "text-fixed.gz", "text-stored.gz",
                           "text-two-members.gz"};
    for (int f = 0; f < 4; f++) {
        size_t len;
        uint8_t *gz = read_fixture(names[f], &len);
        CHECK(gz);
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any overread */
            memcpy(copy, gz, cut);
            uint8_t *out = NULL;
            size_t out_len = 0;
            nn_error err;
            nn_status st = nn_gunzip(copy, cut, 1 << 20, &out, &out_len, "cut.gz", &err);
            free(copy);
            free(out);
            /* A cut exactly between the two members leaves a valid file
             * holding the first half of the text. */
            if (f == 3 && st == NN_OK && out_len == fixture_text(NULL, 0) / 2) continue;
            CHECK_MSG(st == NN_ERR_FORMAT && strstr(err.msg, "cut.gz"),
                      "%s cut at %zu: status %d", names[f], cut, st);
        }
        free(gz);
    }
}

static void test_gunzip_corrupted_bytes_never_pass_silently(void)
{
    char want[16384];
    size_t want_len = fixture_text(want, sizeof want);
    size_t len;
    uint8_t *gz = read_fixture("text-dynamic.gz", &len);
    CHECK(gz);
    int errors = 0;
    for (size_t i = 10; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            gz[i] ^= (uint8_t)(1u << bit);
            uint8_t *out = NULL;
            size_t out_len = 0;
            nn_status st = nn_gunzip(gz, len, 1 << 20, &out, &out_len, "flip.gz", NULL);
            gz[i] ^= (uint8_t)(1u << bit);
            /* Success is only acceptable if the flip hit padding bits. */
            CHECK_MSG(st != NN_OK || (out_len == want_len && memcmp(out, want, want_len) == 0),
                      "flip at byte %zu bit %d decoded to wrong data without error", i, bit);
            errors += st != NN_OK;
            free(out);
        }
    }
    CHECK(errors > (int)(len - 10) * 2);
    free(gz);
}

static nn_status gunzip_patched(const char *name, size_t offset_from_end, uint32_t value,
                                size_t max_out, nn_error *err)
{
    size_t len;
    uint8_t *gz = read_fixture(name, &len);
    if (!gz) return NN_ERR_IO;
    uint8_t *p = gz + len - offset_from_end;
    p[0] = (uint8_t)value;
    p[1] = (uint8_t)(value >> 8);
    p[2] = (uint8_t)(value >> 16);
    p[3] = (uint8_t)(value >> 24);
    uint8_t *out = NULL;
    size_t out_len;
    nn_status st = nn_gunzip(gz, len, max_out, &out, &out_len, name, err);
    free(out);
    free(gz);
    return st;
}

static void test_gunzip_bad_crc_and_length(void)
{
    nn_error err;
    CHECK(gunzip_patched("text-dynamic.gz", 8, 0x12345678u, 1 << 20, &err) == NN_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "CRC") && strstr(err.msg, "text-dynamic.gz"), "%s", err.msg);
    char want[16384];
    uint32_t n = (uint32_t)fixture_text(want, sizeof want);
    CHECK(gunzip_patched("text-dynamic.gz", 4, n + 5, 1 << 20, &err) == NN_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "length mismatch"), "%s", err.msg);
}

static void test_gunzip_bomb_is_refused(void)
{
    nn_error err;
    /* 256 KiB of zeros whose trailer claims 1000 bytes: output must stop there. */
    CHECK(gunzip_patched("zeros-256k.gz", 4, 1000, 1 << 20, &err) == NN_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "more than the 1000 bytes") && strstr(err.msg, "bomb"), "%s",
              err.msg);
    /* A trailer claiming more than DEFLATE can expand to is refused up front. */
    CHECK(gunzip_patched("zeros-256k.gz", 4, 0xF0000000u, SIZE_MAX, &err) == NN_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "impossible"), "%s", err.msg);
    /* And the caller's own limit holds. */
    CHECK(gunzip_patched("zeros-256k.gz", 4, 256 * 1024, 4096, &err) == NN_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "more than the 4096 allowed"), "%s", err.msg);
}

static void test_gunzip_bad_headers(void)
{
    uint8_t buf[32] = {0x1f, 0x8b, 8, 0};
    nn_error err;
    uint8_t *out;
    size_t out_len;
    CHECK(nn_gunzip(buf, 5, 100, &out, &out_len, "short.gz", &err) == NN_ERR_FORMAT);
    CHECK(strstr(err.msg, "short.gz") && strstr(err.msg, "too short"));
    buf[0] = 'P';
    CHECK(nn_gunzip(buf, sizeof buf, 100, &out, &out_len, "x.gz", &err) == NN_ERR_FORMAT);
    CHECK(strstr(err.msg, "magic"));
    buf[0] = 0x1f;
    buf[2] = 7;
    CHECK(nn_gunzip(buf, sizeof buf, 100, &out, &out_len, "x.gz", &err) == NN_ERR_FORMAT);
    CHECK(strstr(err.msg, "compression method"));
    buf[2] = 8;
    buf[3] = 0x80;
    CHECK(nn_gunzip(buf, sizeof buf, 100, &out, &out_len, "x.gz", &err) == NN_ERR_FORMAT);
    CHECK(strstr(err.msg, "reserved"));
}

static void test_inflate_respects_output_capacity(void)
{
    size_t len;
    uint8_t *gz = read_fixture("text-dynamic.gz", &len);
    CHECK(gz);
    uint8_t out[100];
    size_t used, out_len;
    nn_error err;
    CHECK(nn_inflate(gz + 10, len - 18, out, sizeof out, &used, &out_len, "raw", &err) ==
          NN_ERR_FORMAT);
    CHECK(strstr(err.msg, "raw") && strstr(err.msg, "larger than allowed"));
    uint8_t bad[2] = {0x07, 0x00}; /* final block with type 3 */
    CHECK(nn_inflate(bad, 2, out, sizeof out, &used, &out_len, "raw", &err) == NN_ERR_FORMAT);
    CHECK(strstr(err.msg, "block type"));
    free(gz);
}

/* ---- IDX ---- */

static void test_idx_parse_good(void)
{
    uint8_t buf[64], data[6] = {1, 2, 3, 4, 5, 6};
    size_t n = make_idx(buf, 3, (uint32_t[]){1, 2, 3}, data, 6);
    nn_idx idx;
    nn_error err;
    CHECK(nn_idx_parse(buf, n, "good", &idx, &err) == NN_OK);
    CHECK(idx.ndim == 3 && idx.dims[0] == 1 && idx.dims[2] == 3 && idx.size == 6);
    CHECK(idx.data[5] == 6);
    nn_idx_free(&idx);
}

static void test_idx_load_gzip_fixture(void)
{
    nn_idx idx;
    nn_error err;
    CHECK_MSG(nn_idx_load(FIXTURES "/tiny-images-idx3-ubyte.gz", &idx, &err) == NN_OK, "%s",
              err.msg);
    CHECK(idx.ndim == 3 && idx.dims[0] == 12 && idx.dims[1] == 6 && idx.dims[2] == 5);
    CHECK(idx.data[1 * 30 + 2 * 5 + 3] == (37 * 1 + 11 * 2 + 5 * 3) % 256);
    nn_idx_free(&idx);
}

/* Each bad IDX image must fail with its own message naming the file. */
static void test_idx_bad_inputs(void)
{
    uint8_t data[8] = {0};
    struct {
        uint8_t buf[64];
        size_t len;
        const char *expect;
    } cases[10];
    int n = 0;
    cases[n].len = 0, cases[n++].expect = "empty file";
    cases[n].len = make_idx(cases[n].buf, 1, (uint32_t[]){8}, data, 8) - 11;
    cases[n++].expect = "truncated IDX header";
    cases[n].len = make_idx(cases[n].buf, 1, (uint32_t[]){8}, data, 8);
    cases[n].buf[1] = 8, cases[n++].expect = "wrong magic";
    cases[n].len = make_idx(cases[n].buf, 1, (uint32_t[]){8}, data, 8);
    cases[n].buf[2] = 0x0D, cases[n++].expect = "unsupported IDX element type 0x0d";
    cases[n].len = make_idx(cases[n].buf, 0, NULL, data, 8), cases[n++].expect = "dimension count 0";
    cases[n].len = make_idx(cases[n].buf, 5, (uint32_t[]){1, 1, 1, 1, 1}, data, 1);
    cases[n++].expect = "dimension count 5";
    cases[n].len = make_idx(cases[n].buf, 2, (uint32_t[]){4, 0}, data, 0);
    cases[n++].expect = "dimension 1 is 0";
    cases[n].len = make_idx(cases[n].buf, 4, (uint32_t[]){65536, 65536, 65536, 65536}, data, 8);
    cases[n++].expect = "overflows";
    cases[n].len = make_idx(cases[n].buf, 2, (uint32_t[]){3, 3}, data, 8);
    cases[n++].expect = "promises 9 data bytes, file has 8";
    cases[n].len = make_idx(cases[n].buf, 1, (uint32_t[]){6}, data, 8);
    cases[n++].expect = "2 unexpected bytes";
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "case%d.idx", i);
        /* through a real file, exactly sized, so reads past the end are caught */
        CHECK(write_file(tmp_path(name), cases[i].buf, cases[i].len));
        nn_idx idx;
        nn_error err;
        char path[1024];
        snprintf(path, sizeof path, "%s", tmp_path(name));
        CHECK_MSG(nn_idx_load(path, &idx, &err) == NN_ERR_FORMAT, "case %d (%s) accepted", i,
                  cases[i].expect);
        CHECK_MSG(strstr(err.msg, cases[i].expect) && strstr(err.msg, name),
                  "case %d: message '%s' lacks '%s'", i, err.msg, cases[i].expect);
    }
}

static void test_file_errors(void)
{
    nn_idx idx;
    nn_error err;
    CHECK(nn_idx_load("/nonexistent/file.idx", &idx, &err) == NN_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent/file.idx") && strstr(err.msg, "cannot open"));
    CHECK(nn_idx_load(test_tmpdir(), &idx, &err) == NN_ERR_IO);
    CHECK(strstr(err.msg, "is a directory"));
    uint8_t *buf;
    size_t len;
    CHECK(nn_read_file(FIXTURES "/text-dynamic.gz", 100, &buf, &len, &err) == NN_ERR_IO);
    CHECK(strstr(err.msg, "larger than 100 bytes"));
}

/* ---- data sets ---- */

static void write_tiny_mnist(const char *dir, int n_images, int n_labels, uint8_t bad_label)
{
    uint8_t img[4096], lbl[256], data[2048];
    for (int i = 0; i < n_images * 4; i++) data[i] = (uint8_t)(i * 13);
    size_t len = make_idx(img, 3, (uint32_t[]){(uint32_t)n_images, 2, 2}, data,
                          (size_t)n_images * 4);
    char path[1024];
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir);
    write_file(path, img, len);
    for (int i = 0; i < n_labels; i++) data[i] = (uint8_t)(i % 10);
    if (bad_label) data[n_labels - 1] = bad_label;
    len = make_idx(lbl, 1, (uint32_t[]){(uint32_t)n_labels}, data, (size_t)n_labels);
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", dir);
    write_file(path, lbl, len);
}

static void test_mnist_load_raw_and_gzip(void)
{
    nn_dataset d;
    nn_error err;
    write_tiny_mnist(test_tmpdir(), 7, 7, 0);
    CHECK_MSG(nn_mnist_load(test_tmpdir(), 0, &d, &err) == NN_OK, "%s", err.msg);
    CHECK(d.count == 7 && d.rows == 2 && d.cols == 2 && d.labels[3] == 3);
    CHECK(d.images[5] == (uint8_t)(5 * 13));
    nn_dataset_free(&d);
    /* gzip files under the canonical names (the fixtures) */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cp '%s/tiny-images-idx3-ubyte.gz' '%s/train-images-idx3-ubyte.gz' && "
             "cp '%s/tiny-labels-idx1-ubyte.gz' '%s/train-labels-idx1-ubyte.gz'",
             FIXTURES, test_tmpdir(), FIXTURES, test_tmpdir());
    CHECK(system(cmd) == 0);
    CHECK_MSG(nn_mnist_load(test_tmpdir(), 1, &d, &err) == NN_OK, "%s", err.msg);
    CHECK(d.count == 12 && d.rows == 6 && d.cols == 5 && d.labels[11] == 1);
    nn_dataset_free(&d);
}

static void test_mnist_load_errors(void)
{
    nn_dataset d;
    nn_error err;
    CHECK(nn_mnist_load("/nonexistent", 1, &d, &err) == NN_ERR_IO);
    CHECK_MSG(strstr(err.msg, "/nonexistent/train-images-idx3-ubyte"), "%s", err.msg);
    write_tiny_mnist(test_tmpdir(), 7, 6, 0);
    CHECK(nn_mnist_load(test_tmpdir(), 0, &d, &err) == NN_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "7 images") && strstr(err.msg, "6 labels") &&
                  strstr(err.msg, "t10k-labels-idx1-ubyte"),
              "%s", err.msg);
    write_tiny_mnist(test_tmpdir(), 7, 7, 10);
    CHECK(nn_mnist_load(test_tmpdir(), 0, &d, &err) == NN_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "label 10 of example 6"), "%s", err.msg);
    /* labels given where images belong: wrong dimension count */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp '%s/t10k-labels-idx1-ubyte' '%s/t10k-images-idx3-ubyte'",
             test_tmpdir(), test_tmpdir());
    CHECK(system(cmd) == 0);
    CHECK(nn_mnist_load(test_tmpdir(), 0, &d, &err) == NN_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "3-D"), "%s", err.msg);
}

static void test_batcher_covers_each_example_once(void)
{
    nn_dataset d;
    nn_error err;
    write_tiny_mnist(test_tmpdir(), 12, 12, 0);
    CHECK(nn_mnist_load(test_tmpdir(), 0, &d, &err) == NN_OK);
    nn_batcher b;
    CHECK(nn_batcher_init(&b, &d, 5, NN_LAYOUT_FLAT, 1, 42, &err) == NN_OK);
    CHECK(nn_batcher_num_batches(&b) == 3);
    int first_order[12], k = 0;
    for (int epoch = 0; epoch < 2; epoch++) {
        int seen[12] = {0}, sizes[3], nb = 0, n, same = 0;
        nn_batcher_start_epoch(&b);
        while ((n = nn_batcher_next(&b)) > 0) {
            CHECK(b.x->shape[0] == n && b.x->shape[1] == 4);
            for (int i = 0; i < n; i++) {
                /* find the example by its first pixel: i*4*13 mod 256 is unique */
                int ex = -1;
                for (int e = 0; e < 12; e++)
                    if (fabsf(b.x->data[i * 4] - (float)(uint8_t)(e * 52) / 255.0f) < 1e-6f) ex = e;
                CHECK(ex >= 0 && b.labels[i] == ex % 10);
                seen[ex]++;
                if (epoch == 0) first_order[k++] = ex;
                else same += first_order[(nb * 5) + i] == ex;
            }
            sizes[nb++] = n;
        }
        CHECK(nb == 3 && sizes[0] == 5 && sizes[1] == 5 && sizes[2] == 2);
        for (int e = 0; e < 12; e++) CHECK(seen[e] == 1);
        if (epoch == 1) CHECK(same < 12); /* reshuffled */
    }
    nn_batcher_free(&b);
    /* NCHW layout and determinism from the seed */
    nn_batcher b1, b2;
    CHECK(nn_batcher_init(&b1, &d, 4, NN_LAYOUT_NCHW, 1, 7, &err) == NN_OK);
    CHECK(nn_batcher_init(&b2, &d, 4, NN_LAYOUT_NCHW, 1, 7, &err) == NN_OK);
    CHECK(nn_batcher_next(&b1) == 4 && nn_batcher_next(&b2) == 4);
    CHECK(b1.x->ndim == 4 && b1.x->shape[1] == 1 && b1.x->shape[2] == 2 && b1.x->shape[3] == 2);
    CHECK(memcmp(b1.x->data, b2.x->data, 16 * sizeof(float)) == 0);
    nn_batcher_free(&b1);
    nn_batcher_free(&b2);
    nn_dataset_free(&d);
}

/* A batch's conversion (nn_k_u8_images: threads split the images) equals
 * converting each image by itself, on 1 and 2 threads, with and without
 * translations; a batch big enough to be split. */
static void test_u8_images_match_per_image(void)
{
    enum { COUNT = 70, SIDE = 28, PIX = SIDE * SIDE };
    unsigned char *images = malloc(100 * PIX);
    int index[COUNT], shifts[2 * COUNT];
    for (int i = 0; i < 100 * PIX; i++) images[i] = (unsigned char)(i * 37 + i / 300);
    for (int i = 0; i < COUNT; i++) {
        index[i] = (i * 13) % 100;
        shifts[2 * i] = i % 3 - 1;
        shifts[2 * i + 1] = (i / 3) % 5 - 2;
    }
    float *want = malloc(sizeof(float) * COUNT * PIX), *got = malloc(sizeof(float) * COUNT * PIX);
    int saved = nn_get_threads();
    for (int shifted = 0; shifted <= 1; shifted++) {
        for (int i = 0; i < COUNT; i++) {
            const unsigned char *src = images + (size_t)index[i] * PIX;
            if (shifted)
                nn_k_u8_image_shifted(SIDE, SIDE, shifts[2 * i], shifts[2 * i + 1], src, 0.5f, -1.0f,
                                      want + (size_t)i * PIX);
            else
                nn_k_u8_to_float(PIX, src, 0.5f, -1.0f, want + (size_t)i * PIX);
        }
        for (int threads = 1; threads <= 2; threads++) {
            nn_set_threads(threads);
            memset(got, 0, sizeof(float) * COUNT * PIX);
            nn_k_u8_images(COUNT, SIDE, SIDE, images, index, shifted ? shifts : NULL, 0.5f, -1.0f, got);
            CHECK_MSG(memcmp(want, got, sizeof(float) * COUNT * PIX) == 0, "shifted %d, %d threads", shifted,
                      threads);
        }
    }
    nn_set_threads(saved);
    free(images), free(want), free(got);
}

static void test_batcher_shift_augmentation(void)
{
    nn_dataset d;
    nn_error err;
    write_tiny_mnist(test_tmpdir(), 12, 12, 0);
    CHECK(nn_mnist_load(test_tmpdir(), 0, &d, &err) == NN_OK);
    nn_batcher b;
    CHECK(nn_batcher_init(&b, &d, 12, NN_LAYOUT_FLAT, 0, 3, &err) == NN_OK);
    nn_batcher_augment_shift(&b, 1);
    CHECK(nn_batcher_next(&b) == 12);
    /* every augmented 2x2 image is its original moved by at most one pixel:
     * each output pixel is 0 or an original pixel from within one step */
    int moved = 0;
    for (int i = 0; i < 12; i++) {
        const uint8_t *src = d.images + i * 4;
        const float *x = b.x->data + i * 4;
        for (int p = 0; p < 4; p++) {
            int ok = x[p] == 0.0f;
            for (int q = 0; q < 4; q++) ok |= fabsf(x[p] - src[q] / 255.0f) < 1e-6f;
            CHECK_MSG(ok, "image %d pixel %d = %g", i, p, x[p]);
            moved += fabsf(x[p] - src[p] / 255.0f) > 1e-6f;
        }
    }
    CHECK(moved > 0);
    nn_batcher_free(&b);
    /* the kernel itself: a 3x3 ramp shifted down one, right one */
    unsigned char img[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float out[9];
    nn_k_u8_image_shifted(3, 3, 1, 1, img, 1.0f, 0.0f, out);
    float want[9] = {0, 0, 0, 0, 1, 2, 0, 4, 5};
    CHECK(memcmp(out, want, sizeof want) == 0);
    /* every shift up to past the edges, against the definition (background
     * shift where the source pixel is outside) */
    unsigned char big[5 * 6];
    for (int i = 0; i < 30; i++) big[i] = (unsigned char)(7 * i + 3);
    int wrong = 0;
    for (int sy = -6; sy <= 6; sy++)
        for (int sx = -7; sx <= 7; sx++) {
            float got[30];
            nn_k_u8_image_shifted(5, 6, sy, sx, big, 0.5f, -1.0f, got);
            for (int r = 0; r < 5; r++)
                for (int c = 0; c < 6; c++) {
                    int rr = r - sy, cc = c - sx, in = rr >= 0 && rr < 5 && cc >= 0 && cc < 6;
                    wrong += got[r * 6 + c] != 0.5f * (float)(in ? big[rr * 6 + cc] : 0) - 1.0f;
                }
        }
    CHECK_MSG(wrong == 0, "%d shifted pixels wrong", wrong);
    nn_dataset_free(&d);
}

/* The real MNIST test split, when it is beside the project. */
static void test_real_mnist_test_split(void)
{
    const char *dir = getenv("NN_DATA_DIR");
    char fallback[1024];
    snprintf(fallback, sizeof fallback, "%s/../shared/data/mnist", NN_TEST_SOURCE_DIR);
    if (!dir || !*dir) dir = fallback;
    struct stat st;
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/t10k-labels-idx1-ubyte.gz", dir);
    if (stat(probe, &st) != 0)
        SKIP("MNIST not found (set NN_DATA_DIR or put it in ../shared/data/mnist)");
    nn_dataset d;
    nn_error err;
    CHECK_MSG(nn_mnist_load(dir, 0, &d, &err) == NN_OK, "%s", err.msg);
    CHECK(d.count == 10000 && d.rows == 28 && d.cols == 28);
    int counts[10] = {0};
    for (int i = 0; i < d.count; i++) counts[d.labels[i]]++;
    CHECK(counts[0] == 980 && counts[1] == 1135); /* the canonical test-set class sizes */
    nn_dataset_free(&d);
}

/* Shards (data parallelism), simulated in one process: for each rank
 * count, the ranks' shards of every batch put together are the
 * single-process batch, bit for bit (image batcher with shifts, and the
 * float-data batcher, shuffled or read in place); a batch shorter than
 * the rank count is skipped. */
static void test_batcher_shards_make_up_the_batch(void)
{
    enum { N = 23, BATCH = 6 };
    nn_dataset d = {malloc(N * 16), malloc(N), N, 4, 4};
    float fx[N * 3];
    int fy[N];
    for (int i = 0; i < N; i++) {
        d.labels[i] = (uint8_t)i;
        fy[i] = i;
        for (int p = 0; p < 16; p++) d.images[i * 16 + p] = (uint8_t)(i * 11 + p * 5);
        for (int f = 0; f < 3; f++) fx[i * 3 + f] = (float)(i * 3 + f);
    }
    nn_data fd;
    nn_error err;
    CHECK(nn_data_from_arrays(&fd, N, 1, (int[]){3}, fx, fy, N, NULL, 0, &err) == NN_OK);
    for (int count = 1; count <= 6; count++) {
        nn_batcher whole, part[6];
        nn_batcher_init(&whole, &d, BATCH, NN_LAYOUT_NCHW, 1, 3, &err);
        nn_batcher_augment_shift(&whole, 1);
        for (int r = 0; r < count; r++) {
            nn_batcher_init(&part[r], &d, BATCH, NN_LAYOUT_NCHW, 1, 3, &err);
            nn_batcher_augment_shift(&part[r], 1);
            CHECK(nn_batcher_shard(&part[r], r, count, &err) == NN_OK);
        }
        int n, batches = 0;
        while ((n = nn_batcher_next(&whole)) > 0) {
            if (n < count) continue; /* the shards skip it */
            int at = 0;
            for (int r = 0; r < count; r++) {
                int m = nn_batcher_next(&part[r]);
                CHECK(m >= 1 && part[r].global_n == n);
                CHECK(!memcmp(part[r].x->data, whole.x->data + at * 16, sizeof(float) * (size_t)m * 16));
                CHECK(!memcmp(part[r].labels, whole.labels + at, sizeof(int) * (size_t)m));
                at += m;
            }
            CHECK(at == n);
            batches++;
        }
        for (int r = 0; r < count; r++) {
            CHECK(nn_batcher_next(&part[r]) == 0);
            nn_batcher_free(&part[r]);
        }
        CHECK(batches == (count <= N % BATCH ? 4 : 3));
        nn_batcher_free(&whole);
        for (int shuffle = 0; shuffle < 2; shuffle++) {
            nn_data_batcher fw, fp[6];
            nn_data_batcher_init(&fw, &fd, BATCH, shuffle, 5, &err);
            for (int r = 0; r < count; r++) {
                nn_data_batcher_init(&fp[r], &fd, BATCH, shuffle, 5, &err);
                CHECK(nn_data_batcher_shard(&fp[r], r, count, &err) == NN_OK);
            }
            while ((n = nn_data_batcher_next(&fw)) > 0) {
                if (n < count) continue;
                int at = 0;
                for (int r = 0; r < count; r++) {
                    int m = nn_data_batcher_next(&fp[r]);
                    CHECK(m >= 1 && fp[r].global_n == n);
                    CHECK(!memcmp(fp[r].x->data, fw.x->data + at * 3, sizeof(float) * (size_t)m * 3));
                    CHECK(!memcmp(fp[r].labels, fw.labels + at, sizeof(int) * (size_t)m));
                    at += m;
                }
                CHECK(at == n);
            }
            for (int r = 0; r < count; r++) nn_data_batcher_free(&fp[r]);
            nn_data_batcher_free(&fw);
        }
    }
    nn_batcher b;
    nn_batcher_init(&b, &d, BATCH, NN_LAYOUT_NCHW, 1, 3, &err);
    CHECK(nn_batcher_shard(&b, 2, 2, &err) == NN_ERR_ARG && strstr(err.msg, "rank 2 of 2"));
    CHECK(nn_batcher_shard(&b, 0, BATCH + 1, &err) == NN_ERR_ARG);
    nn_batcher_free(&b);
    free(d.images);
    free(d.labels);
}

const test_case data_tests[] = {
    {"batcher_shards_make_up_the_batch", test_batcher_shards_make_up_the_batch},
    {"crc32_known_value", test_crc32_known_value},
    {"gunzip_dynamic_huffman", test_gunzip_dynamic_huffman},
    {"gunzip_fixed_huffman", test_gunzip_fixed_huffman},
    {"gunzip_stored_blocks", test_gunzip_stored_blocks},
    {"gunzip_two_members", test_gunzip_two_members},
    {"gunzip_header_fields", test_gunzip_header_fields},
    {"gunzip_every_truncation_fails", test_gunzip_every_truncation_fails_cleanly},
    {"gunzip_corrupted_bytes_detected", test_gunzip_corrupted_bytes_never_pass_silently},
    {"gunzip_bad_crc_and_length", test_gunzip_bad_crc_and_length},
    {"gunzip_bomb_refused", test_gunzip_bomb_is_refused},
    {"gunzip_bad_headers", test_gunzip_bad_headers},
    {"inflate_respects_output_capacity", test_inflate_respects_output_capacity},
    {"idx_parse_good", test_idx_parse_good},
    {"idx_load_gzip_fixture", test_idx_load_gzip_fixture},
    {"idx_bad_inputs", test_idx_bad_inputs},
    {"file_errors", test_file_errors},
    {"mnist_load_raw_and_gzip", test_mnist_load_raw_and_gzip},
    {"mnist_load_errors", test_mnist_load_errors},
    {"batcher_covers_each_example_once", test_batcher_covers_each_example_once},
    {"u8_images_match_per_image", test_u8_images_match_per_image},
    {"batcher_shift_augmentation", test_batcher_shift_augmentation},
    {"real_mnist_test_split", test_real_mnist_test_split},
    {NULL, NULL}};
