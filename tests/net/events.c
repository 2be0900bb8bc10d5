/* Event loops compared between Linux and vkernel: events NAME. Every line printed is a fact a
   server relies on; nothing depends on timing beyond generous margins. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#define CHECK(x) do { if ((x) < 0) { printf("%s: %s\n", #x, strerror(errno)); exit(1); } } while (0)
/* A call's result and, when it failed, its errno (evaluated in that order). */
#define SHOW(label, x) do { long r_ = (long)(x); int e_ = errno; \
    printf("%s: %ld%s%s\n", label, r_, r_ < 0 ? " " : "", r_ < 0 ? strerror(e_) : ""); } while (0)

static int wait_n(int ep, int timeout) {
    struct epoll_event ev[16];
    int n = epoll_wait(ep, ev, 16, timeout);
    printf("  epoll_wait -> %d", n);
    for (int i = 0; i < n; i++) printf(" [%llx:%s%s%s]", (unsigned long long)ev[i].data.u64,
                                       ev[i].events & EPOLLIN ? "IN" : "",
                                       ev[i].events & EPOLLOUT ? "OUT" : "",
                                       ev[i].events & EPOLLHUP ? "HUP" : "");
    printf("\n");
    return n;
}

static int triggers(void) {
    int p[2]; CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC));
    printf("pipe2 flags: rd nonblock=%d cloexec=%d\n", !!(fcntl(p[0], F_GETFL) & O_NONBLOCK),
           !!(fcntl(p[0], F_GETFD) & FD_CLOEXEC));
    int ep = epoll_create1(EPOLL_CLOEXEC); CHECK(ep);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0x1122334455667788ULL};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e));
    SHOW("add twice", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e));
    printf("level triggered:\n");
    wait_n(ep, 0);
    write(p[1], "ab", 2);
    wait_n(ep, 0); wait_n(ep, 0);
    e.events = EPOLLIN | EPOLLET; e.data.u64 = 7;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &e));
    printf("edge triggered:\n");
    wait_n(ep, 0); wait_n(ep, 0);
    write(p[1], "c", 1);
    wait_n(ep, 0); wait_n(ep, 0);
    e.events = EPOLLIN | EPOLLONESHOT; e.data.u64 = 9;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &e));
    printf("oneshot:\n");
    wait_n(ep, 0); wait_n(ep, 0);
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &e));
    wait_n(ep, 0);
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
    printf("del: "); wait_n(ep, 0);
    SHOW("del again", epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
    close(p[1]);
    e.events = EPOLLIN; e.data.u64 = 3;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e));
    printf("hangup: "); wait_n(ep, 0);
    SHOW("bad fd", epoll_ctl(ep, EPOLL_CTL_ADD, 999, &e));
    SHOW("maxevents 0", epoll_wait(ep, (void *)&e, 0, 0));
    SHOW("epoll on itself", epoll_ctl(ep, EPOLL_CTL_ADD, ep, &e));
    /* timeout honoured */
    int q[2]; pipe(q);
    e.events = EPOLLIN; e.data.u64 = 4; epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &e);
    epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL);
    struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
    int n = epoll_wait(ep, &e, 1, 120);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    printf("timeout: %d after >=100ms: %d\n", n, ms >= 100);
    return 0;
}

static int exclusive(void) {
    /* EPOLLEXCLUSIVE: three processes wait on one eventfd, each in its own epoll instance;
       one event wakes one of them (the others time out). */
    int efd = eventfd(0, EFD_NONBLOCK); CHECK(efd);
    int done[2], ready[2]; pipe(done); pipe(ready);
    for (int i = 0; i < 3; i++) {
        if (fork() == 0) {
            int ep = epoll_create1(0);
            struct epoll_event e = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u32 = i};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &e)) { printf("exclusive add: %s\n", strerror(errno)); _exit(1); }
            write(ready[1], "r", 1);
            int n = epoll_wait(ep, &e, 1, 1500);
            char c = n == 1 ? 'y' : 'n'; write(done[1], &c, 1);
            _exit(0);
        }
    }
    char c;
    for (int i = 0; i < 3; i++) read(ready[0], &c, 1);
    usleep(300000);                    /* all three are in epoll_wait by now */
    uint64_t one = 1; write(efd, &one, 8);
    int st, ok = 0;
    for (int i = 0; i < 3; i++) wait(&st);
    close(done[1]);
    while (read(done[0], &c, 1) == 1) ok += c == 'y';
    printf("exclusive: %d waiters saw the event\n", ok);
    struct epoll_event e = {.events = EPOLLIN | EPOLLEXCLUSIVE};
    int ep = epoll_create1(0); epoll_ctl(ep, EPOLL_CTL_ADD, efd, &e);
    e.events = EPOLLIN;
    SHOW("mod exclusive", epoll_ctl(ep, EPOLL_CTL_MOD, efd, &e));
    return 0;
}

static void on_alarm(int s) { (void)s; }

static int interrupted(void) {
    /* A handler without SA_RESTART ends epoll_wait with EINTR; SIGCHLD ignored does not. */
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    int ep = epoll_create1(0), p[2]; pipe(p);
    struct epoll_event e = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
    struct itimerval it = {.it_value = {0, 50000}};
    setitimer(ITIMER_REAL, &it, NULL);
    SHOW("epoll_wait and SIGALRM", epoll_wait(ep, &e, 1, 5000));
    setitimer(ITIMER_REAL, &it, NULL);
    sigset_t none; sigemptyset(&none);
    SHOW("epoll_pwait and SIGALRM", epoll_pwait(ep, &e, 1, 5000, &none));
    sigset_t alrm; sigemptyset(&alrm); sigaddset(&alrm, SIGALRM);
    sigprocmask(SIG_BLOCK, &alrm, NULL);
    setitimer(ITIMER_REAL, &it, NULL);
    SHOW("epoll_wait with SIGALRM blocked", epoll_wait(ep, &e, 1, 200));
    SHOW("epoll_pwait unblocking it", epoll_pwait(ep, &e, 1, 5000, &none));
    return 0;
}

static volatile sig_atomic_t sigios;
static void on_sigio(int s) { (void)s; sigios++; }

static int sigio(void) {
    /* Signal-driven I/O as nginx's master sets it on each worker's channel: FIOASYNC and
       F_SETOWN on one end of a socketpair; data arriving there raises SIGIO in the owner. */
    struct sigaction sa = {.sa_handler = on_sigio};
    sigaction(SIGIO, &sa, NULL);
    int sv[2]; CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    int on = 1;
    SHOW("ioctl FIOASYNC", ioctl(sv[0], FIOASYNC, &on));
    SHOW("F_SETOWN self", fcntl(sv[0], F_SETOWN, getpid()));
    printf("F_GETOWN is self: %d\n", fcntl(sv[0], F_GETOWN) == getpid());
    printf("O_ASYNC in F_GETFL: %d\n", !!(fcntl(sv[0], F_GETFL) & O_ASYNC));
    sigset_t io, old; sigemptyset(&io); sigaddset(&io, SIGIO);
    sigprocmask(SIG_BLOCK, &io, &old);
    CHECK(write(sv[1], "x", 1));
    sigsuspend(&old);                       /* returns once SIGIO has been handled */
    sigprocmask(SIG_SETMASK, &old, NULL);
    printf("SIGIO handled: %d\n", sigios >= 1);
    on = 0;
    SHOW("ioctl FIOASYNC off", ioctl(sv[0], FIOASYNC, &on));
    printf("O_ASYNC in F_GETFL: %d\n", !!(fcntl(sv[0], F_GETFL) & O_ASYNC));
    SHOW("F_SETOWN 0", fcntl(sv[0], F_SETOWN, 0));
    pid_t child = fork();
    if (child == 0) { pause(); _exit(0); }
    SHOW("F_SETOWN a child", fcntl(sv[0], F_SETOWN, child));
    printf("F_GETOWN is the child: %d\n", fcntl(sv[0], F_GETOWN) == child);
    kill(child, SIGKILL); waitpid(child, NULL, 0);
    return 0;
}

static int eventfds(void) {
    int e = eventfd(5, EFD_NONBLOCK | EFD_CLOEXEC); CHECK(e);
    uint64_t v = 0;
    SHOW("read", read(e, &v, 8));
    printf("value %llu\n", (unsigned long long)v);
    SHOW("empty", read(e, &v, 8));
    SHOW("short", read(e, &v, 4));
    int s = eventfd(3, EFD_SEMAPHORE);
    read(s, &v, 8); printf("semaphore: %llu", (unsigned long long)v);
    read(s, &v, 8); printf(" %llu", (unsigned long long)v);
    v = 10; write(s, &v, 8); read(s, &v, 8); printf(" %llu\n", (unsigned long long)v);
    /* blocking read woken by a child */
    int b = eventfd(0, 0);
    if (fork() == 0) { usleep(50000); v = 42; write(b, &v, 8); _exit(0); }
    read(b, &v, 8); printf("blocking read got %llu\n", (unsigned long long)v);
    wait(NULL);
    return 0;
}

static int timers(void) {
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC); CHECK(t);
    struct itimerspec its = {.it_value = {0, 30000000}, .it_interval = {0, 20000000}};
    CHECK(timerfd_settime(t, 0, &its, NULL));
    uint64_t n = 0; read(t, &n, 8); printf("first expiry: %llu\n", (unsigned long long)(n >= 1));
    usleep(70000);
    read(t, &n, 8); printf("later expiries >= 2: %d\n", n >= 2);
    struct itimerspec cur; timerfd_gettime(t, &cur);
    printf("interval kept: %ld ns\n", cur.it_interval.tv_nsec);
    struct itimerspec off = {0}, old;
    timerfd_settime(t, 0, &off, &old);
    printf("old interval: %ld ns\n", old.it_interval.tv_nsec);
    int nb = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
    SHOW("unarmed", read(nb, &n, 8));
    struct timespec now; clock_gettime(CLOCK_REALTIME, &now);
    struct itimerspec abs = {.it_value = {now.tv_sec, now.tv_nsec}};
    timerfd_settime(nb, TFD_TIMER_ABSTIME, &abs, NULL);
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = 77};
    epoll_ctl(ep, EPOLL_CTL_ADD, nb, &e);
    printf("absolute past time fires:"); wait_n(ep, 1000);
    SHOW("bad clock", timerfd_create(12345, 0));
    SHOW("bad flags", timerfd_create(CLOCK_MONOTONIC, 0x10));
    return 0;
}

static int signalfds(void) {
    sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR1); sigaddset(&m, SIGCHLD);
    sigprocmask(SIG_BLOCK, &m, NULL);
    int s = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC); CHECK(s);
    struct signalfd_siginfo si;
    SHOW("none", read(s, &si, sizeof si));
    kill(getpid(), SIGUSR1);
    ssize_t r = read(s, &si, sizeof si);
    printf("got %zd signo %u from self %d\n", r, si.ssi_signo, si.ssi_pid == (uint32_t)getpid());
    pid_t c = fork();
    if (c == 0) _exit(7);
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = 5};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &e);
    printf("child exit:"); wait_n(ep, 5000);
    r = read(s, &si, sizeof si);
    printf("got %zd signo %u status %d child %d\n", r, si.ssi_signo, si.ssi_status, si.ssi_pid == (uint32_t)c);
    waitpid(c, NULL, 0);
    sigdelset(&m, SIGCHLD);
    sigaddset(&m, SIGUSR2); sigprocmask(SIG_BLOCK, &m, NULL);
    printf("update: %d\n", signalfd(s, &m, 0) == s);
    kill(getpid(), SIGUSR2);
    r = read(s, &si, sizeof si);
    printf("got %zd signo %u\n", r, si.ssi_signo);
    SHOW("not a signalfd", signalfd(ep, &m, 0));
    return 0;
}

static int transfers(void) {
    char name[] = "/tmp/xfer.XXXXXX";
    int f = mkstemp(name); CHECK(f);
    for (int i = 0; i < 1000; i++) dprintf(f, "line %04d\n", i);
    int sv[2]; CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    off_t off = 100;
    ssize_t n = sendfile(sv[0], f, &off, 50);
    char buf[8192]; ssize_t r = read(sv[1], buf, sizeof buf);
    printf("sendfile %zd off %ld: %.20s\n", n, (long)off, buf);
    off = -1;
    errno = 0;
    n = sendfile(sv[0], f, &off, 50);
    printf("sendfile from offset -1: %zd %s\n", n, strerror(errno));
    off = 0;
    n = sendfile(sv[0], f, &off, (size_t)-1 / 2);     /* a count past MAX_RW_COUNT */
    ssize_t got = 0;
    while (n > 0 && got < n && (r = read(sv[1], buf, sizeof buf)) > 0) got += r;
    printf("sendfile of a huge count: %zd off %ld read %zd\n", n, (long)off, got);
    lseek(f, 0, SEEK_SET);
    int p[2]; pipe(p);
    loff_t in = 20;
    n = splice(f, &in, p[1], NULL, 40, 0);
    printf("splice file->pipe %zd in=%ld\n", n, (long)in);
    int q[2]; pipe(q);
    n = tee(p[0], q[1], 40, 0);
    printf("tee %zd\n", n);
    n = splice(p[0], NULL, sv[0], NULL, 40, SPLICE_F_MORE);
    r = read(sv[1], buf, sizeof buf);
    printf("splice pipe->socket %zd: %.*s", n, (int)r, buf);
    r = read(q[0], buf, sizeof buf); printf("tee copy %zd: %.*s", r, (int)r, buf);
    unlink(name);
    return 0;
}

static int listen_accept(void) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0); CHECK(s);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(s, (void *)&a, sizeof a)); CHECK(listen(s, 64));
    socklen_t l = sizeof a; getsockname(s, (void *)&a, &l);
    SHOW("accept empty", accept4(s, NULL, NULL, 0));
    SHOW("accept4 bad flags", accept4(s, NULL, NULL, 0x10));
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.u32 = 1000};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &e);
    enum { N = 40 };
    int clients[N];
    for (int i = 0; i < N; i++) {
        clients[i] = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(connect(clients[i], (void *)&a, sizeof a));
        dprintf(clients[i], "client %d\n", i);
    }
    int served = 0, accepted = 0, hup = 0;
    long sum = 0;
    while (served < N) {
        struct epoll_event ev[8];
        int n = epoll_wait(ep, ev, 8, 5000);
        if (n <= 0) { printf("stuck\n"); break; }
        for (int j = 0; j < n; j++) {
            if (ev[j].data.u32 == 1000) {
                int c;
                while ((c = accept4(s, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    accepted++;
                    if (!(fcntl(c, F_GETFL) & O_NONBLOCK) || !(fcntl(c, F_GETFD) & FD_CLOEXEC))
                        printf("accept4 flags lost\n");
                    struct epoll_event ce = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                if (errno != EAGAIN) printf("accept4: %s\n", strerror(errno));
            } else {
                char buf[64]; int c = ev[j].data.u32;
                ssize_t r = read(c, buf, sizeof buf - 1);
                if (r > 0) { buf[r] = 0; sum += atoi(buf + 7); write(c, "ok\n", 3); served++; }
                if (ev[j].events & EPOLLRDHUP) hup++;
            }
        }
    }
    for (int i = 0; i < N; i++) { char b[4]; read(clients[i], b, 3); close(clients[i]); }
    printf("accepted %d served %d sum %ld\n", accepted, served, sum);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "triggers")) return triggers();
    if (!strcmp(w, "exclusive")) return exclusive();
    if (!strcmp(w, "interrupted")) return interrupted();
    if (!strcmp(w, "eventfd")) return eventfds();
    if (!strcmp(w, "sigio")) return sigio();
    if (!strcmp(w, "timerfd")) return timers();
    if (!strcmp(w, "signalfd")) return signalfds();
    if (!strcmp(w, "transfers")) return transfers();
    if (!strcmp(w, "accept")) return listen_accept();
    printf("unknown %s\n", w);
    return 2;
}
