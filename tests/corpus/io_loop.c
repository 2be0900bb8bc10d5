// KILN-CORPUS: plain I/O syscalls: N rounds of a 64-byte write(2) to /dev/null, a 64-byte read(2) from /dev/zero and a clock_gettime(2) through syscall(2) (so the vDSO does not answer natively either); prints the count and how many rounds got full answers. Args: N
// ARGS: 20000
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int out = open("/dev/null", O_WRONLY), in = open("/dev/zero", O_RDONLY);
    if (out < 0 || in < 0) {
        perror("open");
        return 1;
    }
    char buf[64] = {1};
    long full = 0;
    for (long i = 0; i < n; i++) {
        struct timespec ts;
        full += write(out, buf, sizeof buf) == sizeof buf && read(in, buf, sizeof buf) == sizeof buf
                && buf[0] == 0 && syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) == 0;
        buf[0] = 1;
    }
    printf("%ld rounds, %ld with full answers\n", n, full);
    return full == n ? 0 : 1;
}
