"""Guest credentials: the host process's real uid/gid/groups, Linux's rules for changing them.

A guest process is one host process, and its guest credentials *are* that
host process's credentials, so the host kernel checks every access to the
lower/upper layers and volumes exactly as it would in a container. When kiln
runs as root, they are ids of the run's user namespace (vkernel/userns.py),
which are unprivileged ids on the host. The only difference from the guest's
view is the process's saved set-user-ID: it stays 0 (the namespace's root), so
vkernel itself can become that root again for the few things overlayfs does
with the mounter's credentials (creating the upper layer's copies of rootfs
directories and files with their owners, whiteouts). The guest never gets that
back: every id change is checked here against the guest's own (real,
effective, saved) ids with Linux's rules, so ``setuid(0)`` after dropping
privileges is EPERM as on Linux. The guest's saved ids are kept here, the
process's are never shown.

When kiln does not run as root, nothing can change: the guest runs with the
host user's ids, id changes to other ids are EPERM, and asking for another
user is an error (vkernel/imageuser.py, ``check_possible``).

The guest's capabilities (vkernel/caps.py computes Linux's rules) are kept
here with its ids, and the host process's effective set follows the guest's
(:func:`_mirror`; CAP_SETUID and CAP_SETGID excepted, see :data:`_VKERNEL_OWN`):
a capability the guest dropped, or never had (runc's default set leaves out
CAP_SYS_ADMIN, CAP_SYS_RESOURCE, CAP_NET_ADMIN...), is refused by the host
kernel as well. The host's permitted set stays whole
(the saved uid 0), so :func:`privileged` can raise it for vkernel's own work.
"""
from __future__ import annotations

import ctypes
import errno
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

from formats.imageuser import NGROUPS_MAX
from vkernel import caps as capsets

UNCHANGED = 0xFFFFFFFF
"""-1 as an unsigned 32-bit id: "leave this one as it is"."""

_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE = 1, 4
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Creds:
    """One guest process's ids (as Linux keeps them in ``struct cred``)."""
    ruid: int = 0
    euid: int = 0
    suid: int = 0
    rgid: int = 0
    egid: int = 0
    sgid: int = 0
    groups: tuple[int, ...] = ()


# -- the current process's credentials ---------------------------------------------------
_current: Creds | None = None
"""This process's guest credentials when vkernel manages them (kiln runs as root), else None."""


def managed() -> bool:
    """Whether guest ids are real host ids that vkernel sets (kiln started as root)."""
    return _current is not None


def current() -> Creds:
    if _current is not None:
        return _current
    r, e, s = os.getresuid()
    rg, eg, sg = os.getresgid()
    return Creds(r, e, s, rg, eg, sg, tuple(os.getgroups()))


class _PerThread(threading.local):
    """What Linux keeps per thread: the capability sets (with the uids they were last fixed up
    for) and, on the host, the thread's own effective set."""
    sets: capsets.Caps | None = None
    ids: tuple[int, int, int] = (0, 0, 0)
    host_effective: int | None = None          # as last set here (None: unknown)
    host_epoch: int = -1                       # the _euid_epoch host_effective was set in
    depth: int = 0                             # privileged() blocks this thread is in


_t = _PerThread()
_euid_epoch = 0
"""Counts the host's effective-uid changes: each resets every thread's effective set (glibc
makes the change in all threads), so a thread's remembered host_effective is then unknown."""
_no_new_privs = False
"""PR_SET_NO_NEW_PRIVS: execve grants nothing (set-user-ID bits are ignored); never unset.
Kept for the process (Linux keeps it per thread and it is inherited by new ones)."""
_secure_exec = False
"""Whether the last execve changed ids or granted capabilities (AT_SECURE)."""
_host_permitted = _host_inheritable = 0
"""The host process's permitted (what :func:`privileged` raises) and inheritable sets, read
once when vkernel takes over its ids (:func:`become`)."""


def _uids() -> tuple[int, int, int]:
    c = current()
    return c.ruid, c.euid, c.suid


def capabilities() -> capsets.Caps:
    """The calling thread's capability sets. Ids are the process's and capabilities each
    thread's, as on Linux: an id change made by another thread (glibc has every thread make
    it) applies Linux's setuid rules to this thread's sets when it next looks."""
    ids = _uids()
    c = _t.sets
    if c is None:
        _keep(capsets.initial(ids[1]), ids)
    elif _t.ids != ids:
        _keep(capsets.after_setuid(c, _t.ids, ids), ids)
    return _t.sets  # type: ignore[return-value]


_of_thread: dict[int, tuple[capsets.Caps, tuple[int, int, int]]] = {}
"""Each thread's sets (and the uids they are for) by its host thread id: capget of another
thread of the process."""


def _keep(sets: capsets.Caps, ids: tuple[int, int, int]) -> None:
    _t.sets, _t.ids = sets, ids
    _of_thread[threading.get_native_id()] = (sets, ids)


def capabilities_of(tid: int) -> capsets.Caps | None:
    """Thread ``tid``'s sets (another thread of this process), None when unknown."""
    got = _of_thread.get(tid)
    if got is None:
        return None
    sets, ids = got
    now = _uids()
    return sets if ids == now else capsets.after_setuid(sets, ids, now)


def thread_ended() -> None:
    _of_thread.pop(threading.get_native_id(), None)


def capable(cap: int) -> bool:
    """Whether the guest holds capability ``cap`` (in its effective set), as the kernel's
    ``capable()`` asks."""
    return capabilities().has(cap)


def set_capabilities(new: capsets.Caps) -> None:
    """The calling thread's sets change (capset, prctl): its host effective set follows."""
    _keep(new, _uids())
    _mirror()


def thread_state() -> tuple[capsets.Caps, tuple[int, int, int]]:
    """What a new thread (clone) takes from the calling one."""
    return capabilities(), _t.ids


def adopt(state: tuple[capsets.Caps, tuple[int, int, int]]) -> None:
    """In a new guest thread: the creating thread's sets (Linux copies them at clone)."""
    _keep(*state)
    _mirror()


def no_new_privs() -> bool:
    return _no_new_privs


def set_no_new_privs() -> None:
    global _no_new_privs
    _no_new_privs = True


def secure_exec() -> bool:
    return _secure_exec


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522


def _host_caps() -> tuple[int, int, int]:
    """The host process's (effective, permitted, inheritable) sets."""
    hdr, data = _CapHeader(_CAP_V3, 0), (_CapData * 2)()
    if _libc.capget(ctypes.byref(hdr), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    return tuple(data[0].__getattribute__(f) | data[1].__getattribute__(f) << 32
                 for f in ("effective", "permitted", "inheritable"))  # type: ignore[return-value]


def _set_host_effective(effective: int) -> None:
    """The calling thread's host effective set (its permitted and inheritable sets as they
    were when vkernel took over: neither changes while it manages the ids)."""
    hdr, data = _CapHeader(_CAP_V3, 0), (_CapData * 2)()
    for i in (0, 1):
        data[i].effective = effective >> 32 * i & 0xFFFFFFFF
        data[i].permitted = _host_permitted >> 32 * i & 0xFFFFFFFF
        data[i].inheritable = _host_inheritable >> 32 * i & 0xFFFFFFFF
    if _libc.capset(ctypes.byref(hdr), data) != 0:  # this thread's own, as on Linux
        raise OSError(ctypes.get_errno(), "capset")
    _t.host_effective, _t.host_epoch = effective, _euid_epoch


def _host_effective() -> int | None:
    return _t.host_effective if _t.host_epoch == _euid_epoch else None


_SYS_SETRESUID = 117


def _thread_seteuid(euid: int) -> None:
    """Change the calling thread's effective uid alone (the raw system call: glibc's wrapper
    would change every thread's). Linux's fixups change this thread's effective set only."""
    if _libc.syscall(_SYS_SETRESUID, -1, ctypes.c_uint(euid), -1) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    _t.host_epoch = -1                         # (its effective set: unknown now)


def _seteuid(euid: int) -> None:
    """Change the host's effective uid (in every thread); Linux's fixups change each thread's
    effective set."""
    global _euid_epoch
    os.seteuid(euid)
    _euid_epoch += 1


_VKERNEL_OWN = 1 << capsets.SETUID | 1 << capsets.SETGID
"""Kept in every host thread's effective set while the effective uid is 0, whatever the guest
holds: vkernel changes the process's ids through glibc, which makes the change in all threads
and aborts the process if one of them is refused (with another effective uid, vkernel first
sets it to 0 in every thread, which gives each the permitted set). The guest never reaches
them: it makes no host system call, and vkernel checks each of its id changes against the
guest's own sets first."""


def _mirror() -> None:
    """Make the calling thread's host effective set its guest sets' (kiln runs as root)."""
    if _current is None:
        return
    own = _VKERNEL_OWN if os.geteuid() == 0 else 0
    want = (capabilities().effective | own) & _host_permitted
    if want != _host_effective():
        _set_host_effective(want)


@contextmanager
def privileged() -> Iterator[None]:
    """Run the body as root (the run's namespace root when it has one) with every capability
    the host process may hold: only vkernel's own work, copy-up, whiteouts, cleanup."""
    if _current is None or _t.depth:
        yield                                  # (nested: the outermost one restores)
        return
    euid = os.geteuid()
    if euid != 0:
        _thread_seteuid(0)                     # this thread only: the guest's other threads
                                               # keep the guest's ids meanwhile
    if _host_effective() != _host_permitted:
        _set_host_effective(_host_permitted)
    _t.depth += 1
    try:
        yield
    finally:
        _t.depth -= 1
        if euid != 0:
            _thread_seteuid(euid)
            _after_euid_change()
        _mirror()


_pdeathsig = 0
"""The parent-death signal the host process must have (:func:`hold_pdeathsig`)."""
_own_pdeathsig = False
"""Whether that is vkernel's own (pid 1 dies with the supervisor), which the guest's does not
replace."""
_guest_pdeathsig = 0
"""The guest's PR_SET_PDEATHSIG."""


def hold_pdeathsig(sig: int, own: bool = True) -> None:
    """Set the host process's parent-death signal and keep it: Linux clears it whenever the
    effective ids change, which vkernel's own work (:func:`privileged`) does too."""
    global _pdeathsig, _own_pdeathsig
    _pdeathsig, _own_pdeathsig = sig, own
    _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def guest_pdeathsig() -> int:
    return _guest_pdeathsig


def set_guest_pdeathsig(sig: int) -> None:
    """PR_SET_PDEATHSIG: the host process gets it (its parent is the guest's parent), unless it
    holds vkernel's own (the run's first process: its parent is outside the run)."""
    global _guest_pdeathsig
    _guest_pdeathsig = sig
    if not _own_pdeathsig:
        hold_pdeathsig(sig, own=False)


def forked() -> None:
    """In a fork child: Linux gives it no parent-death signal; its one thread is the caller."""
    global _pdeathsig, _own_pdeathsig, _guest_pdeathsig
    _pdeathsig, _own_pdeathsig, _guest_pdeathsig = 0, False, 0
    _of_thread.clear()
    if _t.sets is not None:
        _keep(_t.sets, _t.ids)


def _ids_took_effect(old: Creds, new: Creds) -> None:
    """Linux clears the parent-death signal when the effective ids change."""
    if (old.euid, old.egid) != (new.euid, new.egid) and _guest_pdeathsig:
        set_guest_pdeathsig(0)


def _after_euid_change() -> None:
    """What Linux resets when the host's effective ids change, set again: the process stays
    dumpable (a guest process is as inspectable by its own user as any other process) and
    keeps its parent-death signal."""
    _libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    if _pdeathsig and threading.current_thread() is threading.main_thread():
        _libc.prctl(_PR_SET_PDEATHSIG, _pdeathsig, 0, 0, 0)   # (the main thread's: held there)


def _apply(c: Creds) -> None:
    """Make the host process's credentials ``c`` (saved uid 0 kept for :func:`privileged`)."""
    global _euid_epoch
    if os.geteuid() != 0:
        _seteuid(0)                            # Linux: the effective set becomes the permitted
    if _host_effective() != _host_permitted:
        _set_host_effective(_host_permitted)   # CAP_SETUID and CAP_SETGID for the changes
    _euid_epoch += 1                           # Linux's own fixups change it: set it again
    os.setgroups(list(c.groups))
    os.setresgid(c.rgid, c.egid, c.sgid)
    os.setresuid(c.ruid, c.euid, 0)
    _after_euid_change()


_host: tuple[tuple[int, ...], tuple[int, ...], list[int]] | None = None
"""The host process's own ids before :func:`become`, for :func:`restore_host`."""


def become(c: Creds, sets: capsets.Caps | None = None,
           bounding: int = capsets.CONTAINER_DEFAULT) -> None:
    """Take guest credentials ``c`` for this process (kiln runs as root), with capability
    ``sets`` (default: a container's first process's for ``c.euid``, within ``bounding``)."""
    global _current, _host, _host_permitted, _host_inheritable
    if _host is None:
        _host = (os.getresuid(), os.getresgid(), os.getgroups())
        _, _host_permitted, _host_inheritable = _host_caps()
    _current = c = replace(c, groups=tuple(sorted(c.groups)))    # Linux keeps them sorted
    _keep(sets if sets is not None else capsets.initial(c.euid, bounding),
          (c.ruid, c.euid, c.suid))
    _apply(c)
    _mirror()


def restore_host() -> None:
    """Back to host root (the first process, after its guest ended): vkernel tidies up as root."""
    global _current, _host
    if _current is None or _host is None:
        return
    (ruid, euid, suid), gids, groups = _host
    _current = _host = None
    if os.geteuid() != 0:
        _seteuid(0)
    if _host_effective() != _host_permitted:
        _set_host_effective(_host_permitted)
    os.setgroups(groups)
    os.setresgid(*gids)
    os.setresuid(ruid, euid, suid)


# -- id changes, with Linux's rules (kernel/sys.c) ---------------------------------------
def _change(new: Creds) -> int:
    """An id change: the capability sets follow Linux's setuid rules (:func:`capabilities`)."""
    global _current
    if _current is None:
        return -errno.EPERM if new != current() else 0
    old = _current
    capabilities()                             # this thread's sets: for the old ids
    _current = new
    _apply(new)
    _mirror()
    _ids_took_effect(old, new)
    return 0


_CAP = {"u": capsets.SETUID, "g": capsets.SETGID}
"""The capability that lets a process change its user ("u") or group ("g") ids freely."""


def _ids(*vals: int) -> list[int]:
    return [v & 0xFFFFFFFF for v in vals]


def _fields(kind: str) -> tuple[str, str, str]:
    """The real, effective and saved fields of ``kind`` "u" (user) or "g" (group) ids."""
    return f"r{kind}id", f"e{kind}id", f"s{kind}id"


def _set_id(kind: str, value: int) -> int:
    """setuid/setgid: all three ids when privileged, else the effective one to real or saved."""
    c = current()
    (v,) = _ids(value)
    if v == UNCHANGED:
        return -errno.EINVAL
    r, e, s = _fields(kind)
    if capable(_CAP[kind]):
        return _change(replace(c, **{r: v, e: v, s: v}))
    if v in (getattr(c, r), getattr(c, s)):
        return _change(replace(c, **{e: v}))
    return -errno.EPERM


def _set_re(kind: str, real: int, eff: int) -> int:
    """setreuid/setregid, with the saved id following the new effective one as Linux does."""
    c = current()
    real, eff = _ids(real, eff)
    r, e, s = _fields(kind)
    old_r, old_e, old_s = getattr(c, r), getattr(c, e), getattr(c, s)
    if not capable(_CAP[kind]):
        if real != UNCHANGED and real not in (old_r, old_e):
            return -errno.EPERM
        if eff != UNCHANGED and eff not in (old_r, old_e, old_s):
            return -errno.EPERM
    new_r = old_r if real == UNCHANGED else real
    new_e = old_e if eff == UNCHANGED else eff
    new_s = new_e if real != UNCHANGED or (eff != UNCHANGED and new_e != old_r) else old_s
    return _change(replace(c, **{r: new_r, e: new_e, s: new_s}))


def _set_res(kind: str, *want: int) -> int:
    """setresuid/setresgid: unprivileged, each new id must be one of the current three."""
    c = current()
    want_ids = _ids(*want)
    names = _fields(kind)
    old = tuple(getattr(c, n) for n in names)
    if not capable(_CAP[kind]) and any(w != UNCHANGED and w not in old for w in want_ids):
        return -errno.EPERM
    return _change(replace(c, **{n: o if w == UNCHANGED else w
                                 for n, o, w in zip(names, old, want_ids)}))


def setuid(uid: int) -> int:
    return _set_id("u", uid)


def setgid(gid: int) -> int:
    return _set_id("g", gid)


def setreuid(ruid: int, euid: int) -> int:
    return _set_re("u", ruid, euid)


def setregid(rgid: int, egid: int) -> int:
    return _set_re("g", rgid, egid)


def setresuid(ruid: int, euid: int, suid: int) -> int:
    return _set_res("u", ruid, euid, suid)


def setresgid(rgid: int, egid: int, sgid: int) -> int:
    return _set_res("g", rgid, egid, sgid)


def setgroups(groups: list[int]) -> int:
    c = current()
    if len(groups) > NGROUPS_MAX:
        return -errno.EINVAL
    if not capable(capsets.SETGID):
        return -errno.EPERM
    return _change(replace(c, groups=tuple(sorted(g & 0xFFFFFFFF for g in groups))))


def exec_transition(mode: int, file_uid: int, file_gid: int) -> None:
    """execve of a file with ``mode`` owned by (``file_uid``, ``file_gid``), past the point of
    no return: its set-user-ID and set-group-ID bits (ignored under no_new_privs), then the
    saved ids follow the effective ones and the capability sets are recomputed."""
    global _current, _secure_exec
    c = current()
    euid, egid = c.euid, c.egid
    if not _no_new_privs and _current is not None:   # (kiln not root: ids cannot change)
        if mode & 0o4000:
            euid = file_uid
        if mode & 0o2010 == 0o2010:            # set-group-ID with group execute (else: locking)
            egid = file_gid
    setid = euid != c.ruid or egid != c.rgid
    old = capabilities()
    if setid and _no_new_privs:                # Linux: no more than it had, maybe less
        euid, egid = c.ruid, c.rgid
    sets, _secure_exec = capsets.after_exec(old, c.ruid, euid, setid)
    if _no_new_privs:
        sets = replace(sets, permitted=sets.permitted & old.permitted,
                       effective=sets.effective & old.permitted)
    new = replace(c, euid=euid, suid=euid, egid=egid, sgid=egid)
    _keep(sets, (new.ruid, new.euid, new.suid))
    if _current is not None:
        if new != c:
            _current = new
            _apply(new)
        _mirror()
    if _secure_exec and _guest_pdeathsig:
        set_guest_pdeathsig(0)                 # Linux: a set-user-ID exec clears it
