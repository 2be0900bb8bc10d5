"""The syscall table: number -> handler and support level, the one place vkernel's coverage is declared."""
from __future__ import annotations

import errno
import inspect
from dataclasses import dataclass
from typing import Callable

from vkernel.syscalls import (capability, events, fdops, fs, futex, ids, misc, mm, net,
                              netmsg, pidfd, poll, process, signal, sockopt, statinfo, time,
                              xattr, xfer)
from vkernel.syscalls.numbers import SYSCALL_NUMBERS

SUPPORTED, PARTIAL, UNSUPPORTED = "supported", "partial", "unsupported"


@dataclass(frozen=True)
class SyscallEntry:
    """One row of the table.

    ``args`` is the strace-style argument format (comma-separated kinds:
    fd, dirfd, str, int, hex, oflags, ptr, mode, buf, sig) used by --trace.
    """
    number: int
    name: str
    handler: Callable[..., int] | None
    level: str
    note: str = ""
    errno: int = 0              # returned when handler is None
    args: str = ""

    @property
    def nargs(self) -> int:
        if self.handler is None:
            return 0
        return len(inspect.signature(self.handler).parameters) - 1


def Supported(name: str, handler: Callable[..., int], args: str = "") -> SyscallEntry:
    return SyscallEntry(SYSCALL_NUMBERS[name], name, handler, SUPPORTED, "", 0, args)


def Partial(name: str, handler: Callable[..., int], note: str, args: str = "") -> SyscallEntry:
    return SyscallEntry(SYSCALL_NUMBERS[name], name, handler, PARTIAL, note, 0, args)


def Unsupported(name: str, err: int, note: str) -> SyscallEntry:
    return SyscallEntry(SYSCALL_NUMBERS[name], name, None, UNSUPPORTED, note, err)


_XATTR_READ = "user.* only: other namespaces read as absent"
_XATTR_LIST = "lists user.* only"
_XATTR_WRITE = "user.* only (others EOPNOTSUPP)"

ENTRIES: tuple[SyscallEntry, ...] = (
    # files: read and write
    Supported("read", fs.sys_read, "fd,buf,int"),
    Partial("write", fs.sys_write, "a write blocked on a full pipe is not interrupted by signals",
            "fd,buf,int"),
    Supported("readv", fs.sys_readv, "fd,ptr,int"),
    Supported("writev", fs.sys_writev, "fd,ptr,int"),
    Supported("pread64", fs.sys_pread64, "fd,ptr,int,int"),
    Supported("pwrite64", fs.sys_pwrite64, "fd,buf,int,int"),
    Supported("lseek", fs.sys_lseek, "fd,int,int"),
    # files: names
    Partial("open", fs.sys_open, "writes go to the run's upper layer (copy-up)", "str,oflags,mode"),
    Partial("openat", fs.sys_openat, "writes go to the run's upper layer (copy-up)",
            "dirfd,str,oflags,mode"),
    Partial("creat", fs.sys_creat, "writes go to the run's upper layer", "str,mode"),
    Supported("close", fs.sys_close, "fd"),
    Supported("fstat", statinfo.sys_fstat, "fd,ptr"),
    Supported("stat", statinfo.sys_stat, "str,ptr"),
    Supported("lstat", statinfo.sys_lstat, "str,ptr"),
    Supported("newfstatat", statinfo.sys_newfstatat, "dirfd,str,ptr,hex"),
    Partial("getxattr", xattr.sys_getxattr, _XATTR_READ, "str,str,ptr,int"),
    Partial("lgetxattr", xattr.sys_lgetxattr, _XATTR_READ, "str,str,ptr,int"),
    Partial("fgetxattr", xattr.sys_fgetxattr, _XATTR_READ, "fd,str,ptr,int"),
    Partial("listxattr", xattr.sys_listxattr, _XATTR_LIST, "str,ptr,int"),
    Partial("llistxattr", xattr.sys_llistxattr, _XATTR_LIST, "str,ptr,int"),
    Partial("flistxattr", xattr.sys_flistxattr, _XATTR_LIST, "fd,ptr,int"),
    Partial("setxattr", xattr.sys_setxattr, _XATTR_WRITE, "str,str,ptr,int,hex"),
    Partial("lsetxattr", xattr.sys_lsetxattr, _XATTR_WRITE, "str,str,ptr,int,hex"),
    Partial("fsetxattr", xattr.sys_fsetxattr, _XATTR_WRITE, "fd,str,ptr,int,hex"),
    Partial("removexattr", xattr.sys_removexattr, _XATTR_WRITE, "str,str"),
    Partial("lremovexattr", xattr.sys_lremovexattr, _XATTR_WRITE, "str,str"),
    Partial("fremovexattr", xattr.sys_fremovexattr, _XATTR_WRITE, "fd,str"),
    Partial("statx", statinfo.sys_statx, "basic stats only (no birth time)", "dirfd,str,hex,hex,ptr"),
    Supported("statfs", statinfo.sys_statfs, "str,ptr"),
    Supported("fstatfs", statinfo.sys_fstatfs, "fd,ptr"),
    Partial("utimensat", statinfo.sys_utimensat, "a rootfs file is copied up first", "dirfd,str,ptr,hex"),
    Supported("poll", poll.sys_poll, "ptr,int,int"),
    Supported("ppoll", poll.sys_ppoll, "ptr,int,ptr,ptr,int"),
    Partial("select", poll.sys_select, "the remaining time is not written back", "int,ptr,ptr,ptr,ptr"),
    Partial("pselect6", poll.sys_pselect6, "the remaining time is not written back",
            "int,ptr,ptr,ptr,ptr,ptr"),
    Supported("sendfile", fdops.sys_sendfile, "fd,fd,ptr,int"),
    Partial("fadvise64", fdops.sys_fadvise64, "accepted, no effect", "fd,int,int,int"),
    Supported("flock", fdops.sys_flock, "fd,int"),
    Supported("getdents64", fs.sys_getdents64,
            "fd,ptr,int"),
    Supported("readlink", fs.sys_readlink, "str,ptr,int"),
    Supported("readlinkat", fs.sys_readlinkat, "dirfd,str,ptr,int"),
    Supported("access", fs.sys_access, "str,int"),
    Supported("faccessat", fs.sys_faccessat, "dirfd,str,int"),
    Supported("faccessat2", fs.sys_faccessat2, "dirfd,str,int,hex"),
    Supported("getcwd", fs.sys_getcwd, "ptr,int"),
    Supported("chdir", fs.sys_chdir, "str"),
    Supported("fchdir", fs.sys_fchdir, "fd"),
    Partial("mkdir", fs.sys_mkdir, "created in the run's upper layer", "str,mode"),
    Partial("mkdirat", fs.sys_mkdirat, "created in the run's upper layer", "dirfd,str,mode"),
    Partial("unlink", fs.sys_unlink, "rootfs files are hidden by a whiteout", "str"),
    Partial("unlinkat", fs.sys_unlinkat, "rootfs files are hidden by a whiteout", "dirfd,str,hex"),
    Partial("rmdir", fs.sys_rmdir, "rootfs directories are hidden by a whiteout", "str"),
    Partial("rename", fs.sys_rename, "rootfs directories cannot be renamed (EXDEV, as overlayfs)",
            "str,str"),
    Partial("renameat", fs.sys_renameat, "as rename", "dirfd,str,dirfd,str"),
    Partial("renameat2", fs.sys_renameat2, "as rename; RENAME_NOREPLACE only",
            "dirfd,str,dirfd,str,hex"),
    Partial("link", fs.sys_link, "a rootfs file is copied up first; EXDEV across volumes",
            "str,str"),
    Partial("linkat", fs.sys_linkat, "as link", "dirfd,str,dirfd,str,hex"),
    Supported("symlink", fs.sys_symlink, "str,str"),
    Supported("symlinkat", fs.sys_symlinkat, "str,dirfd,str"),
    Partial("chmod", fs.sys_chmod, "a rootfs file is copied up first", "str,mode"),
    Partial("fchmodat", fs.sys_fchmodat, "a rootfs file is copied up first", "dirfd,str,mode"),
    Partial("fchmod", fs.sys_fchmod, "changes the file by path (copied up); the fd keeps "
            "seeing the old mode", "fd,mode"),
    Partial("chown", fs.sys_chown, "the host's chown on the upper-layer copy (EPERM unless "
            "kiln runs as root)", "str,int,int"),
    Partial("lchown", fs.sys_lchown, "as chown", "str,int,int"),
    Partial("fchown", fs.sys_fchown, "as chown, by the fd's path", "fd,int,int"),
    Partial("fchownat", fs.sys_fchownat, "as chown", "dirfd,str,int,int,hex"),
    Partial("mknod", fs.sys_mknod, "FIFOs, sockets, regular files; device nodes are EPERM",
            "str,mode,hex"),
    Partial("mknodat", fs.sys_mknodat, "as mknod", "dirfd,str,mode,hex"),
    Supported("truncate", fs.sys_truncate, "str,int"),
    Supported("ftruncate", fs.sys_ftruncate, "fd,int"),
    Supported("fsync", fs.sys_fsync, "fd"),
    Supported("fdatasync", fs.sys_fdatasync, "fd"),
    Supported("dup", fdops.sys_dup, "fd"),
    Supported("dup2", fdops.sys_dup2, "fd,fd"),
    Supported("dup3", fdops.sys_dup3, "fd,fd,hex"),
    Supported("pipe", fdops.sys_pipe, "ptr"),
    Supported("pipe2", fdops.sys_pipe2, "ptr,hex"),
    Partial("fcntl", fdops.sys_fcntl, "F_DUPFD[_CLOEXEC], F_GETFD/SETFD, F_GETFL/SETFL, POSIX and OFD "
            "record locks (the host's), F_GET/SETPIPE_SZ, F_NOTIFY, F_SETOWN/F_GETOWN (a guest process "
            "or group; SIGIO from the host); no F_SETSIG/F_SETOWN_EX/leases/seals",
            "fd,int,hex"),
    Partial("ioctl", fdops.sys_ioctl, "terminals (the run's own ptys, or -t's): termios, window "
            "size, process groups, TIOCSCTTY/TIOCNOTTY, TIOCGPTN/TIOCSPTLCK/TIOCGPTPEER, flush "
            "and break; TIOCSTI EPERM; FIONREAD, FIONBIO, FIOASYNC; on sockets SIOCATMARK, "
            "TIOCOUTQ, SIOCGIFCONF and the SIOCGIF* queries; else ENOTTY",
            "fd,hex,ptr"),
    # memory
    Partial("brk", mm.sys_brk, "fails (returns the old break) beyond kiln run --memory", "hex"),
    Partial("mmap", mm.sys_mmap, "MAP_SHARED of a file opened read-write maps the file's own pages "
            "and anonymous MAP_SHARED a memfd's, both shared across fork (other MAP_SHARED file "
            "mappings are private copies); "
            "PROT_EXEC only for indexed files, or a MAP_SHARED view of a writable data file that "
            "runs nothing but libffi closure trampolines (EACCES otherwise); ENOMEM beyond kiln run "
            "--memory", "hex,int,int,hex,fd,hex"),
    Supported("munmap", mm.sys_munmap, "hex,int"),
    Partial("mprotect", mm.sys_mprotect, "recorded, not enforced; PROT_EXEC only for the executable "
            "segments of indexed files",
            "hex,int,int"),
    Supported("memfd_create", mm.sys_memfd_create, "str,hex"),
    Partial("mremap", mm.sys_mremap, "no MREMAP_DONTUNMAP; code mappings cannot move", "hex,int,int,hex,hex"),
    Partial("madvise", mm.sys_madvise, "MADV_DONTNEED zeroes (also for file mappings)", "hex,int,int"),
    Supported("msync", mm.sys_msync, "hex,int,hex"),
    # process
    Supported("exit", process.sys_exit, "int"),   # the thread; the process with its last thread
    Supported("exit_group", process.sys_exit_group, "int"),
    Partial("getpid", process.sys_getpid, "kiln run (as root): pids of the run's own pid "
            "namespace, the first guest is 1; otherwise host pids (vkernel/pidns.py)"),
    Supported("getppid", process.sys_getppid),
    Supported("gettid", process.sys_gettid),
    Supported("getuid", ids.sys_getuid),
    Supported("geteuid", ids.sys_geteuid),
    Supported("getgid", ids.sys_getgid),
    Supported("getegid", ids.sys_getegid),
    Supported("getpgrp", process.sys_getpgrp),
    Partial("getpgid", process.sys_getpgid, "guest processes only (ESRCH otherwise)", "int"),
    Supported("setpgid", process.sys_setpgid, "int,int"),
    Partial("getsid", process.sys_getsid, "guest processes only (ESRCH otherwise)", "int"),
    Supported("setsid", process.sys_setsid),
    Supported("umask", process.sys_umask, "mode"),
    Supported("getgroups", ids.sys_getgroups, "int,ptr"),
    Supported("getresuid", ids.sys_getresuid, "ptr,ptr,ptr"),
    Supported("getresgid", ids.sys_getresgid, "ptr,ptr,ptr"),
    Supported("setuid", ids.sys_setuid, "int"),
    Supported("setgid", ids.sys_setgid, "int"),
    Supported("setreuid", ids.sys_setreuid, "int,int"),
    Supported("setregid", ids.sys_setregid, "int,int"),
    Supported("setresuid", ids.sys_setresuid, "int,int,int"),
    Supported("setresgid", ids.sys_setresgid, "int,int,int"),
    Supported("setgroups", ids.sys_setgroups, "int,ptr"),
    Partial("setfsuid", ids.sys_setfsuid, "the filesystem id is the effective id; "
            "returns it and changes nothing", "int"),
    Partial("setfsgid", ids.sys_setfsgid, "as setfsuid", "int"),
    Supported("getrusage", process.sys_getrusage, "int,ptr"),
    Supported("times", process.sys_times, "ptr"),
    Supported("arch_prctl", process.sys_arch_prctl, "hex,hex"),
    Supported("set_tid_address", process.sys_set_tid_address, "ptr"),
    Supported("set_robust_list", process.sys_set_robust_list, "ptr,int"),
    Supported("get_robust_list", process.sys_get_robust_list, "int,ptr,ptr"),
    Partial("futex", futex.sys_futex, "the host's futex on the word's host address: WAIT, WAKE, "
            "their BITSET forms, REQUEUE, CMP_REQUEUE, WAKE_OP, shared across processes through "
            "MAP_SHARED pages and between the guest's threads; PI and FD forms: ENOSYS", "ptr,hex,int,ptr,ptr,hex"),
    Unsupported("rseq", errno.ENOSYS, "restartable sequences: glibc continues without them"),
    Partial("prlimit64", process.sys_prlimit64, "RLIMIT_NOFILE and RLIMIT_FSIZE are enforced; "
            "other new limits are recorded only",
            "int,int,ptr,ptr"),
    Partial("getrlimit", process.sys_getrlimit, "as prlimit64", "int,ptr"),
    Partial("setrlimit", process.sys_setrlimit, "as prlimit64", "int,ptr"),
    Partial("fork", process.sys_fork, "EAGAIN beyond kiln run --pids-limit"),
    Partial("vfork", process.sys_vfork, "the parent waits for the child's exec or exit; memory is "
            "a copy, not shared"),
    Partial("clone", process.sys_clone, "threads (CLONE_THREAD: a host thread over the shared "
            "guest memory) and fork-like clones; CLONE_VM without CLONE_THREAD or CLONE_VFORK "
            "returns ENOSYS", "hex,ptr,ptr,ptr,hex"),
    Partial("clone3", process.sys_clone3, "threads (CLONE_THREAD); other clones return ENOSYS "
            "(libc falls back to clone)", "ptr,int"),
    Supported("wait4", process.sys_wait4, "int,ptr,hex,ptr"),
    Supported("waitid", process.sys_waitid, "int,int,ptr,hex,ptr"),
    Supported("pidfd_open", pidfd.sys_pidfd_open, "int,hex"),
    Partial("pidfd_send_signal", pidfd.sys_pidfd_send_signal,
            "no siginfo and no flags (EINVAL); also through a /proc/PID directory fd", "fd,int,ptr,hex"),
    Partial("execve", process.sys_execve, "static ELFs and #! scripts; the file's BLAKE3 must be "
            "indexed (EACCES otherwise)", "str,ptr,ptr"),
    # sockets (vkernel/netpolicy.py: the run's network)
    Partial("socket", net.sys_socket, "AF_UNIX; AF_INET, AF_INET6 (stream, datagram) and "
            "NETLINK_ROUTE in a run with a network (as root, its own loopback; else "
            "EAFNOSUPPORT unless --network host)", "int,hex,int"),
    Partial("socketpair", net.sys_socketpair, "AF_UNIX", "int,hex,int,ptr"),
    Partial("bind", net.sys_bind, "AF_UNIX paths are made in the guest's tree", "fd,ptr,int"),
    Partial("listen", net.sys_listen, "a --publish GUEST_PORT also listens on the host's "
            "published address", "fd,int"),
    Supported("accept", net.sys_accept, "fd,ptr,ptr"),
    Supported("accept4", net.sys_accept4, "fd,ptr,ptr,hex"),
    Partial("connect", net.sys_connect, "outside the run's loopback only what --allow-net "
            "permits (else ENETUNREACH, audited)", "fd,ptr,int"),
    Supported("getsockname", net.sys_getsockname, "fd,ptr,ptr"),
    Supported("getpeername", net.sys_getpeername, "fd,ptr,ptr"),
    Supported("shutdown", net.sys_shutdown, "fd,int"),
    Partial("setsockopt", sockopt.sys_setsockopt, "the options servers set, by value; filters, "
            "repair and zero-copy options are ENOPROTOOPT", "fd,int,int,ptr,int"),
    Partial("getsockopt", sockopt.sys_getsockopt, "as setsockopt", "fd,int,int,ptr,ptr"),
    Partial("sendto", netmsg.sys_sendto, "destinations as connect", "fd,buf,int,hex,ptr,int"),
    Supported("recvfrom", netmsg.sys_recvfrom, "fd,ptr,int,hex,ptr,ptr"),
    Partial("sendmsg", netmsg.sys_sendmsg, "destinations as connect; SCM_RIGHTS, "
            "SCM_CREDENTIALS", "fd,ptr,hex"),
    Supported("recvmsg", netmsg.sys_recvmsg, "fd,ptr,hex"),
    Partial("sendmmsg", netmsg.sys_sendmmsg, "as sendmsg", "fd,ptr,int,hex"),
    Supported("recvmmsg", netmsg.sys_recvmmsg, "fd,ptr,int,hex,ptr"),
    # event loops
    Supported("epoll_create", events.sys_epoll_create, "int"),
    Supported("epoll_create1", events.sys_epoll_create1, "hex"),
    Supported("epoll_ctl", events.sys_epoll_ctl, "fd,int,fd,ptr"),
    Supported("epoll_wait", events.sys_epoll_wait, "fd,ptr,int,int"),
    Supported("epoll_pwait", events.sys_epoll_pwait, "fd,ptr,int,int,ptr,int"),
    Supported("epoll_pwait2", events.sys_epoll_pwait2, "fd,ptr,int,ptr,ptr,int"),
    Supported("eventfd", events.sys_eventfd, "int"),
    Supported("eventfd2", events.sys_eventfd2, "int,hex"),
    Partial("timerfd_create", events.sys_timerfd_create, "the *_ALARM clocks are EPERM",
            "int,hex"),
    Supported("timerfd_settime", events.sys_timerfd_settime, "fd,hex,ptr,ptr"),
    Supported("timerfd_gettime", events.sys_timerfd_gettime, "fd,ptr"),
    Partial("signalfd", events.sys_signalfd, "reads the signals blocked in the guest that the "
            "host holds pending (every signal sent to the process; SIGPIPE vkernel raises "
            "itself is not seen)", "fd,ptr,int"),
    Partial("signalfd4", events.sys_signalfd4, "as signalfd", "fd,ptr,int,hex"),
    Supported("splice", xfer.sys_splice, "fd,ptr,fd,ptr,int,hex"),
    Supported("tee", xfer.sys_tee, "fd,fd,int,hex"),
    Partial("vmsplice", xfer.sys_vmsplice, "copies (SPLICE_F_GIFT is advice only)",
            "fd,ptr,int,hex"),
    Supported("copy_file_range", xfer.sys_copy_file_range, "fd,ptr,fd,ptr,int,hex"),
    # signals
    Supported("rt_sigaction", signal.sys_rt_sigaction, "sig,ptr,ptr,int"),
    Supported("rt_sigprocmask", signal.sys_rt_sigprocmask, "int,ptr,ptr,int"),
    Supported("rt_sigpending", signal.sys_rt_sigpending, "ptr,int"),
    Supported("rt_sigtimedwait", signal.sys_rt_sigtimedwait, "ptr,ptr,ptr,int"),
    Partial("rt_sigreturn", signal.sys_rt_sigreturn, "resumes through dispatch at the restored rip "
            "(RELOAD); a fault's handler returning to the faulting instruction unchanged ends the "
            "guest (it cannot be retried)"),
    Supported("sigaltstack", signal.sys_sigaltstack, "ptr,ptr"),
    Partial("kill", signal.sys_kill, "guest processes only (ESRCH for any other pid); -1 and "
            "process groups mean the guest processes in them", "int,sig"),
    Partial("tgkill", signal.sys_tgkill, "any thread of the caller's process; in another guest "
            "process only its first thread", "int,int,sig"),
    Partial("tkill", signal.sys_tkill, "as tgkill", "int,sig"),
    Supported("pause", signal.sys_pause),
    Supported("rt_sigsuspend", signal.sys_rt_sigsuspend, "ptr,int"),
    Supported("alarm", signal.sys_alarm, "int"),
    Partial("setitimer", signal.sys_setitimer, "host timers: ITIMER_VIRTUAL/PROF also count "
            "vkernel's own CPU time", "int,ptr,ptr"),
    Supported("getitimer", signal.sys_getitimer, "int,ptr"),
    # time
    Supported("clock_gettime", time.sys_clock_gettime, "int,ptr"),
    Supported("clock_getres", time.sys_clock_getres, "int,ptr"),
    Supported("gettimeofday", time.sys_gettimeofday, "ptr,ptr"),
    Partial("clock_settime", time.sys_clock_settime, "EPERM: a guest never sets the host's clock",
            "int,ptr"),
    Partial("settimeofday", time.sys_settimeofday, "EPERM: a guest never sets the host's clock",
            "ptr,ptr"),
    Supported("time", time.sys_time, "ptr"),
    Supported("nanosleep", time.sys_nanosleep, "ptr,ptr"),
    Supported("clock_nanosleep", time.sys_clock_nanosleep, "int,hex,ptr,ptr"),
    # system
    Partial("uname", misc.sys_uname, "fixed: Linux 6.1.0-kiln x86_64; nodename kiln, or the container's hostname", "ptr"),
    Supported("sysinfo", misc.sys_sysinfo, "ptr"),
    Supported("getrandom", misc.sys_getrandom, "ptr,int,hex"),
    Supported("sched_getaffinity", misc.sys_sched_getaffinity, "int,int,ptr"),
    Supported("sched_setaffinity", misc.sys_sched_setaffinity, "int,int,ptr"),
    Partial("getpriority", misc.sys_getpriority, "this run's processes; PRIO_USER: the caller",
            "int,int"),
    Partial("setpriority", misc.sys_setpriority, "this run's processes; PRIO_USER: the caller",
            "int,int,int"),
    Supported("membarrier", misc.sys_membarrier, "int,hex,int"),
    Supported("sched_yield", misc.sys_sched_yield),
    Partial("getcpu", misc.sys_getcpu, "always CPU 0", "ptr,ptr,ptr"),
    Partial("prctl", misc.sys_prctl, "PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE, PR_SET/GET_PDEATHSIG, PR_CAPBSET_READ/DROP, "
            "PR_GET/SET_KEEPCAPS, PR_GET/SET_SECUREBITS, PR_CAP_AMBIENT, PR_GET/SET_NO_NEW_PRIVS",
            "int,hex,hex,hex,hex"),
    Supported("capget", capability.sys_capget, "ptr,ptr"),
    Partial("capset", capability.sys_capset, "runc's default set to start with; file "
            "capabilities are not read", "ptr,ptr"),
)

TABLE: dict[int, SyscallEntry] = {e.number: e for e in ENTRIES}
"""Syscall number -> entry. Numbers missing here return ENOSYS and are reported once."""

DISPATCH: dict[int, tuple[Callable[..., int], int]] = {
    e.number: (e.handler, e.nargs) for e in ENTRIES if e.handler is not None}
"""The hot path's view of TABLE: number -> (handler, argument count), computed once."""
