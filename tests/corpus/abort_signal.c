// KILN-CORPUS: abort(): the process dies by SIGABRT after flushing what it printed
// EXIT: -6
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    printf("about to abort\n");
    fflush(stdout);
    fprintf(stderr, "stderr before abort\n");
    abort();
}
