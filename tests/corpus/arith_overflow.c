// KILN-CORPUS: unsigned wrap-around, checked signed overflow, INT_MIN/-1 handled, mixed widths
#include <limits.h>
#include <stdint.h>
#include <stdio.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}

static long safe_div(long a, long b) {
    if (b == 0) return 0;
    if (a == LONG_MIN && b == -1) return LONG_MIN;   /* would trap: define it as wrap */
    return a / b;
}

int main(void) {
    unsigned u = UINT_MAX;
    u += 5;
    printf("uint wrap: %u\n", u);
    uint8_t b8 = 250; b8 += 10;
    uint16_t b16 = 65530; b16 += 10;
    printf("u8 wrap: %u u16 wrap: %u\n", b8, b16);
    uint64_t big = UINT64_MAX; big *= 3;
    printf("u64 mul wrap: %llu\n", (unsigned long long)big);
    int r;
    printf("add overflow INT_MAX+1: %d\n", __builtin_add_overflow(INT_MAX, 1, &r));
    printf("sub overflow INT_MIN-1: %d\n", __builtin_sub_overflow(INT_MIN, 1, &r));
    long lr;
    printf("mul overflow: %d\n", __builtin_mul_overflow(0x100000000L, 0x100000000L, &lr));
    printf("LONG_MIN/-1 handled: %ld\n", safe_div(LONG_MIN, -1));
    printf("INT_MIN%%-1 via long: %ld\n", (long)INT_MIN % -1L);
    printf("neg shift: %d %d\n", -17 >> 2, -17 / 4);
    printf("mod signs: %d %d %d %d\n", 7 % 3, -7 % 3, 7 % -3, -7 % -3);
    uint64_t acc = 0, uacc = 0; uint32_t acc32 = 0;
    for (int i = 0; i < 100000; i++) {
        uint64_t x = next();
        int64_t sx = (int64_t)x;
        long q = safe_div((long)(sx >> (i % 40)), (long)((x >> 50) | 1) * ((i & 1) ? -1 : 1));
        acc += (uint64_t)q;   /* unsigned sum: wraps, never UB */
        uacc = uacc * 6364136223846793005ull + x;
        acc32 += (uint32_t)x * 2654435761u;
    }
    printf("acc=%lld uacc=%llu acc32=%u\n", (long long)(int64_t)acc, (unsigned long long)uacc, acc32);
    int8_t s8 = (int8_t)200; int16_t s16 = (int16_t)40000;
    printf("narrowing: %d %d %d\n", s8, s16, (int)(unsigned char)-1);
    printf("sign extension: %lld %llu\n", (long long)(int)0x80000000u,
           (unsigned long long)(unsigned)(int)-1);
    return 0;
}
