"""Signal delivery without nesting, against the same static programs run natively.

vkernel delivers a signal as Linux does: an rt_sigframe on the guest stack and
the CPU state pointed at the handler, which dispatch then runs; rt_sigreturn
restores the context (vkernel/signals.py). These programs stress what a nested
run could not survive or got wrong: thousands of handlers left by siglongjmp
(from kill, a timer in pause, a timer in a busy loop, faults), handlers that
fault again (with and without SA_NODEFER) or move the faulting context's rip,
nested and stacked handlers with Linux's masks, SA_RESTART on a blocking
read, and handlers that rewrite the interrupted context. Each compares stdout
and exit status with the native run; stderr carries no Python traceback.
"""
from __future__ import annotations

import signal
import subprocess

import pytest

from test_vkernel_guestc import Guest, kiln, native, recompiled, shell_status

SIGDEL_C = r"""/* Signal delivery scenarios compared between Linux and vkernel: sigdel NAME [ARGS]. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

/* siglongjmp out of signal handlers, over and over: raised by kill(getpid()) (the handler on
   an alternate stack), by a timer while blocked in pause(), and by a timer while spinning in a
   loop without syscalls. */
static sigjmp_buf lj_back;
static volatile int lj_usr1, lj_alrm;
static void lj_on_usr1(int s) { (void)s; lj_usr1++; siglongjmp(lj_back, 1); }
static void lj_on_alrm(int s) { (void)s; lj_alrm++; siglongjmp(lj_back, 2); }
static int jumps_main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 3000;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    stack_t ss = {.ss_sp = malloc(1 << 16), .ss_size = 1 << 16};
    sigaltstack(&ss, 0);
    sa.sa_handler = lj_on_usr1; sa.sa_flags = SA_ONSTACK; sigaction(SIGUSR1, &sa, 0);
    sa.sa_handler = lj_on_alrm; sa.sa_flags = 0; sigaction(SIGALRM, &sa, 0);
    for (int i = 0; i < rounds; i++)
        if (sigsetjmp(lj_back, 1) == 0) { kill(getpid(), SIGUSR1); puts("kill returned"); }
    printf("kill: %d handlers left by siglongjmp\n", lj_usr1);
    struct itimerval it = {{0, 0}, {0, 200}};
    for (int i = 0; i < rounds; i++)
        if (sigsetjmp(lj_back, 1) == 0) { setitimer(ITIMER_REAL, &it, 0); for (;;) pause(); }
    printf("timer in pause: %d\n", lj_alrm);
    lj_alrm = 0;
    int spun = 0;
    volatile unsigned long n = 0;
    for (int i = 0; i < rounds / 10; i++)
        if (sigsetjmp(lj_back, 1) == 0) { setitimer(ITIMER_REAL, &it, 0); for (;;) n++; }
        else spun++;
    printf("timer in a busy loop: %d (%d)\n", lj_alrm, spun);
    sigset_t cur;
    sigprocmask(SIG_BLOCK, 0, &cur);
    printf("mask restored: %d\n", !sigismember(&cur, SIGUSR1) && !sigismember(&cur, SIGALRM));
    return 0;
}

/* Fault handlers left by siglongjmp, over and over: a call to an unmapped address and to data
   (SIGSEGV), ud2 (SIGILL), a division by zero (SIGFPE). */
static unsigned char fl_data[16] = {0xc3};
static sigjmp_buf fl_back;
static volatile int fl_segv, fl_ill, fl_fpe, fl_addr_bad;
static void *volatile fl_expect;
static void fl_on_fault(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    if (sig == SIGSEGV) { fl_segv++; fl_addr_bad += si->si_addr != fl_expect; }
    if (sig == SIGILL) fl_ill++;
    if (sig == SIGFPE) fl_fpe++;
    siglongjmp(fl_back, 1);
}
static int faultloop_main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 3000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fl_on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    sigaction(SIGILL, &sa, 0);
    sigaction(SIGFPE, &sa, 0);
    volatile int zero = argc > 2 ? atoi(argv[2]) : 0;
    for (int i = 0; i < rounds; i++) {
        if (sigsetjmp(fl_back, 1) == 0) {
            switch (i % 4) {
            case 0: fl_expect = (void *)0x10; ((void (*)(void))0x10)(); break;
            case 1: fl_expect = fl_data; ((void (*)(void))fl_data)(); break;
            case 2: __builtin_trap();
            case 3: printf("%d\n", 7 / zero); break;
            }
            puts("not reached");
        }
    }
    printf("segv=%d ill=%d fpe=%d addr_bad=%d\n", fl_segv, fl_ill, fl_fpe, fl_addr_bad);
    sigset_t cur;
    sigprocmask(SIG_BLOCK, 0, &cur);
    printf("mask restored: %d\n", !sigismember(&cur, SIGSEGV) && !sigismember(&cur, SIGILL)
           && !sigismember(&cur, SIGFPE));
    return 0;
}

/* A fault handler that faults again: argv[1] names the fault (segv: a call to data, ill: ud2),
   argv[2] "nodefer" adds SA_NODEFER (the handler re-enters until the stack is exhausted) and
   "altstack" runs it on a 64 KiB sigaltstack. Linux kills the process with the signal. */
static unsigned char rf_data[16] = {0xc3};
static volatile int rf_entries;
static int rf_ill;
static void rf_fault(void) {
    if (rf_ill) __builtin_trap();
    ((void (*)(void))rf_data)();
}
static void rf_on_fault(int sig) {
    (void)sig;
    if (rf_entries++ == 0) write(1, "in the handler\n", 15);
    rf_fault();
    write(1, "fault returned\n", 15);
}
static int refault_main(int argc, char **argv) {
    rf_ill = argc > 1 && strcmp(argv[1], "ill") == 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = rf_on_fault;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "nodefer") == 0) {
            struct rlimit rl = {8 << 20, 8 << 20};        /* the stack the frames exhaust */
            setrlimit(RLIMIT_STACK, &rl);
            sa.sa_flags |= SA_NODEFER;
        }
        if (strcmp(argv[i], "altstack") == 0) {
            stack_t ss = {.ss_sp = malloc(65536), .ss_size = 65536};
            sigaltstack(&ss, 0);
            sa.sa_flags |= SA_ONSTACK;
        }
    }
    sigaction(rf_ill ? SIGILL : SIGSEGV, &sa, 0);
    write(1, "faulting\n", 9);
    rf_fault();
    write(1, "not reached\n", 12);
    return 0;
}

/* A fault handler that moves the saved rip: a call to data "returns" through a recovery
   function the handler points rip at (its ret pops the faulting call's return address). */
static unsigned char rc_data[16] = {0xc3};
static volatile int rc_recovered;
static void rc_recover(void) { rc_recovered++; }
static void rc_on_segv(int s, siginfo_t *si, void *v) {
    (void)s; (void)si;
    ((ucontext_t *)v)->uc_mcontext.gregs[REG_RIP] = (greg_t)rc_recover;
}
static int recover_main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 1000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = rc_on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    for (int i = 0; i < rounds; i++) ((void (*)(void))rc_data)();
    printf("calls to data recovered: %d\n", rc_recovered);
    return 0;
}

/* Nested handlers and several signals delivered at once, with the masks Linux applies. */
static char ns_log_[4096];
static volatile size_t ns_used;       /* written by handlers and main alike */
static void ns_say(const char *s) { size_t n = strlen(s); memcpy(ns_log_ + ns_used, s, n); ns_used += n; }
static void ns_masks(const char *who, void *uc) {
    sigset_t now;
    sigprocmask(SIG_BLOCK, 0, &now);
    char b[128];
    ucontext_t *u = uc;
    snprintf(b, sizeof b, "%s: blocked usr1=%d usr2=%d alrm=%d; frame's old mask usr1=%d usr2=%d\n", who,
             sigismember(&now, SIGUSR1), sigismember(&now, SIGUSR2), sigismember(&now, SIGALRM),
             sigismember(&u->uc_sigmask, SIGUSR1), sigismember(&u->uc_sigmask, SIGUSR2));
    ns_say(b);
}
static volatile int ns_raise_inside, ns_rang;
static void ns_on_usr2(int s, siginfo_t *si, void *uc) { (void)s; (void)si; ns_masks("  usr2", uc); }
static void ns_on_usr1(int s, siginfo_t *si, void *uc) {
    (void)s; (void)si;
    ns_masks("usr1 in", uc);
    if (ns_raise_inside) { raise(SIGUSR2); ns_say("usr1 raised usr2\n"); }
    ns_masks("usr1 out", uc);
}
static void ns_on_alrm(int s, siginfo_t *si, void *uc) { (void)s; (void)si; ns_masks("    alrm", uc); ns_rang = 1; }
static void ns_on_usr1_spin(int s, siginfo_t *si, void *uc) {
    (void)s; (void)si;
    ns_masks("usr1 spins", uc);
    struct itimerval it = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &it, 0);
    volatile unsigned long n = 0;
    while (!ns_rang) n++;                     /* interrupted here, with no syscall in the loop */
    ns_say("usr1 spun\n");
}
static void ns_set(int sig, void (*h)(int, siginfo_t *, void *), int also_block) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h;
    sa.sa_flags = SA_SIGINFO;
    if (also_block) sigaddset(&sa.sa_mask, also_block);
    sigaction(sig, &sa, 0);
}
static int nested_main(int argc, char **argv) {
    sigset_t both, none, now;
    sigemptyset(&both); sigaddset(&both, SIGUSR1); sigaddset(&both, SIGUSR2);
    sigemptyset(&none);
    ns_set(SIGUSR2, ns_on_usr2, 0);
    ns_set(SIGALRM, ns_on_alrm, 0);

    ns_say("-- usr1 raises usr2: usr2 runs inside usr1\n");
    ns_set(SIGUSR1, ns_on_usr1, 0);
    ns_raise_inside = 1;
    raise(SIGUSR1);

    ns_say("-- usr1's sa_mask blocks usr2: usr2 runs after usr1 returns\n");
    ns_set(SIGUSR1, ns_on_usr1, SIGUSR2);
    raise(SIGUSR1);

    ns_say("-- both pending, unblocked at once: usr2 (pushed last) runs first\n");
    ns_raise_inside = 0;
    ns_set(SIGUSR1, ns_on_usr1, 0);
    sigprocmask(SIG_BLOCK, &both, 0);
    raise(SIGUSR1); raise(SIGUSR2);
    sigprocmask(SIG_UNBLOCK, &both, 0);

    ns_say("-- both pending, sigsuspend: the frames restore the mask from before it\n");
    sigprocmask(SIG_BLOCK, &both, 0);
    raise(SIGUSR1); raise(SIGUSR2);
    sigsuspend(&none);
    sigprocmask(SIG_BLOCK, 0, &now);
    ns_say(sigismember(&now, SIGUSR1) && sigismember(&now, SIGUSR2) ? "after: both blocked\n"
                                                                  : "after: not blocked\n");
    sigprocmask(SIG_UNBLOCK, &both, 0);

    ns_say("-- a timer interrupts a handler's busy loop\n");
    ns_set(SIGUSR1, ns_on_usr1_spin, 0);
    raise(SIGUSR1);
    ns_say("done\n");
    write(1, ns_log_, ns_used);
    return 0;
}

/* A blocking read from a pipe interrupted by a timer: with SA_RESTART the read goes on and
   gets the data a child writes later (also when interrupted several times); without it the
   read fails with EINTR and the data is read by the next call. */
static volatile int rs_ticks;
static void rs_on_alrm(int s) { (void)s; rs_ticks++; }
static void rs_round_(int flags, long interval_us, const char *what) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = rs_on_alrm;
    sa.sa_flags = flags;
    sigaction(SIGALRM, &sa, 0);
    int p[2], go[2];
    pipe(p);
    pipe(go);
    pid_t c = fork();
    if (c == 0) {                /* writes 450 ms after the parent starts its read */
        char g;
        read(go[0], &g, 1);
        struct timespec ts = {0, 450 * 1000000L};
        nanosleep(&ts, 0);
        write(p[1], "data", 4);
        _exit(0);
    }
    close(p[1]);
    close(go[0]);
    rs_ticks = 0;
    write(go[1], "g", 1);
    close(go[1]);
    struct itimerval it = {{0, interval_us}, {0, 100000}};
    setitimer(ITIMER_REAL, &it, 0);
    char b[16] = {0};
    ssize_t n = read(p[0], b, sizeof b - 1);
    int e = errno;
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, 0);
    int first_ticks = rs_ticks;
    printf("%s: read=%zd %s handler ran %s\n", what, n, n < 0 ? strerror(e) : b,
           first_ticks == 0 ? "never" : first_ticks == 1 ? "once" : "more than once");
    if (n < 0) {
        n = read(p[0], b, sizeof b - 1);
        printf("  read again=%zd %s\n", n, n > 0 ? b : "");
    }
    close(p[0]);
    waitpid(c, 0, 0);
}
static int restart_main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    rs_round_(SA_RESTART, 0, "SA_RESTART");
    rs_round_(SA_RESTART, 150000, "SA_RESTART, interrupted again");
    rs_round_(0, 0, "no SA_RESTART");
    return 0;
}

/* A handler that rewrites the interrupted context: it changes the value the interrupted call
   returns (rax) and switches between two contexts with their own stacks, as a user-level
   preemptive thread library does (uc_mcontext's registers and FPU state swapped). */
static greg_t cs_saved[2][NGREG];
static unsigned char cs_fp[2][512];           /* the FXSAVE area fpregs points to */
static int cs_cur, cs_started;
static char *cs_stack;
static void cs_worker(long id);
static void cs_on_rax(int s, siginfo_t *si, void *uc) {
    (void)s; (void)si;
    ((ucontext_t *)uc)->uc_mcontext.gregs[REG_RAX] = 42;
}
static void cs_on_switch(int s, siginfo_t *si, void *v) {
    (void)s; (void)si;
    ucontext_t *uc = v;
    memcpy(cs_saved[cs_cur], uc->uc_mcontext.gregs, sizeof cs_saved[cs_cur]);
    memcpy(&cs_fp[cs_cur], uc->uc_mcontext.fpregs, 512);
    if (!cs_started) {       /* the second context starts at worker(1) on its own stack */
        cs_started = 1;
        memcpy(cs_saved[1], cs_saved[0], sizeof cs_saved[1]);
        memcpy(&cs_fp[1], &cs_fp[0], 512);
        cs_saved[1][REG_RIP] = (greg_t)cs_worker;
        cs_saved[1][REG_RSP] = (greg_t)((uintptr_t)(cs_stack + (1 << 16)) & ~(uintptr_t)15) - 8;
        cs_saved[1][REG_RDI] = 1;
    }
    cs_cur ^= 1;
    memcpy(uc->uc_mcontext.gregs, cs_saved[cs_cur], sizeof cs_saved[cs_cur]);
    memcpy(uc->uc_mcontext.fpregs, &cs_fp[cs_cur], 512);
}
static void cs_yield(void) { syscall(SYS_kill, getpid(), SIGUSR1); }
static void cs_worker(long id) {
    double x = 0.5 * id;
    for (int i = 0; i < 5; i++) {
        printf("worker %ld step %d x=%g\n", id, i, x);
        x += 1.25;
        cs_yield();
    }
    printf("worker %ld done\n", id);
    for (;;) cs_yield();
}
static int ctxswitch_main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_flags = SA_SIGINFO;
    sa.sa_sigaction = cs_on_rax;
    sigaction(SIGUSR2, &sa, 0);
    long r = syscall(SYS_kill, getpid(), SIGUSR2);
    printf("kill returned %ld (the handler set rax)\n", r);
    sa.sa_sigaction = cs_on_switch;
    sigaction(SIGUSR1, &sa, 0);
    cs_stack = malloc(1 << 16);
    double y = 100;
    for (int i = 0; i < 6; i++) {
        printf("main step %d y=%g\n", i, y);
        y /= 2;
        cs_yield();
    }
    printf("main done\n");
    return 0;
}

/* Reads that have data never fail with EINTR: a child keeps signalling while the parent
   reads a pipe one byte at a time (no SA_RESTART), each byte written just before. */
static volatile int rr_hits;
static void rr_on_usr1(int s) { (void)s; rr_hits++; }
static int readyread_main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 20000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = rr_on_usr1;
    sigaction(SIGUSR1, &sa, 0);
    int fd[2];
    if (pipe(fd)) return 1;
    pid_t parent = getpid(), child = fork();
    if (child == 0) {
        for (;;) { kill(parent, SIGUSR1); usleep(50); }
    }
    int eintr = 0, bad = 0;
    for (int i = 0; i < rounds; i++) {
        char c = (char)('a' + i % 26), got = 0;
        if (write(fd[1], &c, 1) != 1) return 1;
        ssize_t n;
        while ((n = read(fd[0], &got, 1)) < 0 && errno == EINTR) eintr++;
        if (n != 1 || got != c) bad++;
    }
    kill(child, SIGKILL);
    waitpid(child, 0, 0);
    printf("ready reads interrupted: %d, wrong bytes: %d, handler ran: %s\n", eintr, bad,
           rr_hits > 0 ? "yes" : "no");
    return 0;
}

/* kill(pid, 0) finds an exited child until it is reaped (zsh checks its command
   substitution's child that way before waiting for it). */
static int zombie_main(int argc, char **argv) {
    (void)argc; (void)argv;
    pid_t pid = fork();
    if (pid == 0) _exit(3);
    struct timespec ts = {0, 500000000};
    nanosleep(&ts, 0);                       /* the child has exited: a zombie now */
    int r1 = kill(pid, 0);
    int st = 0;
    waitpid(pid, &st, 0);
    errno = 0;
    int r2 = kill(pid, 0);
    printf("unreaped: kill=%d; reaped (status %d): kill=%d %s\n", r1, WEXITSTATUS(st), r2, strerror(errno));
    return 0;
}

int main(int argc, char **argv) {
    static const struct { const char *name; int (*run)(int, char **); } progs[] = {
        {"jumps", jumps_main}, {"faultloop", faultloop_main}, {"refault", refault_main},
        {"recover", recover_main},
        {"nested", nested_main}, {"restart", restart_main}, {"ctxswitch", ctxswitch_main},
        {"readyread", readyread_main}, {"zombie", zombie_main}};
    for (size_t i = 0; argc > 1 && i < sizeof progs / sizeof progs[0]; i++)
        if (strcmp(argv[1], progs[i].name) == 0) return progs[i].run(argc - 1, argv + 1);
    fprintf(stderr, "usage: sigdel jumps|faultloop|refault|recover|nested|restart|ctxswitch|readyread|zombie [ARGS]\n");
    return 2;
}
"""


@pytest.fixture(scope="module", params=["musl", "glibc"])
def guest(request, tmp_path_factory) -> Guest:
    # One program for every scenario: a glibc binary takes a while to recompile cold.
    return recompiled(tmp_path_factory.mktemp(f"sigdel-{request.param}"),
                      {"/bin/sigdel": SIGDEL_C}, libc=request.param)


def _same_as_native(g: Guest, *args: str,
                    timeout: float = 120) -> tuple[subprocess.CompletedProcess, bytes]:
    """``sigdel ARGS`` natively and under kiln: same stdout and status, no Python traceback
    from kiln. The native run and kiln's stderr."""
    want = native(g, "/bin/sigdel", *args, timeout=timeout)
    got = kiln(g, "/bin/sigdel", *args, timeout=timeout)
    assert (got.stdout, got.returncode) == (want.stdout, shell_status(want.returncode)), \
        got.stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in got.stderr and b"Error" not in got.stderr, got.stderr[-2000:]
    return want, got.stderr


def test_handlers_left_by_siglongjmp_3000_times(guest: Guest) -> None:
    """kill(getpid()) on an alternate stack, a timer in pause, a timer in a busy loop: each
    handler leaves by siglongjmp, 3,000 times (a nested run per handler died before 100)."""
    want, err = _same_as_native(guest, "jumps", "3000")
    assert want.stdout == (b"kill: 3000 handlers left by siglongjmp\ntimer in pause: 3000\n"
                           b"timer in a busy loop: 300 (300)\nmask restored: 1\n")
    assert err == b""


def test_fault_handlers_left_by_siglongjmp_3000_times(guest: Guest) -> None:
    """Calls to an unmapped address and to data, ud2 and a division by zero, 3,000 in all,
    each handled and left by siglongjmp."""
    want, err = _same_as_native(guest, "faultloop", "3000")
    assert want.stdout == b"segv=1500 ill=750 fpe=750 addr_bad=0\nmask restored: 1\n"
    assert err == b""


@pytest.mark.parametrize("args", [("segv",), ("ill",), ("segv", "altstack"), ("segv", "nodefer"),
                                  ("ill", "nodefer")], ids="-".join)
def test_fault_handler_that_faults_again_dies_like_native(guest: Guest, args: tuple[str, ...]) -> None:
    """Faulting inside the handler: while the signal is blocked Linux forces it (the process
    dies of it); with SA_NODEFER the handler re-enters until no frame fits on the stack, then
    the process dies of SIGSEGV. kiln says why on stderr, then what a shell would."""
    want, err = _same_as_native(guest, "refault", *args)
    assert want.stdout == b"faulting\nin the handler\n"
    assert want.returncode == -(signal.SIGILL if args == ("ill",) else signal.SIGSEGV)
    lines = err.decode().splitlines()
    assert lines[0].startswith("kiln: ") and lines[-1] == signal.strsignal(-want.returncode)


def test_fault_handler_that_moves_rip_goes_on_there(guest: Guest) -> None:
    """A SIGSEGV handler points the saved rip at a recovery function, 1,000 times: each call
    to data returns through it."""
    want, err = _same_as_native(guest, "recover", "1000")
    assert want.stdout == b"calls to data recovered: 1000\n"
    assert err == b""


def test_nested_and_stacked_handlers_see_linux_masks(guest: Guest) -> None:
    """A handler interrupted by a signal it raises and by a timer in its busy loop; a signal
    its sa_mask defers; two signals unblocked at once (the later frame runs first) and two
    taken by sigsuspend (the frames restore the mask from before it)."""
    want, err = _same_as_native(guest, "nested")
    assert b"-- both pending, unblocked at once" in want.stdout and want.stdout.endswith(b"done\n")
    assert err == b""


def test_sa_restart_read_still_gets_its_data(guest: Guest) -> None:
    """A timer interrupts a blocking pipe read: with SA_RESTART the read goes on (also when
    interrupted again while restarted) and returns the data; without it the read fails with
    EINTR."""
    want, err = _same_as_native(guest, "restart")
    assert want.stdout == (b"SA_RESTART: read=4 data handler ran once\n"
                           b"SA_RESTART, interrupted again: read=4 data handler ran more than once\n"
                           b"no SA_RESTART: read=-1 Interrupted system call handler ran once\n"
                           b"  read again=4 data\n")
    assert err == b""


def test_a_read_with_data_ready_is_not_interrupted(guest: Guest) -> None:
    """A signal pending when a read starts interrupts it only if it would block: a pipe
    that holds data returns it (busybox sh's `read` restarts its line on EINTR and lost
    bytes when vkernel answered EINTR here)."""
    want, err = _same_as_native(guest, "readyread", "20000")
    assert want.stdout == b"ready reads interrupted: 0, wrong bytes: 0, handler ran: yes\n"


def test_kill_finds_an_exited_child_until_it_is_reaped(guest: Guest) -> None:
    want, _ = _same_as_native(guest, "zombie")
    assert want.stdout == b"unreaped: kill=0; reaped (status 3): kill=-1 No such process\n"


def test_handler_rewrites_the_interrupted_context(guest: Guest) -> None:
    """A handler sets the interrupted call's rax, and one switches uc_mcontext (registers and
    FPU state) between two contexts with their own stacks."""
    want, err = _same_as_native(guest, "ctxswitch")
    assert b"kill returned 42" in want.stdout and b"worker 1 done" in want.stdout
    assert err == b""
