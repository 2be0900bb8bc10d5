// KILN-CORPUS: struct assignment and memcpy of large structs, structs passed and returned by value
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct big { int64_t id; double vals[61]; char name[40]; uint8_t tail[13]; };
struct pair { int32_t a; int64_t b; };
struct small { float x, y; };
struct mixed { char c; double d; short s; };

__attribute__((noinline)) static struct big transform(struct big in, int k) {
    in.id += k;
    for (int i = 0; i < 61; i++) in.vals[i] = in.vals[i] * 2 + k;
    in.name[k % 39] = (char)('A' + k % 26);
    in.tail[k % 13] ^= 0xff;
    return in;
}
__attribute__((noinline)) static struct pair swap_pair(struct pair p) { struct pair r = {(int32_t)p.b, p.a}; return r; }
__attribute__((noinline)) static struct small add_small(struct small a, struct small b) {
    struct small r = {a.x + b.x, a.y * b.y}; return r;
}
__attribute__((noinline)) static struct mixed bump(struct mixed m) { m.c++; m.d *= 1.5; m.s -= 3; return m; }

static uint64_t hash(const void *p, size_t n) {
    const uint8_t *b = p; uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

int main(void) {
    static struct big arr[256];
    struct big b;
    memset(&b, 0, sizeof b);
    b.id = 1; strcpy(b.name, "original");
    for (int i = 0; i < 61; i++) b.vals[i] = i * 0.25;
    for (int i = 0; i < 13; i++) b.tail[i] = (uint8_t)i;
    for (int i = 0; i < 256; i++) { arr[i] = b; b = transform(b, i); }
    struct big c; memcpy(&c, &arr[100], sizeof c);
    printf("sizeof big %zu id %lld name %s vals[60] %.2f tail %d\n", sizeof(struct big), (long long)c.id, c.name,
           c.vals[60], c.tail[7]);
    printf("array hash %016llx\n", (unsigned long long)hash(arr, sizeof arr));
    memmove(&arr[1], &arr[0], sizeof arr[0] * 255);
    printf("after memmove %016llx equal %d\n", (unsigned long long)hash(arr, sizeof arr),
           memcmp(&arr[0], &arr[1], sizeof arr[0]) == 0);
    struct pair p = swap_pair((struct pair){-5, 1LL << 40 | 77});
    struct small s = add_small((struct small){1.5f, 2.0f}, (struct small){0.25f, -3.0f});
    struct mixed m = bump((struct mixed){'a', 2.0, 10});
    printf("pair %d %lld small %g %g mixed %c %g %d\n", p.a, (long long)p.b, s.x, s.y, m.c, m.d, m.s);
    return 0;
}
