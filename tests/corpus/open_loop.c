// KILN-CORPUS: opening files: N rounds of open(2) read-only, fstat(2) and close(2) of one file (PATH, default this program's argv[0]); prints the count, how many rounds succeeded and the file's size. Args: N [PATH]
// ARGS: 5000
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    const char *path = argc > 2 ? argv[2] : argv[0];
    long ok = 0;
    off_t size = -1;
    for (long i = 0; i < n; i++) {
        struct stat st;
        int fd = open(path, O_RDONLY);
        if (fd >= 0 && fstat(fd, &st) == 0) {
            ok++;
            size = st.st_size;
        }
        if (fd >= 0)
            close(fd);
    }
    printf("%ld rounds, %ld opened, size %s\n", n, ok, size > 0 ? "known" : "unknown");
    return ok == n ? 0 : 1;
}
