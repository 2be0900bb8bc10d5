// KILN-CORPUS: sorting benchmark: hand-written quicksort, merge sort, heapsort and qsort on the same data. Args: count
// ARGS: 200000
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void quick(int64_t *a, long lo, long hi) {
    while (lo < hi) {
        int64_t p = a[lo + (hi - lo) / 2];
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) { int64_t t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        if (j - lo < hi - i) { quick(a, lo, j); lo = i; } else { quick(a, i, hi); hi = j; }
    }
}

static void merge_sort(int64_t *a, int64_t *tmp, long n) {
    for (long w = 1; w < n; w *= 2) {
        for (long lo = 0; lo < n; lo += 2 * w) {
            long mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = a[i] <= a[j] ? a[i++] : a[j++];
            while (i < mid) tmp[k++] = a[i++];
            while (j < hi) tmp[k++] = a[j++];
        }
        memcpy(a, tmp, (size_t)n * sizeof *a);
    }
}

static void sift(int64_t *a, long i, long n) {
    for (;;) {
        long c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && a[c + 1] > a[c]) c++;
        if (a[i] >= a[c]) return;
        int64_t t = a[i]; a[i] = a[c]; a[c] = t; i = c;
    }
}
static void heap_sort(int64_t *a, long n) {
    for (long i = n / 2 - 1; i >= 0; i--) sift(a, i, n);
    for (long e = n - 1; e > 0; e--) { int64_t t = a[0]; a[0] = a[e]; a[e] = t; sift(a, 0, e); }
}

static int cmp64(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static uint64_t digest(const int64_t *a, long n) {
    uint64_t h = 1469598103934665603ull;
    for (long i = 0; i < n; i++) h = (h ^ (uint64_t)a[i]) * 1099511628211ull;
    return h;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    int64_t *orig = malloc((size_t)n * 8), *a = malloc((size_t)n * 8), *tmp = malloc((size_t)n * 8);
    if (!orig || !a || !tmp) return 1;
    uint64_t x = 42;
    for (long i = 0; i < n; i++) { x = x * 2862933555777941757ull + 3037000493ull; orig[i] = (int64_t)(x >> 20) % 1000000 - 500000; }
    const char *names[] = {"quicksort", "mergesort", "heapsort", "qsort"};
    for (int alg = 0; alg < 4; alg++) {
        memcpy(a, orig, (size_t)n * 8);
        switch (alg) {
        case 0: quick(a, 0, n - 1); break;
        case 1: merge_sort(a, tmp, n); break;
        case 2: heap_sort(a, n); break;
        case 3: qsort(a, (size_t)n, 8, cmp64); break;
        }
        int sorted = 1;
        for (long i = 1; i < n; i++) if (a[i - 1] > a[i]) { sorted = 0; break; }
        printf("%-9s n=%ld sorted=%d min=%lld median=%lld max=%lld digest=%016llx\n", names[alg], n, sorted,
               (long long)a[0], (long long)a[n / 2], (long long)a[n - 1], (unsigned long long)digest(a, n));
    }
    free(orig); free(a); free(tmp);
    return 0;
}
