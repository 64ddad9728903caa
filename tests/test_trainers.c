/* The bundled trainer as a program: a diverging run stops with the step
 * number and keeps the last good checkpoint; SIGKILL during checkpoint
 * writes never leaves a broken checkpoint. Runs build/examples/mnist_train
 * on a small generated 28x28 data set. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nn.h"
#include "test.h"

#ifndef NN_TEST_BUILD_DIR
#define NN_TEST_BUILD_DIR "build"
#endif
#define TRAINER NN_TEST_BUILD_DIR "/examples/mnist_train"
#define CHAR_RNN NN_TEST_BUILD_DIR "/examples/char_rnn"
#define CHAR_GPT NN_TEST_BUILD_DIR "/examples/char_gpt"

static void write_idx(const char *dir, const char *name, int ndim, const uint32_t *dims,
                      const uint8_t *data, size_t n)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    uint8_t head[4] = {0, 0, 8, (uint8_t)ndim};
    fwrite(head, 1, 4, f);
    for (int i = 0; i < ndim; i++) {
        uint8_t be[4] = {(uint8_t)(dims[i] >> 24), (uint8_t)(dims[i] >> 16), (uint8_t)(dims[i] >> 8),
                         (uint8_t)dims[i]};
        fwrite(be, 1, 4, f);
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

/* 128 training and 32 test images of noise with a class-dependent bright square. */
static const char *make_dataset(void)
{
    static char dir[1024];
    snprintf(dir, sizeof dir, "%s/mnist", test_tmpdir());
    mkdir(dir, 0755);
    nn_rng r;
    nn_rng_seed(&r, 5);
    for (int split = 0; split < 2; split++) {
        int n = split ? 32 : 128;
        uint8_t *img = malloc((size_t)n * 784), lbl[128];
        for (int i = 0; i < n; i++) {
            lbl[i] = (uint8_t)(i % 10);
            for (int p = 0; p < 784; p++) img[i * 784 + p] = (uint8_t)nn_rng_below(&r, 64);
            for (int y = 0; y < 6; y++)
                for (int x = 0; x < 6; x++) img[i * 784 + (2 + lbl[i] * 2 + y) * 28 + 4 + x] = 255;
        }
        write_idx(dir, split ? "t10k-images-idx3-ubyte" : "train-images-idx3-ubyte", 3,
                  (uint32_t[]){(uint32_t)n, 28, 28}, img, (size_t)n * 784);
        write_idx(dir, split ? "t10k-labels-idx1-ubyte" : "train-labels-idx1-ubyte", 1,
                  (uint32_t[]){(uint32_t)n}, lbl, (size_t)n);
        free(img);
    }
    return dir;
}

/* Waits in these tests are multiplied by $NN_TEST_TIME_SCALE (default 1),
 * which CI sets for runs under emulation. */
static int time_scale(void)
{
    const char *s = getenv("NN_TEST_TIME_SCALE");
    int v = s ? atoi(s) : 1;
    return v >= 1 && v <= 1000 ? v : 1;
}

/* Start the program args[0] with args (NULL-terminated), stdout/stderr to
 * files. $NN_TEST_EXEC_PREFIX (e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu"),
 * if set, is put in front: how an emulated test run starts the examples. */
static pid_t start(char *const *args, const char *err_path)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int out = open("/dev/null", O_WRONLY);
        int err = open(err_path ? err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(out, 1);
        dup2(err, 2);
        const char *prefix = getenv("NN_TEST_EXEC_PREFIX");
        if (prefix && *prefix) {
            static char buf[1024];
            char *argv[64];
            int n = 0;
            snprintf(buf, sizeof buf, "%s", prefix);
            for (char *tok = strtok(buf, " "); tok && n < 16; tok = strtok(NULL, " ")) argv[n++] = tok;
            for (int i = 0; args[i] && n < 63; i++) argv[n++] = args[i];
            argv[n] = NULL;
            execvp(argv[0], argv);
        } else {
            execv(args[0], args);
        }
        _exit(127);
    }
    return pid;
}

static int run(char *const *args, const char *err_path)
{
    int status;
    pid_t pid = start(args, err_path);
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int file_equals(const char *a, const char *b)
{
    uint8_t *x, *y;
    size_t nx, ny;
    if (nn_read_file(a, 1 << 26, &x, &nx, NULL)) return 0;
    if (nn_read_file(b, 1 << 26, &y, &ny, NULL)) {
        free(x);
        return 0;
    }
    int same = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return same;
}

static void test_trainer_stops_on_nan_and_keeps_checkpoint(void)
{
    if (access(TRAINER, X_OK) != 0) SKIP("mnist_train not built");
    const char *dir = make_dataset();
    char ck[1024], saved[1100], errf[1024], cmd[4096];
    snprintf(ck, sizeof ck, "%s/ck.safetensors", test_tmpdir());
    snprintf(saved, sizeof saved, "%s.good", ck);
    snprintf(errf, sizeof errf, "%s/stderr.txt", test_tmpdir());
    char *good[] = {TRAINER, "--data", (char *)dir, "--epochs", "1", "--batch", "32", "--quiet",
                    "--save", ck, NULL};
    CHECK(run(good, NULL) == 0);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", ck, saved);
    CHECK(system(cmd) == 0);
    /* Adam moves every weight by about lr per step: activations overflow */
    char *diverge[] = {TRAINER, "--data", (char *)dir, "--epochs", "5", "--batch", "32", "--lr",
                       "1e8", "--quiet", "--save", ck, NULL};
    int rc = run(diverge, errf);
    CHECK_MSG(rc == 3, "exit status %d, expected 3 (stopped on NaN/Inf)", rc);
    uint8_t *msg;
    size_t n;
    CHECK(nn_read_file(errf, 1 << 20, &msg, &n, NULL) == NN_OK);
    msg = realloc(msg, n + 1);
    msg[n] = 0;
    CHECK_MSG(strstr((char *)msg, "at step") && strstr((char *)msg, "left as it was"), "%s", msg);
    free(msg);
    CHECK(file_equals(ck, saved)); /* the last good checkpoint is untouched */
}

static void test_trainer_sigkill_during_saves(void)
{
    if (access(TRAINER, X_OK) != 0) SKIP("mnist_train not built");
    const char *dir = make_dataset();
    char ck[1024];
    snprintf(ck, sizeof ck, "%s/ck.safetensors", test_tmpdir());
    /* one step per epoch and a save after each: saves follow each other fast */
    char *args[] = {TRAINER, "--data", (char *)dir, "--epochs", "100000", "--batch", "128",
                    "--quiet", "--save", ck, NULL};
    srand(7);
    int checked = 0;
    int rounds = time_scale() > 1 ? 5 : 20; /* under emulation each round takes seconds */
    for (int round = 0; round < rounds; round++) {
        pid_t pid = start(args, NULL);
        CHECK(pid > 0);
        /* let it reach the save loop, then kill at a random moment */
        for (int wait = 0; wait < 2000 * time_scale() && access(ck, F_OK) != 0; wait++) {
            struct timespec d = {0, 5000000L};
            nanosleep(&d, NULL);
        }
        struct timespec d = {0, (long)(rand() % 200) * 1000000L * (time_scale() > 4 ? 4 : time_scale())};
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        nn_safetensors st;
        nn_error err;
        CHECK_MSG(nn_safetensors_read(ck, &st, &err) == NN_OK, "round %d: %s", round, err.msg);
        const nn_st_tensor *w = nn_safetensors_find(&st, "10.weight");
        const char *epoch = nn_safetensors_meta(&st, "epoch");
        int ok = w && w->shape[0] == 10 && w->shape[1] == 128 && epoch && atoi(epoch) >= 1 &&
                 nn_safetensors_find(&st, "optim.exp_avg_sq.0.weight");
        nn_safetensors_free(&st);
        CHECK_MSG(ok, "round %d: checkpoint incomplete", round);
        checked++;
    }
    CHECK(checked == rounds);
}

/* Run args to completion once into `straight`; then again into `ck`, killed
 * with SIGKILL at a random moment after its first checkpoint, and resumed
 * from that checkpoint (resume_args) to the end: the two final files must be
 * identical, byte for byte. Returns the number of rounds whose kill landed
 * before the end (the interesting ones). */
static int check_resume_exact(char **args, char **resume_args, const char *straight, const char *ck,
                              int rounds, int max_delay_ms, int *failed_round)
{
    int interrupted = 0;
    *failed_round = -1;
    if (run(args, NULL) != 0) return *failed_round = 0, -1;
    /* args writes `straight`; the interrupted runs write `ck` */
    char *const *save_at = NULL;
    for (char **a = args; *a; a++)
        if (!strcmp(*a, "--save")) save_at = a + 1;
    if (!save_at) return -1;
    char *orig = *save_at;
    for (int round = 0; round < rounds; round++) {
        unlink(ck);
        *(char **)save_at = (char *)ck;
        pid_t pid = start(args, NULL);
        *(char **)save_at = orig;
        if (pid <= 0) return *failed_round = round, -1;
        for (int wait = 0; wait < 4000 * time_scale() && access(ck, F_OK) != 0; wait++) {
            struct timespec d = {0, 1000000L};
            nanosleep(&d, NULL);
        }
        long ms = (long)(rand() % (max_delay_ms + 1)) * time_scale();
        struct timespec d = {ms / 1000, ms % 1000 * 1000000L};
        nanosleep(&d, NULL);
        int status;
        interrupted += waitpid(pid, &status, WNOHANG) == 0;
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        if (run(resume_args, NULL) != 0 || !file_equals(straight, ck)) return *failed_round = round, -1;
    }
    return interrupted;
}

/* mnist_train (the CNN: dropout masks, shuffles and random shifts all
 * drawn) killed after any epoch and resumed gives the uninterrupted run's
 * final checkpoint exactly. */
static void test_trainer_resume_is_bit_exact(void)
{
    if (access(TRAINER, X_OK) != 0) SKIP("mnist_train not built");
    const char *dir = make_dataset();
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/straight.safetensors", test_tmpdir());
    snprintf(b, sizeof b, "%s/resumed.safetensors", test_tmpdir());
    /* under emulation (scaled waits) a shorter run, two rounds: 4 epochs of
     * 64 images, 2 steps each */
    int emulated = time_scale() > 1;
    char *epochs = emulated ? "4" : "10", *limit = emulated ? "64" : "128";
    char *args[] = {TRAINER, "--data", (char *)dir, "--epochs", epochs, "--limit", limit, "--batch", "32",
                    "--quiet", "--save", a, NULL};
    char *resume[] = {TRAINER, "--data", (char *)dir, "--epochs", epochs, "--limit", limit, "--batch", "32",
                      "--quiet", "--resume", b, "--save", b, NULL};
    srand(11);
    int failed;
    int interrupted = check_resume_exact(args, resume, a, b, emulated ? 2 : 4, 150, &failed);
    CHECK_MSG(interrupted >= 0, "round %d: the resumed run's checkpoint differs from the straight run's", failed);
    CHECK_MSG(interrupted >= 1, "no kill landed before the end of the run");
    nn_safetensors st;
    CHECK(nn_safetensors_read(a, &st, NULL) == NN_OK);
    int has_state = nn_safetensors_meta(&st, "rng.batcher") && nn_safetensors_meta(&st, "rng.layer.9") &&
                    nn_safetensors_find(&st, "state.batcher.order");
    nn_safetensors_free(&st);
    CHECK(has_state);
}

/* Text of random words, the same for the char_rnn and char_gpt tests. */
static int write_words(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    nn_rng r;
    nn_rng_seed(&r, 3);
    static const char *words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat ", "and ", "slept.\n"};
    for (int i = 0; i < 6000; i++) fputs(words[nn_rng_below(&r, 8)], f);
    return fclose(f) == 0;
}

static void test_char_rnn_resume_is_bit_exact(void)
{
    if (access(CHAR_RNN, X_OK) != 0) SKIP("char_rnn not built");
    char text[1024], a[1024], b[1024];
    snprintf(text, sizeof text, "%s/text.txt", test_tmpdir());
    snprintf(a, sizeof a, "%s/char_straight.safetensors", test_tmpdir());
    snprintf(b, sizeof b, "%s/char_resumed.safetensors", test_tmpdir());
    CHECK(write_words(text));
    int emulated = time_scale() > 1;
    char *steps = emulated ? "40" : "240";
    char *args[] = {CHAR_RNN, "--data", text, "--steps", steps, "--eval-every", "4", "--hidden", "16",
                    "--layers", "2", "--seq", "12", "--batch", "4", "--quiet", "--save", a, NULL};
    char *resume[] = {CHAR_RNN, "--data", text, "--steps", steps, "--eval-every", "4", "--seq", "12",
                      "--batch", "4", "--quiet", "--resume", b, "--save", b, NULL};
    srand(12);
    int failed;
    int interrupted = check_resume_exact(args, resume, a, b, emulated ? 2 : 4, 100, &failed);
    CHECK_MSG(interrupted >= 0, "round %d: the resumed run's checkpoint differs from the straight run's", failed);
    CHECK_MSG(interrupted >= 1, "no kill landed before the end of the run");
}

/* char_gpt killed at any point after its first checkpoint and resumed gives
 * the straight run's final checkpoint exactly (weights, AdamW moments,
 * step, window generator), and samples from it. */
static void test_char_gpt_resume_is_bit_exact(void)
{
    if (access(CHAR_GPT, X_OK) != 0) SKIP("char_gpt not built");
    char text[1024], a[1024], b[1024];
    snprintf(text, sizeof text, "%s/words.txt", test_tmpdir());
    snprintf(a, sizeof a, "%s/gpt_straight.safetensors", test_tmpdir());
    snprintf(b, sizeof b, "%s/gpt_resumed.safetensors", test_tmpdir());
    CHECK(write_words(text));
    int emulated = time_scale() > 1;
    char *steps = emulated ? "40" : "200";
    char *args[] = {CHAR_GPT, "--data", text, "--steps", steps, "--eval-every", "4", "--blocks", "1",
                    "--heads", "2", "--width", "16", "--context", "16", "--batch", "4", "--warmup", "10",
                    "--quiet", "--save", a, NULL};
    char *resume[] = {CHAR_GPT, "--data", text, "--steps", steps, "--eval-every", "4", "--quiet",
                      "--resume", b, "--save", b, NULL};
    srand(13);
    int failed;
    int interrupted = check_resume_exact(args, resume, a, b, emulated ? 2 : 4, 100, &failed);
    CHECK_MSG(interrupted >= 0, "round %d: the resumed run's checkpoint differs from the straight run's", failed);
    CHECK_MSG(interrupted >= 1, "no kill landed before the end of the run");
    char *sample[] = {CHAR_GPT, "--resume", a, "--sample", "40", "--prompt", "the cat", NULL};
    CHECK(run(sample, NULL) == 0);
}

const test_case trainer_tests[] = {
    {"char_gpt_resume_is_bit_exact", test_char_gpt_resume_is_bit_exact},
    {"trainer_resume_is_bit_exact", test_trainer_resume_is_bit_exact},
    {"char_rnn_resume_is_bit_exact", test_char_rnn_resume_is_bit_exact},
    {"trainer_stops_on_nan_keeps_checkpoint", test_trainer_stops_on_nan_and_keeps_checkpoint},
    {"trainer_sigkill_during_saves", test_trainer_sigkill_during_saves},
    {NULL, NULL}};
