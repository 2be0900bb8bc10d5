"""The guest's user and group ids: get and set, as the host process's own (vkernel/creds.py)."""
from __future__ import annotations

import errno
import struct

from vkernel import creds, procfs
from vkernel.kernel import Kernel
from vkernel.syscalls.args import s32


def sys_getuid(k: Kernel) -> int:
    """getuid(2): the guest's ids are the host process's (vkernel/creds.py)"""
    return creds.current().ruid


def sys_geteuid(k: Kernel) -> int:
    """geteuid(2)"""
    return creds.current().euid


def sys_getgid(k: Kernel) -> int:
    """getgid(2)"""
    return creds.current().rgid


def sys_getegid(k: Kernel) -> int:
    """getegid(2)"""
    return creds.current().egid


def sys_getgroups(k: Kernel, size: int, lst: int) -> int:
    """getgroups(2): the supplementary groups"""
    groups = creds.current().groups
    size = s32(size)
    if size < 0:
        return -errno.EINVAL
    if size == 0:
        return len(groups)
    if size < len(groups):
        return -errno.EINVAL
    k.space.write(lst, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


def sys_setgroups(k: Kernel, size: int, lst: int) -> int:
    """setgroups(2): needs euid 0 (CAP_SETGID); the host process's groups change"""
    size = s32(size)
    if size < 0 or size > creds.NGROUPS_MAX:
        return -errno.EINVAL
    groups = list(struct.unpack(f"<{size}I", k.space.read(lst, 4 * size))) if size else []
    return _ids_changed(k, creds.setgroups(groups))


def sys_getresuid(k: Kernel, ruid: int, euid: int, suid: int) -> int:
    """getresuid(2): the guest's saved uid (the host's is vkernel's business)"""
    c = creds.current()
    for addr, v in zip((ruid, euid, suid), (c.ruid, c.euid, c.suid)):
        k.space.put_u32(addr, v)
    return 0


def sys_getresgid(k: Kernel, rgid: int, egid: int, sgid: int) -> int:
    """getresgid(2)"""
    c = creds.current()
    for addr, v in zip((rgid, egid, sgid), (c.rgid, c.egid, c.sgid)):
        k.space.put_u32(addr, v)
    return 0


def _ids_changed(k: Kernel, ret: int) -> int:
    if ret == 0:
        procfs.republish(k.vfs.skeleton)     # /proc/PID/status of the others
    return ret


def sys_setuid(k: Kernel, uid: int) -> int:
    """setuid(2): Linux's rules on the guest's ids; the host process's ids change"""
    return _ids_changed(k, creds.setuid(uid))


def sys_setgid(k: Kernel, gid: int) -> int:
    """setgid(2)"""
    return _ids_changed(k, creds.setgid(gid))


def sys_setreuid(k: Kernel, ruid: int, euid: int) -> int:
    """setreuid(2)"""
    return _ids_changed(k, creds.setreuid(ruid, euid))


def sys_setregid(k: Kernel, rgid: int, egid: int) -> int:
    """setregid(2)"""
    return _ids_changed(k, creds.setregid(rgid, egid))


def sys_setresuid(k: Kernel, ruid: int, euid: int, suid: int) -> int:
    """setresuid(2)"""
    return _ids_changed(k, creds.setresuid(ruid, euid, suid))


def sys_setresgid(k: Kernel, rgid: int, egid: int, sgid: int) -> int:
    """setresgid(2)"""
    return _ids_changed(k, creds.setresgid(rgid, egid, sgid))


def sys_setfsuid(k: Kernel, fsuid: int) -> int:
    """setfsuid(2): the filesystem uid follows the effective uid; returns it, changes nothing"""
    return creds.current().euid


def sys_setfsgid(k: Kernel, fsgid: int) -> int:
    """setfsgid(2): as setfsuid"""
    return creds.current().egid
