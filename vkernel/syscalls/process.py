"""Process syscalls: exit, ids, arch_prctl, limits, fork/clone/wait4, execve."""
from __future__ import annotations

import errno
import fcntl as hfcntl
import os
import resource
import signal as hsignal
import stat as st
import struct
import sys
import threading

from formats import abi
from vkernel import caps, creds, procfs, robust, signals, threads
from vkernel.elf import parse_elf
from vkernel.errors import GuestExec, GuestExit, HashRefused, VkernelError
from vkernel.kernel import Kernel
from vkernel.memory import StringTooLong
from vkernel.proctree import guest_processes
from vkernel.signals import MIRRORED, install_wakeup, sync_host, sync_host_mask
from vkernel.syscalls import pidfd
from vkernel.syscalls.args import path_arg, s32
from vkernel.vforkshare import Snapshot, receive_changes, release_parent

ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004


def sys_exit(k: Kernel, status: int) -> int:
    """exit(2): ends the calling thread; the process when it is the last one"""
    if k.proc.multithreaded:
        threads.exit_thread(k, status & 0xFF)
    release_parent(k.proc, k.space)
    raise GuestExit(status & 0xFF)


def sys_exit_group(k: Kernel, status: int) -> int:
    """exit_group(2): every thread ends"""
    release_parent(k.proc, k.space)
    e = GuestExit(status & 0xFF)
    if k.proc.multithreaded:
        threads.end_process(k, e)
        k.check_end()                          # the first thread raises e, another stops
    raise e


def sys_getpid(k: Kernel) -> int:
    """getpid(2): the pid in the run's pid namespace (vkernel/pidns.py), else the host pid"""
    return os.getpid()


def sys_gettid(k: Kernel) -> int:
    """gettid(2): the first thread's is the pid; another's, its host thread's id"""
    return k.thread.tid if k.thread.tid and not k.thread.host_main else os.getpid()


def sys_getppid(k: Kernel) -> int:
    """getppid(2): in the run's pid namespace, 0 for pid 1 (its parent is outside)"""
    return os.getppid()


def sys_getpgrp(k: Kernel) -> int:
    """getpgrp(2)"""
    return os.getpgrp()


def _guest_pid(k: Kernel, pid: int) -> int:
    """``pid`` if it names a guest process (0: the caller), else ESRCH: no peeking outside."""
    if pid not in (0, os.getpid()) and pid not in guest_processes(k.proc):
        raise OSError(errno.ESRCH, "not a guest process")
    return pid


def sys_getpgid(k: Kernel, pid: int) -> int:
    """getpgid(2): guest processes only"""
    return os.getpgid(_guest_pid(k, s32(pid)))


def sys_setpgid(k: Kernel, pid: int, pgid: int) -> int:
    """setpgid(2)"""
    os.setpgid(s32(pid), s32(pgid))
    return 0


def sys_getsid(k: Kernel, pid: int) -> int:
    """getsid(2): guest processes only"""
    return os.getsid(_guest_pid(k, s32(pid)))


def sys_setsid(k: Kernel) -> int:
    """setsid(2): the new session's id is the caller's pid"""
    os.setsid()
    return os.getsid(0)


def sys_umask(k: Kernel, mask: int) -> int:
    """umask(2)"""
    old, k.proc.umask = k.proc.umask, mask & 0o777
    return old


def sys_arch_prctl(k: Kernel, code: int, addr: int) -> int:
    """arch_prctl(2): FS and GS bases live in the CPU state"""
    if code == ARCH_SET_FS:
        k.ctl.set("fs_base", addr)
        return 0
    if code == ARCH_SET_GS:
        k.ctl.set("gs_base", addr)
        return 0
    if code in (ARCH_GET_FS, ARCH_GET_GS):
        k.space.put_u64(addr, k.ctl.get("fs_base" if code == ARCH_GET_FS else "gs_base"))
        return 0
    return -errno.EINVAL


def sys_set_tid_address(k: Kernel, tidptr: int) -> int:
    """set_tid_address(2)"""
    k.thread.clear_child_tid = tidptr
    return sys_gettid(k)


def sys_set_robust_list(k: Kernel, head: int, length: int) -> int:
    """set_robust_list(2): walked when the thread ends, execs or dies with its process
    (vkernel/robust.py)"""
    if length != 24:
        return -errno.EINVAL
    k.thread.robust_list = (head, length)
    robust.update_deaths(k.proc)
    return 0


def sys_get_robust_list(k: Kernel, pid: int, head_ptr: int, len_ptr: int) -> int:
    """get_robust_list(2): of the calling thread (pid 0) or another thread of its process
    (musl asks once, to learn robust mutexes are supported)"""
    pid = s32(pid)
    if pid == 0 or pid == k.thread.tid:
        t = k.thread
    else:
        with k.proc.lock:
            t = k.proc.threads.get(pid)
        if t is None:
            return -errno.ESRCH
    head, _ = t.robust_list
    k.space.put_u64(head_ptr, head)
    k.space.put_u64(len_ptr, 24)
    return 0


_RLIM_INF = 0xFFFF_FFFF_FFFF_FFFF
RLIMIT_STACK, RLIMIT_NOFILE, RLIMIT_AS = 3, 7, 9


def _get_rlimit(k: Kernel, resource_id: int) -> tuple[int, int]:
    if resource_id in k.proc.rlimits:
        return k.proc.rlimits[resource_id]
    if resource_id == RLIMIT_STACK:
        return (abi.STACK_SIZE_DEFAULT, _RLIM_INF)
    if resource_id == RLIMIT_NOFILE:
        return (k.fds.limit, k.fds.limit)
    if resource_id == RLIMIT_AS:
        return (1 << 32, 1 << 32)
    soft, hard = resource.getrlimit(resource_id)
    return (soft & _RLIM_INF, hard & _RLIM_INF)


RLIMIT_FSIZE = 1


def _host_limit(v: int) -> int:
    return resource.RLIM_INFINITY if v >= _RLIM_INF else v


def sys_prlimit64(k: Kernel, pid: int, resource_id: int, new_limit: int, old_limit: int) -> int:
    """prlimit64(2): limits of the calling process. RLIMIT_NOFILE bounds the guest fd table,
    RLIMIT_FSIZE is the host's (writes past it get EFBIG and SIGXFSZ); others are recorded"""
    pid = s32(pid)
    if pid not in (0, os.getpid()) and pid not in k.proc.threads:
        if pid <= 0:
            return -errno.ESRCH
        try:
            os.kill(pid, 0)                    # another process of the run: its limits are
        except ProcessLookupError:             # its own vkernel's, out of reach (EPERM, as
            return -errno.ESRCH                # Linux says to a caller without the right)
        except PermissionError:
            pass
        return -errno.EPERM
    if not 0 <= resource_id < 16:
        return -errno.EINVAL
    old = _get_rlimit(k, resource_id)
    if new_limit:
        soft, hard = struct.unpack("<QQ", k.space.read(new_limit, 16))
        if soft > hard:
            return -errno.EINVAL
        if hard > old[1] and not creds.capable(caps.SYS_RESOURCE):
            return -errno.EPERM                # raising a hard limit needs CAP_SYS_RESOURCE
        if resource_id == RLIMIT_FSIZE:
            try:
                resource.setrlimit(resource.RLIMIT_FSIZE, (_host_limit(soft), _host_limit(hard)))
            except ValueError as e:            # Python's word for the host's EPERM / EINVAL
                return -errno.EPERM if "not allowed" in str(e) else -errno.EINVAL
        elif resource_id == RLIMIT_NOFILE:
            k.fds.limit = min(soft, 1 << 20)
        k.proc.rlimits[resource_id] = (soft, hard)
    if old_limit:
        k.space.write(old_limit, struct.pack("<QQ", *old))
    return 0


def sys_getrlimit(k: Kernel, resource_id: int, rlim: int) -> int:
    """getrlimit(2)"""
    return sys_prlimit64(k, 0, resource_id, 0, rlim)


def sys_setrlimit(k: Kernel, resource_id: int, rlim: int) -> int:
    """setrlimit(2)"""
    return sys_prlimit64(k, 0, resource_id, rlim, 0)


# -- fork / wait --------------------------------------------------------------------
CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_VFORK, CLONE_THREAD, CLONE_SETTLS = 0x4000, 0x10000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID = 0x100000, 0x200000, 0x1000000
CLONE_PIDFD = 0x1000


def _fork(k: Kernel, vfork: bool = False) -> int:
    """os.fork() under --pids-limit; with ``vfork`` the parent waits for the child's exec or exit."""
    lim = k.proc.limits
    counted = lim is not None and lim.pids > 0 and lim.lock_fd >= 0
    if counted:
        hfcntl.lockf(lim.lock_fd, hfcntl.LOCK_EX)     # count and fork as one step, tree-wide
    try:
        if counted and len(guest_processes(k.proc)) >= lim.pids:
            if not k.proc.pids_refused:
                k.proc.pids_refused = True
                k.audit.record("fork", "refused", f"fork refused in {k.proc.exe}: --pids-limit "
                               f"{lim.pids} guest processes reached", limit=lim.pids,
                               reason="pids-limit")
            return -errno.EAGAIN
        if vfork:
            r, w = os.pipe2(os.O_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()
        # Hold signals across the fork: one sent to the new pid right away must meet the
        # child's own dispositions (set below), not the parent's forwarding handlers.
        held = hsignal.pthread_sigmask(hsignal.SIG_BLOCK, MIRRORED)
        try:
            pid = os.fork()
        except BaseException:
            hsignal.pthread_sigmask(hsignal.SIG_SETMASK, held)
            raise
    finally:
        if counted:
            hfcntl.lockf(lim.lock_fd, hfcntl.LOCK_UN)
    if pid:
        hsignal.pthread_sigmask(hsignal.SIG_SETMASK, held)
    if pid == 0:
        creds.forked()
        k.proc.is_forked_child = True
        me = os.getpid()                       # the child is one thread, the caller's
        k.thread.tid = me
        k.proc.threads = {me: k.thread}
        k.proc.spare_threads = []              # (the parent's ended threads' stores)
        k.proc.lock = threading.RLock()       # another thread may have held it at the fork
        k.proc.end = None
        k.thread.exiting = False
        if not k.thread.host_main:             # forked in a thread: its host thread is the
            k.thread.host_main = True          # child's main one now, where signals land
            signals.attach(k.proc, k)
        k.proc.sigpending = 0                  # Linux: the child starts with none pending
        k.proc.siginfo.clear()
        k.thread.sigpending = 0
        k.thread.siginfo.clear()
        k.proc.pids_refused = False
        k.thread.robust_list = (0, 0)          # Linux: a new process registers its own list
        k.proc.vkernel_deaths = False          # (robust.update_deaths), before sync_host below
        install_wakeup()                       # our own, not the parent's wakeup pipe
        procfs.republish(k.vfs.skeleton)   # /proc/PID for the other guests
        sync_host(k.proc)                      # guest SIG_DFL is now the host's SIG_DFL
        sync_host_mask(k.thread, k.proc)
        if k.proc.vfork_fd >= 0:               # our parent is a vfork child: not our wait
            os.close(k.proc.vfork_fd)
            k.proc.vfork_fd = -1
            k.proc.vfork_snapshot = None
        if vfork:
            os.close(r)
            k.proc.vfork_fd = w
            k.proc.vfork_snapshot = Snapshot(k.space, k.ctl.get("rsp"))
        return 0
    if vfork:
        os.close(w)
        try:
            receive_changes(r, k.space)        # until EOF: the child exec'd or ended
        finally:
            os.close(r)
    return pid


def sys_fork(k: Kernel) -> int:
    """fork(2): os.fork() of the whole host process (store and memories are copied on write)"""
    return _fork(k)


def sys_vfork(k: Kernel) -> int:
    """vfork(2): the parent is suspended until the child execs or exits (memory is copied)"""
    return _fork(k, vfork=True)


def sys_clone(k: Kernel, flags: int, stack: int, parent_tid: int, child_tid: int, tls: int) -> int:
    """clone(2): threads (CLONE_THREAD: a host thread over the shared guest memory,
    vkernel/threads.py) and process-like clones (fork, vfork, posix_spawn; CLONE_PIDFD)"""
    if flags & CLONE_PIDFD and flags & (CLONE_THREAD | CLONE_PARENT_SETTID):
        return -errno.EINVAL                   # both would use parent_tid (Linux: EINVAL)
    if flags & CLONE_THREAD:
        return threads.clone_thread(k, flags, stack, parent_tid, child_tid, tls)
    if flags & CLONE_VM and not flags & CLONE_VFORK:
        return -errno.ENOSYS                   # a process sharing memory: not supported
    pid = _fork(k, vfork=bool(flags & CLONE_VFORK))
    if pid < 0:
        return pid
    if pid:
        if flags & CLONE_PARENT_SETTID:
            k.space.put_u32(parent_tid, pid)
        if flags & CLONE_PIDFD:                # the child's pidfd (close-on-exec) at parent_tid
            k.space.put_u32(parent_tid, pidfd.sys_pidfd_open(k, pid, 0))
        return pid
    me = os.getpid()
    if flags & CLONE_CHILD_SETTID:
        k.space.put_u32(child_tid, me)
    if flags & CLONE_CHILD_CLEARTID:
        k.thread.clear_child_tid = child_tid
    if flags & CLONE_SETTLS:
        k.ctl.set("fs_base", tls)
    if stack:
        # New stack: the child restarts from the CPU state with rax = 0.
        frame = k.ctl.read_frame()
        k.ctl.set("rsp", stack)
        k.ctl.set("rax", 0)
        k.ctl.set("rip", frame[7])
        k.ctl.set("rcx", frame[7])
        k.ctl.set("r11", k.ctl.get("rflags"))
        k.ctl.set_resume(abi.Resume.RELOAD)
    return 0


_CLONE_ARGS = struct.Struct("<8Q")         # flags pidfd child_tid parent_tid exit_signal stack
                                           # stack_size tls (clone_args, CLONE_ARGS_SIZE_VER0)


def sys_clone3(k: Kernel, args: int, size: int) -> int:
    """clone3(2): threads (CLONE_THREAD, as clone); other clones answer ENOSYS, on which
    libc falls back to clone"""
    if size < _CLONE_ARGS.size:
        return -errno.EINVAL
    flags, _pidfd, child_tid, parent_tid, _sig, stack, stack_size, tls = \
        _CLONE_ARGS.unpack(k.space.read(args, _CLONE_ARGS.size))
    if not flags & CLONE_THREAD:
        return -errno.ENOSYS
    if not stack or not stack_size:
        return -errno.EINVAL
    return threads.clone_thread(k, flags, (stack + stack_size) & 0xFFFF_FFFF_FFFF_FFFF,
                                parent_tid, child_tid, tls)


def _rusage_bytes(ru: object) -> bytes:
    ut, stt = ru.ru_utime, ru.ru_stime  # type: ignore[attr-defined]
    return (struct.pack("<qqqq", int(ut), int(ut % 1 * 1e6), int(stt), int(stt % 1 * 1e6))
            + struct.pack("<14q", *(getattr(ru, f) for f in (
                "ru_maxrss", "ru_ixrss", "ru_idrss", "ru_isrss", "ru_minflt", "ru_majflt", "ru_nswap",
                "ru_inblock", "ru_oublock", "ru_msgsnd", "ru_msgrcv", "ru_nsignals", "ru_nvcsw",
                "ru_nivcsw"))))


WNOHANG, WUNTRACED, WCONTINUED, WNOWAIT, WEXITED = 1, 2, 8, 0x0100_0000, 4
__WALL, __WCLONE = 0x4000_0000, 0x8000_0000


def _wait_interruptibly(k: Kernel, pid: int, options: int) -> None:
    """Block until a child matching ``pid`` can be reaped, without reaping it (WNOWAIT), so a
    signal that interrupts the wait never loses a child's status."""
    if pid < -1:
        idtype, ident = os.P_PGID, -pid
    elif pid == -1:
        idtype, ident = os.P_ALL, 0
    elif pid == 0:
        idtype, ident = os.P_PGID, os.getpgid(0)
    else:
        idtype, ident = os.P_PID, pid
    flags = WEXITED | WNOWAIT | (os.WSTOPPED if options & WUNTRACED else 0) \
        | (WCONTINUED if options & WCONTINUED else 0)
    with k.waiting():
        os.waitid(idtype, ident, flags)


def sys_wait4(k: Kernel, pid: int, wstatus: int, options: int, rusage: int) -> int:
    """wait4(2): the host's wait, statuses are Linux's own encoding; a signal interrupts it"""
    options = s32(options)
    if not options & WNOHANG:
        _wait_interruptibly(k, s32(pid), options)
    got, status, ru = os.wait4(s32(pid), options | WNOHANG)
    if got == 0 and not options & WNOHANG:        # someone else reaped it (a vfork race)
        got, status, ru = os.wait4(s32(pid), options)
    if got == 0:
        return 0
    if wstatus:
        k.space.put_u32(wstatus, status)
    if rusage:
        k.space.write(rusage, _rusage_bytes(ru))
    return got


P_ALL, P_PID, P_PGID, P_PIDFD = 0, 1, 2, 3
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_TRAPPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 4, 5, 6


def sys_waitid(k: Kernel, idtype: int, id_: int, infop: int, options: int, rusage: int) -> int:
    """waitid(2): P_ALL, P_PID, P_PGID, P_PIDFD; the siginfo Linux writes"""
    idtype, options = s32(idtype), s32(options)
    if idtype == P_PIDFD:
        idtype, id_ = P_PID, pidfd.pid_of(k, id_)
    if idtype not in (P_ALL, P_PID, P_PGID):
        return -errno.EINVAL
    if not options & WNOHANG:
        with k.waiting():                # wait without reaping: an interrupt loses nothing
            os.waitid(idtype, s32(id_), options | WNOWAIT)
    res = os.waitid(idtype, s32(id_), options | WNOHANG)
    info = bytearray(128)
    if res is not None:
        struct.pack_into("<iiiiIIi", info, 0, res.si_signo, 0, res.si_code, 0, res.si_pid,
                         res.si_uid, res.si_status)
    if infop:
        k.space.write(infop, bytes(info))
    if rusage:
        k.space.write(rusage, _rusage_bytes(resource.getrusage(resource.RUSAGE_CHILDREN)))
    return 0


# -- execve -----------------------------------------------------------------------------
def sys_execve(k: Kernel, pathname: int, argv: int, envp: int) -> int:
    """execve(2): every check happens here, before the point of no return; then the
    runtime replaces the instance in this host process"""
    path = k.guest_path(-100, path_arg(k, pathname))
    try:
        args = k.space.cstring_array(argv)
        env = k.space.cstring_array(envp)
    except StringTooLong:
        return -errno.E2BIG                    # a string past MAX_ARG_STRLEN, as Linux
    return prepare_exec(k, path, args, env)


def _open_for_exec(k: Kernel, path: str) -> int:
    """A readable fd of ``path``: exec needs execute permission only (a 0711 program runs),
    so a file the guest may execute but not read is read by vkernel itself."""
    from vkernel.syscalls.fs import open_guest
    try:
        return open_guest(k, path, os.O_RDONLY)
    except PermissionError:
        h = open_guest(k, path, os.O_PATH)
    try:
        if not st.S_ISREG(os.fstat(h).st_mode) or \
                not os.access(f"/proc/self/fd/{h}", os.X_OK, effective_ids=True):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
        with creds.privileged():
            return os.open(f"/proc/self/fd/{h}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(h)


_BINPRM_MAX_DEPTH = 4      # Linux: ELOOP past four levels of #! interpreters


def prepare_exec(k: Kernel, path: str, args: list[bytes], env: list[bytes], depth: int = 0,
                 execfn: str | None = None) -> int:
    """Check an exec as Linux does (ENOENT, EACCES, ENOEXEC, E2BIG, ELOOP come back to the
    caller as -errno) and raise GuestExec with the checked bytes when it can go ahead."""
    from vkernel.loader import MAX_ARG_STRLEN, ARG_MAX, check_loadable, exec_args_size, \
        find_interpreter
    execfn = execfn or path
    if any(len(a) >= MAX_ARG_STRLEN for a in args) or any(len(e) >= MAX_ARG_STRLEN for e in env):
        return -errno.E2BIG
    if exec_args_size(args, env, execfn) > ARG_MAX:
        return -errno.E2BIG
    h = _open_for_exec(k, path)
    try:
        s = os.fstat(h)
        if not st.S_ISREG(s.st_mode):
            return -errno.EACCES
        if not os.access(f"/proc/self/fd/{h}", os.X_OK, effective_ids=True):
            return -errno.EACCES
        data = os.pread(h, max(s.st_size, 0), 0)
        canonical = k.vfs.guest_path_of(h)
    finally:
        os.close(h)
    if data.startswith(b"#!"):
        if depth >= _BINPRM_MAX_DEPTH:
            return -errno.ELOOP
        nl = data.find(b"\n")
        line = data[2:nl if 0 <= nl < 256 else 256].strip()
        if not line:
            return -errno.ENOEXEC
        interp, _, arg = line.replace(b"\t", b" ").partition(b" ")
        new_args = [interp] + ([arg.strip()] if arg.strip() else []) + [os.fsencode(path)] + args[1:]
        return prepare_exec(k, interp.decode("utf-8", "surrogateescape"), new_args, env, depth + 1,
                            execfn)
    if not data.startswith(b"\x7fELF"):
        return -errno.ENOEXEC
    try:
        unit = k.policy.check_exec(canonical, data)
        img = parse_elf(data, canonical)
        check_loadable(img, canonical)
        interp = find_interpreter(img, lambda p: _read_for_exec(k, p), k.policy.check_exec)
    except HashRefused as e:
        print(f"kiln: {e.message}", file=sys.stderr, flush=True)
        return -errno.EACCES
    except VkernelError as e:
        print(f"kiln: {e.message}", file=sys.stderr, flush=True)
        return -errno.ENOEXEC
    except OSError as e:                       # the interpreter: missing, not executable...
        return -(e.errno or errno.ENOENT)
    creds.exec_transition(s.st_mode, s.st_uid, s.st_gid)   # set-user-ID bits, capabilities
    # Linux: exec sets comm to the name the file was executed by (not the resolved path):
    # busybox renames itself after execve("/proc/self/exe") only when it reads "exe".
    k.proc.comm = os.path.basename(execfn).encode("utf-8", "surrogateescape")[:15]
    procfs.publish(k.vfs.skeleton, os.path.basename(execfn), args)
    release_parent(k.proc, k.space)            # a vfork parent gets our writes and goes on
    raise GuestExec(canonical, args, env, data, execfn, unit, interp)


def _read_for_exec(k: Kernel, path: str) -> tuple[str, bytes]:
    """(canonical path, bytes) of a file exec may load (execute permission is enough)."""
    h = _open_for_exec(k, path)
    try:
        s = os.fstat(h)
        if not st.S_ISREG(s.st_mode) or \
                not os.access(f"/proc/self/fd/{h}", os.X_OK, effective_ids=True):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
        return k.vfs.guest_path_of(h), os.pread(h, max(s.st_size, 0), 0)
    finally:
        os.close(h)


def sys_getrusage(k: Kernel, who: int, usage: int) -> int:
    """getrusage(2)"""
    who = s32(who)
    if who not in (0, -1, 1):
        return -errno.EINVAL
    ru = resource.getrusage({0: resource.RUSAGE_SELF, -1: resource.RUSAGE_CHILDREN,
                             1: resource.RUSAGE_THREAD}[who])
    k.space.write(usage, _rusage_bytes(ru))
    return 0


def sys_times(k: Kernel, buf: int) -> int:
    """times(2): in clock ticks of 100 Hz (AT_CLKTCK)"""
    t = os.times()
    if buf:
        k.space.write(buf, struct.pack("<4q", *(int(v * 100) for v in t[:4])))
    return int(t.elapsed * 100) & 0x7FFF_FFFF_FFFF_FFFF
