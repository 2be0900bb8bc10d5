"""Signals reach a guest that loops without syscalls (the host side of INTERRUPT_FLAG).

The guests are real static ELFs run by ``kiln run``; their modules follow the
contract of formats/abi.py: a loop that polls ``INTERRUPT_FLAG`` at its back
edge (as the lifter emits) stores rip = the loop header and calls
``fault(INTERRUPT)``; a loop without the poll is what lifted code did before.
Signals come from real host sources: ``kill`` of ``kiln run`` from the test (its
supervisor forwards TERM, INT and HUP to the guest), and ``alarm(2)``.
"""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from formats import abi
from test_vkernel_support import OFF, S as STATE, build_elf, c, make_rootfs, sys as SYS, unit_for, \
    wat_module, write_mb

KILN = [sys.executable, "-m", "vkernel.cli"]
LOOP = 0x500000          # the busy loop's header: a guest address kiln_run dispatches on
HANDLER = 0x500100       # the guest's signal handler
RESTORER = 0x500200      # its sa_restorer (never reached: the handler itself does rt_sigreturn)
SCRATCH = 0xFF800000     # on the guest stack mapping: the sigaction record and the 'done' word
DONE = SCRATCH + 64
SA_RESTORER = 0x0400_0000


def _entry(path: Path) -> int:
    return struct.unpack_from("<Q", path.read_bytes(), 24)[0]


def _guest(tmp: Path, *, poll: bool, catch: int = 0, ignore: int = 0,
           alarm: int = 0) -> tuple[Path, Path]:
    """A rootfs and megabinary for /bin/spin: print a line, maybe catch ``catch``, ignore
    ``ignore`` and arm ``alarm``, then loop until a handler ran (exit 42)."""
    elf = build_elf(tmp, "spin")
    rip = f"(i32.const {STATE + OFF['rip']})"
    rsp = f"(i32.const {STATE + OFF['rsp']})"
    setup = ""
    for sig, handler in ((catch, HANDLER), (ignore, 1)):
        if not sig:
            continue
        setup += (f"(i64.store $g (i32.const {SCRATCH}) (i64.const {handler}))"
                  f"(i64.store $g (i32.const {SCRATCH + 8}) (i64.const {SA_RESTORER}))"
                  f"(i64.store $g (i32.const {SCRATCH + 16}) (i64.const {RESTORER}))"
                  f"(i64.store $g (i32.const {SCRATCH + 24}) (i64.const 0))"
                  f"(drop {SYS(13, c(sig), c(SCRATCH), c(0), c(8))})")            # rt_sigaction
    if alarm:
        setup += f"(drop {SYS(37, c(alarm))})"                                        # alarm
    setup += f"(drop {SYS(1, c(1), c(elf.msg_addr), c(elf.msg_len))})"               # "ready"
    poll_code = (f"(if (i32.load $c (i32.const {abi.INTERRUPT_FLAG})) (then "
                 f"(i64.store $c {rip} (i64.const {LOOP})) "
                 f"(call $fault (i32.const {int(abi.FaultCode.INTERRUPT)})) unreachable))"
                 if poll else "")
    body = f"""
      (local.set $t (i64.load $c {rip}))
      (if (i64.eq (local.get $t) (i64.const {HANDLER})) (then
        (i32.store $g (i32.const {DONE}) (i32.const 1))
        (i64.store $c {rsp} (i64.add (i64.load $c {rsp}) (i64.const 8)))   ;; ret to sa_restorer
        (drop {SYS(15)})                                                    ;; its rt_sigreturn
        (local.set $t (i64.load $c {rip}))))       ;; answers RELOAD: go on at the restored rip
      (if (i64.ne (local.get $t) (i64.const {LOOP})) (then {setup}))
      (block $out (loop $l
        (br_if $out (i32.load $g (i32.const {DONE})))
        {poll_code}
        (br $l)))
      (drop {SYS(231, c(42))})
    """
    root = make_rootfs(tmp, {"/bin/spin": elf.path})
    mb = write_mb(tmp / "mb.kiln", wat_module(body), [unit_for(elf.path.read_bytes(), "/bin/spin")])
    return root, mb


def _start(root: Path, mb: Path) -> subprocess.Popen:
    p = subprocess.Popen([*KILN, "run", "--rootfs", str(root), "--megabinary", str(mb), "--",
                          "/bin/spin"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    assert p.stdout is not None
    assert p.stdout.readline() == b"hello from a real ELF\n"     # in the loop from now on
    time.sleep(0.2)
    return p


def _end(p: subprocess.Popen, timeout: float = 10) -> bytes:
    """Wait for ``p``; whatever happens, no spinning guest is left behind."""
    try:
        return p.communicate(timeout=timeout)[1]
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("poll", [False, True], ids=["no-poll", "back-edge-poll"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_default_action_ends_a_busy_guest_promptly(tmp_path: Path, poll: bool, sig: int) -> None:
    root, mb = _guest(tmp_path, poll=poll)
    p = _start(root, mb)
    sent = time.monotonic()
    p.send_signal(sig)
    err = _end(p)
    took = time.monotonic() - sent
    assert p.returncode == 128 + sig, err
    assert took < 2.0
    if sig != signal.SIGINT:                       # a shell says nothing for ^C
        assert signal.strsignal(sig).encode() in err


def test_handler_runs_in_a_busy_loop_and_the_loop_continues(tmp_path: Path) -> None:
    # Needs the lifter's back-edge poll (the module here has it, as lifted code will).
    root, mb = _guest(tmp_path, poll=True, catch=signal.SIGHUP)
    p = _start(root, mb)
    p.send_signal(signal.SIGHUP)
    err = _end(p)
    assert p.returncode == 42, err


def test_alarm_reaches_a_busy_loop(tmp_path: Path) -> None:
    root, mb = _guest(tmp_path, poll=True, catch=signal.SIGALRM, alarm=1)
    start = time.monotonic()
    got = subprocess.run([*KILN, "run", "--rootfs", str(root), "--megabinary", str(mb), "--",
                          "/bin/spin"], capture_output=True, timeout=20)
    assert got.returncode == 42, got.stderr
    assert 0.9 < time.monotonic() - start < 8


def test_default_alarm_kills_a_busy_loop_without_the_poll(tmp_path: Path) -> None:
    root, mb = _guest(tmp_path, poll=False, alarm=1)
    got = subprocess.run([*KILN, "run", "--rootfs", str(root), "--megabinary", str(mb), "--",
                          "/bin/spin"], capture_output=True, timeout=20)
    assert got.returncode == 128 + signal.SIGALRM
    assert b"Alarm clock" in got.stderr


@pytest.mark.parametrize("poll", [False, True], ids=["no-poll", "back-edge-poll"])
def test_ignored_signal_leaves_the_loop_running(tmp_path: Path, poll: bool) -> None:
    root, mb = _guest(tmp_path, poll=poll, ignore=signal.SIGHUP)
    p = _start(root, mb)
    p.send_signal(signal.SIGHUP)                    # SIG_IGN in the guest
    time.sleep(0.5)
    assert p.poll() is None
    p.send_signal(signal.SIGTERM)
    _end(p)
    assert p.returncode == 128 + signal.SIGTERM


# -- real C programs, recompiled ------------------------------------------------------------
SPIN_C = r"""
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static volatile sig_atomic_t got;
static void on(int s) { got = s; }
int main(int argc, char **argv) {
    volatile unsigned long n = 0;
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1) { signal(SIGALRM, on); alarm(1); }
    printf("spinning\n");
    while (!got) n++;                       /* no syscall in the loop */
    printf("handler ran for signal %d\n", got);
    return 0;
}
"""

# A loop made only of jumps through a table (gcc's computed goto, as CPython's opcode
# dispatch is): no direct back edge, so only the poll before each table jump can stop it.
GOTO_SPIN_C = r"""
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static volatile sig_atomic_t got;
static void on(int s) { got = s; }
int main(int argc, char **argv) {
    static void *const next[] = { &&a, &&b, &&c, &&a };
    volatile unsigned long n = 0;
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1) { signal(SIGALRM, on); alarm(1); }
    printf("spinning\n");
a:  n += 1; if (got) goto out; goto *next[(n >> 3) & 3];
b:  n += 2; if (got) goto out; goto *next[n & 3];
c:  n += 3; if (got) goto out; goto *next[(n >> 1) & 3];
out:
    printf("handler ran for signal %d\n", got);
    return 0;
}
"""


@pytest.fixture(scope="module")
def spin_c(tmp_path_factory):
    from test_vkernel_guestc import recompiled
    return recompiled(tmp_path_factory.mktemp("spin-c"), {"/bin/spin": SPIN_C, "/bin/gotospin": GOTO_SPIN_C})


def test_recompiled_busy_loop_dies_of_sigterm(spin_c) -> None:
    from test_vkernel_guestc import KILN as GKILN
    p = subprocess.Popen([*GKILN, "run", str(spin_c.image), "--", "/bin/spin"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    assert p.stdout is not None and p.stdout.readline() == b"spinning\n"
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    err = _end(p, timeout=20)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert b"Terminated" in err


def test_recompiled_busy_loop_gets_its_alarm_handler(spin_c) -> None:
    # Needs the lifter's back-edge poll of INTERRUPT_FLAG (recompiler side of the contract).
    from test_vkernel_guestc import kiln, native
    want = native(spin_c, "/bin/spin", "alarm", timeout=30)
    got = kiln(spin_c, "/bin/spin", "alarm", timeout=30)
    assert (got.returncode, got.stdout) == (want.returncode, want.stdout), got.stderr
    assert want.stdout == b"spinning\nhandler ran for signal 14\n"


def test_recompiled_computed_goto_loop_gets_its_alarm_handler(spin_c) -> None:
    from test_vkernel_guestc import kiln, native
    want = native(spin_c, "/bin/gotospin", "alarm", timeout=30)
    got = kiln(spin_c, "/bin/gotospin", "alarm", timeout=30)
    assert (got.returncode, got.stdout) == (want.returncode, want.stdout), got.stderr
    assert want.stdout == b"spinning\nhandler ran for signal 14\n"
