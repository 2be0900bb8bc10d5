"""Guest signals under vkernel, against the same static program run natively.

Handlers with siginfo, nested and blocked signals, sigpending, SIG_IGN, alarm
and pause, setitimer and sigsuspend, SIGCHLD, kill to a child, SIGPIPE (fatal
by default, EPIPE when ignored), a fatal default action on the caller,
signals sent from the host to the kiln process, and fault signals (a jump to
data, a division by zero) reaching handlers that siglongjmp out.
"""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_vkernel_guestc import KILN, Guest, kiln, native, recompiled, shell_status

SIGS_C = r"""/* Signal behaviour a test compares between Linux and vkernel. */
#define _GNU_SOURCE
#include <errno.h>
#include <ucontext.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got, got_code, got_info_pid_ok, alarms, chld;
static volatile long depth_seen;

static volatile int uc_ok;
static void on_usr1(int sig, siginfo_t *si, void *uc) {
    ucontext_t *u = uc;
    long here;
    got = sig; got_code = si->si_code; got_info_pid_ok = si->si_pid == getpid();
    /* the saved context: the interrupted stack lies above the frame, the old mask is saved */
    uc_ok = u->uc_mcontext.gregs[REG_RSP] > (long)&here && !sigismember(&u->uc_sigmask, SIGUSR1)
            && u->uc_mcontext.fpregs != 0;
}
static void on_alrm(int sig) { (void)sig; alarms++; }
static void on_chld(int sig) { (void)sig; chld++; }
static void on_usr2(int sig) {
    /* a handler that makes syscalls and nests another signal */
    char m[] = "in usr2 handler\n";
    write(1, m, sizeof m - 1);
    if (depth_seen++ == 0) raise(SIGUSR2);   /* blocked while running: delivered after return */
    (void)sig;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1; sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, 0);
    long before = 12345;
    kill(getpid(), SIGUSR1);
    printf("usr1: sig=%d code=%d pid_ok=%d kept=%ld uc_ok=%d\n", got, got_code, got_info_pid_ok,
           before, uc_ok);

    signal(SIGUSR2, on_usr2);
    raise(SIGUSR2);
    printf("usr2 handled %ld times\n", depth_seen);

    /* blocked signals stay pending until unblocked */
    sigset_t s, old, pend;
    sigemptyset(&s); sigaddset(&s, SIGUSR1);
    got = 0;
    sigprocmask(SIG_BLOCK, &s, &old);
    kill(getpid(), SIGUSR1);
    sigpending(&pend);
    printf("blocked: got=%d pending=%d\n", got, sigismember(&pend, SIGUSR1));
    sigprocmask(SIG_SETMASK, &old, 0);
    printf("unblocked: got=%d\n", got);

    /* ignored signals vanish */
    signal(SIGUSR1, SIG_IGN);
    got = 0;
    kill(getpid(), SIGUSR1);
    printf("ignored: got=%d\n", got);

    /* alarm + pause */
    signal(SIGALRM, on_alrm);
    alarm(1);
    int r = pause();
    printf("pause=%d errno=%s alarms=%d\n", r, r < 0 && errno == EINTR ? "EINTR" : "?", alarms);

    /* setitimer, sigsuspend */
    struct itimerval it = {{0, 0}, {0, 200000}};
    setitimer(ITIMER_REAL, &it, 0);
    sigset_t none; sigemptyset(&none);
    r = sigsuspend(&none);
    printf("sigsuspend=%d alarms=%d\n", r, alarms);

    /* SIGCHLD on child exit */
    signal(SIGCHLD, on_chld);
    pid_t c = fork();
    if (c == 0) _exit(7);
    int st;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR) {}
    printf("child: exited=%d status=%d sigchld=%d\n", WIFEXITED(st), WEXITSTATUS(st), chld > 0);

    /* a child killed by SIGTERM from the parent */
    int p[2]; pipe(p);
    c = fork();
    if (c == 0) { close(p[0]); write(p[1], "r", 1); for (;;) pause(); }
    char b; read(p[0], &b, 1);
    kill(c, SIGTERM);
    waitpid(c, &st, 0);
    printf("killed child: signaled=%d sig=%d\n", WIFSIGNALED(st), WTERMSIG(st));

    /* SIGPIPE: default kills the writer; ignored gives EPIPE */
    int q[2]; pipe(q);
    c = fork();
    if (c == 0) { close(q[0]); write(q[1], "x", 1); _exit(0); }
    close(q[1]); close(q[0]);
    pipe(q); close(q[0]);
    c = fork();
    if (c == 0) { write(q[1], "x", 1); _exit(0); }
    waitpid(c, &st, 0);
    printf("sigpipe: signaled=%d sig=%d\n", WIFSIGNALED(st), WTERMSIG(st));
    signal(SIGPIPE, SIG_IGN);
    r = write(q[1], "x", 1);
    printf("ignored sigpipe: r=%d epipe=%d\n", r, errno == EPIPE);
    fflush(stdout);

    /* default action of SIGTERM on ourselves ends the process with the signal */
    raise(SIGTERM);
    printf("not reached\n");
    return 0;
}
"""

FAULTS_C = r"""/* Fault signals reach guest handlers: jumping to data (SIGSEGV), dividing by zero (SIGFPE). */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static unsigned char data[64] = {0xc3};
static sigjmp_buf back;
static volatile int seen_sig, seen_code, addr_ok;

static void on_fault(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    seen_sig = sig;
    seen_code = si->si_code;
    addr_ok = sig != SIGSEGV || si->si_addr == (void *)data;
    siglongjmp(back, 1);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    sigaction(SIGFPE, &sa, 0);
    if (sigsetjmp(back, 1) == 0) {
        ((void (*)(void))data)();
        printf("data ran\n");
    }
    printf("SIGSEGV: sig=%d code=%d addr_ok=%d\n", seen_sig, seen_code, addr_ok);
    volatile int zero = argc - 1;
    if (sigsetjmp(back, 1) == 0) {
        printf("%d\n", 10 / zero);
    }
    printf("SIGFPE: sig=%d code=%d\n", seen_sig, seen_code);
    sigset_t cur;
    sigprocmask(SIG_BLOCK, 0, &cur);
    printf("mask restored: %d\n", !sigismember(&cur, SIGSEGV) && !sigismember(&cur, SIGFPE));
    if (argc > 5) return 0;
    signal(SIGSEGV, SIG_DFL);
    ((void (*)(void))data)();
    return 0;
}
"""

WAIT_C = r"""
#include <signal.h>
#include <string.h>
#include <unistd.h>
static void on_term(int s) { (void)s; write(1, "got TERM\n", 9); _exit(3); }
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "handler") == 0) signal(SIGTERM, on_term);
    write(1, "ready\n", 6);
    for (;;) pause();
}
"""

STORM_C = r"""/* A signal storm on blocking calls: a child sends SIGUSR1 and exits over and over while the
   parent blocks in read, waitpid and nanosleep with handlers installed without SA_RESTART. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static volatile sig_atomic_t usr1, chld;
static void on_usr1(int s) { (void)s; usr1++; }
static void on_chld(int s) { (void)s; chld++; }
int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 40;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; sigaction(SIGUSR1, &sa, 0);
    sa.sa_handler = on_chld; sigaction(SIGCHLD, &sa, 0);
    pid_t parent = getpid();
    long reaped = 0, bytes = 0;
    for (int r = 0; r < rounds; r++) {
        int p[2];
        if (pipe(p)) return 1;
        pid_t c = fork();
        if (c == 0) {
            close(p[0]);
            for (int i = 0; i < 25; i++) { kill(parent, SIGUSR1); usleep(100); }
            write(p[1], "x", 1);
            _exit(r % 7);
        }
        close(p[1]);
        char b[8];
        ssize_t n;
        while ((n = read(p[0], b, sizeof b)) != 0) {
            if (n > 0) bytes += n;
            else if (errno != EINTR) return 2;
        }
        close(p[0]);
        int st;
        while (waitpid(c, &st, 0) < 0) if (errno != EINTR) return 3;
        if (WIFEXITED(st) && WEXITSTATUS(st) == r % 7) reaped++;
        struct timespec ts = {0, 200000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
    }
    printf("rounds=%d reaped=%ld bytes=%ld usr1>0=%d chld>0=%d\n", rounds, reaped, bytes,
           usr1 > 0, chld > 0);
    return 0;
}
"""


@pytest.fixture(scope="module", params=["musl", "glibc"])
def guest(request, tmp_path_factory) -> Guest:
    return recompiled(tmp_path_factory.mktemp(f"sig-{request.param}"),
                      {"/bin/sigs": SIGS_C, "/bin/waiter": WAIT_C,
                                                 "/bin/faults": FAULTS_C, "/bin/storm": STORM_C}, libc=request.param)


def test_signal_program_matches_native(guest: Guest) -> None:
    want = native(guest, "/bin/sigs")
    got = kiln(guest, "/bin/sigs")
    assert want.returncode == -signal.SIGTERM
    assert b"usr2 handled 2 times" in want.stdout and b"uc_ok=1" in want.stdout
    assert (got.stdout, got.returncode) == (want.stdout, shell_status(want.returncode)), got.stderr
    assert got.stderr.decode().strip() == "Terminated"


def _start_and_signal(argv: list[str], sig: int) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == b"ready\n", proc.stderr.read() if proc.stderr else b""
    time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(argv, proc.returncode, line + out, err)


def test_host_signal_runs_the_guest_handler(guest: Guest) -> None:
    want = _start_and_signal([str(guest.host("/bin/waiter")), "handler"], signal.SIGTERM)
    got = _start_and_signal([*KILN, "run", str(guest.image), "--", "/bin/waiter", "handler"],
                            signal.SIGTERM)
    assert (got.stdout, got.returncode) == (want.stdout, want.returncode) == (b"ready\ngot TERM\n", 3)
    assert got.stderr == b""


def test_host_sigint_ends_the_guest_like_a_shell_reports(guest: Guest) -> None:
    want = _start_and_signal([str(guest.host("/bin/waiter"))], signal.SIGINT)
    got = _start_and_signal([*KILN, "run", str(guest.image), "--", "/bin/waiter"], signal.SIGINT)
    assert want.returncode == -signal.SIGINT
    assert (got.stdout, got.returncode, got.stderr) == (b"ready\n", 130, b"")


def test_fault_signals_reach_handlers(guest: Guest) -> None:
    want = native(guest, "/bin/faults")
    got = kiln(guest, "/bin/faults")
    assert want.stdout == (b"SIGSEGV: sig=11 code=2 addr_ok=1\nSIGFPE: sig=8 code=1\n"
                           b"mask restored: 1\n")
    assert (got.stdout, got.returncode) == (want.stdout, shell_status(want.returncode)) == \
        (want.stdout, 139), got.stderr
    assert "kiln: no translation for 0x" in got.stderr.decode()


def test_signal_storm_on_blocking_calls_leaves_stderr_clean(guest: Guest) -> None:
    """Signals landing at any moment of a blocking read, waitpid or nanosleep give EINTR to the
    guest and nothing else: no Python message reaches its stderr, output as native."""
    want = native(guest, "/bin/storm", "40")
    got = kiln(guest, "/bin/storm", "40", timeout=240)
    assert want.stdout == b"rounds=40 reaped=40 bytes=40 usr1>0=1 chld>0=1\n"
    assert (got.stdout, got.returncode, got.stderr) == (want.stdout, 0, b"")
