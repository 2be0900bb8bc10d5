"""Guest pids: `kiln run` gives the run its own pid namespace (the first guest is pid 1), and
/proc/PID shows the sandbox's processes only, as natively in a pid namespace.

The native reference is Debian's busybox itself in a copy of the image's
files, entered with ``unshare --pid --fork --mount-proc --root`` (what a
container runtime does). Pids of later processes are not compared exactly:
the Wasmtime runtime's own thread takes a pid in the namespace too.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples.busybox.build import build_busybox_image
from recompiler.image import open_image

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pid namespaces need root here")

KILN = [sys.executable, "-m", "vkernel.cli"]
RECOMPILE = [sys.executable, "-m", "recompiler.cli"]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, Path]:
    """(recompiled busybox image, the same files unpacked with /dev/null and /proc for native runs)."""
    base = tmp_path_factory.mktemp("pids")
    src = build_busybox_image(base / "busybox")
    out = base / "recompiled"
    proc = subprocess.run([*RECOMPILE, str(src), "-o", str(out)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    root = base / "rootfs"
    with open_image(src) as img:
        img.unpack(root)
    (root / "proc").mkdir(exist_ok=True)
    (root / "dev").mkdir(exist_ok=True)
    for name, minor in (("null", 3), ("zero", 5)):
        os.mknod(root / "dev" / name, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
        os.chmod(root / "dev" / name, 0o666)
    yield out, root
    shutil.rmtree(root, ignore_errors=True)


def _kiln(image: Path, script: str, *opts: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*KILN, "run", *opts, str(image), "--", "/bin/sh", "-c", script],
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _native(root: Path, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc=/proc", f"--root={root}",
                           "--wd=/", "/bin/sh", "-c", script], capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL, env={"PATH": PATH})


def test_first_guest_is_pid_1_with_parent_0(image: tuple[Path, Path]) -> None:
    out, root = image
    script = 'echo "$$ $PPID"; cut -d" " -f1,4 /proc/1/stat; sh -c \'echo "$PPID"\'; true'
    got, want = _kiln(out, script), _native(root, script)
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout == b"1 0\n1 0\n1\n"


def test_pids_agree_between_getpid_proc_self_and_the_parent(image: tuple[Path, Path]) -> None:
    """A child's /proc/self/stat names its own pid (what $$ of a child shell says) and pid 1."""
    out, _ = image
    got = _kiln(out, 'sh -c \'echo "$$ $PPID"; cut -d" " -f1,4 /proc/self/stat; '
                     'readlink /proc/self; cut -d" " -f1 /proc/$$/stat\'; true')
    assert got.returncode == 0, got.stderr
    shell, ppid, cat_pid, cat_ppid, link, again = got.stdout.split()
    assert ppid == b"1" and int(shell) > 1
    assert cat_ppid == shell and int(cat_pid) > int(shell)
    assert again == shell and int(link) > int(shell)


def test_ps_lists_exactly_the_sandbox_processes(image: tuple[Path, Path]) -> None:
    out, root = image
    script = ('(exec sleep 3) & while ! grep -q sleep /proc/$!/cmdline 2>/dev/null; do :; done; '
              'ps -o pid,ppid,user,args > /tmp/ps; ls /proc > /tmp/all; grep -E "^[0-9]+$" /tmp/all | sort -n > /tmp/ls; '
              'cat /tmp/ps; echo; cat /tmp/ls; echo; tr "\\0" " " < /proc/$!/cmdline; echo')
    got, want = _kiln(out, script), _native(root, script)
    assert got.returncode == want.returncode == 0, got.stderr

    def shape(text: bytes) -> tuple[list[list[bytes]], list[bytes], bytes]:
        ps, ls, cmdline = text.split(b"\n\n")
        rows = [line.split(None, 3) for line in ps.splitlines()]
        return rows, ls.split(), cmdline

    (grows, gls, gcmd), (wrows, wls, wcmd) = shape(got.stdout), shape(want.stdout)
    assert grows[0] == wrows[0] == [b"PID", b"PPID", b"USER", b"COMMAND"]
    assert grows[1][:3] == wrows[1][:3] == [b"1", b"0", b"root"]
    # The background sleep is there (pid, parent 1, its command line), as natively.
    assert [r[3] for r in grows if r[1] == b"1" and b"sleep" in r[3]]
    assert gcmd == wcmd == b"sleep 3 \n"
    # /proc lists the pids ps showed (ps itself is gone by then) plus the ls listing it, as many
    # as natively: nothing of the host. (No pipeline there: its members start at racy times.)
    ps_pids = {r[0] for r in grows[1:] if not r[3].startswith((b"ps ", b"{ps} "))}
    assert ps_pids <= set(gls) and len(gls) == len(wls)
    assert len(grows) == len(wrows)


def test_proc_self_status_matches_native_fields(image: tuple[Path, Path]) -> None:
    out, root = image
    script = "grep -E '^(Name|State|Tgid|Pid|PPid|Uid|Gid|Groups|Threads):' /proc/self/status"
    got, want = _kiln(out, script), _native(root, script)
    assert got.returncode == 0, got.stderr

    def fields(text: bytes) -> dict[str, str]:
        return dict(line.split(":", 1) for line in text.decode().splitlines())

    g, w = fields(got.stdout), fields(want.stdout)
    assert list(g) == list(w)
    for key in ("Name", "PPid", "Uid", "Gid", "State"):
        assert g[key] == w[key], key
    # Root's groups come from the image's /etc/group (its primary group and memberships, as
    # a container runtime sets them), not from the host process that started the run.
    assert g["Groups"] == "\t0 "
    assert g["Pid"] == g["Tgid"] == w["Pid"] == "\t1"      # sh execs its last command


def test_status_shows_the_guest_user(image: tuple[Path, Path]) -> None:
    out, _ = image
    got = _kiln(out, "grep -E '^(Uid|Gid|Groups):' /proc/self/status; id -u", "--user", "nobody")
    assert got.stdout == (b"Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n"
                          b"Groups:\t65534 \n65534\n")


def test_other_pids_are_not_visible(image: tuple[Path, Path]) -> None:
    """The kiln process (outside the sandbox) and the host's processes are not in /proc."""
    out, _ = image
    host_pid = os.getpid()          # this test process: never a guest process
    got = _kiln(out, f"cat /proc/{host_pid}/status 2>&1; echo status $?; ls /proc/{host_pid} 2>&1; "
                     "kill -0 1 && echo pid 1 is us")
    text = got.stdout.decode()
    assert f"can't open '/proc/{host_pid}/status': No such file or directory" in text
    assert "status 1" in text and "pid 1 is us" in text


def test_when_pid_1_exits_the_rest_are_killed(image: tuple[Path, Path]) -> None:
    out, _ = image
    marker = f"kiln-pidns-{os.getpid()}-{time.monotonic_ns()}"
    t = time.monotonic()
    got = _kiln(out, f"sleep 60 & sh -c 'sleep 60; : {marker}' & echo started", timeout=60)
    assert (got.stdout, got.returncode) == (b"started\n", 0), got.stderr
    assert time.monotonic() - t < 30
    time.sleep(0.5)
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    left.append(entry.name)
            except OSError:
                continue
    assert not left, f"guest processes outlived pid 1: {left}"


@pytest.mark.parametrize("sig", ["TERM", "USR1", "HUP"])
def test_a_signal_to_kiln_ends_the_run_like_a_shell_reports(image: tuple[Path, Path], sig: str) -> None:
    """kill(2) of the kiln process reaches the guest, which dies of it (default action) as natively."""
    import signal
    out, _ = image
    proc = subprocess.Popen([*KILN, "run", str(out), "--", "/bin/sh", "-c", "echo up; sleep 60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"up\n"
    signo = getattr(signal, f"SIG{sig}")
    proc.send_signal(signo)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signo, err


def test_pid_numbers_in_wait_and_kill_are_the_namespace_ones(image: tuple[Path, Path]) -> None:
    out, root = image
    script = ('sleep 30 & p=$!; kill -0 $p && echo alive; kill $p; wait $p; echo "status $?"; '
              'test -e /proc/$p && echo still there || echo gone')
    got, want = _kiln(out, script), _native(root, script)
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout == b"alive\nstatus 143\ngone\n"
    assert got.stderr == want.stderr
