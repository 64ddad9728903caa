/* A tiny test framework: each test file exports a NULL-terminated table of
 * test cases; tests/run_tests.c runs them all and prints the summary line. */
#ifndef NN_TEST_H
#define NN_TEST_H

#include <math.h>
#include <stdio.h>

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

/* Set by the CHECK macros / test_skip; read by the runner. */
extern int test_failed, test_skipped;

void test_fail_at(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void test_skip(const char *why);

/* A directory for the current test's temporary files (created on demand). */
const char *test_tmpdir(void);

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            test_fail_at(__FILE__, __LINE__, "%s", #cond);                             \
            return;                                                                    \
        }                                                                              \
    } while (0)

#define CHECK_MSG(cond, ...)                                                           \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            test_fail_at(__FILE__, __LINE__, __VA_ARGS__);                             \
            return;                                                                    \
        }                                                                              \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                          \
    do {                                                                               \
        double a_ = (a), b_ = (b);                                                     \
        if (!(fabs(a_ - b_) <= (tol))) {                                               \
            test_fail_at(__FILE__, __LINE__, "%s = %.9g, expected %s = %.9g (tol %g)", \
                         #a, a_, #b, b_, (double)(tol));                               \
            return;                                                                    \
        }                                                                              \
    } while (0)

#define SKIP(why)                                                                      \
    do {                                                                               \
        test_skip(why);                                                                \
        return;                                                                        \
    } while (0)

#endif
