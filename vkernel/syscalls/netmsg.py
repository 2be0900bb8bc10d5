"""Socket data syscalls: sendto, recvfrom, sendmsg, recvmsg, sendmmsg, recvmmsg, with fd passing.

Data moves between the host socket and guest memory in place (the host call
is given the guest pages' host addresses). Every host call is non-blocking
(MSG_DONTWAIT); a blocking guest socket then waits where a signal can end the
wait (EINTR, or what was moved so far), honouring SO_RCVTIMEO and
SO_SNDTIMEO, so no signal is lost and no data is dropped by an interruption.
Control messages are translated: SCM_RIGHTS carries guest fds as the host's
(and installs received ones in the guest's table), SCM_CREDENTIALS and the IP
ones pass unchanged (the host kernel already translates pids and ids into the
run's namespaces).
"""
from __future__ import annotations

import ctypes
import errno
import os
import select
import stat as st
import struct
import time

from vkernel.fdtable import OpenFile
from vkernel.kernel import Kernel
from vkernel.signals import SignalInterrupt, wait_interruptibly
from vkernel.sockaddr import AF_UNIX, SOCKADDR_MAX, family, parse_inet, read_raw
from vkernel.syscalls.args import MAX_RW_COUNT, get_timespec_ns, s32
from vkernel.syscalls.net import (SO_RCVTIMEO, SO_SNDTIMEO, SOCK_DGRAM, SOCK_STREAM, SOL_SOCKET,
                                  SockState, _libc, destination, guest_nonblocking, sock_of,
                                  to_guest_name, write_name)

MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT, MSG_EOR = 0x1, 0x2, 0x20, 0x40, 0x80
MSG_WAITALL, MSG_NOSIGNAL, MSG_WAITFORONE, MSG_CMSG_CLOEXEC = 0x100, 0x4000, 0x10000, 0x40000000
SCM_RIGHTS = 1
UIO_MAXIOV = 1024
_MSGHDR = struct.Struct("<QI4xQQQQi4x")          # struct msghdr: 56 bytes
_CMSGHDR = struct.Struct("<Qii")
_CONTROL_MAX = 1 << 16


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint),
                ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


_VOIDP, _INT, _SIZE = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
_libc.sendto.argtypes = [_INT, _VOIDP, _SIZE, _INT, _VOIDP, ctypes.c_uint]
_libc.sendto.restype = ctypes.c_ssize_t
_libc.recvfrom.argtypes = [_INT, _VOIDP, _SIZE, _INT, _VOIDP, ctypes.POINTER(ctypes.c_uint)]
_libc.recvfrom.restype = ctypes.c_ssize_t
_libc.sendmsg.argtypes = [_INT, ctypes.POINTER(_MsgHdr), _INT]
_libc.sendmsg.restype = ctypes.c_ssize_t
_libc.recvmsg.argtypes = [_INT, ctypes.POINTER(_MsgHdr), _INT]
_libc.recvmsg.restype = ctypes.c_ssize_t


def _timeout(h: int, opt: int) -> float | None:
    """SO_RCVTIMEO/SO_SNDTIMEO of host socket ``h`` in seconds (None: none)."""
    buf = ctypes.create_string_buffer(16)
    n = ctypes.c_uint(16)
    if _libc.getsockopt(h, SOL_SOCKET, opt, buf, ctypes.byref(n)) < 0 or n.value < 16:
        return None
    sec, usec = struct.unpack("<qq", buf.raw)
    return None if sec == 0 and usec == 0 else sec + usec / 1e6


def _broken_pipe(k: Kernel, flags: int) -> None:
    if not flags & MSG_NOSIGNAL:
        from vkernel.syscalls.signal import deliver_to_self
        import signal
        deliver_to_self(k, signal.SIGPIPE)


def _move(k: Kernel, of: OpenFile, state: SockState, flags: int, sending: bool,
          call) -> int:  # type: ignore[no-untyped-def]
    """Run ``call(host flags, done) -> bytes moved or -errno`` as the guest's socket would:
    once when it is non-blocking, else waiting between tries; a blocking stream send (or a
    MSG_WAITALL receive) goes on until everything is moved. Returns bytes or -errno."""
    nonblock = bool(flags & MSG_DONTWAIT) or guest_nonblocking(of, state)
    hflags = (flags | MSG_DONTWAIT | (MSG_NOSIGNAL if sending else 0)) & ~MSG_WAITFORONE
    whole = state.type == SOCK_STREAM and not nonblock and \
        (sending or flags & MSG_WAITALL and not flags & MSG_PEEK)
    done = 0
    while True:
        r = call(hflags, done)
        if r > 0 or (r == 0 and not whole):
            done += r
            if r == 0 or not whole or call.total <= done:
                return done
            continue
        if r == 0:
            return done
        e = -r
        if e == errno.EAGAIN and not nonblock:
            try:
                ready = wait_interruptibly(
                    k, _timeout(of.host_fd, SO_SNDTIMEO if sending else SO_RCVTIMEO),
                    of.host_fd, select.POLLOUT if sending else select.POLLIN)
            except SignalInterrupt:
                if done:
                    return done
                raise
            if ready:
                continue
        if e == errno.EPIPE and sending:
            _broken_pipe(k, flags)
        return done or -e


class _Buffer:
    """One guest buffer for sendto/recvfrom: ``call`` moves the part not yet moved."""

    def __init__(self, k: Kernel, h: int, addr: int, n: int, sending: bool, target: bytes,
                 name: ctypes.Array | None = None, namelen: ctypes.c_uint | None = None) -> None:
        self.ptr = k.space.host_address(addr, n)
        self.total = n
        self.h, self.sending, self.target = h, sending, target
        self.name, self.namelen = name, namelen

    def __call__(self, hflags: int, done: int) -> int:
        if self.sending:
            r = _libc.sendto(self.h, self.ptr + done, self.total - done, hflags,
                             self.target or None, len(self.target))
        else:
            self.namelen.value = SOCKADDR_MAX   # type: ignore[union-attr]
            r = _libc.recvfrom(self.h, self.ptr + done, self.total - done, hflags, self.name,
                               ctypes.byref(self.namelen))   # type: ignore[arg-type]
        return r if r >= 0 else -ctypes.get_errno()


def _with_target(k: Kernel, of: OpenFile, state: SockState, addr: int, addrlen: int,
                 use) -> int:  # type: ignore[no-untyped-def]
    """Call ``use(host destination bytes)`` for a guest destination address (none: b"")."""
    if not addr:
        return use(b"")
    raw = read_raw(k, addr, addrlen)
    host = destination(k, of, state, raw, connect=False)
    if host or family(raw) != AF_UNIX:
        return use(host)
    from vkernel.syscalls.net import with_unix_target
    return with_unix_target(k, raw, use)


def sys_sendto(k: Kernel, sockfd: int, buf: int, len: int, flags: int, dest_addr: int,
               addrlen: int) -> int:
    """sendto(2)"""
    of, state = sock_of(k, sockfd)
    flags = s32(flags)
    n = min(len, MAX_RW_COUNT)

    def use(target: bytes) -> int:
        return _move(k, of, state, flags, True, _Buffer(k, of.host_fd, buf, n, True, target))
    return _with_target(k, of, state, dest_addr, addrlen, use)


def _allowed_source(k: Kernel, state: SockState, raw: bytes) -> bool:
    """A datagram reaching an outside socket comes from a destination the policy permits."""
    if not state.outside or state.type != SOCK_DGRAM or not raw:
        return True
    a = parse_inet(raw)
    return k.net is not None and k.net.policy.rule_for(a.ip, a.port) is not None


def sys_recvfrom(k: Kernel, sockfd: int, buf: int, len: int, flags: int, src_addr: int,
                 addrlen: int) -> int:
    """recvfrom(2)"""
    of, state = sock_of(k, sockfd)
    flags = s32(flags)
    if src_addr and s32(k.space.u32(addrlen)) < 0:
        return -errno.EINVAL
    name = ctypes.create_string_buffer(SOCKADDR_MAX)
    namelen = ctypes.c_uint(SOCKADDR_MAX)
    call = _Buffer(k, of.host_fd, buf, min(len, MAX_RW_COUNT), False, b"", name, namelen)
    while True:
        r = _move(k, of, state, flags, False, call)
        raw = name.raw[:min(namelen.value, SOCKADDR_MAX)] if r >= 0 else b""
        if r < 0 or _allowed_source(k, state, raw):
            break
        if flags & MSG_PEEK:                   # drop it for real, then look again
            _move(k, of, state, (flags & ~MSG_PEEK) | MSG_DONTWAIT, False, call)
    if r >= 0 and src_addr:
        write_name(k, to_guest_name(k, state, raw), src_addr, addrlen)
    return r


# -- sendmsg / recvmsg ---------------------------------------------------------------------
def _iovecs(k: Kernel, iov: int, iovlen: int) -> tuple[ctypes.Array, int]:
    if iovlen > UIO_MAXIOV:
        raise OSError(errno.EMSGSIZE, os.strerror(errno.EMSGSIZE))
    arr = (_IoVec * max(iovlen, 1))()
    total = 0
    if iovlen:
        raw = k.space.read(iov, 16 * iovlen)
        for i in range(iovlen):
            base, n = struct.unpack_from("<QQ", raw, 16 * i)
            arr[i].base = k.space.host_address(base, n)
            arr[i].len = n
            total += n
    return arr, total


def _control_out(k: Kernel, data: bytes) -> bytes:
    """Guest control messages as the host's: SCM_RIGHTS with host fds."""
    out = bytearray()
    off = 0
    while off + _CMSGHDR.size <= len(data):
        clen, level, typ = _CMSGHDR.unpack_from(data, off)
        if clen < _CMSGHDR.size or off + clen > len(data):
            raise OSError(errno.EINVAL, "bad control message")
        body = data[off + _CMSGHDR.size:off + clen]
        if level == SOL_SOCKET and typ == SCM_RIGHTS:
            fds = struct.unpack(f"<{len(body) // 4}i", body[:len(body) // 4 * 4])
            host = []
            for fd in fds:
                of = k.fds.get(fd)
                if of is None:
                    raise OSError(errno.EBADF, "bad fd in SCM_RIGHTS")
                host.append(of.host_fd)
            body = struct.pack(f"<{len(host)}i", *host)
        out += _CMSGHDR.pack(_CMSGHDR.size + len(body), level, typ) + body
        out += bytes(-len(out) % 8)
        off += (clen + 7) & ~7
    return bytes(out)


def adopt(k: Kernel, h: int, cloexec: bool) -> int:
    """Install a host fd received from another process (SCM_RIGHTS) as a guest fd."""
    s = os.fstat(h)
    flags = os.O_RDWR
    state = None
    is_dir = st.S_ISDIR(s.st_mode)
    if st.S_ISSOCK(s.st_mode):
        import socket as hsocket
        sk = hsocket.socket(fileno=h)
        try:
            state = SockState(sk.family, sk.type & 0xF, sk.proto)
        finally:
            sk.detach()
        path = f"socket:[{s.st_ino}]"
    elif st.S_ISFIFO(s.st_mode):
        path = f"pipe:[{s.st_ino}]"
    elif st.S_ISREG(s.st_mode) or is_dir:
        path = k.vfs.guest_path_of(h)
    else:
        path = os.readlink(f"/proc/self/fd/{h}")
    import fcntl as hfcntl
    flags = hfcntl.fcntl(h, hfcntl.F_GETFL) & ~os.O_CLOEXEC
    try:
        return k.fds.install(OpenFile(h, path, flags, cloexec, is_dir, state=state))
    except OSError:
        os.close(h)
        raise


def _control_in(k: Kernel, data: bytes, cloexec: bool) -> bytes:
    """Host control messages as the guest's: received fds installed in its table."""
    out = bytearray(data)
    off = 0
    while off + _CMSGHDR.size <= len(data):
        clen, level, typ = _CMSGHDR.unpack_from(data, off)
        if clen < _CMSGHDR.size:
            break
        if level == SOL_SOCKET and typ == SCM_RIGHTS:
            count = (min(clen, len(data) - off) - _CMSGHDR.size) // 4
            fds = struct.unpack_from(f"<{count}i", data, off + _CMSGHDR.size)
            guest = []
            for i, h in enumerate(fds):
                try:
                    guest.append(adopt(k, h, cloexec))
                except OSError:
                    for rest in fds[i + 1:]:
                        os.close(rest)
                    for g in guest:
                        k.fds.close(g)
                    raise
            struct.pack_into(f"<{count}i", out, off + _CMSGHDR.size, *guest)
        off += (clen + 7) & ~7
    return bytes(out)


def _sendmsg(k: Kernel, of: OpenFile, state: SockState, msg: int, flags: int) -> int:
    name, namelen, iov, iovlen, control, controllen, _ = _MSGHDR.unpack(
        k.space.read(msg, _MSGHDR.size))
    arr, total = _iovecs(k, iov, iovlen)
    ctl = b""
    if control and controllen:
        ctl = _control_out(k, k.space.read(control, min(controllen, _CONTROL_MAX)))
    ctl_buf = ctypes.create_string_buffer(ctl, max(len(ctl), 1))

    def use(target: bytes) -> int:
        target_buf = ctypes.create_string_buffer(target, max(len(target), 1))
        hdr = _MsgHdr(ctypes.addressof(target_buf) if target else None, len(target),
                      ctypes.addressof(arr), iovlen,
                      ctypes.addressof(ctl_buf) if ctl else None, len(ctl), 0)

        def call(hflags: int, done: int) -> int:
            if done:
                _advance(arr, iovlen, done)
                hdr.control, hdr.controllen = None, 0     # (fds go with the first bytes)
            r = _libc.sendmsg(of.host_fd, ctypes.byref(hdr), hflags)
            return r if r >= 0 else -ctypes.get_errno()
        call.total = total            # type: ignore[attr-defined]
        return _move(k, of, state, flags, True, call)
    return _with_target(k, of, state, name if namelen else 0, namelen, use)


def _advance(arr: ctypes.Array, n: int, done: int) -> None:
    """Skip the first ``done`` bytes of an iovec array (a partial send's rest)."""
    for i in range(n):
        if done <= 0:
            return
        step = min(done, arr[i].len)
        arr[i].base = (arr[i].base or 0) + step
        arr[i].len -= step
        done -= step


def _recvmsg(k: Kernel, of: OpenFile, state: SockState, msg: int, flags: int) -> int:
    name, namelen, iov, iovlen, control, controllen, _ = _MSGHDR.unpack(
        k.space.read(msg, _MSGHDR.size))
    arr, total = _iovecs(k, iov, iovlen)
    name_buf = ctypes.create_string_buffer(SOCKADDR_MAX)
    room = min(controllen, _CONTROL_MAX) if control else 0
    ctl_buf = ctypes.create_string_buffer(max(room, 1))
    hdr = _MsgHdr()
    cloexec = bool(flags & MSG_CMSG_CLOEXEC)

    def call(hflags: int, done: int) -> int:
        if done:
            _advance(arr, iovlen, done)
        hdr.name, hdr.namelen = ctypes.addressof(name_buf), SOCKADDR_MAX
        hdr.iov, hdr.iovlen = ctypes.addressof(arr), iovlen
        hdr.control, hdr.controllen = (ctypes.addressof(ctl_buf) if room else None), room
        hdr.flags = 0
        r = _libc.recvmsg(of.host_fd, ctypes.byref(hdr), hflags | MSG_CMSG_CLOEXEC)
        return r if r >= 0 else -ctypes.get_errno()
    call.total = total                # type: ignore[attr-defined]
    while True:
        r = _move(k, of, state, flags & ~MSG_CMSG_CLOEXEC, False, call)
        raw = name_buf.raw[:min(hdr.namelen, SOCKADDR_MAX)] if r >= 0 else b""
        if r < 0 or _allowed_source(k, state, raw):
            break
    if r < 0:
        return r
    got_ctl = ctl_buf.raw[:hdr.controllen] if room else b""
    if got_ctl:
        k.space.write(control, _control_in(k, got_ctl, cloexec))
    if name:
        guest = to_guest_name(k, state, raw)
        if namelen:
            k.space.write(name, guest[:namelen])
        k.space.put_u32(msg + 8, len(guest))
    k.space.put_u64(msg + 40, len(got_ctl))
    k.space.put_u32(msg + 48, hdr.flags)
    return r


def sys_sendmsg(k: Kernel, sockfd: int, msg: int, flags: int) -> int:
    """sendmsg(2)"""
    of, state = sock_of(k, sockfd)
    return _sendmsg(k, of, state, msg, s32(flags))


def sys_recvmsg(k: Kernel, sockfd: int, msg: int, flags: int) -> int:
    """recvmsg(2)"""
    of, state = sock_of(k, sockfd)
    return _recvmsg(k, of, state, msg, s32(flags))


def sys_sendmmsg(k: Kernel, sockfd: int, msgvec: int, vlen: int, flags: int) -> int:
    """sendmmsg(2)"""
    of, state = sock_of(k, sockfd)
    flags = s32(flags)
    sent = 0
    for i in range(min(vlen & 0xFFFFFFFF, UIO_MAXIOV)):
        try:
            r = _sendmsg(k, of, state, msgvec + 64 * i, flags)
        except (OSError, SignalInterrupt):
            if sent:
                return sent
            raise
        if r < 0:
            return sent or r
        k.space.put_u32(msgvec + 64 * i + 56, r)
        sent += 1
    return sent


def sys_recvmmsg(k: Kernel, sockfd: int, msgvec: int, vlen: int, flags: int,
                 timeout: int) -> int:
    """recvmmsg(2): the timeout is checked after each message, as Linux does"""
    of, state = sock_of(k, sockfd)
    flags = s32(flags)
    end = None if not timeout else time.monotonic() + get_timespec_ns(k, timeout) / 1e9
    got = 0
    for i in range(min(vlen & 0xFFFFFFFF, UIO_MAXIOV)):
        try:
            r = _recvmsg(k, of, state, msgvec + 64 * i, flags)
        except (OSError, SignalInterrupt):
            if got:
                return got
            raise
        if r < 0:
            return got or r
        k.space.put_u32(msgvec + 64 * i + 56, r)
        got += 1
        if flags & MSG_WAITFORONE:
            flags |= MSG_DONTWAIT
        if end is not None and time.monotonic() >= end:
            break
    return got
