/* Allocation-failure injection (tests/alloc_fail.c). */
#ifndef NN_TEST_ALLOC_FAIL_H
#define NN_TEST_ALLOC_FAIL_H

/* Count allocations from now on and make the n-th fail (n <= 0: none). */
void alloc_fail_at(long n);
/* Allocations since the last alloc_fail_at, and how many were failed. */
long alloc_calls(void);
long alloc_failures(void);

#endif
