/* The syscalls vkernel's native gate serves (vkernel/_gate.c), in their plain cases and at
 * the edges where the gate must leave the call to Python: bad fds and addresses, calls that
 * would block, signals, broken pipes. Run natively and under kiln run; tests/test_vkernel_gate.py
 * compares the output. Time syscalls go through syscall(2), as the guest (no vDSO) makes them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BAD ((void *)16)

static void say(const char *what, long r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, strerror(errno));
    else
        printf("%s: %ld\n", what, r);
    fflush(stdout);
}

static volatile sig_atomic_t caught;
static void on_signal(int sig) { caught = sig; }

static void handle(int sig, int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = flags;
    sigaction(sig, &sa, NULL);
}

static void alarm_in(long usec) {
    struct itimerval it = {{0, 0}, {0, usec}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void io(void) {
    int fd = open("/tmp/gate-file", O_RDWR | O_CREAT | O_TRUNC, 0644);
    for (int i = 0; i < 100; i++)
        write(fd, "hello gate\n", 11);
    say("lseek", lseek(fd, 0, SEEK_SET));
    char buf[64] = {0};
    say("read", read(fd, buf, 20));
    printf("  [%.20s]\n", buf);
    char a[5], b[7];
    struct iovec v[3] = {{a, 5}, {NULL, 0}, {b, 7}};
    say("readv", readv(fd, v, 3));
    printf("  [%.5s|%.7s]\n", a, b);
    say("read count 0", read(fd, buf, 0));
    say("read bad fd", read(-1, buf, 1));
    say("read closed fd", read(900, buf, 1));
    say("read bad buffer", read(fd, BAD, 10));
    say("write bad buffer", write(fd, BAD, 10));
    say("write count 0", write(fd, buf, 0));
    say("writev none", writev(fd, v, 0));
    say("writev -1", writev(fd, v, -1));
    say("writev 1025", writev(fd, v, 1025));
    struct iovec bad[1] = {{BAD, 4}};
    say("readv bad base", readv(fd, bad, 1));
    say("writev bad base", writev(fd, bad, 1));
    struct iovec zero[2] = {{buf, 0}, {NULL, 0}};
    say("writev zero-length", writev(fd, zero, 2));
    say("lseek end", lseek(fd, 0, SEEK_END));
    say("read at eof", read(fd, buf, 10));
    int ro = open("/tmp/gate-file", O_RDONLY);
    say("write read-only", write(ro, "x", 1));
    int wo = open("/tmp/gate-file", O_WRONLY);
    say("read write-only", read(wo, buf, 1));
    struct iovec w[2] = {{"new ", 4}, {"tail\n", 5}};
    say("writev", writev(fd, w, 2));
    say("pread", pread(ro, buf, 9, 1100));
    printf("  [%.9s]\n", buf);
    int dir = open("/tmp", O_RDONLY | O_DIRECTORY);
    say("read directory", read(dir, buf, 10));
    say("lseek directory to 0", lseek(dir, 0, SEEK_SET));
    say("lseek, bad whence", lseek(fd, 0, 77));
    say("lseek before the start", lseek(fd, -5, SEEK_SET));
    say("lseek from the current position", lseek(fd, -9, SEEK_CUR));
    say("pwrite", pwrite(fd, "MIDDLE", 6, 500));
    say("pread at 495", pread(fd, buf, 16, 495));
    printf("  [%.16s]\n", buf);
    say("pread count 0", pread(fd, buf, 0, 10));
    say("pread negative offset", pread(fd, buf, 4, -1));
    say("pwrite negative offset", pwrite(fd, "x", 1, -1));
    say("pread bad buffer", pread(fd, BAD, 4, 0));
    say("pwrite bad buffer", pwrite(fd, BAD, 4, 0));
    say("pread past the end", pread(fd, buf, 4, 100000));
    say("position unchanged by pread/pwrite", lseek(fd, 0, SEEK_CUR));
    say("pread directory", pread(dir, buf, 4, 0));
    int pp[2];
    pipe(pp);
    say("lseek pipe", lseek(pp[0], 0, SEEK_SET));
    say("pread pipe", pread(pp[0], buf, 1, 0));
    int null = open("/dev/null", O_RDWR);
    say("write /dev/null", write(null, buf, 64));
    say("read /dev/null", read(null, buf, 64));
    int zfd = open("/dev/zero", O_RDONLY);
    memset(buf, 1, sizeof buf);
    say("read /dev/zero", read(zfd, buf, 16));
    printf("  zeros: %d\n", buf[0] == 0 && buf[15] == 0);
}

static void pipes(void) {
    int p[2];
    char buf[64];
    pipe(p);
    say("write pipe", write(p[1], "abc", 3));
    say("read pipe", read(p[0], buf, 10));
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    say("read empty non-blocking", read(p[0], buf, 10));
    fcntl(p[0], F_SETFL, 0);
    handle(SIGALRM, 0);
    alarm_in(50000);
    caught = 0;
    say("read empty, interrupted", read(p[0], buf, 10));
    printf("  caught %d\n", caught);
    handle(SIGALRM, SA_RESTART);
    pid_t child = fork();
    if (child == 0) {
        usleep(300000);
        write(p[1], "late", 4);
        _exit(0);
    }
    alarm_in(30000);
    caught = 0;
    long n = read(p[0], buf, 10);
    say("read empty, restarted", n);
    printf("  [%.*s] caught %d\n", (int)(n > 0 ? n : 0), buf, caught);
    waitpid(child, NULL, 0);
    struct iovec v[2] = {{buf, 2}, {buf + 2, 2}};
    write(p[1], "wxyz", 4);
    say("readv pipe", readv(p[0], v, 2));
    printf("  [%.4s]\n", buf);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    say("write, no reader, ignored", write(p[1], "x", 1));
    handle(SIGPIPE, 0);
    caught = 0;
    say("write, no reader, handled", write(p[1], "x", 1));
    printf("  caught %d\n", caught);
    struct iovec w[1] = {{"y", 1}};
    caught = 0;
    say("writev, no reader, handled", writev(p[1], w, 1));
    printf("  caught %d\n", caught);
    close(p[1]);
}

static void sockets(void) {
    int s[2];
    char buf[64];
    socketpair(AF_UNIX, SOCK_STREAM, 0, s);
    say("send", send(s[0], "ping", 4, 0));
    say("recvfrom", recvfrom(s[1], buf, sizeof buf, 0, NULL, NULL));
    printf("  [%.4s]\n", buf);
    say("recvfrom empty, MSG_DONTWAIT", recvfrom(s[1], buf, sizeof buf, MSG_DONTWAIT, NULL, NULL));
    write(s[0], "peek", 4);
    say("recvfrom MSG_PEEK", recvfrom(s[1], buf, sizeof buf, MSG_PEEK, NULL, NULL));
    say("read socket", read(s[1], buf, 2));
    say("recvfrom rest", recvfrom(s[1], buf, sizeof buf, 0, NULL, NULL));
    printf("  [%.2s]\n", buf);
    write(s[0], "data", 4);
    say("recvfrom bad buffer", recvfrom(s[1], BAD, 8, 0, NULL, NULL));
    say("recvfrom after that", recvfrom(s[1], buf, sizeof buf, 0, NULL, NULL));
    handle(SIGALRM, 0);
    alarm_in(50000);
    caught = 0;
    say("recvfrom empty, interrupted", recvfrom(s[1], buf, sizeof buf, 0, NULL, NULL));
    printf("  caught %d\n", caught);
    fcntl(s[1], F_SETFL, O_NONBLOCK);
    say("recvfrom empty, non-blocking", recvfrom(s[1], buf, sizeof buf, 0, NULL, NULL));
    say("read empty socket, non-blocking", read(s[1], buf, sizeof buf));
    shutdown(s[0], SHUT_WR);
    say("recvfrom after shutdown", recvfrom(s[1], buf, sizeof buf, 0, NULL, NULL));
    int d[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, d);
    send(d[0], "dgram-one", 9, 0);
    say("recvfrom datagram", recvfrom(d[1], buf, sizeof buf, 0, NULL, NULL));
    printf("  [%.9s]\n", buf);
    int f = open("/tmp/gate-sock-file", O_RDWR | O_CREAT | O_TRUNC, 0644);
    say("recvfrom a file", recvfrom(f, buf, 4, 0, NULL, NULL));
    say("recvfrom bad fd", recvfrom(777, buf, 4, 0, NULL, NULL));
    close(s[0]);
    close(s[1]);
    socketpair(AF_UNIX, SOCK_STREAM, 0, s);
    close(s[1]);
    signal(SIGPIPE, SIG_IGN);
    say("write to a closed peer", write(s[0], "x", 1));
}

static void epolls(void) {
    int ep = epoll_create1(0), p[2];
    pipe(p);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 42}, out[4];
    say("epoll_ctl add", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev));
    say("epoll_ctl add again", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev));
    ev.events = EPOLLIN | EPOLLET;
    say("epoll_ctl mod", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev));
    say("epoll_ctl bad op", epoll_ctl(ep, 99, p[0], &ev));
    say("epoll_ctl bad fd", epoll_ctl(ep, EPOLL_CTL_ADD, 555, &ev));
    say("epoll_ctl bad event", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], BAD));
    say("epoll_ctl itself", epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev));
    say("epoll_ctl on a pipe", epoll_ctl(p[0], EPOLL_CTL_ADD, p[1], &ev));
    say("epoll_wait nothing, 0", epoll_wait(ep, out, 4, 0));
    say("epoll_wait nothing, 30 ms", epoll_wait(ep, out, 4, 30));
    write(p[1], "e", 1);
    long n = epoll_wait(ep, out, 4, -1);
    say("epoll_wait ready", n);
    printf("  data %llu events %#x\n", (unsigned long long)out[0].data.u64, out[0].events);
    say("epoll_wait edge, already seen", epoll_wait(ep, out, 4, 0));
    say("epoll_wait maxevents 0", epoll_wait(ep, out, 0, 0));
    say("epoll_wait not epoll", epoll_wait(p[0], out, 4, 0));
    write(p[1], "f", 1);
    say("epoll_pwait ready", epoll_pwait(ep, out, 4, -1, NULL));
    handle(SIGALRM, 0);
    alarm_in(50000);
    caught = 0;
    ev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL);
    say("epoll_wait empty, interrupted", epoll_wait(ep, out, 4, -1));
    printf("  caught %d\n", caught);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    sigprocmask(SIG_BLOCK, &block, NULL);
    sigset_t none;
    sigemptyset(&none);
    alarm_in(30000);
    caught = 0;
    say("epoll_pwait with a mask, interrupted", epoll_pwait(ep, out, 4, -1, &none));
    printf("  caught %d\n", caught);
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    say("epoll_ctl add back", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev));
    say("epoll_ctl del", epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
    say("epoll_ctl del again", epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
}

static void times(void) {
    struct timespec a, b, c;
    struct timeval tv;
    struct timezone tz = {99, 99};
    say("clock_gettime monotonic", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &a));
    say("clock_gettime monotonic again", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &b));
    printf("  not backwards: %d\n", b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec));
    printf("  nsec in range: %d\n", a.tv_nsec >= 0 && a.tv_nsec < 1000000000);
    say("clock_gettime realtime", syscall(SYS_clock_gettime, CLOCK_REALTIME, &c));
    say("gettimeofday", syscall(SYS_gettimeofday, &tv, &tz));
    printf("  tz %d %d; usec in range: %d\n", tz.tz_minuteswest, tz.tz_dsttime,
           tv.tv_usec >= 0 && tv.tv_usec < 1000000);
    long t = syscall(SYS_time, NULL), t2 = 0;
    say("time into memory", syscall(SYS_time, &t2) > 0);
    printf("  agree: %d\n", labs(t - c.tv_sec) <= 2 && labs(tv.tv_sec - c.tv_sec) <= 2 && labs(t2 - t) <= 2);
    say("gettimeofday no arguments", syscall(SYS_gettimeofday, NULL, NULL));
    say("clock_gettime process cpu", syscall(SYS_clock_gettime, CLOCK_PROCESS_CPUTIME_ID, &a));
    say("clock_gettime boottime", syscall(SYS_clock_gettime, CLOCK_BOOTTIME, &a));
    say("clock_gettime bad clock", syscall(SYS_clock_gettime, 12345, &a));
    say("clock_gettime bad address", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, BAD));
    say("clock_gettime null", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, NULL));
    say("gettimeofday bad tv", syscall(SYS_gettimeofday, BAD, NULL));
    say("gettimeofday bad tz", syscall(SYS_gettimeofday, &tv, BAD));
    say("time bad address", syscall(SYS_time, BAD));
}

static void sendfiles(void) {
    int f = open("/tmp/gate-send", O_RDWR | O_CREAT | O_TRUNC, 0644);
    char data[1000];
    for (int i = 0; i < 1000; i++)
        data[i] = 'a' + i % 26;
    write(f, data, sizeof data);
    lseek(f, 0, SEEK_SET);
    int p[2];
    pipe(p);
    off_t off = 100;
    say("sendfile at an offset", sendfile(p[1], f, &off, 50));
    printf("  offset now %ld, file position %ld\n", (long)off, (long)lseek(f, 0, SEEK_CUR));
    char buf[64];
    read(p[0], buf, 50);
    printf("  [%.50s]\n", buf);
    say("sendfile from the position", sendfile(p[1], f, NULL, 30));
    printf("  file position %ld\n", (long)lseek(f, 0, SEEK_CUR));
    read(p[0], buf, 30);
    printf("  [%.30s]\n", buf);
    say("sendfile bad offset pointer", sendfile(p[1], f, BAD, 10));
    off = -1;
    say("sendfile negative offset", sendfile(p[1], f, &off, 10));
    say("sendfile bad in fd", sendfile(p[1], 444, NULL, 10));
    say("sendfile bad out fd", sendfile(444, f, NULL, 10));
    off = 990;
    say("sendfile past the end", sendfile(p[1], f, &off, 50));
    printf("  offset now %ld\n", (long)off);
}

static void stats(void) {
    struct stat a, b;
    int f = open("/tmp/gate-stat", O_RDWR | O_CREAT | O_TRUNC, 0600);
    write(f, "twelve bytes", 12);
    memset(&a, 0x55, sizeof a);
    memset(&b, 0xaa, sizeof b);
    say("fstat", fstat(f, &a));
    printf("  regular %d mode %o size %ld nlink %ld\n", S_ISREG(a.st_mode), a.st_mode & 07777,
           (long)a.st_size, (long)a.st_nlink);
    say("newfstatat empty path", syscall(SYS_newfstatat, f, "", &b, AT_EMPTY_PATH));
    printf("  the same: %d\n", memcmp(&a, &b, sizeof a) == 0);
    int p[2], s[2];
    pipe(p);
    socketpair(AF_UNIX, SOCK_STREAM, 0, s);
    say("fstat pipe", fstat(p[0], &a));
    printf("  fifo %d\n", S_ISFIFO(a.st_mode));
    say("fstat socket", syscall(SYS_newfstatat, s[0], "", &a, AT_EMPTY_PATH));
    printf("  socket %d\n", S_ISSOCK(a.st_mode));
    int null = open("/dev/null", O_RDONLY);
    say("fstat /dev/null", fstat(null, &a));
    printf("  char %d rdev %d:%d\n", S_ISCHR(a.st_mode), major(a.st_rdev), minor(a.st_rdev));
    say("fstat bad buffer", syscall(SYS_fstat, f, BAD));
    say("fstat bad fd", syscall(SYS_fstat, 333, &a));
    say("newfstatat empty path, no flag", syscall(SYS_newfstatat, f, "", &a, 0));
    say("newfstatat empty path, cwd", syscall(SYS_newfstatat, AT_FDCWD, "", &a, AT_EMPTY_PATH));
    printf("  directory %d\n", S_ISDIR(a.st_mode));
    say("newfstatat bad fd", syscall(SYS_newfstatat, 333, "", &a, AT_EMPTY_PATH));
    say("newfstatat bad buffer", syscall(SYS_newfstatat, f, "", BAD, AT_EMPTY_PATH));
    say("newfstatat bad path", syscall(SYS_newfstatat, f, BAD, &a, AT_EMPTY_PATH));
}

/* <linux/futex.h>'s (musl-gcc has no kernel headers) */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_REQUEUE 3
#define FUTEX_CMP_REQUEUE 4
#define FUTEX_WAKE_OP 5
#define FUTEX_WAKE_BITSET 10
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256
#define FUTEX_WAIT_PRIVATE (FUTEX_WAIT | FUTEX_PRIVATE_FLAG)
#define FUTEX_WAKE_PRIVATE (FUTEX_WAKE | FUTEX_PRIVATE_FLAG)
#define FUTEX_CMP_REQUEUE_PRIVATE (FUTEX_CMP_REQUEUE | FUTEX_PRIVATE_FLAG)
#define FUTEX_WAKE_OP_PRIVATE (FUTEX_WAKE_OP | FUTEX_PRIVATE_FLAG)
#define FUTEX_OP_SET 0
#define FUTEX_OP_CMP_EQ 0
#define FUTEX_OP(op, oparg, cmp, cmparg) \
    (((op & 0xf) << 28) | ((cmp & 0xf) << 24) | ((oparg & 0xfff) << 12) | (cmparg & 0xfff))

static int word, word2;

static long futex(int *uaddr, int op, int val, long val2, int *uaddr2, int val3) {
    return syscall(SYS_futex, uaddr, op, val, val2, uaddr2, val3);
}

static void *waiter(void *arg) {
    /* Wait until the word is 1 (a futex waiter may wake spuriously: it looks again). */
    while (__atomic_load_n(&word, __ATOMIC_ACQUIRE) == 0)
        futex(&word, FUTEX_WAIT_PRIVATE, 0, 0, NULL, 0);
    return (void *)1L;
}

static void futexes(void) {
    say("wake, nobody waits", futex(&word, FUTEX_WAKE_PRIVATE, 1, 0, NULL, 0));
    say("wake, unaligned", futex((int *)((char *)&word + 1), FUTEX_WAKE, 1, 0, NULL, 0));
    say("wake, bad address", futex(BAD, FUTEX_WAKE, 1, 0, NULL, 0));
    say("wake, realtime clock", futex(&word, FUTEX_WAKE | FUTEX_CLOCK_REALTIME, 1, 0, NULL, 0));
    say("wake_bitset, no bits", futex(&word, FUTEX_WAKE_BITSET, 1, 0, NULL, 0));
    say("wait, value differs", futex(&word, FUTEX_WAIT_PRIVATE, 7, 0, NULL, 0));
    say("cmp_requeue, value differs", futex(&word, FUTEX_CMP_REQUEUE_PRIVATE, 0, 1, &word2, 5));
    say("cmp_requeue, nobody waits", futex(&word, FUTEX_CMP_REQUEUE_PRIVATE, 0, 1, &word2, 0));
    say("wake_op, nobody waits", futex(&word, FUTEX_WAKE_OP_PRIVATE, 1, 1, &word2,
                                        FUTEX_OP(FUTEX_OP_SET, 5, FUTEX_OP_CMP_EQ, 0)));
    printf("  word2 now %d\n", word2);
    say("requeue, bad second address", futex(&word, FUTEX_REQUEUE, 0, 1, BAD, 0));
    say("requeue, unaligned second address", futex(&word, FUTEX_REQUEUE, 0, 1, (int *)((char *)&word2 + 2), 0));
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, waiter, NULL);
    usleep(50000);
    __atomic_store_n(&word, 1, __ATOMIC_RELEASE);
    long woken = 0;
    for (int i = 0; i < 3; i++) {
        void *r;
        woken += futex(&word, FUTEX_WAKE_PRIVATE, 3, 0, NULL, 0) >= 0;
        pthread_join(t[i], &r);
        printf("  waiter %d: %ld\n", i, (long)r);
    }
    printf("  wakes that worked: %ld\n", woken);
    say("sched_yield", syscall(SYS_sched_yield));
}

#define ROUNDS 3000
static void *worker(void *arg) {
    long id = (long)arg, bad = 0;
    int p[2];
    pipe(p);
    for (long i = 0; i < ROUNDS; i++) {
        long in = id * 1000000 + i, out = -1;
        struct timespec ts;
        if (write(p[1], &in, sizeof in) != sizeof in || read(p[0], &out, sizeof out) != sizeof out
                || out != in || syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) != 0)
            bad++;
    }
    close(p[0]);
    close(p[1]);
    return (void *)bad;
}

static void threads(void) {
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    long bad = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (long)r;
    }
    printf("threads: %d x %d rounds, %ld bad\n", 4, ROUNDS, bad);
}

static void many(void) {
    /* Enough plain calls that a gate serving nothing shows in KILN_GATE_STATS. */
    int null = open("/dev/null", O_WRONLY);
    struct timespec ts;
    long ok = 0;
    for (int i = 0; i < 2000; i++)
        ok += write(null, "x", 1) == 1 && syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) == 0;
    printf("many: %ld\n", ok);
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "io")) io();
    else if (!strcmp(c, "pipes")) pipes();
    else if (!strcmp(c, "sockets")) sockets();
    else if (!strcmp(c, "epoll")) epolls();
    else if (!strcmp(c, "time")) times();
    else if (!strcmp(c, "sendfile")) sendfiles();
    else if (!strcmp(c, "stat")) stats();
    else if (!strcmp(c, "futex")) futexes();
    else if (!strcmp(c, "threads")) threads();
    else if (!strcmp(c, "many")) many();
    else { fprintf(stderr, "usage: edges io|pipes|sockets|epoll|time|sendfile|stat|futex|threads|many\n"); return 2; }
    return 0;
}
