// KILN-CORPUS: dense switch statements compiled to jump tables, plus a sparse one
#include <stdio.h>

__attribute__((noinline)) static int dense(int x) {
    switch (x) {
    case 0: return 11; case 1: return 23; case 2: return 5; case 3: return 99;
    case 4: return -4; case 5: return 17; case 6: return 600; case 7: return 3;
    case 8: return 81; case 9: return 14; case 10: return 2; case 11: return 77;
    case 12: return 45; case 13: return 8; case 14: return 61; case 15: return 39;
    default: return -1;
    }
}

__attribute__((noinline)) static const char *names(unsigned c) {
    switch (c) {
    case 'a': return "alpha"; case 'b': return "bravo"; case 'c': return "charlie";
    case 'd': return "delta"; case 'e': return "echo"; case 'f': return "foxtrot";
    case 'g': return "golf"; case 'h': return "hotel"; case 'i': return "india";
    case 'j': return "juliet"; case 'k': return "kilo";
    default: return "?";
    }
}

__attribute__((noinline)) static long fallthrough(int x, long v) {
    switch (x & 7) {
    case 0: v += 1; /* fall through */
    case 1: v *= 3; /* fall through */
    case 2: v ^= 0x55; break;
    case 3: v -= 9; /* fall through */
    case 4: v <<= 2; break;
    case 5: v = -v; break;
    case 6: v += 1000; /* fall through */
    default: v >>= 1;
    }
    return v;
}

__attribute__((noinline)) static int sparse(long x) {
    switch (x) {
    case 1: return 1; case 1000: return 2; case 100000: return 3;
    case -5: return 4; case 1L << 40: return 5;
    default: return 0;
    }
}

int main(void) {
    long sum = 0;
    for (int i = -3; i < 20; i++) printf("dense(%d)=%d\n", i, dense(i));
    for (const char *p = "kilnabcdefghijz"; *p; p++) printf("%s ", names((unsigned char)*p));
    printf("\n");
    long v = 7;
    for (int i = 0; i < 1000000; i++) { v = fallthrough(i * 31 + (int)(v & 3), v) & 0xffffff; sum += dense(i & 31); }
    printf("v=%ld sum=%ld sparse=%d%d%d%d%d%d\n", v, sum, sparse(1), sparse(1000), sparse(100000),
           sparse(-5), sparse(1L << 40), sparse(2));
    return 0;
}
