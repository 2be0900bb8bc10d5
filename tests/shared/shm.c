/* Shared memory between processes compared between Linux and vkernel: anonymous MAP_SHARED and
   MAP_PRIVATE across fork, memfd_create (read/write against a shared view, /proc/self/fd,
   flags), and a pipe handshake so nothing depends on timing. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHOW(label, x) do { long r_ = (long)(x); int e_ = errno; \
    printf("%s: %ld%s%s\n", label, r_ < 0 ? -1L : 0L, r_ < 0 ? " " : "", r_ < 0 ? strerror(e_) : ""); } while (0)

static void anon(void) {
    char *sh = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    char *pr = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("zeroed: %d %d\n", sh[0] == 0 && sh[8191] == 0, pr[0] == 0);
    strcpy(sh, "parent"); strcpy(pr, "parent");
    int go[2], back[2]; pipe(go); pipe(back);
    pid_t c = fork();
    if (c == 0) {
        char b; read(go[0], &b, 1);
        printf("child sees shared \"%s\" private \"%s\"\n", sh, pr);
        strcpy(sh, "child wrote"); strcpy(pr, "child wrote");
        strcpy(sh + 4096, "second page");
        write(back[1], "x", 1);
        /* the parent's later write reaches the child too */
        read(go[0], &b, 1);
        printf("child sees the parent's reply: \"%s\"\n", sh + 100);
        _exit(0);
    }
    strcpy(sh, "parent again");
    write(go[1], "x", 1);
    char b; read(back[0], &b, 1);
    printf("parent sees shared \"%s\" \"%s\" private \"%s\"\n", sh, sh + 4096, pr);
    strcpy(sh + 100, "reply");
    write(go[1], "x", 1);
    waitpid(c, NULL, 0);
    SHOW("munmap shared", munmap(sh, 8192));
    /* a fresh shared mapping in the same place starts from zero */
    char *again = mmap(sh, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("remapped at the same address: %d, zero: %d\n", again == sh, again[0] == 0);
}

static void memfd(void) {
    int fd = memfd_create("kiln-test", MFD_CLOEXEC);
    printf("memfd: %d cloexec %d\n", fd >= 0, !!(fcntl(fd, F_GETFD) & FD_CLOEXEC));
    SHOW("ftruncate", ftruncate(fd, 4096));
    char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    pwrite(fd, "written by pwrite", 17, 0);
    printf("the mapping sees pwrite: %.17s\n", m);
    strcpy(m + 100, "stored in the mapping");
    char buf[32] = {0};
    pread(fd, buf, 21, 100);
    printf("pread sees the store: %s\n", buf);
    struct stat s; fstat(fd, &s);
    printf("regular %d size %ld mode %o\n", S_ISREG(s.st_mode), (long)s.st_size, s.st_mode & 0777);
    char path[64]; snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int again = open(path, O_RDONLY);
    memset(buf, 0, sizeof buf);
    pread(again, buf, 17, 0);
    printf("reopened through /proc/self/fd: %s\n", buf);
    pid_t c = fork();
    if (c == 0) { strcpy(m, "child's"); _exit(0); }
    waitpid(c, NULL, 0);
    printf("after the child: %.7s\n", m);
    SHOW("bad flags", memfd_create("x", 0x100));
    char longname[300]; memset(longname, 'n', 299); longname[299] = 0;
    SHOW("long name", memfd_create(longname, 0));
}

static void exec_view(void) {
    /* Linux maps it; vkernel refuses: a memfd's bytes are no indexed file (no-JIT). */
    int fd = memfd_create("code", 0);
    ftruncate(fd, 4096);
    SHOW("exec mapping of a memfd", (long)mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0) == -1 ? -1 : 0);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) { exec_view(); return 0; }
    anon();
    memfd();
    return 0;
}
