// KILN-CORPUS: heavy malloc/calloc/realloc/free with random sizes, contents checked after every move
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 4096
static uint64_t st = 88172645463325252ull;
static uint64_t rnd(void) { st ^= st << 13; st ^= st >> 7; st ^= st << 17; return st; }

static unsigned char *slot[SLOTS];
static size_t len[SLOTS];
static unsigned char tag[SLOTS];

static int check(int i) {
    for (size_t k = 0; k < len[i]; k++)
        if (slot[i][k] != (unsigned char)(tag[i] + k)) return 0;
    return 1;
}

int main(void) {
    long bad = 0, allocs = 0, reallocs = 0, frees = 0;
    size_t peak = 0, live = 0;
    for (int round = 0; round < 150000; round++) {
        int i = (int)(rnd() % SLOTS);
        uint64_t r = rnd();
        size_t sz = (r & 0x3f) == 0 ? (size_t)(r >> 8) % 200000 : (size_t)(r >> 8) % 512;
        if (!slot[i]) {
            slot[i] = (r & 0x10) ? calloc(1, sz + 1) : malloc(sz + 1);
            if (!slot[i]) return 3;
            if ((r & 0x10) && sz > 0 && slot[i][sz / 2] != 0) bad++;
            len[i] = sz; tag[i] = (unsigned char)r;
            for (size_t k = 0; k < sz; k++) slot[i][k] = (unsigned char)(tag[i] + k);
            live += sz; allocs++;
        } else if (r & 0x20) {
            if (!check(i)) bad++;
            unsigned char *p = realloc(slot[i], sz + 1);
            if (!p) return 4;
            slot[i] = p;
            size_t keep = sz < len[i] ? sz : len[i];
            for (size_t k = keep; k < sz; k++) p[k] = (unsigned char)(tag[i] + k);
            live = live - len[i] + sz;
            len[i] = sz; reallocs++;
            if (!check(i)) bad++;
        } else {
            if (!check(i)) bad++;
            free(slot[i]); slot[i] = NULL; live -= len[i]; len[i] = 0; frees++;
        }
        if (live > peak) peak = live;
    }
    for (int i = 0; i < SLOTS; i++) { if (slot[i] && !check(i)) bad++; free(slot[i]); }
    printf("allocs=%ld reallocs=%ld frees=%ld peak=%zu bad=%ld\n", allocs, reallocs, frees, peak, bad);
    void *big = malloc(64 << 20);            /* mmap-sized allocation */
    if (!big) return 5;
    memset(big, 0xab, 64 << 20);
    printf("big[last]=%02x\n", ((unsigned char *)big)[(64 << 20) - 1]);
    free(big);
    return bad ? 1 : 0;
}
