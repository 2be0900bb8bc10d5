"""Named runs (containers): create, start, exec into, signal, pause, update and delete them.

A container is a root run of ``kiln run`` (vkernel/supervisor.py,
vkernel/sandbox.py) that outlives the command that made it, known by a name
under a runtime root directory (``kiln-oci --root``, 0700)::

    ROOT/ID/state.json   the record (ContainerRecord), replaced atomically under ROOT/ID/lock
    ROOT/ID/start        a FIFO: one byte written there lets the guest's first instruction run
    ROOT/ID/run/         the run's state directory (runs/RID: its private file systems)
    ROOT/ID/supervisor   the supervisor's pid and start time, from fork until state.json

:func:`Containers.create` forks the run's supervisor, which outlives the caller
(containerd's shim, a subreaper, adopts it): it makes the namespaces, cgroup
and mounts, loads the megabinary, and the first process locks itself down and
waits on the FIFO. The supervisor's pid is the container's pid: it exits with
the guest's status and passes signals on. :func:`Containers.exec` starts one
more guest process in a live run: forked into the run's pid namespace, it joins
its cgroup, mount and user namespaces and is locked down as the first process
(:func:`vkernel.sandbox.join`). The status is worked out each time from the
processes themselves (a pid with its start time, so a reused pid is not taken
for the container), never from a file that a killed process could leave stale.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import select
import signal as hsignal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from formats.errors import KilnError
from formats.trees import remove_tree
from vkernel.cgroup import RunCgroup
from vkernel.statedir import _private_dir

if TYPE_CHECKING:        # the runtime (and Wasmtime) only for what runs a guest: a command
    from vkernel.runtime import RunSpec     # such as `state` starts in a tenth of the time

__all__ = ["ContainerError", "ContainerRecord", "Containers", "STATUSES"]

STATUSES = ("created", "running", "paused", "stopped")
_ID = re.compile(r"^[\w+\-.]{1,1024}$")
_STOP_WAIT = 10.0
"""Seconds ``delete --force`` waits for a killed container's supervisor to end."""


class ContainerError(KilnError):
    """A container operation that cannot be done (no such container, wrong status...)."""


@dataclass(frozen=True)
class ContainerRecord:
    """What ROOT/ID/state.json holds about one container."""
    id: str
    bundle: str
    rootfs: str
    created: str                        # RFC 3339, UTC
    annotations: dict[str, str]
    pid: int                            # the supervisor: the container's pid for its manager
    pid_start: int                      # its start time (clock ticks after boot)
    first_pid: int                      # the run's first guest process (pid 1 inside)
    first_start: int
    run_fs: str                         # host path of the run's private file system
    cgroup: dict = field(default_factory=dict)   # RunCgroup's dirs, v2, memory, freezer
    exec_base: dict = field(default_factory=dict)  # what a joining process needs of the spec
    started: bool = False
    paused: bool = False

    def run_cgroup(self) -> RunCgroup | None:
        c = self.cgroup
        if not c:
            return None
        return RunCgroup(tuple(Path(d) for d in c["dirs"]), bool(c["v2"]), int(c["memory"]),
                         Path(c["freezer"]) if c.get("freezer") else None)


def _start_time(pid: int) -> int | None:
    """Start time of live host process ``pid`` (None if gone, or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _alive(pid: int, start: int) -> bool:
    return pid > 0 and _start_time(pid) == start


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class Containers:
    """The containers under one runtime root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        os.close(_private_dir(None, self.root, "the runtime root"))

    # -- records -----------------------------------------------------------------------
    def _dir(self, cid: str) -> Path:
        if not _ID.match(cid) or cid in (".", ".."):
            raise ContainerError(f"invalid container id {cid!r}",
                                 hint="ids are letters, digits, '_', '+', '-' and '.'")
        return self.root / cid

    def get(self, cid: str) -> ContainerRecord:
        try:
            data = json.loads((self._dir(cid) / "state.json").read_text())
        except FileNotFoundError:
            raise ContainerError(f"container {cid} does not exist",
                                 hint="list them with `kiln-oci list`") from None
        except (OSError, ValueError) as e:
            raise ContainerError(f"the state of container {cid} is unreadable: {e}",
                                 hint=f"remove it with `kiln-oci delete --force {cid}`") from None
        return ContainerRecord(**data)

    def _save(self, rec: ContainerRecord) -> None:
        d = self._dir(rec.id)
        tmp = d / "state.json.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(rec), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / "state.json")

    @contextmanager
    def _locked(self, cid: str) -> Iterator[None]:
        try:
            fd = os.open(self._dir(cid) / "lock", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ContainerError(f"container {cid} does not exist") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def ids(self) -> list[str]:
        return sorted(n for n in os.listdir(self.root) if (self.root / n / "state.json").exists())

    def status(self, rec: ContainerRecord) -> str:
        if not _alive(rec.pid, rec.pid_start):
            return "stopped"
        if rec.paused:
            return "paused"
        return "running" if rec.started else "created"

    # -- create / start ------------------------------------------------------------------
    def create(self, cid: str, bundle: Path, spec: "RunSpec", annotations: dict[str, str],
               console: Callable[[int], None] | None = None,
               exec_base: dict | None = None) -> ContainerRecord:
        """Set up the run of ``spec`` (a root run: pid, mount and user namespaces, cgroup)
        up to the guest's first instruction; the supervisor's record. ``console`` takes the
        pseudo-terminal's master when ``spec.tty``."""
        d = self._dir(cid)
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            raise ContainerError(f"container {cid} already exists",
                                 hint=f"delete it first: kiln-oci delete {cid}") from None
        try:
            os.close(os.open(d / "lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            os.mkfifo(d / "start", 0o600)
            os.mkdir(d / "run", 0o700)
            return self._create(cid, d, bundle, spec, annotations, console, exec_base or {})
        except BaseException:
            remove_tree(d)
            raise

    def _create(self, cid: str, d: Path, bundle: Path, spec: "RunSpec", annotations: dict,
                console: Callable[[int], None] | None, exec_base: dict) -> ContainerRecord:
        start_fd = os.open(d / "start", os.O_RDWR | os.O_CLOEXEC)
        r, w = os.pipe2(os.O_CLOEXEC)
        spec = dataclasses.replace(spec, ready_fd=w, start_fd=start_fd, pid_namespace=True,
                                   lockdown=True, supervised=False, timeout=None)
        pid = os.fork()
        if pid == 0:                                        # the supervisor, for good
            os.close(r)
            _supervisor(spec, d / "run", w, console)
        os.close(w)
        os.close(start_fd)
        # Until state.json exists: whom a `delete` of a create that died half way must kill.
        (d / "supervisor").write_text(f"{pid} {_start_time(pid) or 0}\n")
        with os.fdopen(r, "rb") as pipe:
            first, error = None, None
            for line in pipe:
                msg = json.loads(line)
                if "first" in msg:
                    first = msg
                elif "error" in msg:
                    error = msg
                    break
                elif msg.get("ready"):
                    break
            else:
                error = error or {"error": "the container's supervisor ended while setting up"}
        if error is not None or first is None:
            os.waitpid(pid, 0)
            err = error or {"error": "the container's supervisor ended while setting up"}
            raise ContainerError(err["error"], hint=err.get("hint"))
        rec = ContainerRecord(
            id=cid, bundle=str(bundle), rootfs=str(spec.rootfs), created=_now(),
            annotations=dict(annotations), pid=pid, pid_start=_start_time(pid) or 0,
            first_pid=first["first"], first_start=_start_time(first["first"]) or 0,
            run_fs=first["fs"], cgroup=first["cgroup"], exec_base=exec_base)
        self._save(rec)
        return rec

    def start(self, cid: str) -> ContainerRecord:
        with self._locked(cid):
            rec = self.get(cid)
            status = self.status(rec)
            if status != "created":
                raise ContainerError(f"cannot start container {cid}: it is {status}",
                                     hint="only a created container starts")
            try:
                fd = os.open(self._dir(cid) / "start", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:
                raise ContainerError(f"cannot start container {cid}: {e.strerror}") from None
            try:
                os.write(fd, b"s")
            finally:
                os.close(fd)
            rec = dataclasses.replace(rec, started=True)
            self._save(rec)
            return rec

    # -- signals ------------------------------------------------------------------------
    def kill(self, cid: str, sig: int, all_processes: bool = False) -> None:
        """Send ``sig`` to the container: its supervisor passes the signals it supervises on
        (a first process that does not catch one is ended by it, as a container's init);
        SIGKILL and the others go to the first process itself. ``all_processes``: to every
        process of the run instead."""
        from vkernel.supervisor import _SUPERVISED
        rec = self.get(cid)
        status = self.status(rec)
        cg = rec.run_cgroup()
        if all_processes:
            pids = cg.processes() if cg is not None else []
            if not pids and status == "stopped":
                raise ContainerError(f"container not running: {cid}")
            for p in pids:
                _signal(p, sig)
            return
        if status == "stopped":
            # runc's words: containerd's runc shim reads "container not running" in a failed
            # kill as "already finished" (a pod's sandbox is killed after it exits).
            raise ContainerError(f"container not running: {cid}",
                                 hint="its first process has ended")
        if sig in _SUPERVISED:
            _signal(rec.pid, sig)
        elif _alive(rec.first_pid, rec.first_start):
            _signal(rec.first_pid, sig)
        elif sig == hsignal.SIGKILL:
            _signal(rec.pid, sig)
        if status == "paused" and sig == hsignal.SIGKILL and cg is not None:
            cg.freeze(False)                       # a frozen process cannot die

    def pause(self, cid: str, paused: bool) -> None:
        with self._locked(cid):
            rec = self.get(cid)
            status = self.status(rec)
            want = "running" if paused else "paused"
            if status != want:
                raise ContainerError(f"cannot {'pause' if paused else 'resume'} container "
                                     f"{cid}: it is {status}")
            cg = rec.run_cgroup()
            if cg is None:
                raise ContainerError(f"container {cid} has no cgroup to freeze")
            cg.freeze(paused)
            self._save(dataclasses.replace(rec, paused=paused))

    def update(self, cid: str, memory: int | None, pids: int | None) -> None:
        rec = self.get(cid)
        cg = rec.run_cgroup()
        if cg is None or self.status(rec) == "stopped":
            raise ContainerError(f"container not running: {cid}")
        from vkernel.supervisor import TASKS_PER_PROCESS
        tasks = None if pids is None else TASKS_PER_PROCESS * pids + 16
        cg.set_limits(memory, tasks)

    def processes(self, cid: str) -> list[int]:
        rec = self.get(cid)
        cg = rec.run_cgroup()
        return cg.processes() if cg is not None else []

    def stats(self, cid: str) -> dict[str, int]:
        cg = self.get(cid).run_cgroup()
        return cg.stats() if cg is not None else {}

    # -- delete -------------------------------------------------------------------------
    def delete(self, cid: str, force: bool = False) -> None:
        """Remove the container and everything it left; a running or paused one only with
        ``force`` (it is killed first). A created one is killed without it."""
        d = self._dir(cid)
        if not (d / "state.json").exists():
            if d.is_dir():                  # a create that died half way: its supervisor too
                try:
                    pid, start = (int(x) for x in (d / "supervisor").read_text().split())
                except (OSError, ValueError):
                    pid, start = 0, 0
                if _alive(pid, start):
                    _signal(pid, hsignal.SIGKILL)    # its first process dies with it
                    _wait_gone(pid, start)
                remove_tree(d)
                return
            raise ContainerError(f"container {cid} does not exist")
        rec = self.get(cid)
        status = self.status(rec)
        if status in ("running", "paused") and not force:
            raise ContainerError(f"cannot delete container {cid} that is not stopped: {status}",
                                 hint=f"stop it first, or kiln-oci delete --force {cid}")
        if status != "stopped":
            self.kill(cid, hsignal.SIGKILL)
            _wait_gone(rec.pid, rec.pid_start)
        cg = rec.run_cgroup()
        if cg is not None:
            for p in cg.processes():       # an exec'd process whose run has ended
                _signal(p, hsignal.SIGKILL)
            cg.remove()
        remove_tree(d)

    # -- exec ---------------------------------------------------------------------------
    def exec(self, cid: str, spec: "RunSpec", console: Callable[[int], None] | None = None,
             on_ready: Callable[[int], None] | None = None) -> int:
        """Start ``spec``'s command as a new process of the container's run; its host pid
        once it is set up (``on_ready`` is called with it then). The caller may wait for it."""
        from vkernel import console as vconsole, sandbox
        rec = self.get(cid)
        status = self.status(rec)
        if status not in ("created", "running"):
            raise ContainerError(f"cannot exec in container {cid}: it is {status}")
        if not _alive(rec.first_pid, rec.first_start):
            raise ContainerError(f"cannot exec in container {cid}: its first process has ended")
        from vkernel.vfs import Volume
        target = sandbox.JoinTarget(
            rec.first_pid, Path(rec.run_fs),
            tuple(Volume(**v) for v in rec.exec_base.get("volumes", ())))
        cg = rec.run_cgroup()
        pty = vconsole.Pty.open() if spec.tty else None
        r, w = os.pipe2(os.O_CLOEXEC)
        sandbox.enter_pid_namespace(rec.first_pid)
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _exec_child(spec, target, cg, pty, w)
        os.close(w)
        if pty is not None:
            os.close(pty.slave)
            if console is not None:
                console(pty.master)
            os.close(pty.master)
        with os.fdopen(r, "rb") as pipe:
            line = pipe.readline()
        msg = json.loads(line) if line else {"error": "the process ended while setting up"}
        if not msg.get("ready"):
            os.waitpid(pid, 0)
            raise ContainerError(msg.get("error", "exec failed"), hint=msg.get("hint"))
        if on_ready is not None:
            on_ready(pid)
        return pid


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, start: int) -> None:
    """Until host process ``pid`` has ended (it is not our child: a pidfd says when)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if _start_time(pid) != start:
            return
        select.select([fd], [], [], _STOP_WAIT)
    finally:
        os.close(fd)


def _send(fd: int, msg: dict) -> None:
    try:
        os.write(fd, json.dumps(msg).encode() + b"\n")
    except OSError:
        pass


def _supervisor(spec: "RunSpec", state: Path, ready: int,
                console: Callable[[int], None] | None) -> None:
    """The forked supervisor of a new container: never returns."""
    from vkernel.supervisor import Detached, supervise
    status = 2
    try:
        if spec.tty:                 # the guest's terminal is the pty: nothing of ours stays
            null = os.open(os.devnull, os.O_RDWR)      # open on the creator's output
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)

        def on_first(pid: int, run, cg: RunCgroup | None) -> None:
            cgroup = {} if cg is None else {
                "dirs": [str(p) for p in cg.dirs], "v2": cg.v2, "memory": cg.memory,
                "freezer": str(cg.freezer) if cg.freezer is not None else None}
            _send(ready, {"first": pid, "fs": str(run.path / "fs"), "cgroup": cgroup})
            os.close(ready)

        status = supervise(spec, Detached(state, on_first, console if spec.tty else None))
    except KilnError as e:
        _send(ready, {"error": e.message, "hint": e.hint})
    except BaseException as e:       # never a traceback: the creator reports it
        _send(ready, {"error": f"internal error in the supervisor: {type(e).__name__}: {e}"})
    finally:
        os._exit(status)


def _exec_child(spec: "RunSpec", target, cg: RunCgroup | None, pty, ready: int) -> None:
    """A process joining a live run (forked in its pid namespace): never returns."""
    from vkernel import console as vconsole, sandbox
    from vkernel.launch import run_guest
    status = 2
    try:
        if pty is not None:
            pty.become_terminal()
        else:
            vconsole.no_terminal()
        joined = sandbox.join(spec, target, cg)
        joined = dataclasses.replace(joined, ready_fd=ready, supervised=True, lockdown=True,
                                     pid_namespace=False, run_memory=cg, memory=0,
                                     timeout=None, tree_root=1)   # the run is pid 1's tree
        status = run_guest(joined)
    except KilnError as e:
        _report(ready, e.message, e.hint)
    except BaseException as e:
        _report(ready, f"internal error in vkernel: {type(e).__name__}: {e}", None)
    finally:
        os._exit(status)


def _report(ready: int, message: str, hint: str | None) -> None:
    from vkernel import handoff
    if handoff.ready_sent:
        import sys
        print(f"kiln: {message}", file=sys.stderr, flush=True)
    else:
        _send(ready, {"error": message, "hint": hint})

