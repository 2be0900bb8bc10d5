// KILN-CORPUS: setjmp/longjmp across frames, nested jump buffers, volatile locals preserved
#include <setjmp.h>
#include <stdio.h>

static jmp_buf outer, inner;
static int depth_reached;

__attribute__((noinline)) static void dive(int depth, int limit) {
    depth_reached = depth;
    if (depth == limit) longjmp(outer, depth * 10 + 1);
    dive(depth + 1, limit);
}

__attribute__((noinline)) static int try_inner(int x) {
    if (setjmp(inner) == 0) {
        if (x % 3 == 0) longjmp(inner, 0);   /* value 0 becomes 1 */
        return x;
    }
    return -x;
}

int main(void) {
    volatile int rounds = 0;
    volatile long total = 0;
    int v = setjmp(outer);
    if (v != 0) printf("came back with %d after depth %d\n", v, depth_reached);
    if (rounds < 5) {
        rounds++;
        total += v;
        dive(0, rounds * 1000);
    }
    printf("rounds=%d total=%ld\n", rounds, total);
    long s = 0;
    for (int i = 0; i < 30; i++) s += try_inner(i);
    printf("try_inner sum %ld\n", s);
    sigjmp_buf sj;
    volatile int hits = 0;
    if (sigsetjmp(sj, 1) < 3) { hits++; siglongjmp(sj, hits); }
    printf("sigsetjmp hits %d\n", hits);
    return 0;
}
