"""The run's /proc and /dev skeleton on the host, and what each guest process publishes there."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import astuple

PROC_FILES = ("cpuinfo", "meminfo", "mounts")
"""Regular files of /proc whose text is made at each open (vkernel/proctext.py)."""

PROC_SYS = ("kernel/cap_last_cap", "kernel/ngroups_max", "kernel/osrelease", "kernel/ostype",
            "kernel/hostname", "kernel/pid_max", "kernel/threads-max", "kernel/random/uuid",
            "kernel/random/boot_id", "kernel/random/entropy_avail", "kernel/random/poolsize",
            "fs/file-max", "fs/nr_open", "vm/overcommit_memory", "vm/max_map_count",
            "net/core/somaxconn")
"""Files of /proc/sys (read-only, as a container's): what programs read there (libcap's
cap_last_cap, redis's somaxconn and overcommit_memory, uuid and boot_id...)."""

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
"""Device files of /dev; the Vfs opens the host device in their place."""

DEV_LINKS = {"stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "fd": "/proc/self/fd", "ptmx": "pts/ptmx"}
"""Symlinks of /dev, as a container runtime creates them."""


class Skeleton:
    """A private host directory holding ``proc/``, ``dev/``, two empty directories that
    stand in for /proc/PID and /proc/PID/fd, and ``shm/``, the run's writable /dev/shm (in
    a root run the skeleton is on the run's 64 MiB scratch tmpfs, Docker's /dev/shm size);
    removed by the process that made it."""

    def __init__(self, existing: str | None = None) -> None:
        if existing is not None:          # a live run's (a process joining it): shared, kept
            self.root, self._owner = existing, -1
            return
        self.root = tempfile.mkdtemp(prefix="kiln-synth-")
        os.chmod(self.root, 0o755)        # reachable by a guest that is not root
        self._owner = os.getpid()
        proc = os.path.join(self.root, "proc")
        dev = os.path.join(self.root, "dev")
        for d in (proc, dev, self.piddir, self.fddir, self.psdir, self.shmdir,
                  os.path.join(dev, "shm"), os.path.join(dev, "pts")):
            os.mkdir(d)
        os.chmod(self.shmdir, 0o1777)         # as /dev/shm: everyone's, sticky
        for name in PROC_FILES:
            open(os.path.join(proc, name), "x").close()
            os.chmod(os.path.join(proc, name), 0o444)
        for name in PROC_SYS:
            path = os.path.join(proc, "sys", name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "x").close()
            os.chmod(path, 0o444)
        for dirpath, _, _ in os.walk(os.path.join(proc, "sys")):
            os.chmod(dirpath, 0o555)
        for name in ("self", "thread-self"):
            os.symlink("self", os.path.join(proc, name))     # served by the kernel
        for name in DEV_NODES:
            open(os.path.join(dev, name), "x").close()        # opened as the host device
        for name, target in DEV_LINKS.items():
            os.symlink(target, os.path.join(dev, name))
        for d in (proc, self.piddir, self.fddir):
            os.chmod(d, 0o555)
        os.chmod(self.psdir, 0o711)          # guests' command lines: not for other host users
        os.chmod(dev, 0o755)

    def hand_over(self, uid: int, gid: int) -> None:
        """Make the skeleton the run's namespace root's (host ids ``uid``/``gid``), before the
        run's first process gives up host root: vkernel keeps writing ``ps/`` as that root."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in (*dirnames, *filenames):
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
        os.chown(self.root, uid, gid)

    @property
    def piddir(self) -> str:
        return os.path.join(self.root, "pid")

    @property
    def fddir(self) -> str:
        return os.path.join(self.root, "fd")

    @property
    def shmdir(self) -> str:
        """What the guest's /dev/shm is (shm_open, POSIX semaphores): shared by the run."""
        return os.path.join(self.root, "shm")

    @property
    def psdir(self) -> str:
        """``PID.json`` (what each guest process runs, published by itself) and ``PID/`` (an
        empty directory owned by its effective ids, standing in for /proc/PID)."""
        return os.path.join(self.root, "ps")

    def remove(self) -> None:
        if os.getpid() != self._owner:
            return
        for d in ("proc", "pid", "fd", "ps"):
            try:
                os.chmod(os.path.join(self.root, d), 0o755)
            except OSError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


# -- /proc/PID of guest processes ---------------------------------------------------------
_last: tuple[str, tuple[bytes, ...]] = ("", ())
"""What this process last published (a fork child inherits its parent's)."""


def publish(skel: Skeleton | None, comm: str, argv: list[bytes]) -> None:
    """Record what this guest process runs (at its start, fork, execve and id changes) so the
    other guest processes of the run see it in /proc/PID; written as vkernel, not the guest."""
    from vkernel import creds
    global _last
    _last = (comm, tuple(argv))
    if skel is None:
        return
    c = creds.current()
    pid = os.getpid()
    info = {"comm": comm[:15], "argv": [a.decode("utf-8", "surrogateescape") for a in argv],
            "uid": [c.ruid, c.euid, c.suid], "gid": [c.rgid, c.egid, c.sgid],
            "groups": list(c.groups), "caps": list(astuple(creds.capabilities()))}
    path = os.path.join(skel.psdir, str(pid))
    try:
        with creds.privileged():
            tmp = f"{path}.json.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with open(fd, "w", encoding="utf-8") as f:
                json.dump(info, f)
            os.replace(tmp, path + ".json")
            try:
                os.mkdir(path, 0o555)
            except FileExistsError:
                pass
            if os.geteuid() == 0:
                os.chown(path, c.euid, c.egid)
    except OSError:
        pass                                   # /proc/PID then shows the host's view only


def republish(skel: Skeleton | None, comm: str | None = None) -> None:
    """Publish this process again as last published (in this process or, for a fork child,
    its parent): after a fork, an id change, or PR_SET_NAME with the new ``comm``."""
    last_comm, argv = _last
    publish(skel, last_comm if comm is None else comm, list(argv))


def published(skel: Skeleton | None, pid: int) -> dict | None:
    """What guest process ``pid`` published (read as vkernel: the files are 0600)."""
    from vkernel import creds
    if skel is None:
        return None
    try:
        with creds.privileged():
            with open(os.path.join(skel.psdir, f"{pid}.json"), encoding="utf-8") as f:
                return json.load(f)
    except (OSError, ValueError):
        return None


def pid_dir(skel: Skeleton, pid: int) -> str:
    """The host directory standing in for /proc/PID (owned by that process's euid/egid)."""
    d = os.path.join(skel.psdir, str(pid))
    return d if os.path.isdir(d) else skel.piddir


