// KILN-CORPUS: syscall round trip: N getpid system calls through syscall(2), so no libc cache answers; prints the count and whether every answer was the same pid (never the pid). Args: N
// ARGS: 20000
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    long first = syscall(SYS_getpid);
    long same = 0;
    for (long i = 0; i < n; i++)
        same += syscall(SYS_getpid) == first;
    printf("%ld getpid calls, %ld answered the same pid\n", n, same);
    return same == n ? 0 : 1;
}
