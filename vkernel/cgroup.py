"""Per-run resource limits from the host's control groups: memory and tasks for the whole run.

``kiln run`` as root puts the run's first guest process (and so every process
it forks) in a cgroup of its own below kiln's: ``memory.max`` (v2) or
``memory.limit_in_bytes`` (v1) bounds the memory of the run as a whole,
vkernel's own included, with no swap; ``pids.max`` bounds its host tasks
(guest processes and vkernel's threads). The unified hierarchy (v2) is used
when its memory controller is available, else the v1 ``memory`` and ``pids``
hierarchies. The supervisor removes the cgroup after the run.

Guests see the limit as Linux programs expect, as ``ENOMEM`` from mmap, brk
and mremap: vkernel compares the run's anonymous and shmem bytes (the upper
layer's tmpfs counts there) with the limit before growing a mapping
(:meth:`RunCgroup.would_exceed`). The kernel's OOM killer stays the backstop for
memory touched after it was mapped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vkernel.errors import VkernelError

_ROOT = Path("/sys/fs/cgroup")
HEADROOM = 16 << 20
"""Bytes of the limit kept free for vkernel's own work when a guest asks for memory (at least;
an eighth of the limit when that is more): forked processes copy vkernel's pages as they run,
which no check sees coming."""
CHECK_EVERY = 256 << 10
"""Mapping growth (bytes) a process may add before the run's usage is read again."""


def _own_path(controller: str | None) -> str | None:
    """This process's cgroup path in the v1 hierarchy of ``controller`` (None: v2)."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if controller is None and ctrls == "":
                    return path
                if controller is not None and controller in ctrls.split(","):
                    return path
    except (OSError, ValueError):
        pass
    return None


def _v2_root() -> Path | None:
    for root in (_ROOT, _ROOT / "unified"):
        try:
            if "memory" in (root / "cgroup.controllers").read_text().split():
                return root
        except OSError:
            continue
    return None


@dataclass
class RunCgroup:
    """The cgroup(s) of one run."""
    dirs: tuple[Path, ...]          # v2: one directory; v1: memory, then pids
    v2: bool
    memory: int
    freezer: Path | None = None     # v1: the run's freezer cgroup (v2 freezes dirs[0])
    _stat_fd: int = -1              # memory.stat, opened on first use (kept across the drop)
    _unchecked: int = 0             # growth not compared with the cgroup's figures yet

    @classmethod
    def create(cls, name: str, memory: int, tasks: int) -> "RunCgroup | None":
        """Make the run's cgroup with these limits; None when the host offers no cgroup kiln
        may use (not root, no memory controller)."""
        if os.geteuid() != 0:
            return None
        v2 = _v2_root()
        if v2 is not None:
            return cls._create_v2(v2, name, memory, tasks)
        mem_own, pids_own = _own_path("memory"), _own_path("pids")
        if mem_own is None or not (_ROOT / "memory").is_dir():
            return None
        dirs = [_ROOT / "memory" / mem_own.lstrip("/") / name]
        if pids_own is not None and (_ROOT / "pids").is_dir():
            dirs.append(_ROOT / "pids" / pids_own.lstrip("/") / name)
        freezer_own = _own_path("freezer")
        freezer = _ROOT / "freezer" / freezer_own.lstrip("/") / name \
            if freezer_own is not None and (_ROOT / "freezer").is_dir() else None
        made: list[Path] = []
        try:
            for d in (*dirs, *([freezer] if freezer is not None else [])):
                d.mkdir(mode=0o755)
                made.append(d)
            _write(dirs[0] / "memory.limit_in_bytes", memory)
            try:
                _write(dirs[0] / "memory.memsw.limit_in_bytes", memory)    # no swap either
            except OSError:
                pass                                    # swap accounting is off
            if len(dirs) > 1:
                _write(dirs[1] / "pids.max", tasks)
        except OSError as e:
            for d in reversed(made):
                _rmdir(d)
            raise VkernelError(f"cannot set the run's resource limits in {e.filename}: "
                               f"{e.strerror}",
                               hint="check that the cgroup file systems are writable by root") \
                from None
        return cls(tuple(dirs), False, memory, freezer)

    @classmethod
    def _create_v2(cls, root: Path, name: str, memory: int, tasks: int) -> "RunCgroup":
        own = _own_path(None) or "/"
        parent = root / own.lstrip("/")
        try:
            # Controllers for children need the parent's subtree_control; a cgroup holding
            # processes cannot enable them (except the root), so fall back to a kiln cgroup
            # at the top of the hierarchy.
            try:
                _enable(parent)
            except OSError:
                parent = root / "kiln"
                parent.mkdir(exist_ok=True)
                _enable(root)
                _enable(parent)
            d = parent / name
            d.mkdir(mode=0o755)
            _write(d / "memory.max", memory)
            try:
                _write(d / "memory.swap.max", 0)
            except OSError:
                pass
            _write(d / "pids.max", tasks)
        except OSError as e:
            raise VkernelError(f"cannot set the run's resource limits in {e.filename}: "
                               f"{e.strerror}",
                               hint="check that cgroup2 is writable by root") from None
        return cls((d,), True, memory)

    def join(self) -> None:
        """Move this process (and so what it forks from now on) into the run's cgroup."""
        for d in (*self.dirs, *([self.freezer] if self.freezer is not None else [])):
            _write(d / "cgroup.procs", os.getpid())
        self.used()                     # opens memory.stat while every path is reachable

    def used(self) -> int:
        """The run's anonymous and shmem bytes now (memory that cannot be reclaimed)."""
        if self._stat_fd < 0:
            self._stat_fd = os.open(self.dirs[0] / "memory.stat", os.O_RDONLY | os.O_CLOEXEC)
        keys = (b"anon", b"shmem") if self.v2 else (b"total_rss", b"total_shmem")
        total = 0
        os.lseek(self._stat_fd, 0, os.SEEK_SET)
        for line in os.read(self._stat_fd, 1 << 16).split(b"\n"):
            k, _, v = line.partition(b" ")
            if k in keys:
                total += int(v)
        return total

    def would_exceed(self, new_bytes: int) -> bool:
        """Whether mapping ``new_bytes`` more would take the run past its limit. Small growth
        is summed up and checked once it reaches :data:`CHECK_EVERY` (reading the cgroup's
        figures costs a file read)."""
        if self._unchecked + new_bytes < CHECK_EVERY:
            self._unchecked += new_bytes
            return False
        self._unchecked = 0
        return self.used() + new_bytes > self.memory - max(HEADROOM, self.memory // 8)

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone (the supervisor, after the run)."""
        if self._stat_fd >= 0:
            os.close(self._stat_fd)
            self._stat_fd = -1
        for d in (*self.dirs, *([self.freezer] if self.freezer is not None else [])):
            _rmdir(d)

    # -- for a container's runtime (vkernel/containers.py), from outside the run ----------
    def processes(self) -> list[int]:
        """Host pids of the run's processes."""
        try:
            text = (self.dirs[0] / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def freeze(self, frozen: bool) -> None:
        """Stop (or let go on) every process of the run at once (the freezer)."""
        try:
            if self.v2:
                _write(self.dirs[0] / "cgroup.freeze", int(frozen))
            elif self.freezer is not None:
                with open(self.freezer / "freezer.state", "w", encoding="ascii") as f:
                    f.write("FROZEN\n" if frozen else "THAWED\n")
            else:
                raise VkernelError("this host has no cgroup freezer: a run cannot be paused",
                                   hint="mount the cgroup v1 freezer hierarchy, or use cgroup v2")
        except OSError as e:
            raise VkernelError(f"cannot {'pause' if frozen else 'resume'} the run: {e.strerror}")

    def set_limits(self, memory: int | None, tasks: int | None) -> None:
        """New memory (bytes) and task limits of the live run (None: unchanged)."""
        try:
            if memory is not None:
                _write(self.dirs[0] / ("memory.max" if self.v2 else "memory.limit_in_bytes"),
                       memory)
                self.memory = memory
            if tasks is not None:
                pids = self.dirs[0] if self.v2 else (self.dirs[1] if len(self.dirs) > 1 else None)
                if pids is not None:
                    _write(pids / "pids.max", tasks)
        except OSError as e:
            raise VkernelError(f"cannot change the run's limits: {e.strerror}",
                               hint="a memory limit below what the run uses now is refused") \
                from None

    def stats(self) -> dict[str, int]:
        """Memory in use and its limit, and the number of tasks, as the kernel counts them."""
        out: dict[str, int] = {}
        d = self.dirs[0]
        names = (("memory.current", "memory.max") if self.v2 else
                 ("memory.usage_in_bytes", "memory.limit_in_bytes"))
        for key, name in zip(("memory_usage", "memory_limit"), names):
            try:
                text = (d / name).read_text().strip()
                out[key] = int(text) if text.isdigit() else 0
            except OSError:
                pass
        pids = d if self.v2 else (self.dirs[1] if len(self.dirs) > 1 else None)
        if pids is not None:
            try:
                out["pids_current"] = int((pids / "pids.current").read_text())
            except (OSError, ValueError):
                pass
        return out


def _write(path: Path, value: int) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(f"{value}\n")


def _enable(parent: Path) -> None:
    have = (parent / "cgroup.subtree_control").read_text().split()
    want = [c for c in ("memory", "pids") if c not in have]
    if want:
        with open(parent / "cgroup.subtree_control", "w", encoding="ascii") as f:
            f.write(" ".join(f"+{c}" for c in want))


def _rmdir(d: Path) -> None:
    import time
    for _ in range(50):                   # the last processes may still be exiting
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
