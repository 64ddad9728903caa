/* Data-parallel shards of a batch, shared by the two batchers. */
#ifndef NN_DATA_SHARD_H
#define NN_DATA_SHARD_H

/* The size of the next batch of up to batch examples from *pos of total,
 * skipping (and passing *pos over) batches shorter than count, which
 * could not give every shard an example; 0 when the epoch is done. */
static inline int nn__shard_next_batch(int total, int batch, int count, int *pos)
{
    for (;;) {
        int n = total - *pos < batch ? total - *pos : batch;
        if (n <= 0) return 0;
        if (n >= count) return n;
        *pos += n;
    }
}

/* Shard rank of count of a batch of n: examples [*lo, *lo + size); a
 * count below 1 means no sharding. */
static inline int nn__shard_slice(int n, int rank, int count, int *lo)
{
    if (count < 1) return *lo = 0, n;
    *lo = (int)((long long)n * rank / count);
    return (int)((long long)n * (rank + 1) / count) - *lo;
}

#endif
