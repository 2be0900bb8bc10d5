// KILN-CORPUS: unsigned and signed __int128: multiply, divide, modulo, shifts, comparisons, decimal printing
#include <stdint.h>
#include <stdio.h>

typedef unsigned __int128 u128;
typedef __int128 s128;

static void print_u128(u128 v) {
    char buf[40]; int i = 39; buf[i] = 0;
    do { buf[--i] = (char)('0' + (int)(v % 10)); v /= 10; } while (v);
    fputs(buf + i, stdout);
}
static void print_s128(s128 v) {
    if (v < 0) { putchar('-'); print_u128((u128)0 - (u128)v); } else print_u128((u128)v);
}

__attribute__((noinline)) static u128 mulmod(u128 a, u128 b, u128 m) { return a * b % m; }

int main(void) {
    u128 max = ~(u128)0;
    printf("max="); print_u128(max); printf("\n");
    u128 f = 1;
    for (int i = 1; i <= 34; i++) f *= (u128)i;
    printf("34!="); print_u128(f); printf("\n");
    u128 f30 = 1;
    for (int i = 1; i <= 30; i++) f30 *= (u128)i;     /* 30! fits in a signed __int128, 34! does not */
    s128 neg = -(s128)f30 / 7;
    printf("-30!/7="); print_s128(neg); printf(" rem="); print_s128(-(s128)f30 % 11); printf("\n");
    uint64_t a = 0xfedcba9876543210ull, b = 0x0123456789abcdefull;
    u128 p = (u128)a * b;
    printf("a*b hi=%016llx lo=%016llx\n", (unsigned long long)(p >> 64), (unsigned long long)p);
    int64_t sa = -0x123456789abcdefll, sb = 0x7edcba987654321ll;
    s128 sp = (s128)sa * sb;
    printf("sa*sb hi=%016llx lo=%016llx\n", (unsigned long long)((u128)sp >> 64), (unsigned long long)sp);
    u128 m = ((u128)1 << 127) - 1;          /* Mersenne prime 2^127-1 */
    u128 x = 3, acc = 1; u128 e = 1000003;
    while (e) { if (e & 1) acc = mulmod(acc, x, ((u128)1 << 64) - 59); x = mulmod(x, x, ((u128)1 << 64) - 59); e >>= 1; }
    printf("3^1000003 mod (2^64-59)="); print_u128(acc); printf("\n");
    printf("m/12345678901234567="); print_u128(m / 12345678901234567ull); printf(" m%%..="); print_u128(m % 12345678901234567ull); printf("\n");
    u128 h = 0;
    for (uint64_t i = 1; i < 200000; i++) {
        u128 v = ((u128)i << 70) + (u128)i * 0x9e3779b97f4a7c15ull;
        h ^= v / (i * 977 + 1) + v % (i + 3);
        h = (h << 5) | (h >> 123);
    }
    printf("hash hi=%016llx lo=%016llx\n", (unsigned long long)(h >> 64), (unsigned long long)h);
    printf("cmp: %d %d %d\n", (s128)-1 < (s128)1, (u128)-1 > (u128)1, (s128)((u128)1 << 127) < 0);
    return 0;
}
