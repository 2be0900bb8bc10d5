/* Process descriptors as a user checks them: pidfd_open, poll until the child ends,
   waitid(P_PIDFD), clone's CLONE_PIDFD, pidfd_send_signal to a child and to oneself (also through a /proc/self
   directory descriptor), and the errors. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int pidfd_open(pid_t pid, unsigned flags) { return syscall(434, pid, flags); }
static int pidfd_send_signal(int fd, int sig, void *info, unsigned flags) {
    return syscall(424, fd, sig, info, flags);
}
static void said(const char *what, long r) {
    if (r < 0) printf("%s: %s\n", what, strerror(errno));
    else printf("%s: %ld\n", what, r);
}
static volatile sig_atomic_t got;
static void on_usr1(int s) { got = s; }

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    int p[2];
    pipe(p);
    pid_t kid = fork();
    if (kid == 0) { char c; read(p[0], &c, 1); _exit(7); }
    int fd = pidfd_open(kid, 0);
    said("pidfd_open of a child", fd >= 0 ? 0 : -1);
    printf("close-on-exec: %d\n", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    struct pollfd pf = {fd, POLLIN, 0};
    said("poll while it runs", poll(&pf, 1, 50));
    write(p[1], "x", 1);
    said("poll until it ends", poll(&pf, 1, 10000));
    printf("readable: %d\n", (pf.revents & POLLIN) != 0);
    siginfo_t si = {0};
    said("waitid P_PIDFD", waitid(P_PIDFD, fd, &si, WEXITED));
    printf("child: code %d status %d pid matches %d\n", si.si_code, si.si_status, si.si_pid == kid);
    said("signal the ended child", pidfd_send_signal(fd, SIGTERM, NULL, 0));
    close(fd);

    kid = fork();
    if (kid == 0) { pause(); _exit(0); }
    fd = pidfd_open(kid, 0);
    said("SIGTERM through the pidfd", pidfd_send_signal(fd, SIGTERM, NULL, 0));
    int status;
    waitpid(kid, &status, 0);
    printf("child killed by %d\n", WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    close(fd);

    int cfd = -1;
    long c = syscall(SYS_clone, SIGCHLD | 0x1000 /* CLONE_PIDFD */, 0, &cfd, 0, 0);
    if (c == 0) _exit(3);
    said("clone with CLONE_PIDFD", c > 0 ? 0 : -1);
    printf("its pidfd is close-on-exec: %d\n", (fcntl(cfd, F_GETFD) & FD_CLOEXEC) != 0);
    siginfo_t ci = {0};
    said("waitid on it", waitid(P_PIDFD, cfd, &ci, WEXITED));
    printf("clone child: status %d pid matches %d\n", ci.si_status, ci.si_pid == c);
    close(cfd);
    said("CLONE_PIDFD with CLONE_PARENT_SETTID",
         syscall(SYS_clone, SIGCHLD | 0x1000 | 0x100000, 0, &cfd, 0, 0));

    signal(SIGUSR1, on_usr1);
    int self = pidfd_open(getpid(), 0);
    said("signal 0 to oneself", pidfd_send_signal(self, 0, NULL, 0));
    said("unknown flags", pidfd_send_signal(self, 0, NULL, 1u << 20));
    said("SIGUSR1 to oneself", pidfd_send_signal(self, SIGUSR1, NULL, 0));
    printf("handler ran: %d\n", got == SIGUSR1);
    got = 0;
    int dir = open("/proc/self", O_DIRECTORY | O_RDONLY);
    said("SIGUSR1 through /proc/self", pidfd_send_signal(dir, SIGUSR1, NULL, 0));
    printf("handler ran: %d\n", got == SIGUSR1);
    said("a plain fd", pidfd_send_signal(0, SIGUSR1, NULL, 0));
    said("no such process", pidfd_open(999999, 0));
    said("pid 0", pidfd_open(0, 0));
    said("bad flags", pidfd_open(getpid(), 1));
    int nb = pidfd_open(getpid(), O_NONBLOCK);
    printf("nonblock: %d\n", (fcntl(nb, F_GETFL) & O_NONBLOCK) != 0);
    return 0;
}
