// KILN-CORPUS: variadic functions: va_list of ints, longs, doubles and strings, va_copy, vsnprintf
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static long sum_ints(int n, ...) {
    va_list ap; va_start(ap, n);
    long s = 0;
    for (int i = 0; i < n; i++) s += va_arg(ap, int);
    va_end(ap);
    return s;
}

static double mixed(const char *fmt, ...) {
    va_list ap, ap2; va_start(ap, fmt); va_copy(ap2, ap);
    double total = 0;
    for (const char *p = fmt; *p; p++) {
        switch (*p) {
        case 'i': total += va_arg(ap, int); break;
        case 'l': total += (double)va_arg(ap, long); break;
        case 'd': total += va_arg(ap, double); break;
        case 's': total += (double)strlen(va_arg(ap, const char *)); break;
        }
    }
    va_end(ap);
    /* second pass over the copy: only count arguments */
    int count = 0;
    for (const char *p = fmt; *p; p++) {
        if (*p == 'd') (void)va_arg(ap2, double);
        else if (*p == 'l') (void)va_arg(ap2, long);
        else if (*p == 's') (void)va_arg(ap2, const char *);
        else (void)va_arg(ap2, int);
        count++;
    }
    va_end(ap2);
    return total + count * 1000;
}

static int my_printf(char *buf, size_t n, const char *fmt, ...) {
    va_list ap; va_start(ap, fmt);
    int r = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return r;
}

int main(void) {
    printf("sum_ints: %ld %ld %ld\n", sum_ints(0), sum_ints(3, 1, 2, 3),
           sum_ints(12, 1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, 100000));
    printf("mixed: %.6f\n", mixed("ildsdddddddddi", 1, 2L, 0.5, "hello", 1.25, 2.5, 3.75, 4.0,
                                  5.5, 6.25, 7.0, 8.125, 9.0, 42));
    char buf[64];
    int r = my_printf(buf, sizeof buf, "%d|%5.2f|%-6s|%lx|%c", -42, 3.14159, "ab", 0xdeadbeefUL, 'Z');
    printf("vsnprintf -> %d \"%s\"\n", r, buf);
    r = my_printf(buf, 8, "%s", "truncated string here");
    printf("truncated -> %d \"%s\"\n", r, buf);
    return 0;
}
