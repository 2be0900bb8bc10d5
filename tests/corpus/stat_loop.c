// KILN-CORPUS: looking files up: N rounds of stat(2) of one file (PATH, default this program's argv[0]) and of a name next to it that does not exist; prints the count, how many rounds got both answers right and whether the size was seen. Args: N [PATH]
// ARGS: 5000
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    const char *path = argc > 2 ? argv[2] : argv[0];
    char missing[4096];
    snprintf(missing, sizeof missing, "%s.none", path);
    long ok = 0;
    off_t size = -1;
    for (long i = 0; i < n; i++) {
        struct stat st;
        if (stat(path, &st) == 0 && stat(missing, &st) < 0 && errno == ENOENT)
            ok++;
        if (stat(path, &st) == 0)
            size = st.st_size;
    }
    printf("%ld rounds, %ld right, size %s\n", n, ok, size > 0 ? "known" : "unknown");
    return ok == n ? 0 : 1;
}
