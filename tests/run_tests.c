/* Runs every test table and prints "N passed, M failed, K skipped" last.
 * Usage: run_tests [substring]  (only tests whose name contains it). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

extern const test_case tensor_tests[], gemm_tests[], gradcheck_tests[], graph_tests[],
    optim_tests[], data_tests[], io_tests[], layer_tests[], train_tests[], trainer_tests[],
    own_data_tests[], alloc_tests[], transformer_tests[], infer_tests[], qrecurrent_tests[],
    replica_tests[];

static const test_case *const suites[] = {tensor_tests, gemm_tests, gradcheck_tests, graph_tests,
                                          optim_tests,  data_tests, io_tests,   layer_tests,
                                          train_tests,  trainer_tests, own_data_tests, alloc_tests,
                                          transformer_tests, infer_tests, qrecurrent_tests,
                                          replica_tests};

int test_failed, test_skipped;
static char skip_reason[256];
static char tmpdir[256];

void test_fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    test_failed = 1;
}

void test_skip(const char *why)
{
    test_skipped = 1;
    snprintf(skip_reason, sizeof skip_reason, "%s", why);
}

const char *test_tmpdir(void)
{
    if (!tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/nn_test_XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return tmpdir;
}

static void remove_tmpdir(void)
{
    if (!tmpdir[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    tmpdir[0] = '\0';
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0, skipped = 0;
    for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
        for (const test_case *t = suites[s]; t->name; t++) {
            if (filter && !strstr(t->name, filter)) continue;
            test_failed = test_skipped = 0;
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            t->fn();
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
            remove_tmpdir();
            if (test_failed) {
                failed++;
                printf("FAIL %s\n", t->name);
            } else if (test_skipped) {
                skipped++;
                printf("skip %s: %s\n", t->name, skip_reason);
            } else {
                passed++;
                printf("ok   %s (%.0f ms)\n", t->name, ms);
            }
            fflush(stdout);
        }
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
