"""A pid namespace for one run: the first guest process is pid 1, only guest pids exist inside.

``kiln run`` (as root) forks the first guest into a new pid namespace and a
new mount namespace with its own procfs on the host's ``/proc``, so inside the
sandbox pids are the namespace's (``getpid()`` of the first guest is 1, its
parent is 0), every process vkernel lists from ``/proc`` is a guest process,
and when pid 1 ends the host kernel kills the rest, as in a container. The
``kiln`` process stays outside as the supervisor (vkernel/runtime.py).
"""
from __future__ import annotations

import ctypes
import os

from vkernel.errors import VkernelError

CLONE_NEWNS = 0x0002_0000
CLONE_NEWPID = 0x2000_0000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x4_0000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]


def possible() -> bool:
    """Namespaces need root here (no user namespace is set up)."""
    return os.geteuid() == 0 and os.path.exists("/proc/self/ns/pid")


def unshare_for_children() -> int | None:
    """Make this process's next fork the first process of a new pid namespace; an fd of the
    current namespace to go back with :func:`restore_for_children`, None if not possible."""
    try:
        fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    if _libc.unshare(CLONE_NEWPID) != 0:
        os.close(fd)
        return None
    return fd


def restore_for_children(fd: int) -> None:
    """Later children of this process (the supervisor) are in its own namespace again."""
    try:
        _libc.setns(fd, CLONE_NEWPID)
    finally:
        os.close(fd)


def mount_own_proc() -> None:
    """In pid 1: a private mount namespace whose /proc shows this pid namespace only."""
    if _libc.unshare(CLONE_NEWNS) != 0:
        e = ctypes.get_errno()
        raise VkernelError(f"cannot make a mount namespace for the run's /proc: {os.strerror(e)}",
                           hint="run kiln as root, or on a kernel with namespaces enabled")
    if _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0 or \
            _libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0:
        e = ctypes.get_errno()
        raise VkernelError(f"cannot mount the run's /proc: {os.strerror(e)}",
                           hint="run kiln as root, or on a kernel with namespaces enabled")


def mount_scratch(path: str) -> bool:
    """In pid 1, after :func:`mount_own_proc`: a tmpfs at ``path`` (an empty directory) for
    the run's own scratch files, seen only in this mount namespace and freed with it. False
    (and nothing mounted) when the kernel refuses."""
    return _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", MS_NOSUID | MS_NODEV,
                       b"mode=0755,size=64m") == 0


def die_with_supervisor() -> None:
    """In pid 1: SIGKILL when the supervisor dies (then the kernel ends the whole namespace).
    Linux clears this when credentials change: vkernel/creds.py sets it again each time."""
    if os.getpid() == 1:
        from vkernel import creds
        creds.hold_pdeathsig(9)


def catches(pid: int, sig: int) -> bool:
    """Whether host process ``pid`` catches or ignores ``sig`` (so a pid 1 is not immune)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return False
    mask = int(fields.get("SigCgt", "0").strip(), 16) | int(fields.get("SigIgn", "0").strip(), 16)
    return bool(mask >> (sig - 1) & 1)
