"""Guest capabilities: Linux's five sets and securebits, and the rules that change them.

A guest process holds what a process of a container holds (capabilities(7)):
root starts with runc's default set (:data:`CONTAINER_DEFAULT`) as its
permitted, effective and bounding sets; any other user with an empty
permitted and effective set and the same bounding set. From there Linux's
rules apply, as the kernel's ``security/commoncap.c`` applies them:

- an id change (setuid and its family) that leaves no id 0 clears permitted
  and effective (unless SECBIT_KEEP_CAPS) and ambient; an effective uid
  leaving 0 clears effective, one becoming 0 makes effective the permitted
  set (unless SECBIT_NO_SETUID_FIXUP): :func:`after_setuid`;
- ``execve`` recomputes them from the bounding, inheritable and ambient sets
  (files have no capabilities of their own here: ``security.capability``
  extended attributes are not read) with root's special case
  (SECBIT_NOROOT turns it off) and clears SECBIT_KEEP_CAPS: :func:`after_exec`;
- ``capset`` may only shrink permitted, keep effective within it, and grow
  inheritable only within the bounding set and (without CAP_SETPCAP) the
  permitted set: :func:`capset`;
- ``prctl`` drops from the bounding set (CAP_SETPCAP), raises and lowers ambient
  capabilities (each must be permitted and inheritable) and sets securebits
  (CAP_SETPCAP; locked bits stay): :func:`ambient`, :func:`drop_bound`,
  :func:`set_securebits`.

This module only computes; vkernel/creds.py keeps the process's sets and
makes the host process's effective set follow the guest's, so a dropped
capability is refused by the host kernel too. A leaf module.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, replace

NAMES = ("chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
         "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
         "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
         "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
         "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
         "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
         "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore")
"""Capability names by number (CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE = 40)."""
LAST_CAP = len(NAMES) - 1
"""/proc/sys/kernel/cap_last_cap."""
ALL = (1 << len(NAMES)) - 1
NUMBER = {n: i for i, n in enumerate(NAMES)}

CHOWN, DAC_OVERRIDE, FOWNER, KILL = 0, 1, 3, 5
SETGID, SETUID, SETPCAP, SYS_CHROOT, SYS_RESOURCE, MKNOD = 6, 7, 8, 18, 24, 27

CONTAINER_DEFAULT = sum(1 << NUMBER[n] for n in (
    "chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
    "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write"))
"""What runc's default spec (and so Docker and containerd) gives a container's processes."""

# securebits (linux/securebits.h): each bit has a lock bit above it.
NOROOT, NOROOT_LOCKED = 1 << 0, 1 << 1
NO_SETUID_FIXUP, NO_SETUID_FIXUP_LOCKED = 1 << 2, 1 << 3
KEEP_CAPS, KEEP_CAPS_LOCKED = 1 << 4, 1 << 5
NO_CAP_AMBIENT_RAISE, NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 6, 1 << 7
SECUREBITS_ALL = 0xFF
_LOCKS = ((NOROOT, NOROOT_LOCKED), (NO_SETUID_FIXUP, NO_SETUID_FIXUP_LOCKED),
          (KEEP_CAPS, KEEP_CAPS_LOCKED), (NO_CAP_AMBIENT_RAISE, NO_CAP_AMBIENT_RAISE_LOCKED))


@dataclass(frozen=True)
class Caps:
    """One process's capability sets (bit N: capability N) and securebits."""
    effective: int = 0
    permitted: int = 0
    inheritable: int = 0
    bounding: int = CONTAINER_DEFAULT
    ambient: int = 0
    securebits: int = 0

    def has(self, cap: int) -> bool:
        """Whether capability ``cap`` is in the effective set (what the kernel checks)."""
        return bool(self.effective >> cap & 1)


def initial(euid: int, bounding: int = CONTAINER_DEFAULT) -> Caps:
    """A container's first process: root holds the bounding set, other users nothing."""
    held = bounding if euid == 0 else 0
    return Caps(held, held, 0, bounding)


def from_runtime(c: Caps, ruid: int, euid: int) -> Caps:
    """The sets of a container's first program when its runtime set ``c`` before executing it,
    as runc does: an ambient capability that is not both permitted and inheritable cannot be
    raised, and the exec then recomputes the rest (root's programs get the bounding set)."""
    c = replace(c, effective=c.effective & c.permitted,
                ambient=c.ambient & c.permitted & c.inheritable)
    return after_exec(c, ruid, euid, False)[0]


def after_setuid(c: Caps, old: tuple[int, int, int], new: tuple[int, int, int]) -> Caps:
    """The sets after the (real, effective, saved) uids changed from ``old`` to ``new``."""
    if c.securebits & NO_SETUID_FIXUP:
        return c
    eff, prm, amb = c.effective, c.permitted, c.ambient
    if 0 in old and 0 not in new:
        if not c.securebits & KEEP_CAPS:
            prm = eff = 0
        amb = 0
    if old[1] == 0 and new[1] != 0:
        eff = 0
    elif old[1] != 0 and new[1] == 0:
        eff = prm
    return replace(c, effective=eff, permitted=prm, ambient=amb)


def after_exec(c: Caps, ruid: int, euid: int, setid: bool) -> tuple[Caps, bool]:
    """The sets after an execve that leaves the uids (``ruid``, ``euid``); ``setid``: the file's
    set-user-ID or set-group-ID bit changed an id. Also whether the exec is "secure"
    (AT_SECURE: the dynamic linker then ignores LD_PRELOAD and the like)."""
    amb = 0 if setid else c.ambient
    prm = 0
    effective = False
    if not c.securebits & NOROOT and (euid == 0 or ruid == 0):
        prm = c.bounding | c.inheritable      # root's programs: as if every file capability set
        effective = euid == 0
    prm |= amb
    eff = prm if effective else amb
    secure = setid or (ruid != 0 and (effective or bool(prm & ~amb)))
    return Caps(eff, prm, c.inheritable, c.bounding, amb, c.securebits & ~KEEP_CAPS), secure


def capset(c: Caps, effective: int, permitted: int, inheritable: int) -> Caps | int:
    """capset(2) on the caller itself (sets already within :data:`ALL`: Linux drops unknown
    bits): the new sets, or -errno."""
    if permitted & ~c.permitted:
        return -errno.EPERM                    # permitted never grows
    if effective & ~permitted:
        return -errno.EPERM
    if inheritable & ~(c.inheritable | c.bounding):
        return -errno.EPERM
    if not c.has(SETPCAP) and inheritable & ~(c.inheritable | c.permitted):
        return -errno.EPERM
    amb = c.ambient & permitted & inheritable  # ambient stays within both
    return replace(c, effective=effective, permitted=permitted, inheritable=inheritable,
                   ambient=amb)


def drop_bound(c: Caps, cap: int) -> Caps | int:
    """PR_CAPBSET_DROP."""
    if not 0 <= cap <= LAST_CAP:
        return -errno.EINVAL
    if not c.has(SETPCAP):
        return -errno.EPERM
    return replace(c, bounding=c.bounding & ~(1 << cap))


PR_CAP_AMBIENT_IS_SET, PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_LOWER = 1, 2, 3
PR_CAP_AMBIENT_CLEAR_ALL = 4


def ambient(c: Caps, op: int, cap: int) -> tuple[Caps, int]:
    """PR_CAP_AMBIENT: (new sets, return value or -errno)."""
    if op == PR_CAP_AMBIENT_CLEAR_ALL:
        return (replace(c, ambient=0), 0) if cap == 0 else (c, -errno.EINVAL)
    if op not in (PR_CAP_AMBIENT_IS_SET, PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_LOWER) or \
            not 0 <= cap <= LAST_CAP:
        return c, -errno.EINVAL
    bit = 1 << cap
    if op == PR_CAP_AMBIENT_IS_SET:
        return c, int(bool(c.ambient & bit))
    if op == PR_CAP_AMBIENT_LOWER:
        return replace(c, ambient=c.ambient & ~bit), 0
    if not (c.permitted & bit and c.inheritable & bit) or c.securebits & NO_CAP_AMBIENT_RAISE:
        return c, -errno.EPERM
    return replace(c, ambient=c.ambient | bit), 0


def set_securebits(c: Caps, bits: int) -> Caps | int:
    """PR_SET_SECUREBITS: needs CAP_SETPCAP; a locked bit cannot change, a lock cannot be
    taken off."""
    if bits & ~SECUREBITS_ALL:
        return -errno.EPERM                    # (Linux: EPERM, not EINVAL, for unknown bits)
    if not c.has(SETPCAP):
        return -errno.EPERM
    old = c.securebits
    for bit, lock in _LOCKS:
        if old & lock and (bits & (bit | lock)) != (old & (bit | lock)):
            return -errno.EPERM
    return replace(c, securebits=bits)


def set_keepcaps(c: Caps, on: int) -> Caps | int:
    """PR_SET_KEEPCAPS: 0 or 1; EPERM once SECBIT_KEEP_CAPS_LOCKED is set."""
    if on not in (0, 1):
        return -errno.EINVAL
    if c.securebits & KEEP_CAPS_LOCKED:
        return -errno.EPERM
    bits = c.securebits | KEEP_CAPS if on else c.securebits & ~KEEP_CAPS
    return replace(c, securebits=bits)


def parse(names: list[str] | tuple[str, ...], what: str) -> int:
    """Capability names as Docker and OCI write them ("NET_ADMIN", "CAP_NET_ADMIN",
    "net_admin"; "ALL") as a set; ValueError naming ``what`` for an unknown one."""
    out = 0
    for n in names:
        key = n.strip().lower()
        key = key[4:] if key.startswith("cap_") else key
        if key == "all":
            out |= ALL
        elif key in NUMBER:
            out |= 1 << NUMBER[key]
        else:
            raise ValueError(f"{what}: unknown capability {n!r}")
    return out


def status_lines(c: Caps) -> dict[str, str]:
    """The Cap* lines of /proc/PID/status."""
    return {"CapInh": f"{c.inheritable:016x}", "CapPrm": f"{c.permitted:016x}",
            "CapEff": f"{c.effective:016x}", "CapBnd": f"{c.bounding:016x}",
            "CapAmb": f"{c.ambient:016x}"}
