"""Outbound connections a run's ``--allow-net`` permits, made by the supervisor in the host's network.

A guest's sockets live in its run's network namespace, which has a loopback
and nothing else: no route leads out. When a guest connects to (or sends a
datagram to) a destination the run's policy allows, vkernel asks the
supervisor, which stays in the host's network, for a socket there:

1. the guest process makes a socket pair, sends the request (family, type,
   destination) over the run's broker socket with one end of the pair
   attached (SCM_RIGHTS), and waits on the other end;
2. the supervisor checks the destination against the same policy again (a
   guest process is not trusted to have checked), makes a non-blocking socket
   in the host's network, starts the connect (TCP, or a connected UDP socket),
   and answers on the attached end: an errno and, unless refused, the socket;
3. vkernel puts that socket in place of the guest's (vkernel/syscalls/net.py).

One reply end per request keeps the answers of concurrent requests from
several guest processes apart.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import socket
from dataclasses import dataclass

from vkernel.netpolicy import NetPolicy

_MAX_REQUEST = 1024


@dataclass(frozen=True)
class OutsideRequest:
    """What a guest process asks for: a socket reaching ``ip``:``port`` from the host."""
    family: int
    type: int                  # SOCK_STREAM or SOCK_DGRAM
    protocol: int
    ip: str
    port: int
    flowinfo: int = 0
    scope_id: int = 0
    connect: bool = True       # connect it (else an unconnected datagram socket)

    def address(self) -> tuple:
        if self.family == socket.AF_INET6:
            return (self.ip, self.port, self.flowinfo, self.scope_id)
        return (self.ip, self.port)


def request(broker_fd: int, req: OutsideRequest) -> tuple[int, int]:
    """Guest process side: (errno, host fd or -1). errno 0 or EINPROGRESS come with a socket
    (non-blocking, close-on-exec); anything else with none."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    broker = socket.socket(fileno=broker_fd)
    try:
        body = json.dumps(dataclasses.asdict(req)).encode()
        try:
            socket.send_fds(broker, [body], [theirs.fileno()])
        except OSError:
            return errno.ENETUNREACH, -1
        theirs.close()
        try:
            msg, fds, _, _ = socket.recv_fds(mine, _MAX_REQUEST, 1)
        except OSError:
            return errno.ENETUNREACH, -1
        try:
            err = int(json.loads(msg or b"{}").get("errno", errno.ENETUNREACH))
        except (ValueError, TypeError, AttributeError):
            err = errno.ENETUNREACH
        if not fds:
            return err or errno.ENETUNREACH, -1
        for extra in fds[1:]:
            os.close(extra)
        return err, fds[0]
    finally:
        broker.detach()
        mine.close()
        theirs.close()


def serve_one(broker: socket.socket, policy: NetPolicy, audit=None) -> bool:  # type: ignore[no-untyped-def]
    """Supervisor side: answer one request waiting on ``broker`` (never blocks long, never
    raises for a guest's bad request). False once no guest process holds the other end."""
    try:
        msg, fds, _, _ = socket.recv_fds(broker, _MAX_REQUEST, 1, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False
    if not fds:
        return bool(msg)
    reply = socket.socket(fileno=fds[0])
    for extra in fds[1:]:
        os.close(extra)
    try:
        err, sock = _open(msg, policy, audit)
        try:
            socket.send_fds(reply, [json.dumps({"errno": err}).encode()],
                            [sock.fileno()] if sock is not None else [])
        except OSError:
            pass
        finally:
            if sock is not None:
                sock.close()
    finally:
        reply.close()
    return True


def _open(msg: bytes, policy: NetPolicy, audit) -> tuple[int, socket.socket | None]:  # type: ignore[no-untyped-def]
    try:
        fields = json.loads(msg)
        req = OutsideRequest(**fields)
        if not isinstance(req.ip, str) or not isinstance(req.port, int):
            raise TypeError("bad request")
    except (ValueError, TypeError):
        return errno.EINVAL, None
    if req.family not in (socket.AF_INET, socket.AF_INET6) or \
            req.type not in (socket.SOCK_STREAM, socket.SOCK_DGRAM) or \
            req.protocol not in (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP):
        return errno.EINVAL, None
    if policy.rule_for(req.ip, req.port) is None:
        if audit is not None:
            audit.record("net", "refused", f"supervisor refused a connection to {req.ip} port "
                         f"{req.port}: no --allow-net rule permits it", ip=req.ip, port=req.port,
                         side="supervisor")
        return errno.ENETUNREACH, None
    try:
        s = socket.socket(req.family, req.type | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                          req.protocol)
    except OSError as e:
        return e.errno or errno.EIO, None
    if not req.connect:
        return 0, s
    err = s.connect_ex(req.address())
    if err not in (0, errno.EINPROGRESS):
        s.close()
        return err, None
    return err, s
