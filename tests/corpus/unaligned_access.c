// KILN-CORPUS: unaligned loads and stores at every offset and width, packed structs, byte-order assembly
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct __attribute__((packed)) hdr { uint8_t tag; uint32_t len; uint16_t kind; uint64_t stamp; uint8_t end; };

__attribute__((noinline)) static uint64_t load64(const uint8_t *p) { return *(const uint64_t *)p; }
__attribute__((noinline)) static uint32_t load32(const uint8_t *p) { return *(const uint32_t *)p; }
__attribute__((noinline)) static uint16_t load16(const uint8_t *p) { return *(const uint16_t *)p; }
__attribute__((noinline)) static void store64(uint8_t *p, uint64_t v) { *(uint64_t *)p = v; }
__attribute__((noinline)) static void store32(uint8_t *p, uint32_t v) { *(uint32_t *)p = v; }
__attribute__((noinline)) static double loadd(const uint8_t *p) { double d; memcpy(&d, p, 8); return d; }

int main(void) {
    uint8_t buf[96];
    for (int i = 0; i < 96; i++) buf[i] = (uint8_t)(i * 37 + 11);
    uint64_t h = 0;
    for (int off = 0; off < 16; off++) {
        uint64_t a = load64(buf + off); uint32_t b = load32(buf + off + 3); uint16_t c = load16(buf + off + 1);
        printf("off %2d: %016llx %08x %04x\n", off, (unsigned long long)a, b, c);
        h = h * 31 + a + b + c;
    }
    for (int off = 0; off < 16; off++) { store64(buf + 17 + off, 0x1122334455667788ull * (uint64_t)(off + 1)); store32(buf + 60 + off, 0xa1b2c3d4u + (uint32_t)off); }
    for (int i = 0; i < 96; i++) printf("%02x%s", buf[i], i % 32 == 31 ? "\n" : "");
    double dv = 3.5; memcpy(buf + 5, &dv, 8);
    printf("unaligned double %g hash %016llx\n", loadd(buf + 5), (unsigned long long)h);
    struct hdr hd = {0xaa, 0x01020304, 0xbeef, 0x1122334455667788ull, 0x55};
    uint8_t raw[sizeof hd]; memcpy(raw, &hd, sizeof hd);
    printf("packed size %zu:", sizeof hd);
    for (size_t i = 0; i < sizeof raw; i++) printf(" %02x", raw[i]);
    hd.len += 0x10000; hd.stamp ^= 0xffff; hd.kind++;
    printf("\nfields %x %x %llx %x\n", hd.len, hd.kind, (unsigned long long)hd.stamp, hd.end);
    uint32_t be = (uint32_t)raw[1] << 24 | (uint32_t)raw[2] << 16 | (uint32_t)raw[3] << 8 | raw[4];
    printf("big-endian read %08x\n", be);
    return 0;
}
