/* libnn: how many threads the kernels use.
 *
 * The setting belongs to the calling thread (it is OpenMP's per-thread
 * nthreads setting), so two models trained from two threads can use
 * different counts. Results do not depend on it: every kernel reduces in a
 * fixed order whatever the number of threads. */
#ifndef NN_THREADS_H
#define NN_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Use n >= 1 threads in kernels called from this thread (ignored without
 * OpenMP). */
void nn_set_threads(int n);

/* Threads kernels called from this thread will use (1 without OpenMP). */
int nn_get_threads(void);

#ifdef __cplusplus
}
#endif
#endif
