/* The fds vkernel's native gate opens and closes itself (vkernel/_gatefds.c): plain read-only
 * opens, accepts on a published listening socket and their closes, in their plain cases and
 * at the edges where the gate must leave the call to Python. Run natively and under kiln run;
 * tests/test_vkernel_gate.py compares the output.
 *
 *   fds opens ROOT   ROOT: where the image's tree is ("" under kiln, the rootfs natively)
 *   fds stats ROOT   newfstatat of the same kinds of paths
 *   fds accepts PORT a server on 127.0.0.1:PORT taking three connections
 *   fds many ROOT    2000 opens (some through a top-level symlink, some relative), closes, stats */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define BAD ((void *)16)

static void say(const char *what, long r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, strerror(errno));
    else
        printf("%s: %ld\n", what, r);
    fflush(stdout);
}

static const char *root = "";

/* ROOT + path (four at a time) */
static const char *at(const char *path) {
    static char buf[4][1024];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s%s", root, path);
    return buf[i];
}

static void show(const char *what, int fd) {
    char buf[64] = {0};
    long n = read(fd, buf, sizeof buf - 1);
    printf("%s: fd %d read %ld [%s]\n", what, fd, n, n > 0 ? strtok(buf, "\n") : "");
    fflush(stdout);
}

static void opens(void) {
    int a = open(at("/data/gate/a.txt"), O_RDONLY);
    show("rootfs file", a);
    int b = open(at("/data/gate/b.txt"), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    show("rootfs file, O_CLOEXEC|O_NONBLOCK", b);
    say("  FD_CLOEXEC", fcntl(b, F_GETFD) & FD_CLOEXEC);
    say("  O_NONBLOCK", (fcntl(b, F_GETFL) & O_NONBLOCK) != 0);
    say("  O_ACCMODE", fcntl(b, F_GETFL) & O_ACCMODE);
    say("FD_CLOEXEC without O_CLOEXEC", fcntl(a, F_GETFD) & FD_CLOEXEC);
    int c = syscall(SYS_open, at("/lnk/gate/a.txt"), O_RDONLY);
    show("through a top-level symlink (open)", c);
    say("close the middle one", close(b));
    int d = openat(AT_FDCWD, at("/data/gate/b.txt"), O_RDONLY);
    say("the lowest free fd again", d == b);
    say("close it twice", close(d));
    say("  the second time", close(d));
    close(a);
    close(c);

    int w = open("/tmp/gate-upper", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(w, "written here\n", 13);
    close(w);
    int u = open("/tmp/gate-upper", O_RDONLY);
    show("a file this run wrote", u);
    struct stat st;
    say("  fstat", fstat(u, &st));
    printf("  size %ld regular %d\n", (long)st.st_size, S_ISREG(st.st_mode));
    say("  lseek", lseek(u, 2, SEEK_SET));
    show("  after lseek", u);
    int v = open("/tmp/gate-upper", O_RDONLY);
    say("  pread of a second fd", pread(v, (char[8]){0}, 7, 0));
    close(v);

    /* relative to the working directory */
    say("chdir", chdir(at("/data")));
    int r1 = open("gate/a.txt", O_RDONLY);
    show("relative", r1);
    close(r1);
    int r2 = openat(AT_FDCWD, "./gate/b.txt", O_RDONLY);
    show("relative with a dot", r2);
    close(r2);
    int r3 = open("../data/gate/b.txt", O_RDONLY);
    show("relative with ..", r3);
    close(r3);
    int here = open(".", O_RDONLY | O_DIRECTORY);
    int r4 = openat(here, "gate/a.txt", O_RDONLY);
    show("relative to a directory fd", r4);
    close(r4);
    close(here);
    say("relative, missing", open("gate/none.txt", O_RDONLY));
    say("chdir /", chdir(root[0] ? root : "/"));

    /* at the edges: Python decides */
    say("missing", open(at("/data/gate/none.txt"), O_RDONLY));
    say("missing directory", open(at("/data/nodir/a.txt"), O_RDONLY));
    say("a file as a directory", open(at("/data/gate/a.txt/x"), O_RDONLY));
    say("O_DIRECTORY on a file", open(at("/data/gate/a.txt"), O_RDONLY | O_DIRECTORY));
    int dir = open(at("/data/gate"), O_RDONLY);
    say("a directory", dir >= 0);
    say("  getdents", syscall(SYS_getdents64, dir, (char[4096]){0}, 4096) > 0);
    close(dir);
    int l = open(at("/data/gate/link"), O_RDONLY);
    show("a symlink to a file", l);
    close(l);
    say("a symlink with O_NOFOLLOW", open(at("/data/gate/link"), O_RDONLY | O_NOFOLLOW));
    int dots = open(at("/data/./gate/../gate//a.txt"), O_RDONLY);
    show("dots and slashes", dots);
    close(dots);
    say("trailing slash", open(at("/data/gate/a.txt/"), O_RDONLY));
    say("bad path", open(BAD, O_RDONLY));
    say("empty path", open("", O_RDONLY));
    int null = open("/dev/null", O_RDONLY);
    say("/dev/null", null >= 0);
    close(null);
    say("O_RDWR on the rootfs file", (long)(open(at("/data/gate/a.txt"), O_RDWR) >= 0));

    /* a FIFO whose writer already waits in open(): only Python opens it, once */
    unlink("/tmp/gate-fifo");
    mkfifo("/tmp/gate-fifo", 0600);
    pid_t writer = fork();
    if (writer == 0) {
        int w = open("/tmp/gate-fifo", O_WRONLY);
        write(w, "through the fifo\n", 17);
        _exit(0);
    }
    usleep(200000);
    int fifo = open("/tmp/gate-fifo", O_RDONLY);
    show("a FIFO whose writer waits", fifo);
    waitpid(writer, NULL, 0);
    close(fifo);
    writer = fork();                  /* and one whose reader waits for its writer */
    if (writer == 0) {
        usleep(200000);
        int w = open("/tmp/gate-fifo", O_WRONLY);
        write(w, "a late writer\n", 14);
        _exit(0);
    }
    fifo = open("/tmp/gate-fifo", O_RDONLY);
    show("a FIFO waiting for its writer", fifo);
    waitpid(writer, NULL, 0);
    close(fifo);

    /* the adopted fds behave as Python's own */
    int x = open(at("/data/gate/a.txt"), O_RDONLY);
    int y = dup(x);
    say("dup", y == x + 1);
    say("dup2 over it", dup2(x, y) == y);
    show("  read the dup", y);
    char link[256] = {0};
    snprintf(link, sizeof link, "/proc/self/fd/%d", x);
    char target[1024] = {0};
    long n = readlink(link, target, sizeof target - 1);
    say("/proc/self/fd names it", n > 0 && !strcmp(target, at("/data/gate/a.txt")));
    int z = open(at("/data/gate/b.txt"), O_RDONLY);
    pid_t pid = fork();
    if (pid == 0) {
        show("  the child reads the parent's", z);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    show("fork: then the parent", z);
    close(x);
    close(y);
    close(z);

    struct rlimit rl = {8, 8};
    setrlimit(RLIMIT_NOFILE, &rl);
    int fds[16], got = 0;
    while (got < 16 && (fds[got] = open(at("/data/gate/a.txt"), O_RDONLY)) >= 0)
        got++;
    printf("RLIMIT_NOFILE 8: opened %d, then %s\n", got, strerror(errno));
    for (int i = 0; i < got; i++)
        close(fds[i]);
    fflush(stdout);
}

static char a_txt[1024];          /* at("/data/gate/a.txt"), made before the threads start */

static void stat_of(const char *what, const char *path, int nofollow) {
    struct stat st;
    memset(&st, 0x55, sizeof st);
    long r = syscall(SYS_newfstatat, AT_FDCWD, path, &st, nofollow ? AT_SYMLINK_NOFOLLOW : 0);
    if (r < 0)
        say(what, r);
    else
        printf("%s: mode %o size %ld nlink %ld\n", what, st.st_mode, (long)st.st_size,
               (long)st.st_nlink);
    fflush(stdout);
}

static void stats(void) {
    stat_of("a rootfs file", at("/data/gate/a.txt"), 0);
    stat_of("a rootfs directory", at("/data/gate"), 0);
    stat_of("through a top-level symlink", at("/lnk/gate/b.txt"), 0);
    stat_of("a symlink, not followed", at("/data/gate/link"), 1);
    stat_of("a symlink, followed", at("/data/gate/link"), 0);
    stat_of("missing", at("/data/gate/none.txt"), 0);
    stat_of("a file as a directory", at("/data/gate/a.txt/x"), 0);
    stat_of("dots", at("/data/./gate/../gate/a.txt"), 0);
    stat_of("/dev/null", "/dev/null", 0);
    int w = open("/tmp/gate-stat-upper", O_WRONLY | O_CREAT | O_TRUNC, 0640);
    write(w, "seven\n", 6);
    close(w);
    stat_of("a file this run wrote", "/tmp/gate-stat-upper", 0);
    chdir(at("/data"));
    stat_of("relative", "gate/a.txt", 0);
    struct stat st;
    say("bad buffer", syscall(SYS_newfstatat, AT_FDCWD, at("/data/gate/a.txt"), BAD, 0));
    say("bad path", syscall(SYS_newfstatat, AT_FDCWD, BAD, &st, 0));
    say("stat(2) and newfstatat agree",
        stat(at("/data/gate/a.txt"), &st) == 0 && st.st_size == 34);
    unlink("/tmp/gate-stat-upper");
    stat_of("a file this run removed", "/tmp/gate-stat-upper", 0);
}

static void *opener(void *arg) {
    for (int i = 0; i < 200; i++) {
        int fd = open(a_txt, O_RDONLY);
        char c;
        if (fd < 0 || read(fd, &c, 1) != 1 || close(fd) != 0)
            __atomic_add_fetch((int *)arg, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void threads(void) {
    /* two threads: the gate leaves opens and closes to Python */
    int bad = 0;
    pthread_t t[2];
    snprintf(a_txt, sizeof a_txt, "%s", at("/data/gate/a.txt"));
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, opener, &bad);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    int fd = open(at("/data/gate/b.txt"), O_RDONLY);
    printf("threads: %d bad, next fd %d\n", bad, fd);
    show("after the threads", fd);
}

static void accepts(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(s, 8) < 0) {
        perror("listen");
        exit(1);
    }
    printf("listening\n");
    fflush(stdout);
    /* 1: a full address; 2: room for 4 bytes; 3: no address, CLOEXEC and NONBLOCK */
    for (int i = 0; i < 3; i++) {
        struct sockaddr_in peer;
        memset(&peer, 0x55, sizeof peer);
        socklen_t len = i == 1 ? 4 : sizeof peer;
        int c = i == 2 ? accept4(s, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)
                       : accept4(s, (struct sockaddr *)&peer, &len, 0);
        printf("accept %d: fd %d len %u family %d loopback %d\n", i, c, (unsigned)len,
               i == 2 ? -1 : peer.sin_family,
               i == 0 ? peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK) : -1);
        say("  FD_CLOEXEC", fcntl(c, F_GETFD) & FD_CLOEXEC);
        say("  O_NONBLOCK", (fcntl(c, F_GETFL) & O_NONBLOCK) != 0);
        struct sockaddr_in me;
        socklen_t ml = sizeof me;
        getsockname(c, (struct sockaddr *)&me, &ml);
        printf("  local port is the server's: %d\n", ntohs(me.sin_port) == port);
        char buf[64] = {0};
        int fl = fcntl(c, F_GETFL);
        fcntl(c, F_SETFL, fl & ~O_NONBLOCK);
        long n = recv(c, buf, sizeof buf - 1, 0);
        printf("  got %ld [%s]\n", n, strtok(buf, "\n"));
        send(c, "bye\n", 4, 0);
        say("  close", close(c));
    }
    int nb = fcntl(s, F_GETFL);
    fcntl(s, F_SETFL, nb | O_NONBLOCK);
    say("accept, none waiting", accept4(s, NULL, NULL, 0));
    fflush(stdout);
}

static void many(void) {
    long ok = 0;
    chdir(at("/data"));
    for (int i = 0; i < 2000; i++) {
        int fd = i % 3 == 2 ? open("gate/b.txt", O_RDONLY)
                            : open(at(i % 3 ? "/lnk/gate/a.txt" : "/data/gate/a.txt"), O_RDONLY | O_CLOEXEC);
        struct stat st;
        ok += fd >= 0 && close(fd) == 0 && stat(at("/data/gate/b.txt"), &st) == 0;
    }
    printf("many: %ld\n", ok);
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (argc > 2)
        root = argv[2];
    if (!strcmp(c, "opens")) opens();
    else if (!strcmp(c, "threads")) threads();
    else if (!strcmp(c, "stats")) stats();
    else if (!strcmp(c, "accepts")) accepts(atoi(root));
    else if (!strcmp(c, "many")) many();
    else { fprintf(stderr, "usage: fds opens|stats|threads|many [ROOT] | accepts PORT\n"); return 2; }
    return 0;
}
