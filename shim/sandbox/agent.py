"""A sandbox's first process: pid 1 of its own namespaces, holding the loaded guest code.

The zygote (shim/sandbox/zygote.py) forks it into a new pid namespace. Before
anything of the sandbox's runs, it builds the isolation of a root ``kiln run``
(vkernel/sandbox.py): the sandbox's cgroup, its own mount namespace and
``/proc``, a tmpfs of ``disk`` bytes as the upper layer, the image's rootfs
idmapped and read-only, a user namespace whose root is an unprivileged host
id; it makes the run's :class:`~vkernel.runtime.Runtime` from the zygote's
already deserialized modules, then enters the user namespace for good and
loads vkernel's seccomp filter. From there on it holds no host privilege.

It then serves its channel from the server (shim/sandbox/channel.py), one
request at a time:

``exec``
    fork a guest process (shim/sandbox/guest.py); its stdin, stdout and
    stderr pipes go back to the server, and its status later as an ``exit``
    event. Fork is the whole cost: the process inherits the loaded code, the
    file system view and the lock-down.
``signal``, ``ps``
    signal one of the sandbox's processes; list them with what they run.
``open``, ``list``, ``remove``, ``mkdir``
    the files API, through the run's overlay (``Vfs``): every path resolves
    inside the sandbox's root (openat2 RESOLVE_IN_ROOT), writes copy up and
    deletes leave whiteouts as a guest's would. ``open`` hands the server a
    descriptor of the file; the server streams it.
``session``
    a run_code interpreter: an exec with its stdin kept open
    (shim/sandbox/sessions.py feeds it the code).

Being pid 1, it reaps every orphan of the sandbox; when it ends, the kernel
ends everything else in the namespace, and the zygote removes the cgroup and
the state directory.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import select
import signal as hsignal
import stat as st
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from formats.errors import KilnError
from shim.sandbox.channel import Channel, ChannelClosed

if TYPE_CHECKING:
    from vkernel.cgroup import RunCgroup
    from vkernel.imageuser import User
    from vkernel.runtime import LoadedCode, Runtime, RunSpec
    from vkernel.statedir import RunDir

__all__ = ["SandboxSetup", "become_sandbox", "Agent"]

LIST_MAX = 10_000
"""Directory entries a ``list`` returns at most (the reply says when it was cut)."""


@dataclass(frozen=True)
class SandboxSetup:
    """What the zygote gives a new sandbox (limits are also the cgroup's)."""
    sid: str
    memory: int                 # bytes for the whole sandbox (its cgroup); vkernel included
    pids: int                   # guest processes at most
    disk: int                   # bytes of its upper layer (tmpfs)
    user: str = ""              # the image's User ("" root)
    net: Any = None             # allow_net's NetPolicy (vkernel/netpolicy.py); None: no network
    broker_fd: int = -1         # its end of the zygote's broker (vkernel/netbroker.py)


def become_sandbox(code: "LoadedCode", base: "RunSpec", run: "RunDir", cg: "RunCgroup | None",
                   setup: SandboxSetup, chan: Channel) -> None:
    """In the zygote's child, pid 1 of a new pid namespace: build the sandbox, lock it down
    and serve ``chan``. Never returns."""
    status = 0
    try:
        agent = _build(code, base, run, cg, setup, chan)
        chan.send({"op": "ready"})
        agent.serve()
    except ChannelClosed:
        pass
    except KilnError as e:
        _report(chan, e.message, e.hint)
        status = 2
    except BaseException as e:         # never a traceback: the server reports it
        _report(chan, f"internal error in the sandbox: {type(e).__name__}: {e}", None)
        status = 2
    finally:
        os._exit(status)


def _report(chan: Channel, message: str, hint: str | None) -> None:
    try:
        chan.send({"op": "failed", "error": message, "hint": hint})
    except (ChannelClosed, OSError):
        pass


def _build(code: "LoadedCode", base: "RunSpec", run: "RunDir", cg: "RunCgroup | None",
           setup: SandboxSetup, chan: Channel) -> "Agent":
    from vkernel import imageuser, pidns, procfs, sandbox
    from vkernel.runtime import Runtime
    pidns.die_with_supervisor()          # the zygote's end takes the sandbox with it
    if cg is not None:
        cg.join()
    pidns.mount_own_proc()
    from shim.sandbox.spare import PIDS_TAKEN
    spec = dataclasses.replace(base, pids_limit=setup.pids + PIDS_TAKEN, memory=0, tree_root=1,
                               supervised=True, lockdown=True)
    if setup.net is not None:             # a loopback of its own; allowed connections go out
        from vkernel import netns         # through the zygote (vkernel/netbroker.py)
        netns.enter_own_network()
        spec = dataclasses.replace(spec, net=setup.net, net_namespace=True,
                                   net_broker_fd=setup.broker_fd)
    spec = sandbox.build(spec, run, setup.disk)
    if cg is not None:
        spec = dataclasses.replace(spec, run_memory=cg)
    rt = Runtime(spec, code)
    iso = spec.isolation
    assert iso is not None

    def read(path: str) -> bytes | None:
        try:
            return rt.vfs.read_file(path, 1 << 20)
        except OSError:
            return None
    user = imageuser.resolve_user(setup.user or "0", read)
    if max(user.uid, user.gid, *user.groups) >= iso.id_count:
        raise KilnError(f"the image's user {setup.user!r} is outside the sandbox's id range "
                        f"0..{iso.id_count - 1}", hint="use an image whose User has a smaller id")
    # The upper layer's root as the image's (through the idmapped lower layer), as a run does.
    low = os.fstat(rt.vfs.lower_fd)
    os.chown(rt.vfs.upper, low.st_uid, low.st_gid)
    os.chmod(rt.vfs.upper, st.S_IMODE(low.st_mode))
    if rt.vfs.skeleton is not None:
        rt.vfs.skeleton.hand_over(low.st_uid, low.st_gid)
    _preload()
    sandbox.drop(iso)                    # the user namespace for good, seccomp
    procfs.publish(rt.vfs.skeleton, "kiln-sandbox", [b"kiln-sandbox", setup.sid.encode()])
    _prepare_shell(rt)
    agent = Agent(rt, chan, user, setup)
    import gc
    gc.collect()
    gc.freeze()        # what the sandbox holds now is shared with every process it forks
    return agent


def _prepare_shell(rt: "Runtime") -> None:
    """Load the program ``sh`` names (busybox, dash...) once, so that each exec of it (and
    every ``cmd``, which runs through /bin/sh) starts in a fork without reading, hashing or
    mapping it again (Runtime.prepare). An image without one just starts every program."""
    from vkernel.errors import VkernelError
    try:
        rt.prepared = rt.prepare(rt.resolve_command("sh", [e.encode() for e in rt.spec.env]))
    except (VkernelError, OSError):
        rt.prepared = None


def _preload() -> None:
    """What the agent and its processes import later: nothing can be read or mapped from the
    host's root-only directories once the sandbox is locked down."""
    import array  # noqa: F401
    import json  # noqa: F401
    import socket  # noqa: F401
    import tarfile  # noqa: F401
    import blake3  # noqa: F401
    import shim.sandbox.freeze  # noqa: F401
    import shim.sandbox.guest  # noqa: F401
    import shim.sandbox.spare  # noqa: F401
    import vkernel.checkpoint  # noqa: F401


class Agent:
    """The request loop of a sandbox's first process."""

    def __init__(self, rt: "Runtime", chan: Channel, user: "User", setup: SandboxSetup) -> None:
        self.rt = rt
        self.chan = chan
        self.user = user
        self.setup = setup
        self.children: dict[int, int] = {}        # pid -> the exec request's tag
        self.reaped: dict[int, int] = {}
        self._held = hsignal.pthread_sigmask(hsignal.SIG_BLOCK, {hsignal.SIGCHLD})
        from vkernel.supervisor import _signalfd
        self.sigfd = _signalfd((hsignal.SIGCHLD,))
        self.home = user.home
        self.controls: dict[int, Any] = {}        # pid -> checkpoint socket of a session
        self.commands: dict[int, list[str]] = {}  # pid -> the argv it was started with
        self.spare: Any = None                    # shim/sandbox/spare.py: the next exec's process
        self.spares = True

    # -- the loop --------------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            ready, _, _ = _select([self.chan.fileno(), self.sigfd])
            if self.sigfd in ready:
                try:
                    os.read(self.sigfd, 128 * 8)
                except BlockingIOError:
                    pass
                self._reap()
            if self.chan.fileno() in ready:
                msg, fds = self.chan.recv()
                self._handle(msg, fds)
                from shim.sandbox import spare
                spare.requested(self, msg.get("op"))     # after the reply: the next exec's

    def _handle(self, msg: dict[str, Any], fds: list[int]) -> None:
        op = msg.get("op")
        handler = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        rid = msg.get("id")
        try:
            if handler is None:
                raise KilnError(f"unknown sandbox request {op!r}")
            reply, out = handler(msg, fds)
        except KilnError as e:
            reply, out = {"error": e.message, "hint": e.hint}, []
        except OSError as e:
            reply, out = {"error": _os_message(e, msg.get("path")), "errno": e.errno}, []
        finally:
            for fd in fds:
                _close(fd)
        try:
            self.chan.send({**reply, "id": rid}, out)
        finally:
            for fd in out:
                _close(fd)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            from shim.sandbox import spare
            spare.forget(self, pid)
            tag = self.children.pop(pid, None)
            self.commands.pop(pid, None)
            control = self.controls.pop(pid, None)
            if control is not None:
                control.close()
            if tag is not None:
                code = os.waitstatus_to_exitcode(status)
                self.chan.send({"op": "exit", "pid": pid, "tag": tag,
                                "status": 128 - code if code < 0 else code,
                                "signal": -code if code < 0 else 0})

    # -- processes -------------------------------------------------------------------------
    def op_exec(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        from shim.sandbox import guest
        req = guest.ExecRequest.from_message(msg, self.home)
        return self._start(req, fds)

    def _start(self, req: "Any", fds: list[int], session: bool = False,
               image: int = -1) -> tuple[dict, list[int]]:
        from shim.sandbox import guest, spare
        from shim.sandbox.channel import pair
        pipes = guest.Pipes.make(req)
        ours, theirs = pair() if session else (None, None)
        ready = spare.take(self) if image < 0 else None
        if ready is not None:                    # the spare becomes the process: no fork
            try:
                ready.hand(req, pipes, theirs.fileno() if theirs is not None else -1)
            except BaseException:
                ready.discard()
                raise
            finally:
                pipes.close_child_ends()
                if theirs is not None:
                    theirs.close()
            if ours is not None:
                self.controls[ready.pid] = ours
            self.children[ready.pid] = int(req.tag)
            self.commands[ready.pid] = list(req.argv)
            return {"pid": ready.pid}, pipes.parent_ends()
        keep = set(pipes.child_ends())
        if theirs is not None:
            keep.add(theirs.fileno())
        if image >= 0:
            keep.add(image)
        pid = os.fork()
        if pid == 0:
            agent_fds = [self.chan.fileno(), self.sigfd, *fds,
                         *(c.fileno() for c in self.controls.values())]
            if ours is not None:
                agent_fds.append(ours.fileno())
            guest.run_in_child(self.rt, req, self.user, pipes, keep, self._held, agent_fds,
                               theirs.fileno() if theirs is not None else -1, image)
        pipes.close_child_ends()
        if theirs is not None:
            theirs.close()
            self.controls[pid] = ours
        self.children[pid] = int(req.tag)
        self.commands[pid] = list(req.argv)
        return {"pid": pid}, pipes.parent_ends()

    def op_session(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        """A run_code interpreter: an exec whose stdin stays open for the code it is fed."""
        from shim.sandbox import guest
        return self._start(guest.ExecRequest.from_message({**msg, "stdin": True}, self.home), fds,
                           session=True)

    def op_restore_go(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        """Every interpreter of the snapshot has its pid: they go on (and start their threads,
        which take pids of their own)."""
        for pid in msg.get("pids") or ():
            control = self.controls.get(int(pid))
            if control is not None:
                control.send(b"G")
        return {}, []

    # -- snapshots (shim/sandbox/snapshots.py) ---------------------------------------------
    def op_snapshot(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        """Save the sandbox: ``fds`` are the files to write, its upper layer's archive first,
        then one image per run_code interpreter (``pids``, in the same order)."""
        from shim.sandbox import freeze
        return freeze.snapshot(self, [int(p) for p in msg.get("pids") or ()], fds), []

    def op_restore_files(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        """The upper layer of a snapshot (its archive in ``fds[0]``) into this new sandbox."""
        from shim.sandbox import freeze
        return freeze.restore_files(self, fds[0]), []

    def op_restore_session(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        """A run_code interpreter of a snapshot (its image in ``fds[0]``), restored with the pid
        it had."""
        from shim.sandbox import freeze, guest
        req = guest.ExecRequest.from_message({**msg, "stdin": True}, self.home)
        freeze.reach_pid(int(msg["pid"]))
        reply, out = self._start(req, [], session=True, image=fds[0])
        try:
            freeze.wait_restored(self.controls[reply["pid"]], reply["pid"])
        except BaseException:
            for fd in out:
                _close(fd)
            raise
        return reply, out

    def op_signal(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        pid, sig = int(msg["pid"]), int(msg["sig"])
        if pid <= 1 or not 0 < sig < 65:
            raise KilnError(f"cannot signal process {pid} with {sig}")
        target = -pid if msg.get("group") else pid
        try:
            os.kill(target, sig)
        except ProcessLookupError:
            if msg.get("group"):
                os.kill(pid, sig)
        return {}, []

    def op_ps(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        from vkernel import procfs
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or name == "1":
                continue
            pid = int(name)
            if self.spare is not None and pid == self.spare.pid:
                continue                              # not a process of the sandbox's yet
            info = procfs.published(self.rt.vfs.skeleton, pid) or {}
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    raw = f.read()
                with open(f"/proc/{pid}/statm", "rb") as f:
                    rss_pages = int(f.read().split()[1])
            except (OSError, ValueError, IndexError):
                continue
            fields = raw[raw.rindex(b")") + 2:].split()
            out.append({"pid": pid, "ppid": int(fields[1]), "state": fields[0].decode(),
                        "argv": info.get("argv") or self.commands.get(pid, []),
                        "comm": info.get("comm", ""),
                        "rss_kb": rss_pages * os.sysconf("SC_PAGE_SIZE") // 1024,
                        "exec": pid in self.children})
        return {"processes": sorted(out, key=lambda p: p["pid"])}, []

    def op_which(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        """The first of ``names`` found on the image's PATH (absolute), or none."""
        from vkernel.errors import VkernelError
        env = [e.encode() for e in self.rt.spec.env]
        for name in msg.get("names") or ():
            if not isinstance(name, str) or "/" in name:
                continue
            try:
                return {"path": self.rt.resolve_command(name, env)}, []
            except VkernelError:
                continue
        return {"path": None}, []

    def op_limits(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        """New limits for a sandbox taken from the pool (the server set its cgroup's)."""
        rt = self.rt
        if self.spare is not None:                    # forked with the old limits
            self.spare.discard()
            self.spare = None
        pids, memory = int(msg["pids"]), int(msg["memory"])
        from shim.sandbox.spare import PIDS_TAKEN
        pids += PIDS_TAKEN
        rt.spec = dataclasses.replace(rt.spec, pids_limit=pids)
        if rt.proc.limits is not None:
            rt.proc.limits = dataclasses.replace(rt.proc.limits, pids=pids)
        if rt.spec.run_memory is not None:
            rt.spec.run_memory.memory = memory
            if rt.proc.limits is not None:
                rt.proc.limits = dataclasses.replace(rt.proc.limits, memory=memory)
        return {}, []

    # -- files -----------------------------------------------------------------------------
    def op_open(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        path = _guest_path(msg.get("path"))
        vfs = self.rt.vfs
        if msg.get("write"):
            if msg.get("parents"):
                self._mkdirs(os.path.dirname(path))
            fd = vfs.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                          int(msg.get("mode", 0o644)) & 0o7777)
            try:
                info = os.fstat(fd)
                if not st.S_ISREG(info.st_mode):
                    raise OSError(errno.EISDIR if st.S_ISDIR(info.st_mode) else errno.EINVAL,
                                  "not a regular file", path)
                if info.st_uid != self._host_uid(self.user.uid) and info.st_size == 0 \
                        and info.st_nlink == 1:
                    os.fchown(fd, self.user.uid, self.user.gid)
            except BaseException:
                os.close(fd)
                raise
            return {"path": path}, [fd]
        fd = vfs.open(path, os.O_RDONLY)
        try:
            info = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if st.S_ISDIR(info.st_mode):
            os.close(fd)
            raise OSError(errno.EISDIR, "is a directory", path)
        if not st.S_ISREG(info.st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file", path)
        return {"path": path, "size": info.st_size}, [fd]

    def _host_uid(self, uid: int) -> int:
        return uid

    def _mkdirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        at = ""
        for p in parts:
            at += "/" + p
            try:
                self.rt.vfs.mkdir(at, 0o755)
            except FileExistsError:
                continue
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise

    def op_list(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        path = _guest_path(msg.get("path"))
        vfs = self.rt.vfs
        canon, _, info = vfs.resolve(path)
        if info is None:
            raise OSError(errno.ENOENT, "no such file or directory", path)
        if not st.S_ISDIR(info.st_mode):
            raise OSError(errno.ENOTDIR, "not a directory", path)
        entries = []
        listed = vfs.list_dir(canon)
        for name, _, _ in listed[:LIST_MAX]:
            try:
                s = vfs.stat(canon.rstrip("/") + "/" + name, follow=False)
            except FileNotFoundError:         # removed since the listing
                continue
            kind = ("dir" if st.S_ISDIR(s.st_mode) else "file" if st.S_ISREG(s.st_mode) else
                    "symlink" if st.S_ISLNK(s.st_mode) else "other")
            entries.append({"name": name, "type": kind, "size": s.st_size,
                            "mode": st.S_IMODE(s.st_mode), "mtime": s.st_mtime})
        entries.sort(key=lambda e: e["name"])
        return {"path": canon, "entries": entries, "truncated": len(listed) > LIST_MAX}, []

    def op_remove(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        path = _guest_path(msg.get("path"))
        if path == "/":
            raise KilnError("the sandbox's root directory cannot be removed")
        info = self.rt.vfs.stat(path, follow=False)
        if st.S_ISDIR(info.st_mode):
            if msg.get("recursive"):
                self._remove_tree(path)
            else:
                self.rt.vfs.rmdir(path)
        else:
            self.rt.vfs.unlink(path)
        return {"path": path}, []

    def _remove_tree(self, path: str) -> None:
        stack = [(path, False)]
        while stack:
            at, listed = stack.pop()
            if listed:
                self.rt.vfs.rmdir(at)
                continue
            stack.append((at, True))
            canon, _, _ = self.rt.vfs.resolve(at, follow=False)
            for name, _, kind in self.rt.vfs.list_dir(canon):
                child = canon.rstrip("/") + "/" + name
                if kind == st.S_IFDIR:
                    stack.append((child, False))
                else:
                    self.rt.vfs.unlink(child)

    def op_mkdir(self, msg: dict, fds: list[int]) -> tuple[dict, list[int]]:
        path = _guest_path(msg.get("path"))
        self._mkdirs(path)
        return {"path": path}, []


def _guest_path(path: object) -> str:
    """An absolute guest path from the API (the server has checked it already)."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise KilnError(f"bad path {path!r}: give an absolute path inside the sandbox")
    return path


def _os_message(e: OSError, path: object) -> str:
    what = e.strerror or os.strerror(e.errno or errno.EIO)
    return f"{path}: {what}" if isinstance(path, str) else what


def _select(fds: list[int]) -> list[int]:
    while True:
        try:
            return select.select(fds, [], [])  # type: ignore[return-value]
        except InterruptedError:
            continue


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


if __name__ == "__main__":          # pragma: no cover - started by the zygote only
    sys.exit("shim.sandbox.agent is started by the zygote")
