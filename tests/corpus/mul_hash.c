// KILN-CORPUS: multiply-heavy 64-bit hashing as hash tables and PRNGs do it (an LCG, splitmix64, a 128-bit multiply-fold mix, overflow-checked products); CPU-bound benchmark. Args: millions of rounds
// ARGS: 2
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t fold(uint64_t a, uint64_t b) {
    unsigned __int128 p = (unsigned __int128)a * b;
    return (uint64_t)p ^ (uint64_t)(p >> 64);
}

int main(int argc, char **argv) {
    long rounds = (argc > 1 ? atol(argv[1]) : 2) * 1000000L;
    uint64_t lcg = 1, seed = 42, acc = 0, buckets[64] = {0};
    long overflows = 0;
    for (long i = 0; i < rounds; i++) {
        lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t h = fold(splitmix64(&seed), lcg | 1);
        int64_t prod;
        if (__builtin_mul_overflow((int64_t)(h >> 1), (int64_t)(i & 0xffff), &prod))
            overflows++;
        else
            acc += (uint64_t)prod;
        buckets[h & 63]++;
    }
    uint64_t spread = 0;
    for (int b = 0; b < 64; b++)
        spread = spread * 31 + buckets[b];
    printf("lcg %llx acc %llx overflows %ld spread %llx\n", (unsigned long long)lcg, (unsigned long long)acc,
           overflows, (unsigned long long)spread);
    return 0;
}
