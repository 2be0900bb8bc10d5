"""Signal syscalls: dispositions, masks, pending, frames (rt_sigreturn), kill, timers, waits."""
from __future__ import annotations

import errno
import os
import signal as hsignal
import struct
import time

from vkernel.kernel import Kernel, SignalAction
from vkernel.proctree import guest_processes, guest_zombie, is_guest
from vkernel.signals import (SI_TKILL, SI_USER, MINSIGSTKSZ, wait_interruptibly, MIRRORED, SS_DISABLE, SS_ONSTACK, UNBLOCKABLE,
                             bit, host_pending, raise_in_guest, signal_thread, sync_host, sync_host_mask,
                             take_pending)
from vkernel.syscalls.args import s32

SIG_DFL, SIG_IGN = 0, 1
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
_SIGACTION = struct.Struct("<QQQQ")      # handler, flags, restorer, mask (kernel layout)
_UNBLOCKABLE = UNBLOCKABLE


def sys_rt_sigaction(k: Kernel, sig: int, act: int, oact: int, sigsetsize: int) -> int:
    """rt_sigaction(2): recorded and mirrored on the host (vkernel/signals.py)"""
    sig = s32(sig)
    if sigsetsize != 8:
        return -errno.EINVAL
    if not 1 <= sig <= 64 or (act and sig in (hsignal.SIGKILL, hsignal.SIGSTOP)):
        return -errno.EINVAL
    old = k.proc.sigactions.get(sig, SignalAction())
    if act:
        h, fl, rest, mask = _SIGACTION.unpack(k.space.read(act, _SIGACTION.size))
    if oact:
        k.space.write(oact, _SIGACTION.pack(old.handler, old.flags, old.restorer, old.mask))
    if act:
        k.proc.sigactions[sig] = SignalAction(h, fl, rest, mask & ~_UNBLOCKABLE)
        if h == SIG_IGN:                        # POSIX: setting SIG_IGN discards a pending one
            k.proc.sigpending &= ~bit(sig)
            for t in list(k.proc.threads.values()):
                t.sigpending &= ~bit(sig)
        if sig in MIRRORED:
            sync_host(k.proc, (sig,))
    return 0


def sys_rt_sigprocmask(k: Kernel, how: int, set_: int, oldset: int, sigsetsize: int) -> int:
    """rt_sigprocmask(2): the blocked set, mirrored on the host"""
    if sigsetsize != 8:
        return -errno.EINVAL
    t = k.thread
    old = t.sigmask
    if set_:
        new = k.space.u64(set_)
        how = s32(how)
        if how == SIG_BLOCK:
            mask = old | new
        elif how == SIG_UNBLOCK:
            mask = old & ~new
        elif how == SIG_SETMASK:
            mask = new
        else:
            return -errno.EINVAL
        t.sigmask = mask & ~_UNBLOCKABLE
        if t.sigmask != old:
            sync_host_mask(t, k.proc)
    if oldset:
        k.space.put_u64(oldset, old)
    return 0


def sys_rt_sigpending(k: Kernel, set_: int, sigsetsize: int) -> int:
    """rt_sigpending(2): pending and blocked, including signals the host holds for us"""
    if sigsetsize > 8:
        return -errno.EINVAL
    host_pending(k.proc)
    k.space.put_u64(set_, (k.thread.sigpending | k.proc.sigpending) & k.thread.sigmask)
    return 0


_SIGWAIT_SLICE = 0.02
"""Seconds rt_sigtimedwait sleeps before it looks at the host's pending set again (a signal the
whole process blocks stays pending in the host, where no wakeup reports it)."""


def _take_host(sig: int) -> None:
    """Consume ``sig`` from the host's pending set if it is there (this host thread blocks it:
    it is one the guest waits for, or a thread's host thread blocks every signal)."""
    try:
        hsignal.sigtimedwait([sig], 0)
    except (OSError, ValueError):
        pass


def sys_rt_sigtimedwait(k: Kernel, uthese: int, uinfo: int, uts: int, sigsetsize: int) -> int:
    """rt_sigtimedwait(2): the lowest pending signal of the set, for the calling thread (its own
    first, then the process's, including ones the host holds blocked); EAGAIN after the
    timeout; EINTR when another, deliverable signal comes"""
    if sigsetsize != 8:
        return -errno.EINVAL
    want = k.space.u64(uthese) & ~_UNBLOCKABLE
    deadline = None
    if uts:
        sec, nsec = struct.unpack("<qq", k.space.read(uts, 16))
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            return -errno.EINVAL
        deadline = time.monotonic() + sec + nsec / 1e9
    t, p = k.thread, k.proc
    while True:
        host_pending(p)
        ready = (t.sigpending | p.sigpending) & want
        if ready:
            sig = (ready & -ready).bit_length()
            mine = bool(t.sigpending & bit(sig))
            code, pid, uid = take_pending(t, p, sig)
            if not mine:
                _take_host(sig)
            if uinfo:
                k.space.write(uinfo, struct.pack("<iiiiII", sig, 0, code, 0, pid, uid).ljust(128, b"\0"))
            return sig
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return -errno.EAGAIN
        wait_interruptibly(k, _SIGWAIT_SLICE if left is None else min(left, _SIGWAIT_SLICE))


def sys_rt_sigreturn(k: Kernel) -> int:
    """rt_sigreturn(2): registers, mask and FPU state back from the rt_sigframe at rsp - 8;
    dispatch resumes at the restored rip (Kernel.sigreturn)"""
    return k.sigreturn()


def sys_sigaltstack(k: Kernel, ss: int, old_ss: int) -> int:
    """sigaltstack(2): the alternate stack SA_ONSTACK handlers run on"""
    base, flags, size = k.thread.altstack
    rsp = k.ctl.get("rsp")
    on = not flags & SS_DISABLE and size and base < rsp <= base + size
    if ss:
        sp, fl, _, sz = struct.unpack("<QiiQ", k.space.read(ss, 24))
        if on:
            return -errno.EPERM
        fl &= 0x7FFFFFFF                       # SS_AUTODISARM is accepted
        if fl not in (0, SS_DISABLE, SS_ONSTACK):
            return -errno.EINVAL
        if fl == SS_DISABLE:
            new = (0, SS_DISABLE, 0)
        else:
            if sz < MINSIGSTKSZ:
                return -errno.ENOMEM
            new = (sp, 0, sz)
    if old_ss:
        k.space.write(old_ss, struct.pack("<QiiQ", base, flags | (SS_ONSTACK if on else 0), 0, size))
    if ss:
        k.thread.altstack = new
    return 0


def deliver_to_self(k: Kernel, sig: int) -> int:
    """A signal vkernel raises for the calling process (SIGPIPE...): pending, delivered at the
    end of this syscall with the guest's disposition."""
    if sig:
        k.thread.siginfo[sig] = (SI_USER, os.getpid(), os.getuid())
        raise_in_guest(k.thread, sig)
    return 0


# -- sending ------------------------------------------------------------------------------
def send_to(k: Kernel, pid: int, sig: int, code: int = SI_USER) -> None:
    """Signal ``sig`` to guest process ``pid`` (this one: through its own pending set or the
    host disposition that mirrors the guest's); kill, tkill and pidfd_send_signal's last step."""
    if pid == os.getpid():
        if sig == 0:
            return
        k.proc.siginfo[sig] = (code, pid, os.getuid())
        if sig in MIRRORED or sig in (hsignal.SIGKILL, hsignal.SIGSTOP):
            os.kill(pid, sig)          # the host disposition mirrors the guest's
        else:
            k.proc.sigpending |= bit(sig)
        return
    os.kill(pid, sig)


def sys_kill(k: Kernel, pid: int, sig: int) -> int:
    """kill(2): only guest processes can be signalled (others are ESRCH); -1 and process
    groups mean the guest processes among them"""
    pid, sig = s32(pid), s32(sig)
    if not 0 <= sig <= 64:
        return -errno.EINVAL
    me = os.getpid()
    if pid == me:
        send_to(k, me, sig)
        return 0
    procs = guest_processes(k)
    if pid > 0:
        targets = [pid] if pid in procs else []
    elif pid == 0:
        mine = os.getpgid(0)
        targets = [p for p, g in procs.items() if g == mine]
    elif pid == -1:
        targets = [p for p in procs if p != me]
    else:
        targets = [p for p, g in procs.items() if g == -pid]
    if not targets:
        # an exited child its parent has not reaped is still there for kill (no effect)
        return 0 if pid > 0 and guest_zombie(k, pid) else -errno.ESRCH
    sent = 0
    for t in sorted(targets, key=lambda t: t == me):     # ourselves last
        try:
            send_to(k, t, sig)
            sent += 1
        except ProcessLookupError:
            pass
    return 0 if sent else -errno.ESRCH


def sys_tgkill(k: Kernel, tgid: int, tid: int, sig: int) -> int:
    """tgkill(2): a thread of this process gets it directed at it (its pending set); in another
    guest process, tid must be that process's first thread"""
    tgid, tid, sig = s32(tgid), s32(tid), s32(sig)
    if tgid <= 0 or tid <= 0 or not 0 <= sig <= 64:
        return -errno.EINVAL
    me = os.getpid()
    target = k.proc.threads.get(tid) if tgid == me else None
    if target is not None and (k.proc.multithreaded or not target.host_main):
        if sig:
            signal_thread(target, sig, SI_TKILL, me, os.getuid())
        return 0
    if tgid != tid:
        return -errno.ESRCH
    if not is_guest(k.proc, tid):
        return -errno.ESRCH
    send_to(k, tid, sig, SI_TKILL)
    return 0


def sys_tkill(k: Kernel, tid: int, sig: int) -> int:
    """tkill(2): as tgkill in the thread group ``tid`` belongs to"""
    if s32(tid) in k.proc.threads:
        return sys_tgkill(k, os.getpid(), tid, sig)
    return sys_tgkill(k, tid, tid, sig)


# -- waiting for signals ----------------------------------------------------------------------
def _wait_forever(k: Kernel) -> int:
    while True:
        wait_interruptibly(k, None)


def sys_pause(k: Kernel) -> int:
    """pause(2): sleeps until a signal is delivered (EINTR)"""
    return _wait_forever(k)


def sys_rt_sigsuspend(k: Kernel, mask: int, sigsetsize: int) -> int:
    """rt_sigsuspend(2): wait with a temporary mask; the handler's frame restores the old one"""
    if sigsetsize != 8:
        return -errno.EINVAL
    new = k.space.u64(mask) & ~_UNBLOCKABLE
    k.thread.saved_mask = k.thread.sigmask
    k.thread.sigmask = new
    sync_host_mask(k.thread, k.proc)
    return _wait_forever(k)


# -- timers ---------------------------------------------------------------------------------------
_ITIMERS = {0: hsignal.ITIMER_REAL, 1: hsignal.ITIMER_VIRTUAL, 2: hsignal.ITIMER_PROF}
_TIMEVAL2 = struct.Struct("<qqqq")      # it_interval, it_value


def _tv(secs: float) -> tuple[int, int]:
    us = round(secs * 1e6)
    return us // 1_000_000, us % 1_000_000


def sys_alarm(k: Kernel, seconds: int) -> int:
    """alarm(2): the host's ITIMER_REAL; SIGALRM arrives with the guest's disposition"""
    return hsignal.alarm(seconds & 0xFFFFFFFF)


def sys_setitimer(k: Kernel, which: int, new: int, old: int) -> int:
    """setitimer(2): the host's timers (ITIMER_VIRTUAL/PROF also count vkernel's own CPU time)"""
    w = _ITIMERS.get(s32(which))
    if w is None:
        return -errno.EINVAL
    if new:
        isec, iusec, vsec, vusec = _TIMEVAL2.unpack(k.space.read(new, 32))
        if not (0 <= iusec < 1_000_000 and 0 <= vusec < 1_000_000) or isec < 0 or vsec < 0:
            return -errno.EINVAL
        prev = hsignal.setitimer(w, vsec + vusec / 1e6, isec + iusec / 1e6)
    else:
        prev = hsignal.getitimer(w)
    if old:
        value, interval = prev
        k.space.write(old, _TIMEVAL2.pack(*_tv(interval), *_tv(value)))
    return 0


def sys_getitimer(k: Kernel, which: int, cur: int) -> int:
    """getitimer(2)"""
    w = _ITIMERS.get(s32(which))
    if w is None:
        return -errno.EINVAL
    value, interval = hsignal.getitimer(w)
    k.space.write(cur, _TIMEVAL2.pack(*_tv(interval), *_tv(value)))
    return 0
