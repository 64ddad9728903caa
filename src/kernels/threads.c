#include "nn/threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

void nn_set_threads(int n)
{
#ifdef _OPENMP
    if (n >= 1) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int nn_get_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void nn_k_parallel_rows(int rows, int align, int parallel,
                        void (*fn)(void *ctx, int r0, int r1, int slot), void *ctx)
{
    int blocks = (rows + align - 1) / align;
    (void)parallel; /* read only by the OpenMP pragma */
#pragma omp parallel if (parallel && blocks > 1)
    {
        int nt = 1, me = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads();
        me = omp_get_thread_num();
#endif
        int r0 = (int)((long)blocks * me / nt) * align, r1 = (int)((long)blocks * (me + 1) / nt) * align;
        if (r1 > rows) r1 = rows;
        if (r0 < r1) fn(ctx, r0, r1, me);
    }
}
