"""The process model under vkernel, against the same static program run natively.

vfork (the parent waits for the child), waitid, stopped and continued
children (WUNTRACED/WCONTINUED), setsid/getsid, setpgid/getpgid and a kill to
a process group; and the sandbox rule that only guest processes can be
signalled or inspected (the run's own pid namespace: vkernel/pidns.py).
"""
from __future__ import annotations

import os

import pytest

from test_vkernel_guestc import Guest, kiln, native, recompiled

PROCS_C = r"""/* Process-model behaviour compared between Linux and vkernel. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "exit3") == 0)
        return 3;
    if (argc > 2 && strcmp(argv[1], "kill") == 0) {     /* a host pid outside the sandbox */
        pid_t outside = atoi(argv[2]);
        printf("kill(outside, 0): %s\n", kill(outside, 0) ? strerror(errno) : "ok");
        printf("getpgid(outside): %s\n", getpgid(outside) < 0 ? strerror(errno) : "ok");
        return 0;
    }
    /* vfork: the parent runs only after the child exits */
    pid_t c = vfork();
    if (c == 0) { usleep(300000); write(1, "vfork child\n", 12); _exit(4); }
    printf("vfork parent\n");
    int st;
    waitpid(c, &st, 0);
    printf("vfork child status %d\n", WEXITSTATUS(st));

    /* vfork: the child's writes are the parent's until it execs or exits (busybox tar z
       reports a failed exec through a global; glibc's posix_spawn through the parent's stack) */
    static volatile int shared_global;
    volatile int on_stack = 0;
    c = vfork();
    if (c == 0) {
        on_stack = 7;
        execl("/nonexistent/program", "program", (char *)0);
        shared_global = errno;
        _exit(127);
    }
    waitpid(c, &st, 0);
    printf("vfork writes: global=%d stack=%d status=%d\n", shared_global, on_stack, WEXITSTATUS(st));
    c = vfork();
    if (c == 0) { shared_global = 5; execl("/proc/self/exe", "procs", "exit3", (char *)0); _exit(126); }
    waitpid(c, &st, 0);
    printf("vfork then exec: global=%d status=%d\n", shared_global, WEXITSTATUS(st));

    /* waitid */
    c = fork();
    if (c == 0) _exit(3);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    waitid(P_PID, c, &si, WEXITED);
    printf("waitid: code=%d status=%d pid_ok=%d signo=%d\n", si.si_code, si.si_status, si.si_pid == c, si.si_signo);

    /* stopped and continued children */
    int go[2];
    pipe(go);
    c = fork();
    if (c == 0) { char b; raise(SIGSTOP); read(go[0], &b, 1); _exit(5); }
    waitpid(c, &st, WUNTRACED);
    printf("stopped=%d sig=%d\n", WIFSTOPPED(st), WSTOPSIG(st));
    kill(c, SIGCONT);
    waitpid(c, &st, WCONTINUED);
    printf("continued=%d\n", WIFCONTINUED(st));
    write(go[1], "x", 1);
    waitpid(c, &st, 0);
    printf("exited=%d status=%d\n", WIFEXITED(st), WEXITSTATUS(st));

    /* sessions and process groups */
    int p[2], q[2];
    pipe(p); pipe(q);
    c = fork();
    if (c == 0) {
        pid_t s = setsid();
        char ok = s == getpid() && getsid(0) == getpid() && getpgid(0) == getpid() ? 'y' : 'n';
        write(p[1], &ok, 1);
        char b; read(q[0], &b, 1);
        _exit(0);
    }
    char ok; read(p[0], &ok, 1);
    printf("setsid in child: %c; parent sees sid=%d pgid=%d\n", ok, getsid(c) == c, getpgid(c) == c);
    write(q[1], "x", 1);
    waitpid(c, &st, 0);
    c = fork();
    if (c == 0) { pause(); _exit(0); }
    printf("setpgid: %d\n", setpgid(c, c));
    printf("child pgid is its pid: %d\n", getpgid(c) == c);
    kill(-c, SIGTERM);
    waitpid(c, &st, 0);
    printf("group kill: signaled=%d sig=%d\n", WIFSIGNALED(st), WTERMSIG(st));
    printf("no more children: %s\n", waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD ? "ECHILD" : "?");
    return 0;
}
"""


@pytest.fixture(scope="module")
def guest(tmp_path_factory) -> Guest:
    return recompiled(tmp_path_factory.mktemp("procs"), {"/bin/procs": PROCS_C})


def test_process_model_matches_native(guest: Guest) -> None:
    want = native(guest, "/bin/procs")
    got = kiln(guest, "/bin/procs")
    assert want.returncode == 0 and b"vfork child\nvfork parent\n" in want.stdout
    assert b"vfork writes: global=2 stack=7 status=127\nvfork then exec: global=5 status=3\n" in want.stdout
    assert (got.stdout, got.stderr, got.returncode) == (want.stdout, want.stderr, want.returncode)


def test_processes_outside_the_sandbox_are_invisible(guest: Guest) -> None:
    got = kiln(guest, "/bin/procs", "kill", str(os.getpid()))    # this test process
    assert (got.returncode, got.stdout) == (0, b"kill(outside, 0): No such process\n"
                                               b"getpgid(outside): No such process\n")
