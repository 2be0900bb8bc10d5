// KILN-CORPUS: printf and sscanf of float, double and long double: %f %e %g %a %.17g %Lf %La, round trips
#include <stdio.h>
#include <string.h>

int main(void) {
    double ds[] = {0.0, 1.0, -1.5, 3.141592653589793, 2.718281828459045, 1e-300, 1e300,
                   123456789.125, 0.1, 1.0 / 3.0, 5e-324, 1.7976931348623157e308, -0.0};
    for (unsigned i = 0; i < sizeof ds / sizeof ds[0]; i++) {
        double d = ds[i];
        printf("%f | %e | %g | %.17g | %a | %12.4f | %-12.3e|\n", d, d, d, d, d, d, d);
        char buf[64];
        snprintf(buf, sizeof buf, "%.17g", d);
        double back;
        sscanf(buf, "%lf", &back);
        printf("  round trip %s: %d\n", buf, memcmp(&back, &d, sizeof d) == 0);
    }
    float fs[] = {1.5f, 0.1f, 3.4028235e38f, 1.17549435e-38f, -7.25f};
    for (unsigned i = 0; i < 5; i++) printf("float %.9g %a %f\n", fs[i], fs[i], fs[i]);
    long double ls[] = {1.0L, 0.1L, 3.14159265358979323846264338327950288L, 1e4000L, -2.5e-4000L};
    for (unsigned i = 0; i < 5; i++)
        printf("long double %Lf | %.21Lg | %Le\n", ls[i], ls[i], ls[i]);
    const char *inputs[] = {"3.25", "-1e10", "0x1.8p3", "  42.5e-3xyz", "inf", "-nan", "1e-400", "12abc"};
    for (unsigned i = 0; i < 8; i++) {
        double d = -99; float f = -99; long double ld = -99; int n = 0;
        int r1 = sscanf(inputs[i], "%lf%n", &d, &n);
        int r2 = sscanf(inputs[i], "%f", &f);
        int r3 = sscanf(inputs[i], "%Lf", &ld);
        printf("sscanf(\"%s\") -> %d %.17g (%d chars) | %d %.9g | %d %.21Lg\n", inputs[i], r1, d, n,
               r2, (double)f, r3, ld);
    }
    int a; double x; char word[16];
    int r = sscanf("17 2.5 kiln", "%d %lf %15s", &a, &x, word);
    printf("multi sscanf %d: %d %g %s\n", r, a, x, word);
    printf("%.0f %.0f %.0f %.0f\n", 0.5, 1.5, 2.5, -0.5);
    printf("%.3e %.10g %g %g\n", 9.9995, 1.0 / 7.0, 1e-5, 123456789.0);
    printf("%La\n", 1.0L);
    return 0;
}
