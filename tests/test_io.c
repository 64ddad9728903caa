/* safetensors checkpoints: round trips, files as Python writes them, hostile
 * files, atomic writes under SIGKILL, optimizer state for resuming. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nn.h"
#include "test.h"

static char *path_in_tmp(const char *name)
{
    static char p[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", test_tmpdir(), name);
    return p[k];
}

static int write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(buf, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* A file from a header string and n data bytes (value i at byte i). */
static int write_st(const char *path, const char *header, size_t data_len)
{
    size_t hl = strlen(header);
    uint8_t *buf = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) buf[8 + hl + i] = (uint8_t)i;
    int ok = write_bytes(path, buf, 8 + hl + data_len);
    free(buf);
    return ok;
}

typedef struct {
    nn_tensor *w, *b;
    nn_params p;
} two_params;

static void two_params_init(two_params *t, float fill)
{
    t->w = nn_tensor_new2(2, 3);
    t->b = nn_tensor_new1(3);
    for (size_t i = 0; i < 6; i++) t->w->data[i] = fill + (float)i;
    for (size_t i = 0; i < 3; i++) t->b->data[i] = -fill - (float)i;
    nn_params_init(&t->p);
    nn_params_add(&t->p, "0.weight", t->w);
    nn_params_add(&t->p, "0.bias", t->b);
}

static void two_params_free(two_params *t)
{
    nn_params_free(&t->p);
    nn_tensor_free(t->w);
    nn_tensor_free(t->b);
}

static void test_safetensors_round_trip_with_metadata(void)
{
    two_params a, b;
    two_params_init(&a, 1.5f);
    two_params_init(&b, 0.0f);
    const char *path = path_in_tmp("model.safetensors");
    const char *meta[] = {"epoch", "3", "note", "quote \" and \\ and \n"};
    nn_error err;
    CHECK_MSG(nn_safetensors_write(path, &a.p, meta, 2, &err) == NN_OK, "%s", err.msg);
    nn_safetensors st;
    CHECK_MSG(nn_safetensors_read(path, &st, &err) == NN_OK, "%s", err.msg);
    CHECK(st.count == 2 && strcmp(nn_safetensors_meta(&st, "epoch"), "3") == 0);
    CHECK(strcmp(nn_safetensors_meta(&st, "note"), "quote \" and \\ and \n") == 0);
    const nn_st_tensor *w = nn_safetensors_find(&st, "0.weight");
    CHECK(w && w->ndim == 2 && w->shape[0] == 2 && w->shape[1] == 3 && !strcmp(w->dtype, "F32"));
    CHECK((size_t)(st.data - st.file) % 8 == 0); /* data section 8-byte aligned */
    CHECK(nn_safetensors_load_params(&st, &b.p, &err) == NN_OK);
    CHECK(memcmp(a.w->data, b.w->data, 6 * sizeof(float)) == 0);
    CHECK(memcmp(a.b->data, b.b->data, 3 * sizeof(float)) == 0);
    nn_safetensors_free(&st);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0044)); /* readable like any new file */
    two_params_free(&a);
    two_params_free(&b);
}

/* A header the way Python's safetensors writes it: metadata first, keys in
 * another order, padding spaces, a tensor of another dtype beside ours. */
static void test_safetensors_reads_python_style_file(void)
{
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"other\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[36,40]},"
                      "\"0.bias\":{\"shape\":[3],\"data_offsets\":[24,36],\"dtype\":\"F32\"},"
                      "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}   ";
    const char *path = path_in_tmp("py.safetensors");
    CHECK(write_st(path, hdr, 40));
    two_params t;
    two_params_init(&t, 0);
    nn_error err;
    CHECK_MSG(nn_load_params(path, &t.p, &err) == NN_OK, "%s", err.msg);
    /* the file's first 4 bytes 00 01 02 03 are a little-endian float: its
     * bit pattern is 0x03020100 on every host */
    uint32_t bits;
    memcpy(&bits, t.w->data, 4);
    CHECK(bits == 0x03020100u);
    two_params_free(&t);
}

/* The bad-input table: every case is an error naming the file and the
 * problem, never a crash or an out-of-bounds read (ASan checks the latter). */
static void test_safetensors_hostile_files(void)
{
    static const struct {
        const char *header; /* NULL: raw bytes below */
        size_t data_len;
        const char *expect;
    } cases[] = {
        {"{", 0, "bad JSON header"},
        {"[]", 0, "expected '{'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "after the header"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "outside the 4-byte"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "need 8"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlapping"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "appears twice"},
        {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "fraction"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999],\"data_offsets\":[0,4]}}", 4, "too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "lacks"},
        {"{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "UTF-8"},
        {"{\"a\\ud800\":{}}", 0, "surrogate"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "metadata values must be strings"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":"
         "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
         "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}", 4,
         "nesting too deep"},
        {"{\"unterminated", 0, "unterminated string"},
    };
    nn_error err;
    nn_safetensors st;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.safetensors", i);
        const char *path = path_in_tmp(name);
        CHECK(write_st(path, cases[i].header, cases[i].data_len));
        nn_status s = nn_safetensors_read(path, &st, &err);
        CHECK_MSG(s == NN_ERR_FORMAT, "case %zu (%s) accepted", i, cases[i].expect);
        CHECK_MSG(strstr(err.msg, cases[i].expect) && strstr(err.msg, name),
                  "case %zu: '%s' lacks '%s'", i, err.msg, cases[i].expect);
    }
    /* raw cases: empty, shorter than the length field, huge header lengths */
    const char *path = path_in_tmp("raw.safetensors");
    CHECK(write_bytes(path, "", 0));
    CHECK(nn_safetensors_read(path, &st, &err) == NN_ERR_FORMAT && strstr(err.msg, "empty file"));
    CHECK(write_bytes(path, "\x01\x02\x03", 3));
    CHECK(nn_safetensors_read(path, &st, &err) == NN_ERR_FORMAT && strstr(err.msg, "truncated"));
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    CHECK(write_bytes(path, huge, sizeof huge));
    CHECK(nn_safetensors_read(path, &st, &err) == NN_ERR_FORMAT && strstr(err.msg, "header length"));
    uint8_t longer[10] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(write_bytes(path, longer, sizeof longer));
    CHECK(nn_safetensors_read(path, &st, &err) == NN_ERR_FORMAT && strstr(err.msg, "larger than the file"));
    CHECK(nn_safetensors_read(test_tmpdir(), &st, &err) == NN_ERR_IO && strstr(err.msg, "directory"));
    CHECK(nn_safetensors_read(path_in_tmp("missing"), &st, &err) == NN_ERR_IO);
}

static void test_safetensors_model_mismatch(void)
{
    two_params t;
    two_params_init(&t, 0);
    nn_error err;
    const char *path = path_in_tmp("m.safetensors");
    CHECK(write_st(path, "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]},"
                         "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[24,36]}}", 36));
    CHECK(nn_load_params(path, &t.p, &err) == NN_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "'0.weight' has shape [3, 2], the model needs [2, 3]"), "%s", err.msg);
    CHECK(write_st(path, "{\"0.weight\":{\"dtype\":\"F64\",\"shape\":[2,3],\"data_offsets\":[0,48]}}", 48));
    CHECK(nn_load_params(path, &t.p, &err) == NN_ERR_FORMAT && strstr(err.msg, "dtype F64, expected F32"));
    CHECK(write_st(path, "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24));
    CHECK(nn_load_params(path, &t.p, &err) == NN_ERR_FORMAT && strstr(err.msg, "no tensor named '0.bias'"));
    two_params_free(&t);
}

/* Every byte of a valid file truncated or flipped: errors or valid loads,
 * never crashes (ASan/valgrind watch the reads). */
static void test_safetensors_every_truncation_and_flip(void)
{
    two_params t;
    two_params_init(&t, 2.0f);
    const char *path = path_in_tmp("good.safetensors"), *bad = path_in_tmp("mut.safetensors");
    nn_error err;
    CHECK(nn_save_params(path, &t.p, &err) == NN_OK);
    uint8_t *buf;
    size_t len;
    CHECK(nn_read_file(path, 1 << 20, &buf, &len, &err) == NN_OK);
    nn_safetensors st;
    for (size_t cut = 0; cut < len; cut++) {
        CHECK(write_bytes(bad, buf, cut));
        CHECK_MSG(nn_safetensors_read(bad, &st, &err) != NN_OK, "cut at %zu accepted", cut);
    }
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x21;
        CHECK(write_bytes(bad, buf, len));
        if (nn_safetensors_read(bad, &st, &err) == NN_OK) {
            nn_safetensors_load_params(&st, &t.p, &err);
            nn_safetensors_free(&st);
        }
        buf[i] ^= 0x21;
    }
    free(buf);
    two_params_free(&t);
}

static void test_safetensors_write_failure_keeps_old_file(void)
{
    two_params t;
    two_params_init(&t, 1.0f);
    nn_error err;
    CHECK(nn_save_params("/nonexistent-dir/x.safetensors", &t.p, &err) == NN_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent-dir/x.safetensors"));
    two_params_free(&t);
}

/* A child saves checkpoints in a loop (every tensor filled with the version
 * number); the parent SIGKILLs it at random moments. Every time, the file
 * must load and hold one whole version. */
static void test_checkpoint_survives_sigkill_during_saves(void)
{
    const char *path = path_in_tmp("ck.safetensors");
    nn_tensor *big = nn_tensor_new2(512, 1024); /* 2 MB: a save takes a while */
    nn_params p;
    nn_params_init(&p);
    nn_params_add(&p, "w", big);
    nn_tensor_fill(big, 0.0f);
    nn_error err;
    CHECK(nn_save_params(path, &p, &err) == NN_OK);
    srand(12345);
    int kills = 0;
    for (int round = 0; round < 20; round++) {
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            for (int v = 1;; v++) {
                nn_tensor_fill(big, (float)v);
                nn_save_params(path, &p, NULL);
            }
        }
        struct timespec d = {0, 1000000L + (rand() % 20) * 1000000L};
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        kills += WIFSIGNALED(status);
        nn_tensor_fill(big, -1.0f);
        CHECK_MSG(nn_load_params(path, &p, &err) == NN_OK, "round %d: %s", round, err.msg);
        float v = big->data[0];
        for (size_t i = 0; i < big->size; i++)
            CHECK_MSG(big->data[i] == v, "round %d: mixed versions in one file", round);
    }
    CHECK(kills == 20);
    nn_params_free(&p);
    nn_tensor_free(big);
}

/* Adam state through a checkpoint: training 3 steps, saving, loading into a
 * fresh model and optimizer, and training 3 more gives exactly the same
 * parameters as 6 uninterrupted steps. */
static void adam_steps(nn_tensor *w, nn_optim *o, int from, int to)
{
    for (int s = from; s < to; s++) {
        nn_optim_zero_grad(o);
        for (size_t i = 0; i < w->size; i++) w->grad[i] = sinf((float)(s * 7 + (int)i)) + w->data[i];
        nn_optim_step(o);
    }
}

static void test_optimizer_state_resumes_exactly(void)
{
    nn_tensor *w1 = nn_tensor_new1(5), *w2 = nn_tensor_new1(5);
    nn_tensor_requires_grad(w1, 1);
    nn_tensor_requires_grad(w2, 1);
    nn_tensor_fill(w1, 0.5f);
    nn_params p1, p2, all1, all2;
    nn_params_init(&p1);
    nn_params_init(&p2);
    nn_params_add(&p1, "w", w1);
    nn_params_add(&p2, "w", w2);
    nn_optim *o1 = nn_optim_adam_new(&p1, nn_adam_defaults(0.1f));
    nn_optim *o2 = nn_optim_adam_new(&p2, nn_adam_defaults(0.1f));
    adam_steps(w1, o1, 0, 3);
    nn_params_init(&all1);
    nn_params_add(&all1, "w", w1);
    CHECK(nn_optim_state(o1, &p1, &all1) == NN_OK);
    CHECK(all1.count == 3 && !strcmp(all1.names[1], "optim.exp_avg.w") &&
          !strcmp(all1.names[2], "optim.exp_avg_sq.w"));
    nn_error err;
    const char *path = path_in_tmp("resume.safetensors");
    CHECK(nn_save_params(path, &all1, &err) == NN_OK);
    nn_params_init(&all2);
    nn_params_add(&all2, "w", w2);
    CHECK(nn_optim_state(o2, &p2, &all2) == NN_OK);
    CHECK(nn_load_params(path, &all2, &err) == NN_OK);
    nn_optim_set_steps(o2, nn_optim_steps(o1));
    adam_steps(w1, o1, 3, 6);
    adam_steps(w2, o2, 3, 6);
    CHECK(memcmp(w1->data, w2->data, 5 * sizeof(float)) == 0);
    nn_optim_free(o1);
    nn_optim_free(o2);
    nn_params_free(&p1);
    nn_params_free(&p2);
    nn_params_free(&all1);
    nn_params_free(&all2);
    nn_tensor_free(w1);
    nn_tensor_free(w2);
}

const test_case io_tests[] = {
    {"safetensors_round_trip_with_metadata", test_safetensors_round_trip_with_metadata},
    {"safetensors_reads_python_style_file", test_safetensors_reads_python_style_file},
    {"safetensors_hostile_files", test_safetensors_hostile_files},
    {"safetensors_model_mismatch", test_safetensors_model_mismatch},
    {"safetensors_every_truncation_and_flip", test_safetensors_every_truncation_and_flip},
    {"safetensors_write_failure_keeps_old_file", test_safetensors_write_failure_keeps_old_file},
    {"checkpoint_survives_sigkill_during_saves", test_checkpoint_survives_sigkill_during_saves},
    {"optimizer_state_resumes_exactly", test_optimizer_state_resumes_exactly},
    {NULL, NULL}};
