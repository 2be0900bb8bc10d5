"""Socket options and socket ioctls: the options servers set, passed to the host socket by value.

Options are the same bytes for guest and host (x86-64 both), so an option on
the list below goes to the host socket unchanged. Options that carry a
pointer (socket filters, TCP_ZEROCOPY_RECEIVE), that would let a socket leave
the run's network (SO_BINDTODEVICE is harmless in a namespace with only a
loopback; SO_MARK and the *FORCE options need privileges the guest lacks
anyway) or reconfigure the kernel (TCP_REPAIR, ULPs) are not: ENOPROTOOPT.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl as hfcntl
import os
import struct

from vkernel.fdtable import OpenFile
from vkernel.kernel import Kernel
from vkernel.syscalls.args import s32
from vkernel.syscalls.net import (IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP,
                                  SOL_NETLINK, SOL_SOCKET, SockState, _libc, check, sock_of)

_OPTLEN_MAX = 4096
_SOL_SOCKET_OPTS = frozenset((
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 15, 16, 17, 18, 19, 20, 21, 25, 29, 30, 31, 34, 35,
    38, 39, 40, 42, 43, 46, 47, 49, 56, 57, 59, 62, 63, 64, 65, 66, 67))
"""SO_DEBUG, REUSEADDR, TYPE, ERROR, DONTROUTE, BROADCAST, SNDBUF, RCVBUF, KEEPALIVE,
OOBINLINE, PRIORITY, LINGER, REUSEPORT, PASSCRED, PEERCRED, RCVLOWAT, SNDLOWAT, RCVTIMEO,
SNDTIMEO, BINDTODEVICE, TIMESTAMP, ACCEPTCONN, PEERSEC, PASSSEC, TIMESTAMPNS, PROTOCOL,
DOMAIN, RXQ_OVFL, PEEK_OFF, NOFCS, BUSY_POLL, MAX_PACING_RATE, INCOMING_CPU, INCOMING_NAPI_ID,
COOKIE, PEERGROUPS, BINDTOIFINDEX, TIMESTAMP_NEW, TIMESTAMPNS_NEW, TIMESTAMPING_NEW,
RCVTIMEO_NEW, SNDTIMEO_NEW."""
_TCP_OPTS = frozenset((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 18, 23, 24, 25, 30,
                       36, 37))
"""TCP_NODELAY, MAXSEG, CORK, KEEPIDLE, KEEPINTVL, KEEPCNT, SYNCNT, LINGER2, DEFER_ACCEPT,
WINDOW_CLAMP, INFO, QUICKACK, CONGESTION, THIN_LINEAR_TIMEOUTS, THIN_DUPACK, USER_TIMEOUT,
FASTOPEN, TIMESTAMP, NOTSENT_LOWAT, FASTOPEN_CONNECT, INQ, TX_DELAY."""
_UDP_OPTS = frozenset((1, 103, 104))           # UDP_CORK, UDP_SEGMENT, UDP_GRO
_IP_DENIED = frozenset((3, 19))                # IP_HDRINCL, IP_TRANSPARENT
_IPV6_DENIED = frozenset((75,))                # IPV6_TRANSPARENT


def _allowed(state: SockState, level: int, name: int) -> bool:
    if level == SOL_SOCKET:
        return name in _SOL_SOCKET_OPTS
    if level == IPPROTO_TCP:
        return name in _TCP_OPTS
    if level == IPPROTO_UDP:
        return name in _UDP_OPTS
    if level == IPPROTO_IP:
        return name not in _IP_DENIED and 0 < name < 64
    if level == IPPROTO_IPV6:
        return name not in _IPV6_DENIED and 0 < name < 100
    if level == SOL_NETLINK:
        return state.family == 16 and 0 < name < 16
    return False


def sys_setsockopt(k: Kernel, sockfd: int, level: int, optname: int, optval: int,
                   optlen: int) -> int:
    """setsockopt(2): the options on this module's list, by value"""
    of, state = sock_of(k, sockfd)
    level, optname, optlen = s32(level), s32(optname), s32(optlen)
    if optlen < 0:
        return -errno.EINVAL
    if not _allowed(state, level, optname):
        return -errno.ENOPROTOOPT
    value = k.space.read(optval, min(optlen, _OPTLEN_MAX)) if optlen else b""
    check(_libc.setsockopt(of.host_fd, level, optname, value, len(value)))
    state.options[(level, optname)] = value
    return 0


def sys_getsockopt(k: Kernel, sockfd: int, level: int, optname: int, optval: int,
                   optlen: int) -> int:
    """getsockopt(2): as setsockopt"""
    of, state = sock_of(k, sockfd)
    level, optname = s32(level), s32(optname)
    room = s32(k.space.u32(optlen))
    if room < 0:
        return -errno.EINVAL
    if not _allowed(state, level, optname):
        return -errno.ENOPROTOOPT
    buf = ctypes.create_string_buffer(max(min(room, _OPTLEN_MAX), 1))
    n = ctypes.c_uint(min(room, _OPTLEN_MAX))
    check(_libc.getsockopt(of.host_fd, level, optname, buf, ctypes.byref(n)))
    if n.value:
        k.space.write(optval, buf.raw[:n.value])
    k.space.put_u32(optlen, n.value)
    return 0


# -- O_NONBLOCK kept by vkernel, and ioctls ---------------------------------------------------
def guest_flags(of: OpenFile, host_flags: int) -> int:
    """F_GETFL of a guest fd whose O_NONBLOCK vkernel keeps (a published listening socket)."""
    state = of.state
    if isinstance(state, SockState) and state.nonblock is not None:
        return (host_flags & ~os.O_NONBLOCK) | (os.O_NONBLOCK if state.nonblock else 0)
    return host_flags


def set_guest_flags(of: OpenFile, flags: int) -> int:
    """F_SETFL: the host flags to set (O_NONBLOCK recorded instead where vkernel keeps it)."""
    state = of.state
    if isinstance(state, SockState) and state.nonblock is not None:
        state.nonblock = bool(flags & os.O_NONBLOCK)
        return flags | os.O_NONBLOCK
    return flags


FIONREAD, FIONBIO, TIOCOUTQ, SIOCATMARK = 0x541B, 0x5421, 0x5411, 0x8905
SIOCGIFNAME, SIOCGIFCONF, SIOCGIFINDEX = 0x8910, 0x8912, 0x8933
_SIOCGIF_BY_NAME = frozenset((0x8913, 0x8915, 0x8917, 0x8919, 0x891B, 0x8921, 0x8927, 0x8933,
                              0x8942))
"""SIOCGIFFLAGS, ADDR, DSTADDR, BRDADDR, NETMASK, MTU, HWADDR, INDEX, TXQLEN: a struct ifreq
(40 bytes, no pointers) in and out."""
_IFREQ = 40


def ioctl(k: Kernel, of: OpenFile, request: int, arg: int) -> int | None:
    """The ioctls on sockets (and FIONREAD, FIONBIO on any fd); None when not one of them."""
    if request == FIONBIO:
        on = s32(k.space.u32(arg)) != 0
        state = of.state
        if isinstance(state, SockState) and state.nonblock is not None:
            state.nonblock = on
        else:
            os.set_blocking(of.host_fd, not on)
        return 0
    if request in (FIONREAD, TIOCOUTQ) or (request == SIOCATMARK and isinstance(of.state, SockState)):
        buf = bytearray(4)
        hfcntl.ioctl(of.host_fd, request, buf, True)
        k.space.write(arg, bytes(buf))
        return 0
    if not isinstance(of.state, SockState):
        return None
    if request in _SIOCGIF_BY_NAME or request == SIOCGIFNAME:
        buf = bytearray(k.space.read(arg, _IFREQ))
        hfcntl.ioctl(of.host_fd, request, buf, True)
        k.space.write(arg, bytes(buf))
        return 0
    if request == SIOCGIFCONF:
        return _ifconf(k, of, arg)
    return -errno.ENOTTY


def _ifconf(k: Kernel, of: OpenFile, arg: int) -> int:
    """SIOCGIFCONF: struct ifconf holds a pointer to the guest's array of ifreq."""
    length, ptr = struct.unpack("<i4xQ", k.space.read(arg, 16))
    if length < 0:
        return -errno.EINVAL
    room = min(length, 64 * _IFREQ)
    data = ctypes.create_string_buffer(max(room, 1))
    conf = ctypes.create_string_buffer(struct.pack("<i4xQ", room,
                                                   ctypes.addressof(data) if ptr else 0), 16)
    check(_libc.ioctl(of.host_fd, SIOCGIFCONF, conf))
    got = struct.unpack_from("<i", conf.raw)[0]
    if ptr and got:
        k.space.write(ptr, data.raw[:got])
    k.space.write(arg, struct.pack("<i", got))
    return 0


_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
