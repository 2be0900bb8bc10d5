/* POSIX shared memory and named semaphores (/dev/shm), compared between Linux and vkernel. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHOW(label, x) do { long r_ = (long)(x); int e_ = errno; \
    printf("%s: %ld%s%s\n", label, r_ < 0 ? -1L : 0L, r_ < 0 ? " " : "", r_ < 0 ? strerror(e_) : ""); } while (0)

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *name = argc > 1 ? argv[1] : "/kiln-test-shm";
    const char *sname = argc > 2 ? argv[2] : "/kiln-test-sem";
    struct stat st;
    SHOW("stat /dev/shm", stat("/dev/shm", &st));
    printf("directory %d sticky %d\n", S_ISDIR(st.st_mode), !!(st.st_mode & S_ISVTX));
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    SHOW("shm_open", fd);
    SHOW("shm_open again, O_EXCL", shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600));
    SHOW("ftruncate", ftruncate(fd, 4096));
    char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    sem_t *sem = sem_open(sname, O_CREAT | O_EXCL, 0600, 0);
    printf("sem_open: %d\n", sem != SEM_FAILED);
    pid_t c = fork();
    if (c == 0) {
        /* the child opens both by name, as an unrelated process would */
        int f = shm_open(name, O_RDWR, 0);
        char *cm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
        strcpy(cm, "written by the child");
        sem_t *cs = sem_open(sname, 0);
        sem_post(cs);
        _exit(0);
    }
    SHOW("sem_wait", sem_wait(sem));
    printf("parent reads: %s\n", m);
    waitpid(c, NULL, 0);
    SHOW("shm_unlink", shm_unlink(name));
    SHOW("shm_open after unlink", shm_open(name, O_RDWR, 0));
    SHOW("sem_unlink", sem_unlink(sname));
    return 0;
}
