/* Code one thread maps is callable from another: a thread mmaps a shared object (a function
   with no dependencies) PROT_EXEC, the main thread calls into it. argv: the object's path and
   the function's offset in it (hex). Under vkernel the mapping thread's store instantiates the
   object's translation; the other thread's store finds it when its dispatch first misses. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char *copy;

static void *mapper(void *arg) {
    int fd = open((char *)arg, O_RDONLY);
    struct stat s;
    fstat(fd, &s);
    copy = mmap(0, s.st_size, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    pthread_t t;
    pthread_create(&t, 0, mapper, argv[1]);
    pthread_join(t, 0);
    if (copy == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    int (*f)(int) = (int (*)(int))(copy + strtol(argv[2], 0, 16));
    printf("a function another thread mapped: %d\n", f(6));
    return 0;
}
