// KILN-CORPUS: exit status 42 via exit() from a nested call, with stdout still flushed
// EXIT: 42
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) static void leave(int code) {
    printf("leaving with %d\n", code);
    exit(code);
}

int main(void) {
    printf("before\n");
    leave(42);
    printf("never printed\n");
    return 0;
}
