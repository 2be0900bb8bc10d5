// KILN-CORPUS: CRC-32 (IEEE, table-driven and bitwise) and Adler-32 over generated data; CPU-bound. Args: megabytes
// ARGS: 4
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t table[256];

static void make_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc_table(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t crc_bitwise(const uint8_t *p, size_t n) {
    uint32_t crc = 0xffffffffu;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

static uint32_t adler32(const uint8_t *p, size_t n) {
    uint32_t a = 1, b = 0;
    while (n--) { a = (a + *p++) % 65521; b = (b + a) % 65521; }
    return b << 16 | a;
}

int main(int argc, char **argv) {
    long mb = argc > 1 ? atol(argv[1]) : 4;
    make_table();
    const char *check = "123456789";
    printf("crc32(\"123456789\") = %08x (bitwise %08x) adler32 = %08x\n",
           crc_table(0, (const uint8_t *)check, 9), crc_bitwise((const uint8_t *)check, 9),
           adler32((const uint8_t *)check, 9));
    size_t n = 1 << 20;
    uint8_t *buf = malloc(n);
    if (!buf) return 1;
    uint64_t x = 0x0123456789abcdefull;
    uint32_t crc = 0, ad = 0;
    for (long m = 0; m < mb; m++) {
        for (size_t i = 0; i < n; i += 8) { x = x * 6364136223846793005ull + 1442695040888963407ull; memcpy(buf + i, &x, 8); }
        crc = crc_table(crc, buf, n);
        ad ^= adler32(buf, n);
    }
    printf("crc32(%ld MiB) = %08x adler-xor = %08x bitwise(first 64 KiB) = %08x\n", mb, crc, ad,
           crc_bitwise(buf, 65536));
    free(buf);
    return 0;
}
