// KILN-CORPUS: 100k-deep non-tail recursion, mutual recursion and Ackermann
#include <stdio.h>
#include <stdlib.h>

struct node { struct node *next; long value; };

__attribute__((noinline)) static long sum_list(const struct node *n) {
    if (!n) return 0;
    long rest = sum_list(n->next);          /* real call: the result is used after it */
    return rest * 3 % 1000000007L + n->value;
}

__attribute__((noinline)) static int is_odd(unsigned n);
__attribute__((noinline)) static int is_even(unsigned n) { return n == 0 ? 1 : is_odd(n - 1); }
__attribute__((noinline)) static int is_odd(unsigned n) { return n == 0 ? 0 : is_even(n - 1); }

static unsigned long ack(unsigned long m, unsigned long n) {
    if (m == 0) return n + 1;
    if (n == 0) return ack(m - 1, 1);
    return ack(m - 1, ack(m, n - 1));
}

int main(void) {
    const int depth = 100000;
    struct node *nodes = malloc(sizeof *nodes * depth);
    if (!nodes) return 1;
    for (int i = 0; i < depth; i++) {
        nodes[i].next = i + 1 < depth ? &nodes[i + 1] : NULL;
        nodes[i].value = (i * 2654435761L) % 1000;
    }
    printf("sum_list depth %d: %ld\n", depth, sum_list(nodes));
    printf("is_even(50001)=%d is_odd(50001)=%d\n", is_even(50001), is_odd(50001));
    printf("ack(2,3)=%lu ack(3,5)=%lu\n", ack(2, 3), ack(3, 5));
    free(nodes);
    return 0;
}
