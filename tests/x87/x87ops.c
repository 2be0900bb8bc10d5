/* x87 differential test program: seeded random 80-bit operands through every implemented
 * x87 instruction, results printed as hex. Run natively and recompiled by tests/test_x87.py;
 * the outputs must agree byte for byte. Usage: x87ops [pairs] [seed] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { uint64_t m; uint16_t se; } __attribute__((packed)) x80;
static uint64_t S = 88172645463325252ull;
static uint64_t rnd(void) { S ^= S << 13; S ^= S >> 7; S ^= S << 17; return S; }

static x80 mk(int sign, int e, uint64_t m) { x80 r; r.m = m; r.se = (uint16_t)((sign << 15) | e); return r; }

static x80 gen(x80 *other) {
    int k = rnd() % 24, s = rnd() & 1;
    uint64_t m = rnd() | (1ull << 63);
    if (rnd() % 4 == 0) m &= ~0ull << (rnd() % 64);          /* short significands: exact cases */
    switch (k) {
    case 0: return mk(s, 0, 0);
    case 1: return mk(s, 0x7fff, 1ull << 63);                  /* inf */
    case 2: return mk(s, 0x7fff, (3ull << 62) | (rnd() >> 2)); /* qnan */
    case 3: return mk(s, 0x7fff, (1ull << 63) | ((rnd() >> 2) | 1)); /* snan */
    case 4: return mk(s, 0, rnd() >> (1 + rnd() % 63));        /* denormal */
    case 5: return mk(s, 1 + rnd() % 3, m);                    /* tiny normal */
    case 6: return mk(s, 0x7ffe - rnd() % 3, m);               /* huge */
    case 7: return mk(s, 1 + rnd() % 0x7ffe, m);               /* anywhere */
    case 8: case 9: case 10:                                   /* close to the other operand */
        if (other) { x80 r = *other; r.se ^= (uint16_t)((rnd() & 1) << 15);
            if ((r.se & 0x7fff) != 0 && (r.se & 0x7fff) < 0x7ff0) { r.se += (uint16_t)(rnd() % 5) - 2; r.m ^= rnd() >> (rnd() % 64); r.m |= 1ull << 63; if ((r.se & 0x7fff) == 0) r.m &= ~(1ull << 63); }
            return r; }
        /* fall through */
    case 11: return mk(s, 0x3fff + (int)(rnd() % 64), m & (~0ull << 40)); /* integers-ish */
    case 12: return mk(s, 0x3fbf + (int)(rnd() % 128), m);
    case 13: return mk(s, 0x3fff, 1ull << 63);
    default: return mk(s, 0x3ff0 + (int)(rnd() % 32), m);
    }
}

static void pr(const char *tag, const x80 *r) { printf(" %s=%04x:%016llx", tag, r->se, (unsigned long long)r->m); }

/* a in st(0), b in st(1); CODE leaves the result in st(0) and one more register */
#define BIN2(NAME, CODE) do { x80 r; uint16_t sw; \
    __asm__ volatile("fnclex\n fldt %2\n fldt %3\n" CODE "\n fnstsw %%ax\n mov %%ax, %1\n fstpt %0\n fstp %%st(0)\n" \
        : "=m"(r), "=m"(sw) : "m"(b), "m"(a) : "ax", "memory"); \
    printf("%s", NAME); pr("r", &r); printf(" sw=%04x\n", sw); } while (0)
/* result in st(1) */
#define BIN2H(NAME, CODE) do { x80 r; uint16_t sw; \
    __asm__ volatile("fnclex\n fldt %2\n fldt %3\n" CODE "\n fnstsw %%ax\n mov %%ax, %1\n fstp %%st(0)\n fstpt %0\n" \
        : "=m"(r), "=m"(sw) : "m"(b), "m"(a) : "ax", "memory"); \
    printf("%s", NAME); pr("r", &r); printf(" sw=%04x\n", sw); } while (0)
/* CODE pops: result alone in st(0) */
#define BIN1(NAME, CODE) do { x80 r; uint16_t sw; \
    __asm__ volatile("fnclex\n fldt %2\n fldt %3\n" CODE "\n fnstsw %%ax\n mov %%ax, %1\n fstpt %0\n" \
        : "=m"(r), "=m"(sw) : "m"(b), "m"(a) : "ax", "memory"); \
    printf("%s", NAME); pr("r", &r); printf(" sw=%04x\n", sw); } while (0)
/* a in st(0) with a memory operand M */
#define MEM(NAME, CODE, M) do { x80 r; uint16_t sw; \
    __asm__ volatile("fnclex\n fldt %2\n" CODE " %3\n fnstsw %%ax\n mov %%ax, %1\n fstpt %0\n" \
        : "=m"(r), "=m"(sw) : "m"(a), "m"(M) : "ax", "memory"); \
    printf("%s", NAME); pr("r", &r); printf(" sw=%04x\n", sw); } while (0)
/* unary on st(0) */
#define UN(NAME, CODE) do { x80 r; uint16_t sw; \
    __asm__ volatile("fnclex\n fldt %2\n" CODE "\n fnstsw %%ax\n mov %%ax, %1\n fstpt %0\n" \
        : "=m"(r), "=m"(sw) : "m"(a) : "ax", "memory"); \
    printf("%s", NAME); pr("r", &r); printf(" sw=%04x\n", sw); } while (0)
/* store st(0) to memory V */
#define STO(NAME, CODE, V, FMT) do { uint16_t sw; \
    __asm__ volatile("fnclex\n fldt %2\n" CODE " %0\n fnstsw %%ax\n mov %%ax, %1\n" \
        : "=m"(V), "=m"(sw) : "m"(a) : "ax", "memory"); \
    printf("%s " FMT " sw=%04x\n", NAME, V, sw); } while (0)
/* compares: status word and (for fcomi) eflags ZF PF CF */
#define CMP(NAME, CODE) do { uint16_t sw; uint64_t fl; \
    __asm__ volatile("fnclex\n fldt %2\n fldt %3\n cmp %%eax, %%eax\n" CODE "\n fnstsw %%ax\n mov %%ax, %0\n pushfq\n pop %1\n fstp %%st(0)\n fstp %%st(0)\n" \
        : "=m"(sw), "=r"(fl) : "m"(b), "m"(a) : "ax", "memory", "cc"); \
    printf("%s sw=%04x fl=%03llx\n", NAME, sw, (unsigned long long)(fl & 0x8d5)); } while (0)
#define CMPP(NAME, CODE, POPS) do { uint16_t sw; uint64_t fl; \
    __asm__ volatile("fnclex\n fldt %2\n fldt %3\n cmp %%eax, %%eax\n" CODE "\n fnstsw %%ax\n mov %%ax, %0\n pushfq\n pop %1\n" POPS \
        : "=m"(sw), "=r"(fl) : "m"(b), "m"(a) : "ax", "memory", "cc"); \
    printf("%s sw=%04x fl=%03llx\n", NAME, sw, (unsigned long long)(fl & 0x8d5)); } while (0)

static void pairs(x80 a, x80 b) {
    pr("a", &a); pr("b", &b); printf("\n");
    BIN2("fadd st,st1", "fadd %%st(1), %%st");
    BIN2H("fadd st1,st", "fadd %%st, %%st(1)");
    BIN1("faddp", "faddp");
    BIN2("fsub st,st1", "fsub %%st(1), %%st");
    BIN2("fsubr st,st1", "fsubr %%st(1), %%st");
    BIN2H("fsub st1,st", "fsub %%st, %%st(1)");
    BIN2H("fsubr st1,st", "fsubr %%st, %%st(1)");
    BIN1("fsubp", "fsubp");
    BIN1("fsubrp", "fsubrp");
    BIN2("fmul st,st1", "fmul %%st(1), %%st");
    BIN1("fmulp", "fmulp");
    BIN2("fdiv st,st1", "fdiv %%st(1), %%st");
    BIN2("fdivr st,st1", "fdivr %%st(1), %%st");
    BIN2H("fdiv st1,st", "fdiv %%st, %%st(1)");
    BIN1("fdivp", "fdivp");
    BIN1("fdivrp", "fdivrp");
    BIN2("fprem", "fprem");
    BIN2("fprem1", "fprem1");
    BIN2("fscale", "fscale");
    BIN2("fcmovb", "cmp %%rax, %%rax\n fcmovb %%st(1), %%st");
    BIN2("fcmove", "cmp %%rax, %%rax\n fcmove %%st(1), %%st");
    BIN2("fcmovnbe", "stc\n fcmovnbe %%st(1), %%st");
    BIN2("fxch", "fxch");
    BIN2("fld st1;fmulp", "fld %%st(1)\n fmulp %%st, %%st(1)");
    BIN2H("fst st1", "fst %%st(1)");
    BIN2("fucomi;fcmovb", "fucomi %%st(1), %%st\n fcmovb %%st(1), %%st");
    BIN2("fucomi;fcmovnb", "fucomi %%st(1), %%st\n fcmovnb %%st(1), %%st");
    BIN2("fucomi;fcmove", "fucomi %%st(1), %%st\n fcmove %%st(1), %%st");
    BIN2("fucomi;fcmovne", "fucomi %%st(1), %%st\n fcmovne %%st(1), %%st");
    BIN2("fucomi;fcmovbe", "fucomi %%st(1), %%st\n fcmovbe %%st(1), %%st");
    BIN2("fucomi;fcmovnbe", "fucomi %%st(1), %%st\n fcmovnbe %%st(1), %%st");
    BIN2("fucomi;fcmovu", "fucomi %%st(1), %%st\n fcmovu %%st(1), %%st");
    BIN2("fucomi;fcmovnu", "fucomi %%st(1), %%st\n fcmovnu %%st(1), %%st");
    CMP("fcom", "fcom %%st(1)");
    CMP("fucom", "fucom %%st(1)");
    CMP("fcomi", "fcomi %%st(1), %%st");
    CMP("fucomi", "fucomi %%st(1), %%st");
    CMPP("fcompp", "fcompp", "");
    CMPP("fcomp", "fcomp %%st(1)", "fstp %%st(0)\n");
    CMPP("fucomp", "fucomp %%st(1)", "fstp %%st(0)\n");
    CMPP("fucompp", "fucompp", "");
    CMPP("fucomip", "fucomip %%st(1), %%st", "fstp %%st(0)\n");
    CMPP("fcomip", "fcomip %%st(1), %%st", "fstp %%st(0)\n");
    {   /* memory operands: b rounded to double and float, integers */
        double d; float f; int32_t i32 = (int32_t)rnd(); int16_t i16 = (int16_t)rnd(); int64_t i64 = (int64_t)rnd() >> (rnd() % 64);
        uint64_t db = rnd(); uint32_t fb = (uint32_t)rnd();
        if (rnd() % 3) { __asm__ volatile("fldt %1\n fstpl %0" : "=m"(d) : "m"(b)); } else memcpy(&d, &db, 8);
        if (rnd() % 3) { __asm__ volatile("fldt %1\n fstps %0" : "=m"(f) : "m"(b)); } else memcpy(&f, &fb, 4);
        MEM("faddl", "faddl", d); MEM("fsubl", "fsubl", d); MEM("fsubrl", "fsubrl", d);
        MEM("fmull", "fmull", d); MEM("fdivl", "fdivl", d); MEM("fdivrl", "fdivrl", d);
        MEM("fadds", "fadds", f); MEM("fmuls", "fmuls", f); MEM("fdivrs", "fdivrs", f);
        MEM("fiaddl", "fiaddl", i32); MEM("fisubl", "fisubl", i32); MEM("fisubrs", "fisubrs", i16);
        MEM("fimull", "fimull", i32); MEM("fidivl", "fidivl", i32); MEM("fidivrs", "fidivrs", i16);
        {   uint16_t sw; __asm__ volatile("fnclex\n fldt %1\n fcompl %2\n fnstsw %%ax\n mov %%ax, %0" : "=m"(sw) : "m"(a), "m"(d) : "ax", "memory");
            printf("fcompl sw=%04x\n", sw); }
        {   uint16_t sw; __asm__ volatile("fnclex\n fldt %1\n ficoml %2\n fnstsw %%ax\n mov %%ax, %0\n fstp %%st(0)" : "=m"(sw) : "m"(a), "m"(i32) : "ax", "memory");
            printf("ficoml sw=%04x\n", sw); }
        {   uint16_t sw; __asm__ volatile("fnclex\n fldt %1\n ficomps %2\n fwait\n fnstsw %%ax\n mov %%ax, %0" : "=m"(sw) : "m"(a), "m"(i16) : "ax", "memory");
            printf("ficomps sw=%04x\n", sw); }
        {   x80 r; uint16_t sw; __asm__ volatile("fnclex\n fldl %2\n fnstsw %%ax\n mov %%ax, %1\n fstpt %0" : "=m"(r), "=m"(sw) : "m"(d) : "ax", "memory");
            printf("fldl %016llx", (unsigned long long)db); pr("r", &r); printf(" sw=%04x\n", sw); }
        {   x80 r; uint16_t sw; __asm__ volatile("fnclex\n flds %2\n fnstsw %%ax\n mov %%ax, %1\n fstpt %0" : "=m"(r), "=m"(sw) : "m"(f) : "ax", "memory");
            pr("flds r", &r); printf(" sw=%04x\n", sw); }
        {   x80 r; __asm__ volatile("fildq %1\n fstpt %0" : "=m"(r) : "m"(i64)); pr("fildq", &r); printf("\n");
            __asm__ volatile("fildl %1\n fstpt %0" : "=m"(r) : "m"(i32)); pr("fildl", &r); printf("\n");
            __asm__ volatile("filds %1\n fstpt %0" : "=m"(r) : "m"(i16)); pr("filds", &r); printf("\n"); }
    }
}

static void unary(x80 a) {
    uint64_t q; uint32_t l; uint16_t w; double d; float f;
    pr("a", &a); printf("\n");
    UN("fsqrt", "fsqrt"); UN("frndint", "frndint"); UN("fabs", "fabs"); UN("fchs", "fchs");
    UN("fxam", "fxam"); UN("ftst", "ftst");
    {   x80 r, r2; uint16_t sw;
        __asm__ volatile("fnclex\n fldt %3\n fxtract\n fnstsw %%ax\n mov %%ax, %2\n fstpt %0\n fstpt %1" : "=m"(r), "=m"(r2), "=m"(sw) : "m"(a) : "ax", "memory");
        pr("fxtract", &r); pr("e", &r2); printf(" sw=%04x\n", sw); }
    STO("fstpl", "fstpl", d, "%a");
    {   uint64_t u; memcpy(&u, &d, 8); printf("  bits %016llx\n", (unsigned long long)u); }
    STO("fstps", "fstps", f, "%a");
    {   uint32_t u; memcpy(&u, &f, 4); printf("  bits %08x\n", u); }
    STO("fistpq", "fistpq", q, "%016llx"); STO("fistpl", "fistpl", l, "%08x"); STO("fistps", "fistps", w, "%04x");
    STO("fisttpq", "fisttpq", q, "%016llx"); STO("fisttpl", "fisttpl", l, "%08x"); STO("fisttps", "fisttps", w, "%04x");
    {   uint16_t sw; __asm__ volatile("fnclex\n fldt %2\n fistl %0\n fnstsw %%ax\n mov %%ax, %1\n fstp %%st(0)" : "=m"(l), "=m"(sw) : "m"(a) : "ax", "memory");
        printf("fistl %08x sw=%04x\n", l, sw); }
    {   x80 r; uint16_t sw; __asm__ volatile("fnclex\n fldt %2\n fstl %0\n fnstsw %%ax\n mov %%ax, %1\n fstpt %0" : "=m"(r), "=m"(sw) : "m"(a) : "ax", "memory");
        pr("fstl+fstpt", &r); printf(" sw=%04x\n", sw); }
}

static void control(void) {
    unsigned char env[108];
    for (int i = 0; i < 8; i++) {
        uint16_t cw = (uint16_t)rnd(), o;
        __asm__ volatile("fldcw %1\n fnstcw %0\n fldcw %2" : "=m"(o) : "m"(cw), "m"((uint16_t){0x37f}));
        printf("fldcw %04x -> %04x\n", cw, o);
    }
    for (int k = 0; k < 7; k++) {
        for (int rc = 0; rc < 4; rc++) {
            uint16_t cw = (uint16_t)(0x37f | (rc << 10)); x80 r;
            __asm__ volatile("fldcw %1\n" : : "m"(cw), "m"(cw));
            switch (k) {
            case 0: __asm__ volatile("fld1\n fstpt %0" : "=m"(r)); break;
            case 1: __asm__ volatile("fldz\n fstpt %0" : "=m"(r)); break;
            case 2: __asm__ volatile("fldpi\n fstpt %0" : "=m"(r)); break;
            case 3: __asm__ volatile("fldl2e\n fstpt %0" : "=m"(r)); break;
            case 4: __asm__ volatile("fldln2\n fstpt %0" : "=m"(r)); break;
            case 5: __asm__ volatile("fldl2t\n fstpt %0" : "=m"(r)); break;
            default: __asm__ volatile("fldlg2\n fstpt %0" : "=m"(r)); break;
            }
            printf("const %d rc %d", k, rc); pr("r", &r); printf("\n");
        }
    }
    {   uint16_t cw = 0x37f; __asm__ volatile("fldcw %0" : : "m"(cw)); }
    /* stack state: tags, TOP, ffree, fincstp/fdecstp, fnstenv/fldenv, fnsave/frstor */
    memset(env, 0, sizeof env);
    __asm__ volatile("fld1\n fldz\n fldpi\n fnstenv %0\n fldenv %0\n fstp %%st(0)\n fstp %%st(0)\n fstp %%st(0)" : "=m"(env) : : "memory");
    printf("fnstenv"); for (int i = 0; i < 12; i++) printf(" %02x", env[i]); printf("\n");
    {   x80 nan = mk(0, 0x7fff, 3ull << 62), den = mk(1, 0, 12345), inf = mk(0, 0x7fff, 1ull << 63);
        __asm__ volatile("fldt %1\n fldt %2\n fldt %3\n fld1\n ffree %%st(2)\n fdecstp\n fincstp\n fnstenv %0\n"
                         "ffree %%st(0)\n ffree %%st(1)\n ffree %%st(2)\n ffree %%st(3)\n fincstp\n fincstp\n fincstp\n fincstp\n"
                         : "=m"(env) : "m"(nan), "m"(den), "m"(inf) : "memory");
        printf("tags"); for (int i = 0; i < 12; i++) printf(" %02x", env[i]); printf("\n"); }
    {   uint16_t sw; x80 r;
        __asm__ volatile("fld1\n fldpi\n fnsave %0\n fnstsw %%ax\n mov %%ax, %1\n frstor %0\n fstpt %2\n fstp %%st(0)" : "=m"(env), "=m"(sw), "=m"(r) : : "ax", "memory");
        printf("fnsave sw=%04x", sw); for (int i = 0; i < 12; i++) printf(" %02x", env[i]);
        for (int i = 28; i < 48; i++) printf(" %02x", env[i]); pr("r", &r); printf("\n"); }
    {   uint16_t sw;
        __asm__ volatile("fld1\n fldz\n fldpi\n fnop\n ffreep %%st(1)\n fnstsw %0\n fnstenv %1\n ffree %%st(0)\n fincstp\n ffree %%st(0)\n fincstp"
                         : "=m"(sw), "=m"(env) : : "memory");
        printf("ffreep sw=%04x", sw); for (int i = 0; i < 12; i++) printf(" %02x", env[i]); printf("\n"); }
    {   uint16_t cw, sw; uint16_t bad = 0x0c00;
        __asm__ volatile("fldcw %3\n fld1\n fldz\n fdiv %%st, %%st(1)\n fninit\n fnstcw %0\n fnstsw %1\n fnstenv %2"
                         : "=m"(cw), "=m"(sw), "=m"(env) : "m"(bad) : "memory");
        printf("fninit cw=%04x sw=%04x", cw, sw); for (int i = 0; i < 12; i++) printf(" %02x", env[i]); printf("\n"); }
    {   x80 r; uint16_t sw; x80 e = mk(0, 0, 0);
        __asm__ volatile("fldt %2\n fxam\n fnstsw %%ax\n mov %%ax, %1\n ffree %%st(0)\n fxam\n fnstsw %%ax\n fincstp\n mov %%ax, %0" : "=m"(r), "=m"(sw) : "m"(e) : "ax", "memory");
        printf("fxam empty sw=%04x %04x\n", sw, *(uint16_t *)&r); }
}

static double dv[] = {0.1, 1.0 / 3, 2.5, -7.25, 1e300, 5e-324, 123456789.0};

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    if (argc > 2) S = strtoull(argv[2], 0, 0);
    static const uint16_t cws[] = {0x037f, 0x077f, 0x0b7f, 0x0f7f, 0x027f, 0x007f, 0x0e7f};
    control();
    for (unsigned c = 0; c < sizeof cws / sizeof cws[0]; c++) {
        uint16_t cw = cws[c];
        printf("== cw %04x\n", cw);
        __asm__ volatile("fldcw %0" : : "m"(cw));
        for (int i = 0; i < n; i++) {
            x80 a = gen(0), b = gen(&a);
            if (i & 1) { x80 t = a; a = b; b = t; }
            pairs(a, b);
            unary(a);
        }
        cw = 0x37f;
        __asm__ volatile("fldcw %0" : : "m"(cw));
    }
    /* long double code the way C uses it */
    long double acc = 1;
    for (int i = 0; i < 7; i++) {
        long double x = dv[i];
        acc = acc * x + 1 / (x + 3);
        printf("%.25Lg %.17g %a %Lf\n", acc, (double)acc, (double)x, x);
    }
    return 0;
}
