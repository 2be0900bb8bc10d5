// KILN-CORPUS: snprintf widths, precision, flags (-+ #0), * arguments, %n, truncation return values
#include <stdint.h>
#include <stdio.h>
#include <inttypes.h>

int main(void) {
    char buf[128];
    int ints[] = {0, 7, -7, 12345, -2147483647 - 1, 2147483647};
    const char *fmts[] = {"[%d]", "[%5d]", "[%-5d|]", "[%05d]", "[%+d]", "[% d]", "[%.3d]", "[%8.3d]",
                          "[%x]", "[%#x]", "[%#o]", "[%X]", "[%#010x]", "[%u]", "[%c]"};
    for (unsigned f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        printf("%-10s", fmts[f]);
        for (unsigned i = 0; i < 6; i++) {
            int v = ints[i];
            if (fmts[f][2] == 'c' || fmts[f][1] == 'c') v = 'A' + (v & 15);
            snprintf(buf, sizeof buf, fmts[f], v);
            printf(" %s", buf);
        }
        printf("\n");
    }
    const char *s = "kiln-recompiler";
    printf("[%s] [%20s] [%-20s] [%.4s] [%10.4s] [%-10.4s]\n", s, s, s, s, s, s);
    printf("[%*d] [%-*d] [%.*f] [%*.*s]\n", 6, 42, 6, 42, 3, 3.14159, 8, 3, s);
    printf("[%ld] [%lld] [%hhd] [%hd] [%zu] [%" PRId64 "] [%" PRIx64 "]\n", -1L, (long long)INT64_MIN,
           (signed char)300, (short)70000, (size_t)12345, INT64_MAX, UINT64_MAX);
    printf("[%%] [%5%] [%e] [%E] [%G]\n", 12345.678, 0.000123, 1e-10);
    int count = 0;
    printf("abc%nxyz\n", &count);
    printf("%%n counted %d\n", count);
    for (size_t n = 0; n < 12; n += 3) {
        int r = snprintf(buf, n, "%s-%d", "truncate", 123456);
        printf("n=%zu r=%d [%s]\n", n, r, n ? buf : "(none)");
    }
    printf("[%p]\n", (void *)0);
    return 0;
}
