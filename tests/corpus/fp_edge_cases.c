// KILN-CORPUS: IEEE edge cases: NaN, +-inf, -0.0, denormals (printed with %a), rounding, comparisons with NaN, conversions
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static uint64_t bits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

int main(void) {
    volatile double zero = 0.0, one = 1.0, big = 1e308, tiny = 5e-324;
    double vals[] = {zero, -zero, one / zero, -one / zero, zero / zero, big * 10, tiny, tiny / 2, DBL_MIN, DBL_MIN / 3,
                     DBL_MAX, DBL_EPSILON, 1 + DBL_EPSILON / 2, nextafter(1.0, 2.0), -tiny};
    for (unsigned i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        double v = vals[i];
        printf("%2u: %a  %g  bits=%016llx isnan=%d isinf=%d signbit=%d fpclass=%d\n", i, v, v,
               (unsigned long long)(isnan(v) ? bits(v) & 0x7ff0000000000000ull : bits(v)), !!isnan(v), !!isinf(v),
               !!signbit(v), fpclassify(v));
    }
    double nan = zero / zero;
    printf("nan cmp: %d %d %d %d %d %d\n", nan == nan, nan != nan, nan < one, nan > one, nan <= nan, isunordered(nan, one));
    printf("-0 == 0: %d  1/-0 = %g  copysign %g  fmax(nan,1) %g fmin(-0,0) sign %d\n", -zero == zero, one / -zero,
           copysign(one, -zero), fmax(nan, one), !!signbit(fmin(-zero, zero)));
    float ff[] = {1e-45f, 1e-40f, FLT_MIN, FLT_MAX, (float)(one / zero), -0.0f, 16777217.0f};
    for (int i = 0; i < 7; i++) printf("float %a bits %08x\n", (double)ff[i], fbits(ff[i]));
    double conv[] = {2.5, -2.5, 3.5, 1e19, -1e19, 4294967295.9, -0.9, 9.2233720368547758e18};
    for (int i = 0; i < 8; i++) {
        double d = conv[i];
        long long ll = (d < 9.2e18 && d > -9.2e18) ? (long long)d : -1;
        unsigned long long ull = (d >= 0 && d < 1.8e19) ? (unsigned long long)d : 0;
        printf("conv %g -> ll %lld ull %llu rint %g nearbyint %g lrint %ld\n", d, ll, ull, rint(d), nearbyint(d),
               (d < 9.2e18 && d > -9.2e18) ? lrint(d) : 0L);
    }
    printf("u64->double %a %a  i64->float %a\n", (double)0xffffffffffffffffull, (double)0x8000000000000401ull,
           (double)(float)0x7fffffffffffffffLL);
    double sum = 0; for (int i = 0; i < 10; i++) sum += 0.1;
    printf("0.1*10 = %.17g == 1: %d  fma %a\n", sum, sum == 1.0, fma(0.1, 10, -1));
    printf("sqrt(-1) nan %d  log(0) %g  pow(-0,-1) %g  exp(1000) %g  exp(-1000) %a\n", !!isnan(sqrt(-one)), log(zero),
           pow(-zero, -1), exp(1000 * one), exp(-1000 * one));
    printf("denormal arith %a %a %a\n", tiny * 3, DBL_MIN / 1024 + tiny, (DBL_MIN / 2) * 2);
    return 0;
}
