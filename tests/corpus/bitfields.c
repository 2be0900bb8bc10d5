// KILN-CORPUS: bitfields: signed and unsigned fields, wrap on overflow, fields straddling bytes, unions over them
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct flags { unsigned a : 1; unsigned b : 3; signed c : 5; unsigned d : 7; unsigned long long e : 40; signed f : 12; };
union view { struct { uint32_t lo : 12, mid : 8, hi : 12; } f; uint32_t word; };
struct pte { uint64_t present : 1, rw : 1, user : 1, pad : 9, frame : 40, avail : 11, nx : 1; };

int main(void) {
    struct flags s; memset(&s, 0, sizeof s);
    printf("sizeof flags %zu pte %zu\n", sizeof(struct flags), sizeof(struct pte));
    for (int i = 0; i < 40; i++) {
        s.a += 1; s.b += 3; s.c -= 3; s.d += 11; s.e = s.e * 3 + 1; s.f += 157;
        if (i % 5 == 4) printf("i=%d a=%u b=%u c=%d d=%u e=%llu f=%d\n", i, s.a, s.b, s.c, s.d, (unsigned long long)s.e, s.f);
    }
    unsigned char raw[sizeof s]; memcpy(raw, &s, sizeof s);
    for (size_t i = 0; i < sizeof raw; i++) printf("%02x", raw[i]);
    printf("\n");
    union view v; v.word = 0xdeadbeef;
    printf("lo=%03x mid=%02x hi=%03x\n", v.f.lo, v.f.mid, v.f.hi);
    v.f.mid = 0x12; v.f.hi += 1;
    printf("word=%08x\n", v.word);
    struct pte p = {0};
    p.present = 1; p.rw = 1; p.frame = 0x123456789ull; p.nx = 1; p.avail = 0x7ff;
    uint64_t w; memcpy(&w, &p, 8);
    printf("pte word %016llx frame %llx\n", (unsigned long long)w, (unsigned long long)p.frame);
    p.frame += 0xfffffffffull;
    memcpy(&w, &p, 8);
    printf("pte word %016llx\n", (unsigned long long)w);
    return 0;
}
