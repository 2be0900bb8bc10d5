"""The host side of a run's network: its own namespace and loopback, and the published ports.

``kiln run`` as root gives every run a network namespace of its own
(vkernel/netpolicy.py says why and what the options do). Two steps happen
outside the guest:

- the **supervisor**, still in the host's network, binds the host address of
  every ``--publish`` before the run starts (so a port in use is an error the
  user sees at once) and hands the bound sockets to the run's first process;
  vkernel lets the guest's listening socket on GUEST_PORT accept from them too
  (vkernel/syscalls/net.py), so a host client's connection reaches the guest
  with no relay in between, and the guest sees the client's real address;
- the run's **first process**, still host root, moves into a new network
  namespace, brings its loopback up and lets every user of the run listen on
  any port there, as a container runtime does (:func:`enter_own_network`); the guest
  processes it forks share that namespace and nothing else does. The
  namespace belongs to the host's user namespace, so the guest, whose root is
  an unprivileged user namespace's, cannot change its configuration.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
from dataclasses import dataclass

from formats.errors import KilnError
from vkernel.errors import VkernelError
from vkernel.netpolicy import Publish

CLONE_NEWNET = 0x4000_0000
_SIOCGIFFLAGS, _SIOCSIFFLAGS = 0x8913, 0x8914
_IFF_UP, _IFF_RUNNING = 0x1, 0x40
_libc = ctypes.CDLL(None, use_errno=True)


def enter_own_network() -> None:
    """This process (and what it forks from now on) into a new network namespace whose
    loopback is up. Needs host root (CAP_SYS_ADMIN and CAP_NET_ADMIN)."""
    if _libc.unshare(CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise VkernelError(f"cannot give the run a network of its own: unshare(CLONE_NEWNET): "
                           f"{os.strerror(e)}",
                           hint="run kiln as root on a kernel with network namespaces, or "
                                "pass --network host to use the host's network")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        req = bytearray(struct.pack("16sH22x", b"lo", 0))
        fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req, True)
        flags = struct.unpack_from("H", req, 16)[0] | _IFF_UP | _IFF_RUNNING
        struct.pack_into("H", req, 16, flags)
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, req, True)
    except OSError as e:
        raise VkernelError(f"cannot bring up the run's loopback: {e.strerror}",
                           hint="run kiln as root, or pass --network host") from None
    finally:
        s.close()
    # Every guest user may listen on any port of the run's own loopback, as in a container
    # (a guest's root is unprivileged on the host: without this, nginx could not listen on 80).
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as f:
            f.write("0")
    except OSError:
        pass


@dataclass(frozen=True)
class PublishedSocket:
    """A bound host socket of one ``--publish``, given to the run's processes (host fd)."""
    publish: Publish
    fd: int
    family: int


def bind_published(publish: tuple[Publish, ...]) -> tuple[PublishedSocket, ...]:
    """Bind the host side of every ``--publish`` (not listening yet: until the guest
    listens, a host client is refused as by a closed port). KilnError when a host address is
    in use or not this host's."""
    out: list[PublishedSocket] = []
    try:
        for p in publish:
            family = socket.AF_INET6 if ":" in p.host_ip else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((p.host_ip, p.host_port))
            except OSError as e:
                s.close()
                what = {errno.EADDRINUSE: "is in use on the host",
                        errno.EADDRNOTAVAIL: "is not an address of this host",
                        errno.EACCES: "needs privileges this kiln lacks"}.get(
                    e.errno or 0, f"cannot be bound ({e.strerror})")
                raise KilnError(f"--publish {p.text or p.host_port}: {p.host_ip} port "
                                f"{p.host_port} {what}",
                                hint="choose another HOST_PORT (or HOST_IP)") from None
            out.append(PublishedSocket(p, s.detach(), family))
    except BaseException:
        close_published(tuple(out))
        raise
    return tuple(out)


def close_published(socks: tuple[PublishedSocket, ...]) -> None:
    for ps in socks:
        try:
            os.close(ps.fd)
        except OSError:
            pass
