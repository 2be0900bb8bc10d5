"""Run state: one private directory per host user, one locked subdirectory per live run.

Everything a run keeps on the host while it lives (its upper layer when no
``--upper`` was given, the mount points of its private file systems, its lock)
is under ``$KILN_STATE``, else ``/var/lib/kiln`` for root and
``$XDG_STATE_HOME/kiln`` (``~/.local/state/kiln``) for other users: a
directory owned by that user and closed to everyone else (0700), never the
world-readable ``/tmp``. Each run holds an exclusive ``flock`` on
``runs/ID/lock`` for its whole life (the supervisor and every guest process
inherit the open file). A run killed with SIGKILL releases it with its last
process, so the next ``kiln run`` (or ``kiln cleanup``) recognises the
directory as stale and removes it. For root runs the upper layer and the
scratch files live on a tmpfs mounted only in the run's own mount
namespace (vkernel/sandbox.py), which the kernel frees with the namespace:
what a killed root run leaves on disk is an empty mount point and the lock.
"""
from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat as st
import time
from dataclasses import dataclass, field
from pathlib import Path

from vkernel.errors import VkernelError
from formats.trees import remove_tree_at

STATE_ENV = "KILN_STATE"


def state_root() -> Path:
    """``$KILN_STATE``; else ``/var/lib/kiln`` (root) or ``$XDG_STATE_HOME/kiln``."""
    env = os.environ.get(STATE_ENV)
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/kiln")
    xdg = os.environ.get("XDG_STATE_HOME")
    return Path(xdg) / "kiln" if xdg else Path.home() / ".local" / "state" / "kiln"


def _private_dir(parent_fd: int | None, path: str | Path, what: str) -> int:
    """An O_DIRECTORY fd of ``path`` (relative to ``parent_fd`` when given), made 0700 if
    missing; VkernelError unless it is a real directory of this user closed to others."""
    try:
        if parent_fd is None:
            os.makedirs(path, mode=0o700, exist_ok=True)
        else:
            try:
                os.mkdir(path, 0o700, dir_fd=parent_fd)
            except FileExistsError:
                pass
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=parent_fd)
    except OSError as e:
        raise VkernelError(f"cannot use {what} {path}: {e.strerror}",
                           hint=f"make it a directory owned by uid {os.geteuid()} with mode 0700, "
                                f"or point ${STATE_ENV} elsewhere") from None
    s = os.fstat(fd)
    if s.st_uid != os.geteuid() or s.st_mode & 0o077:
        os.close(fd)
        raise VkernelError(f"{what} {path} is not private (owner uid {s.st_uid}, mode "
                           f"{st.S_IMODE(s.st_mode):04o}): a run's files must not be reachable by "
                           f"other users",
                           hint=f"chown {os.geteuid()} and chmod 0700 it, or point ${STATE_ENV} "
                                "elsewhere")
    return fd


@dataclass
class RunDir:
    """One live run's directory ``runs/ID`` and the lock that says it is alive."""
    path: Path          # the state directory's runs/ID
    runs_fd: int        # O_DIRECTORY fd of runs/ (this run's own copy)
    id: str
    fd: int             # O_DIRECTORY fd of runs/ID
    lock_fd: int        # runs/ID/lock, flock'ed LOCK_EX
    owner: int = field(default_factory=os.getpid)   # forked guest processes never remove it

    def mkdir(self, name: str, mode: int = 0o700) -> Path:
        """A fresh subdirectory (a mount point or an upper layer)."""
        os.mkdir(name, mode, dir_fd=self.fd)
        return self.path / name

    def remove(self) -> None:
        """Remove the directory (at any depth, never following a symlink), then unlock."""
        if os.getpid() != self.owner:
            return
        try:
            remove_tree_at(self.runs_fd, self.id)
        finally:
            for fd in (self.fd, self.lock_fd, self.runs_fd):
                os.close(fd)


class StateDir:
    """The state directory, held open by descriptor."""

    def __init__(self, path: Path, fd: int, runs_fd: int) -> None:
        self.path = path
        self.fd = fd
        self.runs_fd = runs_fd

    @classmethod
    def open(cls, path: Path | None = None) -> "StateDir":
        path = path or state_root()
        fd = _private_dir(None, path, "the state directory")
        try:
            runs = _private_dir(fd, "runs", "the state directory")
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, runs)

    def close(self) -> None:
        for fd in (self.runs_fd, self.fd):
            os.close(fd)

    def new_run(self, sweep: bool = True) -> RunDir:
        """A new locked ``runs/ID`` (stale runs are removed first, unless ``sweep`` is false:
        a sandbox zygote sweeps once when it starts, not for each of its many runs)."""
        if sweep:
            self.sweep()
        # Made under a hidden name, locked, then renamed: a sweep never sees it unlocked.
        rid = secrets.token_hex(6)
        tmp = f".new-{rid}"
        os.mkdir(tmp, 0o700, dir_fd=self.runs_fd)
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=self.runs_fd)
        lock = os.open("lock", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       0o600, dir_fd=fd)
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.rename(tmp, rid, src_dir_fd=self.runs_fd, dst_dir_fd=self.runs_fd)
        return RunDir(self.path / "runs" / rid, os.dup(self.runs_fd), rid, fd, lock)

    def runs(self) -> list[tuple[str, bool]]:
        """(id, alive) of every run directory."""
        out = []
        for name in sorted(os.listdir(self.runs_fd)):
            if name.startswith(".new-"):         # being made now, or left by a start killed
                try:                             # at that moment (then an hour old)
                    age = time.time() - os.stat(name, dir_fd=self.runs_fd,
                                                follow_symlinks=False).st_mtime
                except OSError:
                    continue
                out.append((name, age < 3600))
                continue
            out.append((name, self._alive(name)))
        return out

    def _alive(self, rid: str) -> bool:
        try:
            lock = os.open(f"{rid}/lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                           dir_fd=self.runs_fd)
        except OSError as e:
            # A run that died between mkdir and creating its lock (or a stray file): stale.
            return e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(lock)
        return False

    def sweep(self) -> list[str]:
        """Remove the directories of runs that ended without tidying up (killed); their ids."""
        gone = []
        for rid, alive in self.runs():
            if alive:
                continue
            try:
                remove_tree_at(self.runs_fd, rid)
                gone.append(rid)
            except OSError:
                continue
        return gone
