"""Run a program natively as a container runtime would: a fresh overlay of a root filesystem, /dev, own pid namespace.

The overlay's upper layer is a tmpfs, as a root ``kiln run``'s writable layer
is, so one run never sees another's files, the root filesystem is never
changed, and a directory lists its new entries in the order Kiln's does
(readdir order is the filesystem's: an upper layer on disk orders them by
its hash seed, which differs from machine to machine). ``xino=on`` keeps a
directory's inode number the same in ``stat`` and ``readdir``, as Docker's
overlay2 does with every layer on one filesystem; without it a tmpfs upper
over a lower on another filesystem gives a directory one number in ``stat``
and another in ``readdir`` (test_os's ``TestScandir.test_attributes``).
What still differs from Docker: ``statfs`` of the root is the tmpfs's, empty
(test_shutil's ``test_disk_usage``), where Docker's and Kiln's are the disk's.
``/dev`` gets the nodes and links runc gives every container (and a devpts
instance of its own at ``/dev/pts``), and the command
runs under ``unshare --pid --fork --mount-proc`` with the overlay as its root.
Root is required.
"""
from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

__all__ = ["run_native", "overlay", "inside", "DEVICES", "DEV_LINKS"]

DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
           ("tty", 5, 0))
"""Device nodes a container runtime gives every container: (name, major, minor)."""
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}
"""Symbolic links runc creates in a container's /dev."""
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def _dev(upper: Path) -> None:
    (upper / "proc").mkdir(mode=0o555, exist_ok=True)
    dev = upper / "dev"
    dev.mkdir(mode=0o755, exist_ok=True)
    for name, major, minor in DEVICES:
        os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(dev / name, 0o666)
    for name, target in DEV_LINKS.items():
        os.symlink(target, dev / name)
    (dev / "pts").mkdir(mode=0o755)


def _inside(root: Path) -> list[int]:
    """Host pids whose root directory is ``root`` (what a run left behind)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "root") == str(root):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _umount(path: Path, root_of_run: Path | None = None) -> None:
    for _ in range(50):
        for pid in _inside(root_of_run) if root_of_run is not None else ():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        time.sleep(0.05)
    subprocess.run(["umount", "--lazy", str(path)], check=True)


@contextlib.contextmanager
def overlay(root: Path) -> Iterator[Path]:
    """A fresh overlay of ``root`` (upper layer on a tmpfs, /dev populated): its merged
    directory, unmounted (and anything still running inside it killed) on exit."""
    with tempfile.TemporaryDirectory(prefix="kiln-native-") as tmp:
        scratch = Path(tmp)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700", "tmpfs", str(scratch)], check=True)
        try:
            upper, work, merged = scratch / "upper", scratch / "work", scratch / "merged"
            for d in (upper, work, merged):
                d.mkdir()
            _dev(upper)
            layers = f"lowerdir={root},upperdir={upper},workdir={work}"
            if subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"{layers},xino=on", str(merged)],
                              capture_output=True).returncode != 0:     # a kernel without xino
                subprocess.run(["mount", "-t", "overlay", "overlay", "-o", layers, str(merged)], check=True)
            pts = merged / "dev" / "pts"       # a devpts of its own, as runc mounts one
            subprocess.run(["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620",
                            "devpts", str(pts)], check=True)
            try:
                yield merged
            finally:
                _umount(pts, merged)
                _umount(merged, merged)
        finally:
            _umount(scratch)


def inside(merged: Path, argv: list[str], *, wd: str = "/") -> list[str]:
    """The command line that runs ``argv`` in ``merged`` (from :func:`overlay`) as a
    container would: its own pid namespace and /proc, ``merged`` as its root."""
    return ["unshare", "--pid", "--fork", "--mount-proc=/proc", f"--root={merged}", f"--wd={wd}",
            *argv]


def run_native(root: Path, argv: list[str], *, stdin: bytes = b"", wd: str = "/", env: dict | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``argv`` natively over a fresh overlay of ``root``; stdout, stderr and status as bytes."""
    with overlay(root) as merged:
        return subprocess.run(inside(merged, argv, wd=wd), input=stdin, capture_output=True,
                              env=env if env is not None else ENV, cwd="/", timeout=timeout)
