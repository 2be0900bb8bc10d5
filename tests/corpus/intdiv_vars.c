// KILN-CORPUS: integer division and remainder by run-time variables at 8/16/32/64 bits
#include <stdint.h>
#include <stdio.h>

static uint32_t seed = 12345;
static uint32_t lcg(void) { seed = seed * 1103515245u + 12345u; return seed >> 1; }

int main(int argc, char **argv) {
    (void)argv;
    volatile int one = argc;            /* 1 when run without arguments */
    uint64_t s64 = 0, u64 = 0; uint32_t s32 = 0, u32 = 0;  /* unsigned: sums wrap */
    uint16_t u16 = 0; int8_t s8 = 0;
    for (int i = 1; i < 200000; i++) {
        uint32_t a = lcg(), b = (lcg() % 1000) + one;
        int32_t sa = (int32_t)(a ^ 0x55555555u) - (int32_t)(i * 7), sb = (int32_t)b * (i % 2 ? 1 : -1);
        u32 += a / b + a % b;
        s32 += (uint32_t)(sa / sb + sa % sb);
        uint64_t wa = ((uint64_t)a << 31) ^ lcg(), wb = ((uint64_t)lcg() << 7) + one;
        u64 += wa / wb + wa % wb;
        int64_t swa = (int64_t)wa * ((i & 2) ? -1 : 1), swb = (int64_t)wb * ((i & 4) ? -1 : 1);
        s64 += (uint64_t)(swa / swb + swa % swb);
        u16 += (uint16_t)((uint16_t)a / (uint16_t)(b | 1));
        s8 += (int8_t)((int8_t)a / (int8_t)((b % 100) + 1));
    }
    printf("u32 %u s32 %d u64 %llu s64 %lld u16 %u s8 %d\n", u32, (int32_t)s32,
           (unsigned long long)u64, (long long)(int64_t)s64, u16, s8);
    for (int d = -7; d <= 7; d++) {
        if (d == 0) continue;
        printf("%d: %d %d %u %u\n", d, 100 / d, -100 % d, 100u / (unsigned)(d + 8), 4000000000u % (unsigned)(d + 8));
    }
    return 0;
}
