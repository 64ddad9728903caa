/* Allocation-failure injection for the tests: the test binary is linked
 * with -Wl,--wrap for malloc, calloc, realloc and aligned_alloc, so every
 * allocation libnn makes comes here. Unarmed, each call is counted and
 * passed on; armed with alloc_fail_at(n), the n-th call from then on fails
 * (returns NULL). */
#include <stddef.h>

#include "alloc_fail.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t count, size_t n);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t count, size_t n);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);

static long calls, fail_at = -1, failures;

void alloc_fail_at(long n)
{
    calls = 0;
    failures = 0;
    fail_at = n;
}

long alloc_calls(void) { return calls; }
long alloc_failures(void) { return failures; }

/* 1 if this call is the one to fail. */
static int fail_now(void)
{
    calls++;
    if (fail_at >= 0 && calls == fail_at) {
        failures++;
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t count, size_t n) { return fail_now() ? NULL : __real_calloc(count, n); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t align, size_t n) { return fail_now() ? NULL : __real_aligned_alloc(align, n); }
