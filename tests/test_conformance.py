"""The conformance suite: shell-script checks run natively and recompiled must agree byte for byte.

Every ``tests/conformance/<domain>/<NN>-<name>.sh`` is a busybox ``/bin/sh``
script that prints what it checks and ends with a status that matters
(0 unless its header says ``# EXPECT-STATUS: N``). The image is the busybox
example image plus the scripts under ``/conformance/`` and an empty ``/work``
(the scripts' working directory). Each script runs twice:

* natively: Debian's busybox itself, in a fresh overlay of the root
  filesystem (so one check never sees another's files) with ``/dev/null``,
  ``/dev/zero``, ``/dev/full``, ``/dev/random`` and ``/dev/urandom`` as a
  container runtime provides them, entered with ``unshare --pid --fork
  --mount-proc --root --wd=/work`` (its own pid namespace, as a container and
  as ``kiln run``; root is required, as in CI);
* recompiled: ``kiln run IMAGE -w /work -- /bin/sh /conformance/<check>.sh``
  under vkernel, which gives every run a fresh upper layer by itself.

stdout, stderr and the exit status must be identical. Checks that fail under
Kiln today are listed, with the difference observed, in ``KNOWN_FAILURES``
(xfail, not strict): the list is the bug list for vkernel and the lifter and
should only shrink.

    python3 -m pytest tests/test_conformance.py -q
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from examples.busybox.build import build_busybox_image
from recompiler.image import open_image

CONFORMANCE = Path(__file__).parent / "conformance"
DOMAINS = ("fs", "text", "shell", "perms", "proc", "archive")
MIN_PER_DOMAIN = 10
MIN_TOTAL = 60

KILN = [sys.executable, "-m", "vkernel.cli"]
RECOMPILE = [sys.executable, "-m", "recompiler.cli"]
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
CHECK_TIMEOUT = 60

# Device nodes a container runtime gives every container: (name, major, minor).
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9))

KNOWN_FAILURES: dict[str, str] = {
}
"""Checks that do not agree under Kiln yet: check id -> the first difference observed."""

NAME_RE = re.compile(r"^(\d\d)-[a-z0-9][a-z0-9-]*\.sh$")
STATUS_RE = re.compile(r"^#\s*EXPECT-STATUS:\s*(\d+)\s*$")


@dataclass(frozen=True)
class Check:
    """One conformance script: ``domain/NN-name`` and its file."""

    id: str
    path: Path

    @property
    def guest_path(self) -> str:
        return f"/conformance/{self.id}.sh"

    @property
    def expected_status(self) -> int:
        """The status declared by an ``# EXPECT-STATUS: N`` header line, else 0."""
        for line in self.path.read_text().splitlines()[:10]:
            m = STATUS_RE.match(line)
            if m:
                return int(m.group(1))
        return 0


def all_checks() -> list[Check]:
    return [Check(f"{p.parent.name}/{p.stem}", p) for p in sorted(CONFORMANCE.glob("*/*.sh"))]


CHECKS = all_checks()


def _params() -> list:
    out = []
    for check in CHECKS:
        marks = []
        if check.id in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(reason=KNOWN_FAILURES[check.id], strict=False))
        out.append(pytest.param(check, id=check.id, marks=marks))
    return out


def build_rootfs(base: Path) -> Path:
    """The busybox example image unpacked under ``base``, plus /conformance and /work."""
    example = build_busybox_image(base / "example")
    root = base / "rootfs"
    with open_image(example) as img:
        img.unpack(root)
    shutil.copytree(CONFORMANCE, root / "conformance")
    (root / "work").mkdir(mode=0o755)
    return root


def recompile(root: Path, out: Path) -> Path:
    proc = subprocess.run([*RECOMPILE, str(root), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def run_native(root: Path, check: Check, scratch: Path) -> subprocess.CompletedProcess:
    """Run ``check`` with the host's busybox in a fresh overlay (or, without overlayfs, a copy) of ``root``.

    The overlay's upper layer is on a tmpfs, as a root run's writable layer is under Kiln
    (vkernel/sandbox.py): new files list in the order that file system gives them."""
    scratch.mkdir(parents=True)
    tmpfs = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700", "tmpfs", str(scratch)],
                           capture_output=True).returncode == 0
    upper, work, merged = scratch / "upper", scratch / "ovwork", scratch / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    _add_devices(upper)
    mount = ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={root},upperdir={upper},workdir={work}",
             str(merged)]
    mounted = subprocess.run(mount, capture_output=True).returncode == 0
    if not mounted:
        merged.rmdir()
        shutil.copytree(root, merged, symlinks=True)
        _add_devices(merged)
    try:
        return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc=/proc", f"--root={merged}",
                               "--wd=/work", "/bin/sh", check.guest_path],
                              input=b"", capture_output=True, env=ENV, cwd="/", timeout=CHECK_TIMEOUT)
    finally:
        if mounted:
            _unmount(merged)
        else:
            for pid in _processes_inside(merged):
                _kill(pid)
        if tmpfs:
            _unmount(scratch)
        else:
            shutil.rmtree(scratch)


def _add_devices(root: Path) -> None:
    (root / "proc").mkdir(mode=0o555, exist_ok=True)       # where the run's own procfs goes
    (root / "dev").mkdir(mode=0o755, exist_ok=True)
    for name, major, minor in DEVICES:
        os.mknod(root / "dev" / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(root / "dev" / name, 0o666)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _processes_inside(root: Path) -> list[int]:
    """Host pids whose root directory is ``root`` (stragglers of a native run)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "root") == str(root):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _unmount(merged: Path) -> None:
    """Unmount a native run's overlay; kill anything the script left running inside it first."""
    for _ in range(50):
        for pid in _processes_inside(merged):
            _kill(pid)
        if subprocess.run(["umount", str(merged)], capture_output=True).returncode == 0:
            return
        time.sleep(0.05)
    subprocess.run(["umount", "--lazy", str(merged)], check=True)


def run_kiln(image: Path, check: Check) -> subprocess.CompletedProcess:
    """Run ``check`` recompiled: ``kiln run IMAGE -w /work -- /bin/sh /conformance/<check>.sh``.

    The run gets its own session; whatever is left of it afterwards (guest
    processes a timed-out or careless script left behind) is killed.
    """
    argv = [*KILN, "run", str(image), "-w", "/work", "--", "/bin/sh", check.guest_path]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(b"", timeout=CHECK_TIMEOUT)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        note = f"<kiln run killed after {CHECK_TIMEOUT} s>\n".encode()
        return subprocess.CompletedProcess(argv, -1, out, err + note)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def first_difference(want: subprocess.CompletedProcess, got: subprocess.CompletedProcess) -> str | None:
    """A one-line description of where the recompiled run first differs from the native one."""
    for stream in ("stdout", "stderr"):
        a, b = getattr(want, stream), getattr(got, stream)
        if a == b:
            continue
        wl, gl = a.splitlines(keepends=True), b.splitlines(keepends=True)
        for i in range(max(len(wl), len(gl))):
            w = wl[i] if i < len(wl) else b"<end>"
            g = gl[i] if i < len(gl) else b"<end>"
            if w != g:
                return f"{stream} line {i + 1}: native {w!r}, kiln {g!r}"
    if want.returncode != got.returncode:
        return f"status: native {want.returncode}, kiln {got.returncode}"
    return None


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the native side needs root (overlay mount, chroot)")


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> Path:
    return build_rootfs(tmp_path_factory.mktemp("conformance"))


@pytest.fixture(scope="module")
def recompiled(rootfs: Path) -> Path:
    return recompile(rootfs, rootfs.parent / "recompiled")


def test_suite_has_enough_checks_in_every_domain() -> None:
    present = sorted(p.name for p in CONFORMANCE.iterdir() if p.is_dir())
    assert present == sorted(DOMAINS)
    counts = {d: len(list((CONFORMANCE / d).glob("*.sh"))) for d in DOMAINS}
    assert all(n >= MIN_PER_DOMAIN for n in counts.values()), counts
    assert sum(counts.values()) >= MIN_TOTAL, counts
    assert len(CHECKS) == sum(counts.values())


def test_scripts_are_well_formed() -> None:
    for check in CHECKS:
        lines = check.path.read_text().splitlines()
        assert NAME_RE.match(check.path.name), check.id
        assert lines[0] == "#!/bin/sh", check.id
        assert lines[1].startswith("# ") and len(lines[1]) > 10, f"{check.id}: line 2 says what it checks"
        numbers = [c.path.name[:2] for c in CHECKS if c.path.parent == check.path.parent]
        assert numbers.count(check.path.name[:2]) == 1, f"{check.id}: number used twice"
    assert set(KNOWN_FAILURES) <= {c.id for c in CHECKS}, "KNOWN_FAILURES names a check that does not exist"


@needs_root
@pytest.mark.parametrize("check", [pytest.param(c, id=c.id) for c in CHECKS])
def test_check_passes_natively(rootfs: Path, tmp_path: Path, check: Check) -> None:
    """Each script is a real check: natively it prints something and ends with its expected status."""
    proc = run_native(rootfs, check, tmp_path / "native")
    assert proc.stdout.strip(), f"{check.id} printed nothing"
    assert proc.returncode == check.expected_status, \
        (proc.returncode, proc.stdout.decode(errors="replace")[-2000:], proc.stderr.decode(errors="replace"))


@needs_root
@pytest.mark.parametrize("check", _params())
def test_recompiled_matches_native(rootfs: Path, recompiled: Path, tmp_path: Path, check: Check) -> None:
    want = run_native(rootfs, check, tmp_path / "native")
    got = run_kiln(recompiled, check)
    diff = first_difference(want, got)
    assert diff is None, f"{check.id}: {diff}\n--- kiln stderr ---\n{got.stderr.decode(errors='replace')[-1500:]}"
