"""The host process's last lock: a seccomp filter against new machine code and unneeded syscalls.

Layer 4 of the no-JIT design (docs/threat-model.md). Once the AOT code is
mapped and every module vkernel may need is imported, each guest host
process loads a seccomp filter (through libseccomp, Debian's ``libseccomp2``)
that it and all its children keep:

- ``mmap``, ``mprotect`` and ``pkey_mprotect`` with ``PROT_EXEC``, and
  ``shmat`` with ``SHM_EXEC``, fail with ``EPERM``: no new executable memory
  in the host process, whatever happens inside it;
- the calls vkernel never makes (:data:`FORBIDDEN`: ``execve``, ``ptrace``,
  ``process_vm_writev``, ``bpf``, module, keyring, mount and namespace calls,
  ...) kill the process.

So code that escaped WebAssembly into a host process could still not map
machine code of its own, start a host program or reach the kernel's larger
attack surface.
"""
from __future__ import annotations

import ctypes
import errno

from vkernel.errors import VkernelError

FORBIDDEN = (
    "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "pidfd_getfd", "bpf", "perf_event_open", "userfaultfd", "init_module", "finit_module",
    "delete_module", "kexec_load", "kexec_file_load", "add_key", "request_key", "keyctl",
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr", "setns", "unshare", "open_by_handle_at",
    "name_to_handle_at", "iopl", "ioperm", "swapon", "swapoff", "reboot", "quotactl", "acct",
    "syslog", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname",
    "setdomainname", "vhangup", "lookup_dcookie", "uselib", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "personality",
)
"""Syscalls no vkernel process makes after start-up: a call kills the process."""

PROT_EXEC = 0x4
SHM_EXEC = 0o100000
_ACT_ALLOW = 0x7FFF_0000
_ACT_KILL_PROCESS = 0x8000_0000
_ACT_ERRNO = 0x0005_0000
_CMP_MASKED_EQ = 7
_ATTR_TSYNC = 4


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _lib() -> ctypes.CDLL:
    try:                     # by its soname (ctypes.util.find_library runs ldconfig: ms)
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        from ctypes.util import find_library
        name = find_library("seccomp")
        try:
            lib = ctypes.CDLL(name, use_errno=True) if name else None
        except OSError:
            lib = None
    if lib is None:
        raise VkernelError("cannot lock the guest's host process down: libseccomp is missing",
                           hint="install Debian's libseccomp2 (scripts/setup.sh does)")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def _rule(lib: ctypes.CDLL, ctx: int, action: int, name: str,
          masked: tuple[int, int] | None = None) -> None:
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr < 0:
        return                               # unknown to this libseccomp: not on this kernel
    if masked is None:
        rc = lib.seccomp_rule_add_array(ctx, action, nr, 0, None)
    else:
        arg, bits = masked
        cmp = _ArgCmp(arg, _CMP_MASKED_EQ, bits, bits)
        rc = lib.seccomp_rule_add_array(ctx, action, nr, 1, ctypes.byref(cmp))
    if rc < 0:
        raise VkernelError(f"cannot build the seccomp filter (rule for {name}): "
                           f"{errno.errorcode.get(-rc, rc)}")


def lock_down() -> None:
    """Load the filter into this process (all its threads) and everything it forks.
    The caller has set no_new_privs."""
    lib = _lib()
    ctx = lib.seccomp_init(_ACT_ALLOW)
    if not ctx:
        raise VkernelError("cannot build the seccomp filter (seccomp_init)")
    try:
        eperm = _ACT_ERRNO | errno.EPERM
        for name in ("mmap", "mprotect", "pkey_mprotect"):
            _rule(lib, ctx, eperm, name, (2, PROT_EXEC))
        _rule(lib, ctx, eperm, "shmat", (2, SHM_EXEC))
        for name in FORBIDDEN:
            _rule(lib, ctx, _ACT_KILL_PROCESS, name)
        lib.seccomp_attr_set(ctx, _ATTR_TSYNC, 1)
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise VkernelError(f"cannot load the seccomp filter: {errno.errorcode.get(-rc, rc)}",
                               hint="the kernel must support seccomp filters (CONFIG_SECCOMP_FILTER)")
    finally:
        lib.seccomp_release(ctx)
