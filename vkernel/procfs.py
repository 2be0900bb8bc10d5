"""The synthesized /proc and /dev of a run: ProcFs, the one owner of every path vkernel makes up.

The Vfs is given a ProcFs (vkernel/vfs.py) and asks it first about any guest
path: ``/proc/self`` and ``/proc/thread-self`` (links), this process's
``/proc/PID`` (its files, ``fd/``, ``task/``, ``maps``, the ``exe``, ``cwd``
and ``root`` links), other guest processes' ``/proc/PID``, the text files of
``/proc`` (vkernel/proctext.py), the device files of ``/dev`` (the host
device is opened in their place) and its links to ``/proc/self/fd``. A
symlink of the image that leads into ``/proc`` or ``/dev`` comes back here
too. The read-only directories a guest can list or stat live in the run's
skeleton on the host (vkernel/skeleton.py).

A ProcFs serves one process: the runtime attaches its :class:`ProcessState`
(the fd table, memory map, cwd, threads), and each forked child keeps its
copy with its own state.
"""
from __future__ import annotations

import errno
import fcntl as hfcntl
import os
from typing import TYPE_CHECKING, Callable

from vkernel import proctext
from vkernel.fdtable import OpenFile
from vkernel.proctree import guest_processes
from vkernel.skeleton import (DEV_LINKS, DEV_NODES, PROC_FILES, PROC_SYS, Skeleton, pid_dir, publish,
                              published, republish)

if TYPE_CHECKING:
    from vkernel.process import ProcessState

__all__ = ["ProcFs", "normalize", "DEVICES", "PROC_SELF_ENTRIES", "PROC_PID_FILES", "PROC_FILES",
           "DEV_NODES", "DEV_LINKS", "Skeleton", "publish", "republish", "published", "pid_dir"]

PROC_SELF_ENTRIES = ("cmdline", "comm", "cwd", "exe", "fd", "maps", "mounts", "root", "stat",
                     "status", "task")
"""What ``ls /proc/self`` shows (each is served here, not by the skeleton)."""

PROC_PID_FILES = ("cmdline", "comm", "stat", "status")
"""Files of /proc/PID served for every guest process of the run (:func:`proctext.pid_file`)."""

TASK_FILES = ("comm", "stat", "status")
"""Files of /proc/PID/task/TID (a thread of this process)."""

DEVICES = {
    "/dev/null": "/dev/null", "/dev/zero": "/dev/zero", "/dev/full": "/dev/full",
    "/dev/random": "/dev/urandom", "/dev/urandom": "/dev/urandom", "/dev/tty": "/dev/tty",
}
"""Synthesized device files: guest path -> host device opened in their place. /dev/tty is the
process's controlling terminal: the run's own pseudo-terminal with -t, or one of the run's
devpts that the guest made its controlling terminal; without either, ENXIO
(vkernel/console.py)."""

_ALIASES = (("/dev/fd/", "/proc/self/fd/"), ("/proc/thread-self/", "/proc/self/"))
_FINAL_ALIASES = {"/dev/stdin": "/proc/self/fd/0", "/dev/stdout": "/proc/self/fd/1",
                  "/dev/stderr": "/proc/self/fd/2", "/dev/fd": "/proc/self/fd"}
_WRITE_ACC = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC
INHERITED_PATHS = frozenset(("/dev/stdin", "/dev/stdout", "/dev/stderr"))
"""What FdTable.with_stdio names the host's stdio; only those descriptors carry these paths."""

Special = tuple[str, object]
"""What ProcFs serves at a path: ("link", target), ("data", text), ("dir", (host dir, guest
path)) or ("fd", OpenFile)."""


def normalize(path: str) -> str:
    """Lexically normalized absolute guest path (used for synthesized names only)."""
    p = os.path.normpath("/" + path)
    return "/" + p.lstrip("/")


def _enoent(path: str) -> OSError:
    return OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)


class ProcFs:
    """Every synthesized path of one run, as one process sees it."""

    def __init__(self, skeleton: Skeleton | None = None, tty: bool = False) -> None:
        """``skeleton``: the run's /proc and /dev directories on the host (None: no /proc or
        /dev mounts, the image's own tree; /proc/self still answers). ``tty``: the run has a
        terminal of its own (``-t``), which /dev/tty opens."""
        self.skeleton = skeleton
        self.tty = tty
        self.proc: "ProcessState | None" = None
        """The process this view is of (attached by the runtime)."""
        self.mounted: Callable[[], bool] = lambda: skeleton is not None
        """Whether /proc is the synthesized one (the Vfs says: a volume may be bound there)."""
        self.volumes: Callable[[], list[tuple[str, bool]]] = list
        """(guest path, read-only) of the run's volumes, for /proc/mounts (the Vfs says)."""
        self.shm = False
        """Whether the Vfs mounted the run's /dev/shm (the skeleton's shm/)."""
        self.ptys = False
        """Whether the run has its own devpts (then /dev/tty is whatever terminal the process
        made its controlling one, the host saying ENXIO when none: a run's first process
        starts a session without one, so it can only be one of the run's)."""
        self.open_path: Callable[[str, int, int], int] = _no_vfs
        """The Vfs's own open of a guest path (a link's target, a re-opened file)."""

    def attach(self, proc: "ProcessState") -> None:
        self.proc = proc

    def _p(self) -> "ProcessState":
        if self.proc is None:
            raise OSError(errno.ENOENT, "no guest process attached to /proc")
        return self.proc

    # -- /dev -------------------------------------------------------------------------
    def device(self, path: str, opening: bool = True) -> str | None:
        """The host device opened (or, not ``opening``, stat'ed) in place of guest ``path``,
        None when it is none. Opening /dev/tty without a terminal of the run's is ENXIO."""
        dev = DEVICES.get(normalize(path))
        if opening and dev == "/dev/tty" and not self.tty and not self.ptys:
            raise OSError(errno.ENXIO, os.strerror(errno.ENXIO), path)
        return dev

    # -- magic links ----------------------------------------------------------------
    def through_magic_link(self, p: str) -> str:
        """``p`` with a leading /proc/self/cwd/ or /proc/self/root/ (or /proc/PID/..., this
        process's) replaced by the directory it names, as Linux follows those links (so a
        ``..`` after them is taken there)."""
        parts = p.split("/")                    # "", "proc", who, link, rest...
        names = [c for c in parts if c]
        if len(names) < 4 or names[0] != "proc" or names[2] not in ("cwd", "root") or \
                names[1] not in ("self", "thread-self", str(os.getpid())):
            return p
        rest = p.split(names[2], 1)[1].lstrip("/")
        base = self._p().cwd if names[2] == "cwd" else "/"
        return base.rstrip("/") + "/" + rest

    # -- what is served where -------------------------------------------------------------
    def lookup(self, path: str, follow: bool = True) -> Special | None:
        """What ProcFs serves at ``path`` (:data:`Special`), or None for the Vfs's tree."""
        p = normalize(path)
        if not (p.startswith("/proc") or p.startswith("/dev/")):
            return None
        pid = str(os.getpid())
        follow = follow or path.endswith("/")      # "name/" names what the link points to
        if follow and p in _FINAL_ALIASES:
            p = _FINAL_ALIASES[p]
        for prefix, to in _ALIASES:
            if p.startswith(prefix):
                p = to + p[len(prefix):]
        if p in ("/proc/self", "/proc/thread-self"):
            if not follow:
                return ("link", pid if p == "/proc/self" else f"{pid}/task/{self._tid()}")
            p = "/proc/" + pid
        elif p.startswith("/proc/self/"):
            p = f"/proc/{pid}/" + p[len("/proc/self/"):]
        if p == f"/proc/{pid}/mounts":
            p = "/proc/mounts"
        if p in ("/proc/cpuinfo", "/proc/meminfo", "/proc/mounts") and self.mounted():
            if p == "/proc/cpuinfo":
                return ("data", proctext.cpuinfo_text())
            if p == "/proc/meminfo":
                lim = self._p().limits
                return ("data", proctext.meminfo_text(lim.memory if lim else 0))
            return ("data", proctext.mounts_text(self.volumes(), shm=self.shm))
        if p.startswith("/proc/sys/") and p[len("/proc/sys/"):] in PROC_SYS and self.mounted():
            return ("data", proctext.sys_text(p[len("/proc/sys/"):], self._p().nodename))
        skel = self.skeleton
        if p == f"/proc/{pid}" and skel is not None:
            return ("dir", (pid_dir(skel, int(pid)), p))
        other = self._other_guest_pid(p, pid)
        if other is not None:
            return other
        if not p.startswith(f"/proc/{pid}/"):
            return None
        return self._own(p, p[len(f"/proc/{pid}/"):], pid, follow)

    def _tid(self) -> int:
        from threading import get_native_id
        tid = get_native_id()
        return tid if self.proc is None or tid in self.proc.threads else os.getpid()

    def _own(self, p: str, rest: str, pid: str, follow: bool) -> Special:
        proc = self._p()
        skel = self.skeleton
        if rest in PROC_PID_FILES:
            return ("data", proctext.pid_file(skel, proc, int(pid), rest))
        if rest == "exe":
            return ("link", proc.exe)
        if rest == "cwd":
            return ("link", proc.cwd)
        if rest == "root":
            return ("link", "/")
        if rest in ("fd", "task") and skel is not None:
            return ("dir", (skel.fddir, p))
        if rest.startswith("fd/") and rest[3:].isdigit():
            of = proc.fds.get(int(rest[3:])) if proc.fds is not None else None
            if of is None:
                raise OSError(errno.ENOENT, "no such fd")
            return ("fd", of) if follow else ("link", fd_link(of))
        if rest == "maps" and proc.space is not None:
            return ("data", proc.space.maps_text())
        if rest.startswith("task/"):
            tid, _, name = rest[5:].partition("/")
            if not tid.isdigit() or int(tid) not in proc.threads:
                raise _enoent(p)
            if not name and skel is not None:
                return ("dir", (skel.piddir, p))
            if name in TASK_FILES:
                return ("data", proctext.pid_file(skel, proc, int(pid), name, int(tid)))
        raise _enoent(p)

    def _other_guest_pid(self, p: str, pid: str) -> Special | None:
        """/proc/PID and its files for another guest process of this run (ENOENT for any
        other host pid: only the sandbox's processes are visible)."""
        parts = p.split("/")
        if len(parts) < 3 or parts[1] != "proc" or not parts[2].isdigit() or parts[2] == pid:
            return None
        skel = self.skeleton
        if skel is None or not self.mounted():
            return None
        other = int(parts[2])
        if other not in guest_processes(self._p()):
            raise _enoent(p)
        rest = "/".join(parts[3:])
        if not rest:
            return ("dir", (pid_dir(skel, other), p))
        if rest in PROC_PID_FILES:
            return ("data", proctext.pid_file(skel, self._p(), other, rest))
        raise _enoent(p)

    # -- operations ------------------------------------------------------------------
    def open(self, path: str, special: Special, flags: int, mode: int) -> tuple[int, str]:
        """(host fd, guest path to record) for ``path``, which ProcFs serves as ``special``
        (from :meth:`lookup`). A re-opened inherited stdio descriptor records its path
        (/dev/stdin, ...), which keeps it inherited."""
        host_flags = flags & ~os.O_CLOEXEC
        kind, val = special
        if kind == "link" and flags & os.O_NOFOLLOW:
            if not flags & os.O_PATH:
                raise OSError(errno.ELOOP, "symlink")
            if self.skeleton is None:        # no /proc skeleton: stat the target instead
                return self.open_path(str(val), host_flags & ~os.O_NOFOLLOW, mode), \
                    normalize(path)
            return os.open(os.path.join(self.skeleton.root, "proc", "self"),
                           os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC), normalize(path)
        if kind == "link":
            assert isinstance(val, str)
            return self.open_path(val, host_flags, mode), val
        if kind == "fd":
            assert isinstance(val, OpenFile)
            return self._reopen(val, host_flags, mode), val.path
        if kind == "dir":
            host, guest = val  # type: ignore[misc]
            if flags & _WRITE_ACC:
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            return os.open(host, (host_flags & (os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW))
                           | os.O_RDONLY | os.O_CLOEXEC), guest
        if flags & _WRITE_ACC:
            # /proc/sys is a read-only mount in a container (runc, Docker): EROFS there
            e = errno.EROFS if normalize(path).startswith("/proc/sys/") else errno.EACCES
            raise OSError(e, os.strerror(e), path)
        if flags & os.O_DIRECTORY:
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        fd = os.memfd_create("kiln-proc", os.MFD_CLOEXEC)
        os.fchmod(fd, 0o444)                       # as procfs shows its files: r--r--r--
        os.write(fd, val if isinstance(val, bytes) else str(val).encode())
        os.lseek(fd, 0, os.SEEK_SET)
        return fd, normalize(path)

    def readlink(self, path: str, special: Special) -> bytes:
        if special[0] != "link":
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
        return str(special[1]).encode("utf-8", "surrogateescape")

    def _reopen(self, of: OpenFile, flags: int, mode: int) -> int:
        """open(/proc/self/fd/N): a new open file of what fd N refers to, as Linux does.

        An inherited stdio descriptor is the exception: the guest gets the same open file
        again when it asks for no more access than the descriptor has (EACCES otherwise), and
        O_TRUNC has no effect (as on the pipe a container runtime would have given): the host
        file behind it is never opened by path."""
        if of.inherited:
            have = hfcntl.fcntl(of.host_fd, hfcntl.F_GETFL) & os.O_ACCMODE
            want = flags & os.O_ACCMODE
            if want != have and have != os.O_RDWR:
                raise OSError(errno.EACCES, os.strerror(errno.EACCES), of.path)
            return os.dup(of.host_fd)
        if of.path.startswith("/") and not of.path.startswith("/dev/std"):
            return self.open_path(of.path, flags, mode)
        # A pipe or socket the guest made: reopen the host's object itself.
        return os.open(f"/proc/self/fd/{of.host_fd}",
                       (flags & ~(os.O_CREAT | os.O_EXCL)) | os.O_CLOEXEC)

    def list_dir(self, path: str, own: os.stat_result) -> list[tuple[bytes, int, int]] | None:
        """The entries (name, inode, d_type) of a directory ProcFs serves ("." and ".." not
        included), None for one the Vfs lists (``/proc`` itself gets the guest processes
        added by :meth:`extra_entries`)."""
        pid = str(os.getpid())
        proc = self._p()
        if path == f"/proc/{pid}":
            kinds = {"fd": 4, "task": 4, "cwd": 10, "exe": 10, "root": 10}
            return [(n.encode(), own.st_ino + 1 + i, kinds.get(n, 8))
                    for i, n in enumerate(PROC_SELF_ENTRIES)]
        if path == f"/proc/{pid}/fd":
            return [(str(n).encode(), own.st_ino + 1 + n, 10) for n in sorted(proc.fds.files)]
        if path == f"/proc/{pid}/task":
            return [(str(t).encode(), own.st_ino + 1 + i, 4)
                    for i, t in enumerate(sorted(proc.threads or {os.getpid(): None}))]
        if path.startswith(f"/proc/{pid}/task/"):
            return [(n.encode(), own.st_ino + 1 + i, 8) for i, n in enumerate(TASK_FILES)]
        if path.startswith("/proc/") and path[6:].isdigit() and self.skeleton is not None:
            return [(n.encode(), own.st_ino + 1 + i, 8) for i, n in enumerate(PROC_PID_FILES)]
        return None

    def extra_entries(self, path: str) -> list[tuple[bytes, int, int]]:
        """Entries ProcFs adds to a directory the Vfs lists: the guest processes in /proc."""
        if path != "/proc" or self.skeleton is None or not self.mounted():
            return []
        out = []
        for g in sorted({os.getpid(), *guest_processes(self._p())}):   # guest processes only
            out.append((str(g).encode(), os.stat(pid_dir(self.skeleton, g)).st_ino, 4))
        return out


def _no_vfs(path: str, flags: int, mode: int) -> int:
    raise OSError(errno.ENOENT, "ProcFs is not attached to a Vfs", path)


def fd_link(of: OpenFile) -> str:
    """What readlink(/proc/self/fd/N) gives: the guest path, or the host's name of a pipe
    or socket (``pipe:[ino]``) for the fds kiln was started with."""
    if of.path in INHERITED_PATHS:
        try:
            host = os.readlink(f"/proc/self/fd/{of.host_fd}")
        except OSError:
            return of.path
        if host.split(":", 1)[0] in ("pipe", "socket", "anon_inode") or host == "/dev/null":
            return host
    return of.path

