// KILN-CORPUS: <ctype.h> classification and case mapping in the C locale, strtol/strtoul/atoi parsing
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    for (int c = 0; c < 128; c += 1) {
        int bits = !!isalpha(c) | !!isdigit(c) << 1 | !!isspace(c) << 2 | !!ispunct(c) << 3 | !!isupper(c) << 4 |
                   !!islower(c) << 5 | !!isxdigit(c) << 6 | !!iscntrl(c) << 7 | !!isprint(c) << 8 | !!isgraph(c) << 9 |
                   !!isalnum(c) << 10 | !!isblank(c) << 11;
        printf("%3d %03x %c%c%s", c, bits, isprint(c) ? c : '.', toupper(c) != c ? toupper(c) : tolower(c) != c ? tolower(c) : '_',
               c % 6 == 5 ? "\n" : " | ");
    }
    printf("\nhigh bytes classified: ");
    for (int c = 128; c < 256; c += 16) printf("%d", !!isalpha(c));
    printf("\n");
    char text[] = "Hello, World! The Quick Brown FOX 123 jumps_over.";
    for (char *p = text; *p; p++) *p = (char)(islower((unsigned char)*p) ? toupper((unsigned char)*p) : tolower((unsigned char)*p));
    printf("swapped: %s\n", text);
    const char *nums[] = {"42", "-17", "  +99xyz", "0x1F", "0777", "9223372036854775807", "9223372036854775808",
                          "-9223372036854775809", "abc", "12e3", "0b101"};
    for (int i = 0; i < 11; i++) {
        char *end; errno = 0;
        long v = strtol(nums[i], &end, 0);
        int e1 = errno; errno = 0;
        unsigned long u = strtoul(nums[i], NULL, 16);
        int e2 = errno;
        printf("%-22s strtol=%ld end=%ld erange=%d strtoul16=%lu erange=%d atoi=%d\n", nums[i], v, (long)(end - nums[i]),
               e1 == ERANGE, u, e2 == ERANGE, atoi(nums[i]));
    }
    printf("strtol base 36: %ld base 2: %ld\n", strtol("kiln", NULL, 36), strtol("101101", NULL, 2));
    return 0;
}
