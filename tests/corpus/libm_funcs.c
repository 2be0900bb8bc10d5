// KILN-CORPUS: libm: sin cos tan exp log log2 pow sqrt cbrt fmod floor ceil round lround trunc atan2 hypot
// LIBS: -lm
#include <math.h>
#include <stdio.h>

int main(void) {
    double xs[] = {0.0, 0.5, 1.0, -1.0, 2.0, 3.14159265358979, 10.0, 100.5, -7.25, 1e-10, 1e10};
    for (unsigned i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        double x = xs[i];
        printf("x=%g sin=%.15g cos=%.15g tan=%.15g exp=%.15g atan=%.15g\n", x, sin(x), cos(x), tan(x),
               exp(x), atan(x));
        if (x > 0) printf("  log=%.15g log2=%.15g log10=%.15g sqrt=%.15g cbrt=%.15g\n", log(x), log2(x),
                          log10(x), sqrt(x), cbrt(x));
        printf("  floor=%g ceil=%g round=%g trunc=%g lround=%ld rint=%g fmod7=%.15g\n", floor(x), ceil(x),
               round(x), trunc(x), lround(x), rint(x), fmod(x, 0.7));
    }
    printf("pow: %.15g %.15g %.15g %.15g %g\n", pow(2, 0.5), pow(10, -3), pow(-8, 1.0 / 3), pow(1.0001, 10000),
           pow(0, 0));
    printf("atan2: %.15g %.15g %.15g\n", atan2(1, 1), atan2(-1, -1), atan2(0, -1));
    printf("hypot %.15g fabs %g copysign %g\n", hypot(3, 4), fabs(-2.5), copysign(3, -0.0));
    double acc = 0;
    for (int i = 1; i <= 200000; i++) acc += sin(i * 0.001) * exp(-i * 1e-6) + sqrt((double)i);
    printf("series %.12e\n", acc);
    float f = 0;
    for (int i = 1; i < 1000; i++) f += sinf((float)i) * cosf((float)i / 3);
    printf("float series %.6g sqrtf %.9g\n", (double)f, (double)sqrtf(2.0f));
    int e; double m = frexp(1234.5, &e);
    printf("frexp %g %d ldexp %g modf ", m, e, ldexp(0.75, 10));
    double ip; double fp = modf(-3.75, &ip);
    printf("%g %g\n", ip, fp);
    return 0;
}
