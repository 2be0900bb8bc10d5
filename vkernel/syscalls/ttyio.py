"""Terminal ioctls: passed to the host terminal (a run's pseudo-terminal, or the one kiln got).

One table says how each request's argument travels: ``IN`` bytes the guest
gives (copied to the host call), ``OUT`` bytes the host fills (copied back),
``VALUE`` a plain integer, ``NONE`` nothing. The host
kernel then checks each request as it would for any process (a session
leader's TIOCSCTTY, a background TIOCSPGRP). TIOCGPTPEER opens the slave of
a master the guest holds and gives it a guest descriptor. TIOCSTI (pushing
input into a terminal) is refused, as on Linux with ``dev.tty.legacy_tiocsti``
off.
"""
from __future__ import annotations

import errno
import fcntl as hfcntl
import os

from vkernel.fdtable import OpenFile
from vkernel.kernel import Kernel

IN, OUT, VALUE, NONE = "in", "out", "value", "none"

TCGETS, TCSETS, TCSETSW, TCSETSF = 0x5401, 0x5402, 0x5403, 0x5404
TIOCGPGRP, TIOCSPGRP, TIOCGWINSZ, TIOCSWINSZ = 0x540F, 0x5410, 0x5413, 0x5414
TIOCGPTN, TIOCGPTPEER = 0x80045430, 0x5441
REQUESTS: dict[int, tuple[str, int]] = {
    TCGETS: (OUT, 36), TCSETS: (IN, 36), TCSETSW: (IN, 36), TCSETSF: (IN, 36),
    0x5409: (VALUE, 0),        # TCSBRK
    0x540A: (VALUE, 0),        # TCXONC
    0x540B: (VALUE, 0),        # TCFLSH
    0x540C: (NONE, 0),         # TIOCEXCL
    0x540D: (NONE, 0),         # TIOCNXCL
    0x540E: (VALUE, 0),        # TIOCSCTTY
    TIOCGPGRP: (OUT, 4), TIOCSPGRP: (IN, 4),
    0x5411: (OUT, 4),          # TIOCOUTQ
    TIOCGWINSZ: (OUT, 8), TIOCSWINSZ: (IN, 8),
    0x5420: (IN, 4),           # TIOCPKT
    0x5422: (NONE, 0),         # TIOCNOTTY
    0x5425: (VALUE, 0),        # TCSBRKP
    0x5427: (NONE, 0),         # TIOCSBRK
    0x5428: (NONE, 0),         # TIOCCBRK
    0x5429: (OUT, 4),          # TIOCGSID
    TIOCGPTN: (OUT, 4),
    0x40045431: (IN, 4),       # TIOCSPTLCK
    0x80045432: (OUT, 4),      # TIOCGDEV
    0x80045438: (OUT, 4),      # TIOCGPKT
    0x80045439: (OUT, 4),      # TIOCGPTLCK
    0x80045440: (OUT, 4),      # TIOCGEXCL
}
TIOCSTI = 0x5412


def ioctl(k: Kernel, of: OpenFile, request: int, arg: int) -> int | None:
    """A terminal request on ``of``: its result, or None when ``request`` is none."""
    if request == TIOCSTI:
        return -errno.EPERM if os.isatty(of.host_fd) else -errno.ENOTTY
    if request == TIOCGPTPEER:
        return _peer(k, of, arg)
    how = REQUESTS.get(request)
    if how is None:
        return None
    if not os.isatty(of.host_fd):
        return -errno.ENOTTY
    kind, size = how
    if kind == VALUE:
        return hfcntl.ioctl(of.host_fd, request, arg & 0xFFFFFFFF)
    if kind == NONE:
        return hfcntl.ioctl(of.host_fd, request, 0)
    buf = bytearray(k.space.read(arg, size) if kind == IN else size)
    hfcntl.ioctl(of.host_fd, request, buf, True)
    if kind == OUT:
        k.space.write(arg, bytes(buf))
    return 0


def _peer(k: Kernel, of: OpenFile, flags: int) -> int:
    """TIOCGPTPEER: the slave of master ``of``, opened with ``flags`` (O_RDWR, O_NOCTTY,
    O_CLOEXEC...), as a new guest descriptor."""
    if not os.isatty(of.host_fd):
        return -errno.ENOTTY
    want = flags & (os.O_ACCMODE | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    if flags & ~(os.O_ACCMODE | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_LARGEFILE):
        return -errno.EINVAL
    host = hfcntl.ioctl(of.host_fd, TIOCGPTPEER, want | os.O_CLOEXEC)
    number = int.from_bytes(hfcntl.ioctl(of.host_fd, TIOCGPTN, bytes(4)), "little")
    return k.fds.install(OpenFile(host, f"/dev/pts/{number}", want & ~os.O_CLOEXEC,
                                  bool(want & os.O_CLOEXEC), may_block=True))
