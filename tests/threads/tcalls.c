/* The thread-identity and scheduling calls of a single-threaded process, compared between Linux
   and vkernel: gettid, set_tid_address, tgkill/tkill, sched_{get,set}affinity, membarrier,
   get/setpriority. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHOW(label, x) do { long r_ = (long)(x); int e_ = errno; \
    printf("%s: %ld%s%s\n", label, r_ < 0 ? -1L : r_ > 0 ? 1L : 0L, r_ < 0 ? " " : "", \
           r_ < 0 ? strerror(e_) : ""); } while (0)

static volatile sig_atomic_t got;
static void on_usr1(int s) { got = s; }

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    long tid = syscall(SYS_gettid);
    printf("gettid is getpid: %d\n", tid == getpid());
    int word = 0;
    printf("set_tid_address returns the tid: %d\n", syscall(SYS_set_tid_address, &word) == tid);
    signal(SIGUSR1, on_usr1);
    SHOW("tgkill self", syscall(SYS_tgkill, getpid(), tid, SIGUSR1));
    printf("handler ran: %d\n", got == SIGUSR1);
    got = 0;
    SHOW("tkill self", syscall(SYS_tkill, tid, SIGUSR1));
    printf("handler ran: %d\n", got == SIGUSR1);
    SHOW("tgkill signal 0", syscall(SYS_tgkill, getpid(), tid, 0));
    SHOW("tgkill wrong group", syscall(SYS_tgkill, getpid() + 100000, tid, 0));
    SHOW("tgkill bad signal", syscall(SYS_tgkill, getpid(), tid, 1000));
    SHOW("tgkill tid 0", syscall(SYS_tgkill, getpid(), 0, SIGUSR1));

    cpu_set_t all, one, back;
    CPU_ZERO(&all);
    SHOW("getaffinity", sched_getaffinity(0, sizeof all, &all));
    int first = -1;
    for (int c = 0; c < CPU_SETSIZE; c++) if (CPU_ISSET(c, &all)) { first = c; break; }
    CPU_ZERO(&one); CPU_SET(first, &one);
    int p[2]; pipe(p);
    pid_t child = fork();
    if (child == 0) {
        char c; read(p[0], &c, 1);
        CPU_ZERO(&back); sched_getaffinity(0, sizeof back, &back);
        printf("child sees %d cpu(s), the parent's choice: %d\n", CPU_COUNT(&back), CPU_ISSET(first, &back));
        _exit(0);
    }
    SHOW("setaffinity of the child", sched_setaffinity(child, sizeof one, &one));
    write(p[1], "x", 1);
    waitpid(child, NULL, 0);
    SHOW("setaffinity of nobody", sched_setaffinity(999999, sizeof one, &one));
    cpu_set_t none; CPU_ZERO(&none);
    SHOW("setaffinity to no cpu", sched_setaffinity(0, sizeof none, &none));
    SHOW("setaffinity self", sched_setaffinity(0, sizeof one, &one));
    CPU_ZERO(&back); sched_getaffinity(0, sizeof back, &back);
    printf("now %d cpu(s)\n", CPU_COUNT(&back));
    SHOW("getaffinity short buffer", syscall(SYS_sched_getaffinity, 0, 1, &back));
    sched_setaffinity(0, sizeof all, &all);

    long q = syscall(SYS_membarrier, 0 /* QUERY */, 0, 0);
    printf("membarrier query has private expedited: %d\n", q > 0 && (q & 8) != 0);
    SHOW("private expedited unregistered", syscall(SYS_membarrier, 8, 0, 0));
    SHOW("register private expedited", syscall(SYS_membarrier, 16, 0, 0));
    SHOW("private expedited", syscall(SYS_membarrier, 8, 0, 0));
    SHOW("bad command", syscall(SYS_membarrier, 1 << 20, 0, 0));

    errno = 0;
    int nice0 = getpriority(PRIO_PROCESS, 0);
    printf("getpriority: errno %d\n", errno);
    printf("the raw call gives 20 - nice: %d\n",
           syscall(SYS_getpriority, PRIO_PROCESS, 0) == 20 - nice0);
    printf("by own pid: %d\n", getpriority(PRIO_PROCESS, getpid()) == nice0);
    SHOW("setpriority nicer by 3", setpriority(PRIO_PROCESS, 0, nice0 + 3));
    printf("now nicer by 3: %d\n", getpriority(PRIO_PROCESS, 0) == nice0 + 3);
    pid_t kid = fork();
    if (kid == 0) {
        printf("child inherits it: %d\n", getpriority(PRIO_PROCESS, 0) == nice0 + 3);
        _exit(0);
    }
    waitpid(kid, NULL, 0);
    SHOW("getpriority of nobody", getpriority(PRIO_PROCESS, 999999));
    SHOW("setpriority of nobody", setpriority(PRIO_PROCESS, 999999, 5));
    SHOW("getpriority bad which", getpriority(7, 0));
    return 0;
}
