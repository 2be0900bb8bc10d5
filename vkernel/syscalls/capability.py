"""Capabilities: capget, capset and prctl's capability, securebits and no_new_privs options.

The sets and Linux's rules are vkernel/caps.py's; each thread's are kept by
vkernel/creds.py, which makes the host thread's effective set follow them.
"""
from __future__ import annotations

import errno
import os
import struct

from vkernel import caps, creds, procfs
from vkernel.kernel import Kernel
from vkernel.syscalls.args import s32

_V1, _V2, _V3 = 0x19980330, 0x20071026, 0x20080522
_WORDS = {_V1: 1, _V2: 2, _V3: 2}
"""32-bit words per set in each version of ``struct __user_cap_data_struct`` arrays."""
_HEADER = struct.Struct("<Ii")
_DATA = struct.Struct("<III")                  # effective, permitted, inheritable


def _version(k: Kernel, hdr: int) -> tuple[int, int] | int:
    """(words, pid) of the header at ``hdr``; an unknown version is answered with the one
    vkernel prefers, written back (how libcap probes), and -EINVAL."""
    version, pid = _HEADER.unpack(k.space.read(hdr, _HEADER.size))
    if version not in _WORDS:
        k.space.put_u32(hdr, _V3)
        return -errno.EINVAL
    return _WORDS[version], pid


def _sets_of(k: Kernel, pid: int) -> caps.Caps | None:
    """The capability sets of guest thread or process ``pid``: the caller's, another thread's
    of this process, or what another guest process published; None when there is none."""
    if pid in (0, k.thread.tid):
        return creds.capabilities()
    if pid == os.getpid() or pid in k.proc.threads:
        return creds.capabilities_of(pid)
    info = procfs.published(k.vfs.skeleton, pid)
    if info is None or "caps" not in info:
        return None
    return caps.Caps(*info["caps"])


def sys_capget(k: Kernel, hdr: int, data: int) -> int:
    """capget(2): this process's sets, or another guest process's"""
    got = _version(k, hdr)
    if isinstance(got, int):
        return 0 if not data else got         # a NULL data pointer probes the version
    words, pid = got
    if not data:
        return 0
    if pid < 0:
        return -errno.EINVAL
    c = _sets_of(k, pid)
    if c is None:
        return -errno.ESRCH
    out = b"".join(_DATA.pack(c.effective >> 32 * i & 0xFFFFFFFF,
                              c.permitted >> 32 * i & 0xFFFFFFFF,
                              c.inheritable >> 32 * i & 0xFFFFFFFF) for i in range(words))
    k.space.write(data, out)
    return 0


def sys_capset(k: Kernel, hdr: int, data: int) -> int:
    """capset(2): the calling thread's own sets only (another: EPERM, as Linux since 2.6.25)"""
    got = _version(k, hdr)
    if isinstance(got, int):
        return got
    words, pid = got
    if pid not in (0, k.thread.tid):
        return -errno.EPERM
    raw = k.space.read(data, _DATA.size * words)
    eff = prm = inh = 0
    for i in range(words):
        e, p, n = _DATA.unpack_from(raw, _DATA.size * i)
        eff, prm, inh = eff | e << 32 * i, prm | p << 32 * i, inh | n << 32 * i
    new = caps.capset(creds.capabilities(), eff & caps.ALL, prm & caps.ALL, inh & caps.ALL)
    return _changed(k, new)


def _changed(k: Kernel, new: caps.Caps | int) -> int:
    if isinstance(new, int):
        return new
    if new != creds.capabilities():
        creds.set_capabilities(new)
        procfs.republish(k.vfs.skeleton)      # /proc/PID/status and capget of the others
    return 0


PR_GET_KEEPCAPS, PR_SET_KEEPCAPS = 7, 8
PR_CAPBSET_READ, PR_CAPBSET_DROP = 23, 24
PR_GET_SECUREBITS, PR_SET_SECUREBITS = 27, 28
PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 38, 39
PR_CAP_AMBIENT = 47
OPTIONS = frozenset((PR_GET_KEEPCAPS, PR_SET_KEEPCAPS, PR_CAPBSET_READ, PR_CAPBSET_DROP,
                     PR_GET_SECUREBITS, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS,
                     PR_GET_NO_NEW_PRIVS, PR_CAP_AMBIENT))
"""The prctl options served here (vkernel/syscalls/misc.py passes them on)."""


def prctl(k: Kernel, option: int, arg2: int, arg3: int, arg4: int, arg5: int) -> int:
    """prctl(2)'s capability options, with Linux's argument checks."""
    c = creds.capabilities()
    if option == PR_CAPBSET_READ:
        return c.bounding >> arg2 & 1 if arg2 <= caps.LAST_CAP else -errno.EINVAL
    if option == PR_CAPBSET_DROP:
        return _changed(k, caps.drop_bound(c, arg2 if arg2 <= caps.LAST_CAP else -1))
    if option == PR_GET_KEEPCAPS:
        return int(bool(c.securebits & caps.KEEP_CAPS))
    if option == PR_SET_KEEPCAPS:
        return _changed(k, caps.set_keepcaps(c, arg2))
    if option == PR_GET_SECUREBITS:
        return c.securebits
    if option == PR_SET_SECUREBITS:
        return _changed(k, caps.set_securebits(c, arg2))
    if option == PR_SET_NO_NEW_PRIVS:
        if arg2 != 1 or arg3 or arg4 or arg5:
            return -errno.EINVAL
        creds.set_no_new_privs()
        return 0
    if option == PR_GET_NO_NEW_PRIVS:
        if arg2 or arg3 or arg4 or arg5:
            return -errno.EINVAL
        return int(creds.no_new_privs())
    if option == PR_CAP_AMBIENT:
        if arg4 or arg5:
            return -errno.EINVAL
        new, ret = caps.ambient(c, s32(arg2), arg3 if arg3 <= caps.LAST_CAP else -1)
        if ret < 0:
            return ret
        _changed(k, new)
        return ret
    return -errno.EINVAL
