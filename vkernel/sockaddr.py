"""Socket addresses between guest and host: AF_UNIX names in the guest's tree, internet ones checked.

Internet and netlink addresses have the same bytes for guest and host (both
are x86-64 Linux); what changes is whether the guest may use them
(vkernel/netpolicy.py). AF_UNIX addresses need translating:

- **Path names** are guest paths. Binding creates the socket file in the
  guest's tree (the run's upper layer, or a volume): vkernel resolves the
  parent directory inside the guest root and binds
  ``/proc/PID/fd/N/NAME``, N being that directory. Linux keeps the string a
  socket was bound with and hands it back (getsockname, getpeername, accept,
  recvfrom), so every bind leaves a record in the run's socket-name
  directory: a symbolic link, named after the host string's hash, to the
  string the guest bound. Names coming back are looked up there, by any
  process of the run. Connecting or sending to a path opens it inside the
  guest root first (no symlink leads out) and uses ``/proc/self/fd/M``.
- **Abstract names** belong to a network namespace: in a run with its own
  network they pass unchanged. A run without one (no root) prefixes them
  with the run's own tag, so a guest can neither reach nor squat the host's.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vkernel.procfs import normalize

if TYPE_CHECKING:
    from vkernel.kernel import Kernel

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
SUN_PATH_MAX = 108
SOCKADDR_MAX = 128
_FAMILY = struct.Struct("<H")


@dataclass(frozen=True)
class InetAddress:
    """An internet destination, as read from a guest sockaddr_in or sockaddr_in6."""
    family: int
    ip: str
    port: int
    flowinfo: int = 0
    scope_id: int = 0


def read_raw(k: "Kernel", addr: int, addrlen: int) -> bytes:
    """The guest's sockaddr bytes (EINVAL for a length Linux refuses, EFAULT for bad memory)."""
    addrlen &= 0xFFFFFFFF
    if addrlen > SOCKADDR_MAX or addrlen & 0x8000_0000:
        raise OSError(errno.EINVAL, "address length")
    if addrlen < 2:
        raise OSError(errno.EINVAL, "address length")
    return k.space.read(addr, addrlen)


def family(raw: bytes) -> int:
    return _FAMILY.unpack_from(raw)[0]


def parse_inet(raw: bytes) -> InetAddress:
    """An AF_INET or AF_INET6 sockaddr (EINVAL when too short, as Linux)."""
    fam = family(raw)
    if fam == AF_INET:
        if len(raw) < 16:
            raise OSError(errno.EINVAL, "sockaddr_in too short")
        return InetAddress(fam, socket.inet_ntop(socket.AF_INET, raw[4:8]),
                           struct.unpack_from(">H", raw, 2)[0])
    if fam == AF_INET6:
        if len(raw) < 24:
            raise OSError(errno.EINVAL, "sockaddr_in6 too short")
        port, flow = struct.unpack_from(">HI", raw, 2)
        scope = struct.unpack_from("<I", raw, 24)[0] if len(raw) >= 28 else 0
        return InetAddress(fam, socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, flow, scope)
    raise OSError(errno.EAFNOSUPPORT, "not an internet address")


def pack_inet(a: InetAddress) -> bytes:
    if a.family == AF_INET:
        return struct.pack("<H", AF_INET) + struct.pack(">H", a.port) + \
            socket.inet_pton(socket.AF_INET, a.ip) + bytes(8)
    return struct.pack("<H", AF_INET6) + struct.pack(">HI", a.port, a.flowinfo) + \
        socket.inet_pton(socket.AF_INET6, a.ip) + struct.pack("<I", a.scope_id)


def to_family(raw: bytes, want: int) -> bytes:
    """An internet address in the family a guest socket has: an IPv4 address as IPv4-mapped
    IPv6 for an AF_INET6 socket (what Linux reports for a dual-stack socket); unchanged
    otherwise."""
    if want == AF_INET6 and family(raw) == AF_INET:
        a = parse_inet(raw)
        return pack_inet(InetAddress(AF_INET6, "::ffff:" + a.ip, a.port))
    return raw


class UnixNames:
    """The AF_UNIX name translation of one run (shared by its processes)."""

    def __init__(self, names_dir: str, abstract_tag: bytes | None) -> None:
        self.names_dir = names_dir           # host directory of bind records (the run's own)
        self.abstract_tag = abstract_tag     # prefix of abstract names; None: unchanged

    # -- guest -> host ------------------------------------------------------------------
    def path_of(self, raw: bytes) -> bytes:
        """The sun_path bytes of a guest sockaddr_un (up to the first NUL for a path)."""
        body = raw[2:SUN_PATH_MAX + 2]
        if body[:1] == b"\0":
            return body
        return body.split(b"\0", 1)[0]

    def abstract(self, name: bytes) -> bytes:
        """A guest abstract name (with its leading NUL) as the host sees it."""
        if self.abstract_tag is None:
            return name
        return b"\0" + self.abstract_tag + name[1:]

    def open_target(self, k: "Kernel", path: bytes) -> int:
        """An O_PATH fd of the socket file the guest names (connect, sendto): resolved inside
        the guest root, symlinks followed there."""
        if not path:
            raise OSError(errno.ENOENT, "empty path")
        p = k.guest_path(-100, path)
        return k.vfs.open(p, os.O_PATH)

    @staticmethod
    def via_fd(fd: int) -> bytes:
        """A sockaddr_un naming the object of host fd ``fd`` through /proc/self/fd."""
        return struct.pack("<H", AF_UNIX) + f"/proc/self/fd/{fd}".encode() + b"\0"

    def bind_parent(self, k: "Kernel", path: bytes) -> tuple[int, str, str]:
        """(O_PATH fd of the directory, entry name, canonical guest path) where a socket bound
        to guest ``path`` goes; EADDRINUSE when the name exists."""
        p = normalize(k.guest_path(-100, path))
        name = os.path.basename(p)
        if not name or name in (".", ".."):
            raise OSError(errno.EINVAL, "bad socket path")
        try:
            pfd, canon = k.vfs.new_entry_dir(p)
        except FileExistsError:
            raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE)) from None
        return pfd, name, canon

    def host_bind_address(self, pfd: int, name: str) -> bytes:
        path = f"/proc/{os.getpid()}/fd/{pfd}/{name}".encode()
        if len(path) >= SUN_PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, "socket path too long")
        return struct.pack("<H", AF_UNIX) + path + b"\0"

    def remember(self, host: bytes, guest: bytes) -> None:
        """Record that the host sockaddr_un ``host`` stands for guest path ``guest`` (after a
        bind)."""
        key = self._key(host)
        try:
            os.symlink(guest, os.path.join(self.names_dir, key))
        except FileExistsError:
            tmp = os.path.join(self.names_dir, f".{key}.{os.getpid()}")
            try:
                os.symlink(guest, tmp)
                os.replace(tmp, os.path.join(self.names_dir, key))
            except OSError:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        except OSError:
            pass                               # a name we cannot give back stays the host's

    # -- host -> guest ------------------------------------------------------------------
    def to_guest(self, raw: bytes) -> bytes:
        """A host sockaddr_un as the guest must see it (its bound path, its abstract name)."""
        if len(raw) <= 2:
            return raw[:2]
        body = raw[2:]
        if body[:1] == b"\0":
            tag = self.abstract_tag
            if tag is not None and body[1:1 + len(tag)] == tag:
                return raw[:2] + b"\0" + body[1 + len(tag):]
            return raw
        path = body.split(b"\0", 1)[0]
        if path.startswith(b"/proc/"):
            try:
                guest = os.readlink(os.fsencode(os.path.join(self.names_dir, self._key(path))))
            except OSError:
                return raw
            return raw[:2] + guest + b"\0"
        return raw

    @staticmethod
    def _key(host: bytes) -> str:
        """The record's name for a host sockaddr_un or sun_path."""
        if host[:2] == struct.pack("<H", AF_UNIX):
            host = host[2:]
        import hashlib                    # (here: it loads OpenSSL, a few ms of every start)
        return hashlib.blake2b(host.split(b"\0", 1)[0], digest_size=16).hexdigest()
