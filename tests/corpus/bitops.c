// KILN-CORPUS: popcount, clz, ctz, ffs, bswap, rotates, parity, bit reversal, masks at every width
#include <stdint.h>
#include <stdio.h>
#include <strings.h>

static inline uint32_t rotl32(uint32_t x, unsigned r) { return (x << (r & 31)) | (x >> ((32 - r) & 31)); }
static inline uint64_t rotr64(uint64_t x, unsigned r) { return (x >> (r & 63)) | (x << ((64 - r) & 63)); }
static uint32_t rev32(uint32_t x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}

int main(void) {
    uint64_t vals[] = {1, 2, 3, 0x80, 0xff, 0x8000000000000000ull, 0xdeadbeefcafebabeull, 0x0123456789abcdefull,
                       0xffffffffffffffffull, 0x100000000ull, 0x7fffffff};
    for (unsigned i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        uint64_t v = vals[i];
        printf("%016llx pop=%d clz=%d ctz=%d pop32=%d clz32=%d ctz32=%d ffs=%d ffsll=%d par=%d\n",
               (unsigned long long)v, __builtin_popcountll(v), __builtin_clzll(v), __builtin_ctzll(v),
               __builtin_popcount((uint32_t)v), (uint32_t)v ? __builtin_clz((uint32_t)v) : 32,
               (uint32_t)v ? __builtin_ctz((uint32_t)v) : 32, ffs((int)(uint32_t)v), ffsll((long long)v),
               __builtin_parityll(v));
        printf("  bswap64=%016llx bswap32=%08x bswap16=%04x rotl32(7)=%08x rotr64(13)=%016llx rev=%08x\n",
               (unsigned long long)__builtin_bswap64(v), __builtin_bswap32((uint32_t)v),
               __builtin_bswap16((uint16_t)v), rotl32((uint32_t)v, 7), (unsigned long long)rotr64(v, 13),
               rev32((uint32_t)v));
    }
    uint64_t h = 0x243f6a8885a308d3ull, acc = 0;
    for (int i = 0; i < 1000000; i++) {
        h = rotr64(h ^ (uint64_t)i, (unsigned)i) * 0x9e3779b97f4a7c15ull;
        acc += (uint64_t)__builtin_popcountll(h) + (uint64_t)__builtin_ctzll(h | 1u << 20) +
               (uint64_t)__builtin_clzll(h | 1) + (h >> (i & 63) & 1);
        acc ^= (uint64_t)rev32((uint32_t)h) << (i & 31);
    }
    printf("mix h=%016llx acc=%llu\n", (unsigned long long)h, (unsigned long long)acc);
    uint8_t b = 0xa5; uint16_t w = 0x1234;
    printf("small: %02x %02x %04x %04x %d\n", (uint8_t)~b, (uint8_t)(b << 3), (uint16_t)(w >> 3 | w << 13),
           (uint16_t)-w, (int8_t)b >> 2);
    return 0;
}
