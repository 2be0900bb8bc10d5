// KILN-CORPUS: signed/unsigned comparisons at every width, conditional moves and set-on-condition
#include <stdint.h>
#include <stdio.h>

__attribute__((noinline)) static int lt_s(long a, long b) { return a < b; }
__attribute__((noinline)) static int lt_u(unsigned long a, unsigned long b) { return a < b; }
__attribute__((noinline)) static int le_s32(int a, int b) { return a <= b; }
__attribute__((noinline)) static int ge_u16(uint16_t a, uint16_t b) { return a >= b; }
__attribute__((noinline)) static int gt_s8(int8_t a, int8_t b) { return a > b; }
__attribute__((noinline)) static long pick(long a, long b) { return a > b ? a : b; }
__attribute__((noinline)) static unsigned long upick(unsigned long a, unsigned long b) { return a < b ? a : b; }

int main(void) {
    long vals[] = {0, 1, -1, 2, -2, 127, -128, 255, 32767, -32768, 65535,
                   2147483647L, -2147483647L - 1, 4294967295L, (long)0x7fffffffffffffffL,
                   (long)0x8000000000000000UL};
    int n = sizeof vals / sizeof vals[0];
    unsigned long h = 1469598103934665603ul;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            long a = vals[i], b = vals[j];
            int bits = lt_s(a, b) | lt_u(a, b) << 1 | le_s32((int)a, (int)b) << 2 |
                       ge_u16((uint16_t)a, (uint16_t)b) << 3 | gt_s8((int8_t)a, (int8_t)b) << 4;
            h = (h ^ (unsigned long)bits) * 1099511628211ul;
            h ^= (unsigned long)pick(a, b) + upick(a, b);
            if (i == j + 1) printf("%ld vs %ld -> %02x\n", a, b, bits);
        }
    }
    printf("-1 < 1u is %d (as unsigned)\n", (unsigned)-1 < 1u);
    printf("(int)-1 < (long)1u is %d\n", (long)-1 < (long)1u);
    printf("hash %016lx\n", h);
    return 0;
}
