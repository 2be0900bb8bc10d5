"""Socket syscalls: socket, socketpair, bind, listen, accept, connect, names, options, shutdown.

A guest socket is a host socket: the host kernel keeps connections, buffers,
queues and readiness (so poll and epoll work on it unchanged). vkernel
decides what a socket may be and reach (vkernel/netpolicy.py) and translates
addresses (vkernel/sockaddr.py). The send and receive calls are in
vkernel/syscalls/netmsg.py.

Two kinds of host socket are swapped in behind a guest's:

- a connection out of the run that ``--allow-net`` permits is made by the
  supervisor in the host's network (vkernel/netbroker.py) and replaces the
  guest socket's host descriptor (every option the guest set is set again);
- a listening socket on a ``--publish`` GUEST_PORT also accepts from the
  published host socket (vkernel/netns.py): accept, poll, select and epoll see
  both. Those host sockets are non-blocking; the guest's own O_NONBLOCK is
  then kept by vkernel (fcntl, ioctl FIONBIO).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl as hfcntl
import os
import select
import socket
import stat as st
import struct
from dataclasses import dataclass, field

from vkernel.fdtable import ENTRY_SPECIAL, ENTRY_STREAM, OpenFile
from vkernel.kernel import Kernel
from vkernel.netbroker import OutsideRequest, request
from vkernel.netpolicy import HOST, is_local
from vkernel.signals import wait_interruptibly
from vkernel.sockaddr import (AF_INET, AF_INET6, AF_NETLINK, AF_UNIX, SOCKADDR_MAX, family,
                              parse_inet, read_raw, to_family)
from vkernel.syscalls.args import s32

SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET = 1, 2, 3, 5
SOCK_NONBLOCK, SOCK_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
SOCK_TYPE_MASK = 0xF
NETLINK_ROUTE = 0
SOL_SOCKET, IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP, SOL_NETLINK = 1, 0, 41, 6, 17, 270
SO_TYPE, SO_ERROR, SO_RCVTIMEO, SO_SNDTIMEO, SO_DOMAIN, SO_PROTOCOL = 3, 4, 20, 21, 39, 38

_libc = ctypes.CDLL(None, use_errno=True)
_VOIDP, _INT, _UINTP = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_uint)
for _name, _args in (("bind", (_INT, _VOIDP, ctypes.c_uint)),
                     ("connect", (_INT, _VOIDP, ctypes.c_uint)),
                     ("accept4", (_INT, _VOIDP, _UINTP, _INT)),
                     ("getsockname", (_INT, _VOIDP, _UINTP)),
                     ("getpeername", (_INT, _VOIDP, _UINTP)),
                     ("setsockopt", (_INT, _INT, _INT, _VOIDP, ctypes.c_uint)),
                     ("getsockopt", (_INT, _INT, _INT, _VOIDP, _UINTP)),
                     ("listen", (_INT, _INT)), ("shutdown", (_INT, _INT))):
    getattr(_libc, _name).argtypes = list(_args)
    getattr(_libc, _name).restype = _INT


def check(r: int) -> int:
    """A libc call's result, or OSError with its errno."""
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


@dataclass
class SockState:
    """vkernel's part of a guest socket (shared by the guest fds of one open socket)."""
    family: int                 # as the guest made it (an accepted published connection may
    type: int                   # be an IPv4 host socket behind an AF_INET6 guest socket)
    protocol: int
    outside: bool = False       # a host-network socket from the broker: every destination checked
    published: tuple[int, ...] = ()      # host fds of --publish sockets this socket accepts from
    nonblock: bool | None = None         # the guest's O_NONBLOCK when vkernel keeps it (published)
    local_port: int = 0         # published: the GUEST_PORT (a listener's own, or the one an
                                # accepted connection came to)
    options: dict[tuple[int, int], bytes] = field(default_factory=dict)   # set again on a swap
    same_family: bool = False   # published: every published host socket is of ``family``

    @property
    def gate_flags(self) -> int:
        """What vkernel's native gate may serve for this socket's fds (vkernel/fdtable.py):
        nothing of a listening socket with published host sockets (epoll must watch those
        too), and recvfrom without an address only of a stream socket (a datagram from
        outside the run is checked against the policy)."""
        return (ENTRY_SPECIAL if self.published else 0) | \
            (ENTRY_STREAM if self.type == SOCK_STREAM else 0)

    @property
    def gate_published(self) -> tuple[int, ...] | None:
        """The published host sockets the gate may accept from (vkernel/_gatefds.c), when it
        may accept on this socket: a published stream listener whose host sockets are all of
        its family (an accepted peer's address then needs no conversion, sockaddr.to_family),
        every one non-blocking (sys_listen makes them so). None otherwise."""
        if not self.published or not self.same_family or self.type != SOCK_STREAM:
            return None
        return self.published


def sock_of(k: Kernel, fd: int) -> tuple[OpenFile, SockState]:
    of = k.fds.get(s32(fd))
    if of is None:
        raise OSError(errno.EBADF, "bad fd")
    state = of.state
    if not isinstance(state, SockState):
        raise OSError(errno.ENOTSOCK, os.strerror(errno.ENOTSOCK))
    return of, state


def also_ready(of: OpenFile) -> tuple[int, ...]:
    """Host fds whose readiness counts as ``of``'s (a listening socket's published ones)."""
    state = of.state
    return state.published if isinstance(state, SockState) else ()


def guest_nonblocking(of: OpenFile, state: SockState) -> bool:
    if state.nonblock is not None:
        return state.nonblock
    return bool(hfcntl.fcntl(of.host_fd, hfcntl.F_GETFL) & os.O_NONBLOCK)


def _new_socket(k: Kernel, h: int, state: SockState, flags: int) -> int:
    ino = os.fstat(h).st_ino
    of = OpenFile(h, f"socket:[{ino}]", os.O_RDWR | (flags & os.O_NONBLOCK),
                  bool(flags & SOCK_CLOEXEC), state=state)
    try:
        return k.fds.install(of)
    except OSError:
        os.close(h)
        raise


def _family_allowed(k: Kernel, domain: int, type_: int, protocol: int) -> int:
    """0 when the run may have this socket, else the errno Linux would give a run without it."""
    net = k.net
    if domain == AF_UNIX:
        return 0 if type_ in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET) else errno.ESOCKTNOSUPPORT
    if domain in (AF_INET, AF_INET6):
        if net is None or not net.inet:
            return errno.EAFNOSUPPORT
        return 0 if type_ in (SOCK_STREAM, SOCK_DGRAM) else errno.EPERM
    if domain == AF_NETLINK:
        if net is None or not net.inet:
            return errno.EAFNOSUPPORT
        return 0 if protocol == NETLINK_ROUTE else errno.EPROTONOSUPPORT
    return errno.EAFNOSUPPORT


def sys_socket(k: Kernel, domain: int, type: int, protocol: int) -> int:
    """socket(2): AF_UNIX; AF_INET, AF_INET6 and NETLINK_ROUTE in a run with a network"""
    domain, type_, protocol = s32(domain), s32(type), s32(protocol)
    if type_ & ~(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC):
        return -errno.EINVAL
    err = _family_allowed(k, domain, type_ & SOCK_TYPE_MASK, protocol)
    if err:
        return -err
    h = socket.socket(domain, type_ | SOCK_CLOEXEC, protocol).detach()
    return _new_socket(k, h, SockState(domain, type_ & SOCK_TYPE_MASK, protocol), type_)


def sys_socketpair(k: Kernel, domain: int, type: int, protocol: int, sv: int) -> int:
    """socketpair(2): AF_UNIX"""
    domain, type_ = s32(domain), s32(type)
    if domain != AF_UNIX:
        return -errno.EAFNOSUPPORT if domain not in (AF_INET, AF_INET6) else -errno.EOPNOTSUPP
    if type_ & ~(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC):
        return -errno.EINVAL
    a, b = socket.socketpair(AF_UNIX, type_ | SOCK_CLOEXEC, s32(protocol))
    ha, hb = a.detach(), b.detach()
    kind = type_ & SOCK_TYPE_MASK
    try:
        ga = _new_socket(k, ha, SockState(AF_UNIX, kind, 0), type_)
    except OSError:
        os.close(hb)
        raise
    try:
        gb = _new_socket(k, hb, SockState(AF_UNIX, kind, 0), type_)
    except OSError:
        k.fds.close(ga)
        raise
    k.space.write(sv, struct.pack("<ii", ga, gb))
    return 0


# -- addresses --------------------------------------------------------------------------
def host_name(fn, h: int) -> bytes:  # type: ignore[no-untyped-def]
    """getsockname/getpeername of host fd ``h``: the raw host sockaddr."""
    buf = ctypes.create_string_buffer(SOCKADDR_MAX)
    n = ctypes.c_uint(SOCKADDR_MAX)
    check(fn(h, buf, ctypes.byref(n)))
    return buf.raw[:n.value]


def to_guest_name(k: Kernel, state: SockState, raw: bytes, local: bool = False) -> bytes:
    """A host sockaddr as the guest sees it: its AF_UNIX names, its published port."""
    if not raw:
        return raw
    fam = family(raw)
    if fam == AF_UNIX and k.net is not None:
        return k.net.names.to_guest(raw)
    if fam in (AF_INET, AF_INET6):
        if local and state.local_port:
            raw = raw[:2] + struct.pack(">H", state.local_port) + raw[4:]
        return to_family(raw, state.family)
    return raw


def write_name(k: Kernel, raw: bytes, addr: int, addrlen: int) -> None:
    """Give the guest a sockaddr: at most *addrlen bytes at ``addr``, the full length in
    *addrlen (Linux's truncation rule)."""
    if not addr:
        return
    room = s32(k.space.u32(addrlen))
    if room < 0:
        raise OSError(errno.EINVAL, "negative address length")
    if room:
        k.space.write(addr, raw[:room])
    k.space.put_u32(addrlen, len(raw))


def _unix_bind(k: Kernel, of: OpenFile, raw: bytes) -> None:
    names = k.net.names
    path = names.path_of(raw)
    if len(raw) <= 2:                               # autobind: an abstract name of the host's
        check(_libc.bind(of.host_fd, raw, len(raw)))
        return
    if path[:1] == b"\0":
        host = struct.pack("<H", AF_UNIX) + names.abstract(raw[2:])
        check(_libc.bind(of.host_fd, host, len(host)))
        return
    if not path:
        raise OSError(errno.ENOENT, "empty path")
    pfd, name, _ = names.bind_parent(k, path)
    try:
        host = names.host_bind_address(pfd, name)
        old = os.umask(k.proc.umask)               # the socket file's mode, as the guest's
        try:
            check(_libc.bind(of.host_fd, host, len(host)))
        finally:
            os.umask(old)
    finally:
        os.close(pfd)
    names.remember(host, path)


def sys_bind(k: Kernel, sockfd: int, addr: int, addrlen: int) -> int:
    """bind(2): AF_UNIX paths are made in the guest's tree"""
    of, state = sock_of(k, sockfd)
    raw = read_raw(k, addr, addrlen)
    if family(raw) == AF_UNIX and state.family == AF_UNIX:
        _unix_bind(k, of, raw)
        return 0
    check(_libc.bind(of.host_fd, raw, len(raw)))
    return 0


def sys_listen(k: Kernel, sockfd: int, backlog: int) -> int:
    """listen(2): a --publish GUEST_PORT also listens on the host's published address"""
    of, state = sock_of(k, sockfd)
    backlog = s32(backlog)
    check(_libc.listen(of.host_fd, backlog))
    net = k.net
    if net is not None and net.published and state.family in (AF_INET, AF_INET6) and \
            state.type == SOCK_STREAM and not state.published:
        port = struct.unpack_from(">H", host_name(_libc.getsockname, of.host_fd), 2)[0]
        socks = net.published.get(port, ())
        if socks:
            for ps in socks:
                check(_libc.listen(ps.fd, backlog))
                os.set_blocking(ps.fd, False)   # accept4 tries each in turn, never blocking
            state.nonblock = guest_nonblocking(of, state)
            os.set_blocking(of.host_fd, False)
            state.published = tuple(ps.fd for ps in socks)
            state.local_port = port
            state.same_family = all(ps.family == state.family for ps in socks)
            k.fds.refresh(state)            # the native gate leaves its epoll_ctl to Python
    return 0



def sys_accept4(k: Kernel, sockfd: int, addr: int, addrlen: int, flags: int) -> int:
    """accept4(2): from the socket and, for a published port, from the host's"""
    of, state = sock_of(k, sockfd)
    flags = s32(flags)
    if flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC):
        return -errno.EINVAL
    if addr and s32(k.space.u32(addrlen)) < 0:
        return -errno.EINVAL
    buf = ctypes.create_string_buffer(SOCKADDR_MAX)
    n = ctypes.c_uint(SOCKADDR_MAX)
    hflags = SOCK_CLOEXEC | (flags & SOCK_NONBLOCK)
    # The published host sockets first: with --publish, that is where connections come from.
    cands = (*state.published, of.host_fd)
    nonblock = guest_nonblocking(of, state)
    got = src = -1
    while got < 0:
        if not nonblock:                           # (a blocking host socket is accepted
            wait_interruptibly(k, None, cands[0], select.POLLIN, also=cands[1:])   # once ready)
        for h in cands:
            n.value = SOCKADDR_MAX
            got = _libc.accept4(h, buf, ctypes.byref(n), hflags)
            if got >= 0:
                src = h
                break
            e = ctypes.get_errno()
            if e not in (errno.EAGAIN, errno.EINTR, errno.ECONNABORTED):
                raise OSError(e, os.strerror(e))
        if got < 0 and nonblock:
            return -errno.EAGAIN
    new = SockState(state.family, state.type, state.protocol)
    if src != of.host_fd:
        new.local_port = state.local_port
    try:
        raw = to_guest_name(k, new, buf.raw[:n.value])
        if addr:
            write_name(k, raw, addr, addrlen)
    except BaseException:
        os.close(got)
        raise
    return _new_socket(k, got, new, flags)


def sys_accept(k: Kernel, sockfd: int, addr: int, addrlen: int) -> int:
    """accept(2)"""
    return sys_accept4(k, sockfd, addr, addrlen, 0)


def sys_getsockname(k: Kernel, sockfd: int, addr: int, addrlen: int) -> int:
    """getsockname(2)"""
    of, state = sock_of(k, sockfd)
    write_name(k, to_guest_name(k, state, host_name(_libc.getsockname, of.host_fd), True),
               addr, addrlen)
    return 0


def sys_getpeername(k: Kernel, sockfd: int, addr: int, addrlen: int) -> int:
    """getpeername(2)"""
    of, state = sock_of(k, sockfd)
    write_name(k, to_guest_name(k, state, host_name(_libc.getpeername, of.host_fd)),
               addr, addrlen)
    return 0


# -- connect and destinations ---------------------------------------------------------------
def destination(k: Kernel, of: OpenFile, state: SockState, raw: bytes, connect: bool) -> bytes:
    """The host sockaddr for a guest's destination (connect, sendto, sendmsg); swaps in an
    outside socket when the run's policy lets the guest reach it. ENETUNREACH (audited) for
    a destination outside the run that no --allow-net rule names."""
    fam = family(raw)
    net = k.net
    if fam == AF_UNIX and state.family == AF_UNIX and net is not None:
        path = net.names.path_of(raw)
        if path[:1] == b"\0":
            return struct.pack("<H", AF_UNIX) + net.names.abstract(raw[2:])
        return b""                                 # a path: see with_unix_target
    if fam not in (AF_INET, AF_INET6) or state.family not in (AF_INET, AF_INET6):
        return raw
    if net is None or net.mode == HOST:
        return raw
    dest = parse_inet(raw)
    if is_local(dest.ip) and not state.outside:
        return raw
    rule = net.policy.rule_for(dest.ip, dest.port)
    if rule is None:
        net.refuse(k.audit, k.proc.exe, dest.ip, dest.port,
                   "connection to" if connect else "datagram to")
        raise OSError(errno.ENETUNREACH, os.strerror(errno.ENETUNREACH))
    if not state.outside:
        if not connect and state.type != SOCK_DGRAM:
            raise OSError(errno.ENETUNREACH, os.strerror(errno.ENETUNREACH))
        _go_outside(k, of, state, OutsideRequest(state.family, state.type, state.protocol,
                                                 dest.ip, dest.port, dest.flowinfo,
                                                 dest.scope_id, connect=connect))
        if connect:
            return b""                             # the supervisor started the connect
    return raw


def _go_outside(k: Kernel, of: OpenFile, state: SockState, req: OutsideRequest) -> None:
    """Replace the guest socket's host descriptor by a socket the supervisor made in the
    host's network (connecting it when ``req.connect``)."""
    net = k.net
    if net is None or net.broker_fd < 0:
        raise OSError(errno.ENETUNREACH, os.strerror(errno.ENETUNREACH))
    nonblock = guest_nonblocking(of, state)
    err, h = request(net.broker_fd, req)
    if h < 0:
        raise OSError(err, os.strerror(err))
    try:
        for (level, name), value in state.options.items():
            _libc.setsockopt(h, level, name, value, len(value))
        os.set_blocking(h, not nonblock)        # (the broker's socket comes non-blocking)
        for other in k.fds.files.values():
            if other.state is state:
                os.dup2(h, other.host_fd, inheritable=False)
    finally:
        os.close(h)
    state.outside = True
    if req.connect and err == errno.EINPROGRESS:
        if nonblock:
            raise OSError(errno.EINPROGRESS, os.strerror(errno.EINPROGRESS))
        wait_interruptibly(k, None, of.host_fd, select.POLLOUT)
        so_error = socket.socket(fileno=of.host_fd)
        try:
            err = so_error.getsockopt(SOL_SOCKET, SO_ERROR)
        finally:
            so_error.detach()
    if err:
        raise OSError(err, os.strerror(err))


def with_unix_target(k: Kernel, raw: bytes, call) -> int:  # type: ignore[no-untyped-def]
    """Run ``call(host sockaddr)`` against the socket file at the guest path in ``raw``."""
    h = k.net.names.open_target(k, k.net.names.path_of(raw))
    try:
        if not st.S_ISSOCK(os.fstat(h).st_mode):
            raise OSError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))
        return call(k.net.names.via_fd(h))
    finally:
        os.close(h)


def sys_connect(k: Kernel, sockfd: int, addr: int, addrlen: int) -> int:
    """connect(2): the run's own loopback; outside it, what --allow-net permits"""
    of, state = sock_of(k, sockfd)
    raw = read_raw(k, addr, addrlen)
    host = destination(k, of, state, raw, connect=True)
    if not host and family(raw) in (AF_INET, AF_INET6):
        return 0                                   # connected outside (destination waited)

    def connect(target: bytes) -> int:
        r = _libc.connect(of.host_fd, target, len(target))
        if r < 0:
            e = ctypes.get_errno()
            if e == errno.EINTR:
                raise OSError(errno.EINTR, "interrupted")
            raise OSError(e, os.strerror(e))
        return 0

    if not host:
        return with_unix_target(k, raw, connect)
    if not guest_nonblocking(of, state) and state.type == SOCK_STREAM:
        with k.waiting():                          # a signal ends a blocking connect (EINTR)
            return connect(host)
    return connect(host)


def sys_shutdown(k: Kernel, sockfd: int, how: int) -> int:
    """shutdown(2)"""
    of, _ = sock_of(k, sockfd)
    return check(_libc.shutdown(of.host_fd, s32(how)))
