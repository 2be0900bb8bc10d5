// KILN-CORPUS: function pointers, tables of them, qsort and bsearch with custom comparators
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec { int key; char name[12]; double weight; };

static int by_key(const void *a, const void *b) {
    const struct rec *x = a, *y = b;
    return (x->key > y->key) - (x->key < y->key);
}
static int by_name(const void *a, const void *b) {
    int c = strcmp(((const struct rec *)a)->name, ((const struct rec *)b)->name);
    return c ? c : by_key(a, b);
}
static int by_weight_desc(const void *a, const void *b) {
    double x = ((const struct rec *)a)->weight, y = ((const struct rec *)b)->weight;
    if (x != y) return x < y ? 1 : -1;
    return by_key(a, b);
}
static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static long add(long a, long b) { return a + b; }
static long sub(long a, long b) { return a - b; }
static long mul(long a, long b) { return a * b; }
static long xr(long a, long b) { return a ^ b; }

int main(void) {
    static struct rec recs[2000];
    unsigned s = 7;
    for (int i = 0; i < 2000; i++) {
        s = s * 1664525u + 1013904223u;
        recs[i].key = (int)(s % 5000) - 2500;
        snprintf(recs[i].name, sizeof recs[i].name, "n%05u", (s >> 8) % 3000);
        recs[i].weight = (double)((s >> 4) % 1000) / 8.0;
    }
    int (*cmps[])(const void *, const void *) = {by_key, by_name, by_weight_desc};
    const char *labels[] = {"key", "name", "weight"};
    for (int c = 0; c < 3; c++) {
        qsort(recs, 2000, sizeof recs[0], cmps[c]);
        printf("by %s: first %d %s %.3f last %d %s %.3f\n", labels[c], recs[0].key, recs[0].name,
               recs[0].weight, recs[1999].key, recs[1999].name, recs[1999].weight);
        unsigned long h = 0;
        for (int i = 0; i < 2000; i++) h = h * 31 + (unsigned)recs[i].key;
        printf("  order hash %lu\n", h);
    }
    int arr[1000];
    for (int i = 0; i < 1000; i++) arr[i] = (i * 7919) % 1009;
    qsort(arr, 1000, sizeof arr[0], cmp_int);
    int keys[] = {0, 5, 500, 1008, 1009, -1};
    for (int i = 0; i < 6; i++) {
        int *p = bsearch(&keys[i], arr, 1000, sizeof arr[0], cmp_int);
        printf("bsearch %d: %s\n", keys[i], p ? "found" : "absent");
    }
    long (*ops[4])(long, long) = {add, sub, mul, xr};
    long acc = 1;
    for (int i = 0; i < 100000; i++) acc = ops[(i * 7 + (int)(acc & 3)) & 3](acc, i) & 0xffffffffL;
    printf("ops acc %ld\n", acc);
    return 0;
}
