"""A zygote: one process per image that holds its guest code loaded and forks sandboxes from it.

``kiln serve`` starts one per image (``python -m shim.sandbox.zygote``, a
child of the server with a channel on fd 3). It opens the image's megabinary
once, checks it and deserializes every module (vkernel/runtime.py
``load_code``), freezes its heap so that forks share it, and then serves:

``spawn``
    a new sandbox: its cgroup and state directory are made here, then a
    fork into a new pid namespace becomes the sandbox's first process
    (shim/sandbox/agent.py), whose own channel goes back to the server.
    That fork is what acquiring a sandbox costs: the guest code is
    already in memory.
``kill``
    SIGKILL a sandbox's first process (the kernel ends the rest of its pid
    namespace).

It is every sandbox's parent: when one ends it reaps it, removes its cgroup and
state directory, and tells the server (``ended``). When the zygote ends (the
server went away) each sandbox's first process gets SIGKILL from the kernel
(``PR_SET_PDEATHSIG``), so nothing is left running.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import select
import signal as hsignal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from formats.errors import KilnError
from shim.sandbox.channel import Channel, ChannelClosed, pair

__all__ = ["main", "ZygoteConfig"]

CHANNEL_FD = 3


@dataclasses.dataclass(frozen=True)
class ZygoteConfig:
    """The image a zygote serves, as the server resolved it."""
    image: str                  # the name sandboxes ask for
    rootfs: str
    megabinary: str
    digest: str                 # the digest the trust policy accepted ("" without a policy)
    env: tuple[str, ...]
    workdir: str
    user: str
    state: str                  # the state directory (runs/ID per sandbox)
    audit_log: str | None

    @classmethod
    def from_json(cls, data: dict) -> "ZygoteConfig":
        return cls(**{**data, "env": tuple(data.get("env", ()))})


class _Sandbox:
    def __init__(self, sid: str, pid: int, run: Any, cg: Any, cpu: Any) -> None:
        self.sid, self.pid, self.run, self.cg, self.cpu = sid, pid, run, cg, cpu


class Zygote:
    def __init__(self, chan: Channel, cfg: ZygoteConfig) -> None:
        from vkernel.runtime import RunSpec, load_code
        from vkernel.statedir import StateDir
        self.chan = chan
        self.cfg = cfg
        self.base = RunSpec(rootfs=Path(cfg.rootfs), megabinary=Path(cfg.megabinary),
                            argv=("/bin/sh",), env=cfg.env, workdir=cfg.workdir,
                            audit_log=Path(cfg.audit_log) if cfg.audit_log else None,
                            pid_namespace=True, lockdown=True, megabinary_digest=cfg.digest)
        t = time.perf_counter()
        self.code = load_code(self.base)
        self.load_ms = (time.perf_counter() - t) * 1000
        self.state = StateDir.open(Path(cfg.state))
        self.state.sweep()
        self.sandboxes: dict[int, _Sandbox] = {}
        self.brokers: dict[int, tuple[socket.socket, Any]] = {}   # pid -> allow_net broker
        self.net_audit: Any = None
        self._held = hsignal.pthread_sigmask(hsignal.SIG_BLOCK, {hsignal.SIGCHLD})
        from vkernel.supervisor import _signalfd
        self.sigfd = _signalfd((hsignal.SIGCHLD,))
        from shim.sandbox import agent  # noqa: F401  (imported before the heap is frozen)
        from vkernel import sandbox
        sandbox.preload()
        agent._preload()
        gc.collect()
        gc.freeze()                      # forks share these pages: no collector touches them

    def serve(self) -> None:
        self.chan.send({"op": "loaded", "load_ms": self.load_ms, "pid": os.getpid(),
                        "units": len(self.code.units)})
        while True:
            brokers = {b.fileno(): pid for pid, (b, _) in self.brokers.items()}
            ready, _, _ = select.select([self.chan.fileno(), self.sigfd, *brokers], [], [])
            for fd in ready:
                if fd in brokers:
                    self._broker(brokers[fd])
            if self.sigfd in ready:
                os.read(self.sigfd, 1024)
                self._reap()
            if self.chan.fileno() in ready:
                try:
                    msg, fds = self.chan.recv()
                except ChannelClosed:
                    self._kill_all()
                    return
                for fd in fds:
                    os.close(fd)
                op = msg.get("op")
                try:
                    if op == "spawn":
                        self._spawn(msg)
                    elif op == "kill":
                        self._kill(msg.get("pid"))
                        self.chan.send({"id": msg.get("id")})
                    elif op == "exit":
                        self._kill_all()
                        return
                    else:
                        self.chan.send({"id": msg.get("id"), "error": f"unknown op {op!r}"})
                except KilnError as e:
                    self.chan.send({"id": msg.get("id"), "error": e.message, "hint": e.hint})

    def _spawn(self, msg: dict) -> None:
        from shim.sandbox.agent import SandboxSetup, become_sandbox
        from shim.sandbox.cpuacct import CpuAccount
        from vkernel import pidns
        from vkernel.cgroup import RunCgroup
        from vkernel.supervisor import TASKS_PER_PROCESS
        t0 = time.perf_counter()
        allow = tuple(str(a) for a in msg.get("allow") or ())
        net, broker, guest_end = None, None, -1
        if allow:                     # its own network; the zygote connects out for it
            from vkernel import netpolicy
            net = netpolicy.parse(None, (), allow)
            broker, theirs = socket.socketpair(socket.AF_UNIX,
                                               socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            guest_end = theirs.detach()
        setup = SandboxSetup(sid=str(msg["sid"]), memory=int(msg["memory"]),
                             pids=int(msg["pids"]), disk=int(msg["disk"]), user=self.cfg.user,
                             net=net, broker_fd=guest_end)
        run = self.state.new_run(sweep=False)
        cg = cpu = None
        try:
            run.mkdir("fs")
            cg = RunCgroup.create(f"kiln-{run.id}", setup.memory,
                                  TASKS_PER_PROCESS * setup.pids + 16)
            cpu = CpuAccount.create(f"kiln-{run.id}")
            ours, theirs = pair()
            me = os.getpid()
            back = pidns.unshare_for_children()
            try:
                pid = os.fork()
            finally:
                if os.getpid() == me and back is not None:
                    pidns.restore_for_children(back)
        except BaseException:
            if cg is not None:
                cg.remove()
            if cpu is not None:
                cpu.remove()
            run.remove()
            if broker is not None:
                broker.close()
                os.close(guest_end)
            raise
        if pid == 0:
            try:
                hsignal.pthread_sigmask(hsignal.SIG_SETMASK, self._held)
                os.close(self.sigfd)
                self.chan.close()
                ours.close()
                if broker is not None:
                    broker.close()
                for b, _ in self.brokers.values():
                    b.close()
                if cpu is not None:
                    cpu.join()
                become_sandbox(self.code, self.base, run, cg, setup, Channel(theirs))
            finally:
                os._exit(2)
        theirs.close()
        if broker is not None:
            os.close(guest_end)
            self.brokers[pid] = (broker, net)
        self.sandboxes[pid] = _Sandbox(setup.sid, pid, run, cg, cpu)
        from vkernel.containers import _start_time
        self.chan.send({"id": msg.get("id"), "op": "spawned", "sid": setup.sid, "pid": pid,
                        "start": _start_time(pid) or 0, "run": run.id,
                        "cgroup": [str(d) for d in cg.dirs] if cg is not None else [],
                        "cpu": str(cpu.path) if cpu is not None else "",
                        "fork_ms": (time.perf_counter() - t0) * 1000},
                       [ours.fileno()])
        ours.close()

    def _broker(self, pid: int) -> None:
        """A connection a guest of sandbox ``pid`` asks for (vkernel/netbroker.py: the policy
        is checked again here, and the socket made in the host's network)."""
        from vkernel import netbroker
        from vkernel.audit import AuditLog
        broker, net = self.brokers[pid]
        if self.net_audit is None:
            self.net_audit = AuditLog(Path(self.cfg.audit_log) if self.cfg.audit_log else None)
        if not netbroker.serve_one(broker, net, self.net_audit):
            broker.close()                   # no process of that sandbox holds the other end
            del self.brokers[pid]

    def _kill(self, pid: object) -> None:
        if isinstance(pid, int) and pid in self.sandboxes:
            try:
                os.kill(pid, hsignal.SIGKILL)
            except ProcessLookupError:
                pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            sb = self.sandboxes.pop(pid, None)
            if sb is None:
                continue
            gone = self.brokers.pop(pid, None)
            if gone is not None:
                gone[0].close()
            self._tidy(sb)
            code = os.waitstatus_to_exitcode(status)
            try:
                self.chan.send({"op": "ended", "sid": sb.sid, "pid": pid, "status": code})
            except ChannelClosed:
                pass

    def _tidy(self, sb: _Sandbox) -> None:
        if sb.cg is not None:
            for p in sb.cg.processes():          # nothing of it may outlive it
                try:
                    os.kill(p, hsignal.SIGKILL)
                except ProcessLookupError:
                    pass
            for _ in range(100):
                if not sb.cg.processes():
                    break
                time.sleep(0.01)
            sb.cg.remove()
        if sb.cpu is not None:
            sb.cpu.remove()
        sb.run.remove()

    def _kill_all(self) -> None:
        for pid in list(self.sandboxes):
            self._kill(pid)
        deadline = time.monotonic() + 10
        while self.sandboxes and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.01)


def main(argv: list[str] | None = None) -> None:
    """``python -m shim.sandbox.zygote FD``: FD is the channel; its first message configures."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:                    # the server's end is ours (and so every sandbox's)
        import ctypes
        ctypes.CDLL(None).prctl(1, int(hsignal.SIGKILL), 0, 0, 0)     # PR_SET_PDEATHSIG
        if os.getppid() != int(args[1]):
            return
    sock = socket.socket(fileno=int(args[0]) if args else CHANNEL_FD)
    chan = Channel(sock)
    try:
        msg, fds = chan.recv()
        for fd in fds:
            os.close(fd)
        cfg = ZygoteConfig.from_json(msg["config"])
        zygote = Zygote(chan, cfg)
    except ChannelClosed:
        return
    except KilnError as e:
        chan.send({"op": "failed", "error": e.message, "hint": e.hint})
        return
    except (KeyError, TypeError, ValueError) as e:
        chan.send({"op": "failed", "error": f"bad zygote configuration: {e}"})
        return
    zygote.serve()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
