// KILN-CORPUS: x87 long double arithmetic: precision beyond double, series, sqrtl/expl, conversions, printing
// LIBS: -lm
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    printf("LDBL_MANT_DIG %d LDBL_MAX_EXP %d sizeof %zu\n", LDBL_MANT_DIG, LDBL_MAX_EXP, sizeof(long double));
    long double x = 1.0L, e = 1.0L, term = 1.0L;
    for (int i = 1; i < 30; i++) { term /= i; e += term; }
    printf("e series %.20Lg\n", e);
    long double pi = 0;
    for (int k = 0; k < 20; k++) {
        long double p16 = 1;
        for (int j = 0; j < k; j++) p16 /= 16;
        pi += p16 * (4.0L / (8 * k + 1) - 2.0L / (8 * k + 4) - 1.0L / (8 * k + 5) - 1.0L / (8 * k + 6));
    }
    printf("pi bbp %.20Lg\n", pi);
    printf("1/3 %.22Lg vs double %.17g\n", 1.0L / 3, 1.0 / 3);
    long double big = 1e4000L, small = 1e-4000L;
    printf("big*small %.10Lg big/small %.10Le\n", big * small, big / small);
    printf("precision: (1+2^-60)-1 = %Lg (double gives %g)\n", (1.0L + 0x1p-60L) - 1.0L, (1.0 + 0x1p-60) - 1.0);
    printf("sqrtl(2) %.20Lg expl(1) %.20Lg logl(10) %.20Lg\n", sqrtl(2.0L), expl(1.0L), logl(10.0L));
    printf("powl %.18Lg fabsl %Lg floorl %Lg fmodl %.18Lg\n", powl(1.5L, 40.5L), fabsl(-3.25L), floorl(-2.5L),
           fmodl(1e20L, 7.0L));
    for (int i = 0; i < 1000; i++) x = x * 1.0001L + 0.5L / (i + 1);
    printf("recurrence %.20Lg\n", x);
    int64_t ll = (int64_t)(x * 1e15L);
    uint64_t big64 = 0xfffffffffffffff0ull;
    long double fromu = (long double)big64;
    printf("to int64 %lld from u64 %.20Lg back %llu\n", (long long)ll, fromu, (unsigned long long)fromu);
    double d = (double)(1.0L / 3);
    printf("to double %a to float %a\n", d, (double)(float)(1.0L / 3));
    unsigned char raw[16]; memset(raw, 0, 16); long double v = -1.5L; memcpy(raw, &v, 10);
    printf("raw -1.5L:"); for (int i = 9; i >= 0; i--) printf(" %02x", raw[i]); printf("\n");
    printf("inf %Lf -inf %Lf isnan %d\n", 1.0L / 0.0L * 1, -1.0L / 0.0L * 1, isnan(0.0L * (1.0L / 0.0L)));
    return 0;
}
