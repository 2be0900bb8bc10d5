"""poll, ppoll, select and pselect6 over guest descriptors (host fds polled, vkernel's own
readiness added), and the temporary signal mask of the p* forms."""
from __future__ import annotations

import errno
import struct

from vkernel.kernel import Kernel
from vkernel.syscalls.args import s32
from vkernel.syscalls.net import also_ready



# -- poll and select ---------------------------------------------------------------------------
_POLLNVAL = 0x20


def _poll(k: Kernel, fds: int, nfds: int, timeout_ms: float | None) -> int:
    import select
    if nfds > k.fds.limit:
        return -errno.EINVAL
    raw = bytearray(k.space.read(fds, 8 * nfds)) if nfds else bytearray()
    poller = select.poll()
    host_to_idx: dict[int, list[int]] = {}
    ready = 0
    for i in range(nfds):
        fd, events, _ = struct.unpack_from("<ihh", raw, 8 * i)
        struct.pack_into("<h", raw, 8 * i + 6, 0)
        if fd < 0:
            continue
        of = k.fds.get(fd)
        if of is None:
            struct.pack_into("<h", raw, 8 * i + 6, _POLLNVAL)
            ready += 1
            continue
        for h in (of.host_fd, *also_ready(of)):
            poller.register(h, events & 0xFFFF)
            host_to_idx.setdefault(h, []).append(i)
    if ready:
        timeout_ms = 0
    wait = None if timeout_ms is None or timeout_ms < 0 else timeout_ms
    if timeout_ms == 0:
        events = poller.poll(0)
    else:
        with k.waiting():                      # a signal ends the wait with EINTR
            events = poller.poll(wait)
    for hfd, rev in events:
        for i in host_to_idx.get(hfd, []):
            _, events, _ = struct.unpack_from("<ihh", raw, 8 * i)
            got = rev & (events | 0x38)         # POLLERR, POLLHUP, POLLNVAL always reported
            if got:
                before = struct.unpack_from("<h", raw, 8 * i + 6)[0]
                struct.pack_into("<h", raw, 8 * i + 6, before | got)
                ready += not before
    if nfds:
        k.space.write(fds, bytes(raw))
    return ready


def sys_poll(k: Kernel, fds: int, nfds: int, timeout: int) -> int:
    """poll(2)"""
    return _poll(k, fds, nfds, s32(timeout))


def sys_ppoll(k: Kernel, fds: int, nfds: int, tmo_p: int, sigmask: int, sigsetsize: int) -> int:
    """ppoll(2): the signal mask argument is ignored (no asynchronous signals yet)"""
    from vkernel.syscalls.args import get_timespec_ns
    t = None if tmo_p == 0 else get_timespec_ns(k, tmo_p) / 1e6
    return with_sigmask(k, sigmask, sigsetsize, lambda: _poll(k, fds, nfds, t))


def with_sigmask(k: Kernel, sigmask: int, sigsetsize: int, wait) -> int:
    """ppoll/pselect6: wait with a temporary blocked set; a handler's frame restores the old one."""
    from vkernel.signals import UNBLOCKABLE, SignalInterrupt, sync_host_mask
    if not sigmask:
        return wait()
    if sigsetsize != 8:
        return -errno.EINVAL
    t = k.thread
    old = t.sigmask
    t.sigmask = k.space.u64(sigmask) & ~UNBLOCKABLE
    sync_host_mask(t, k.proc)
    try:
        result = wait()
    except SignalInterrupt:
        t.saved_mask = old                     # restored by rt_sigreturn (or after delivery)
        raise
    except BaseException:
        t.sigmask = old
        sync_host_mask(t, k.proc)
        raise
    if (t.sigpending | k.proc.sigpending) & ~t.sigmask:
        t.saved_mask = old
    else:
        t.sigmask = old
        sync_host_mask(t, k.proc)
    return result


def _select(k: Kernel, nfds: int, sets: tuple[int, int, int], timeout_s: float | None) -> int:
    import select
    nfds = s32(nfds)
    if not 0 <= nfds <= k.fds.limit:
        return -errno.EINVAL
    nbytes = (nfds + 63) // 64 * 8
    wanted: list[list[int]] = []
    for addr in sets:
        fds = []
        if addr:
            bits = int.from_bytes(k.space.read(addr, nbytes), "little")
            for fd in range(nfds):
                if bits >> fd & 1:
                    if k.fds.get(fd) is None:
                        return -errno.EBADF
                    fds.append(fd)
        wanted.append(fds)
    host = [[k.fds.files[fd].host_fd for fd in w] for w in wanted]
    extra = {k.fds.files[fd].host_fd: also_ready(k.fds.files[fd]) for w in wanted for fd in w}
    # Through poll, as Linux's own select works: host descriptors may pass FD_SETSIZE even
    # when the guest's are small, and the host's select(2) cannot take those.
    interest: dict[int, int] = {}
    for hfds, ev in zip(host, (select.POLLIN, select.POLLOUT, select.POLLPRI)):
        for h in hfds:
            for one in (h, *extra[h]):
                interest[one] = interest.get(one, 0) | ev
    poller = select.poll()
    for h, ev in interest.items():
        poller.register(h, ev)
    if timeout_s is not None and timeout_s <= 0:
        ready = dict(poller.poll(0))
    else:
        with k.waiting():                      # a signal ends the wait with EINTR
            ready = dict(poller.poll(None if timeout_s is None else timeout_s * 1000))
    count = 0
    for addr, fds, hfds, mask in zip(sets, wanted, host, _SELECT_SETS):
        if not addr:
            continue
        bits = 0
        for fd, h in zip(fds, hfds):
            if (ready.get(h, 0) | sum(ready.get(e, 0) for e in extra[h])) & mask:
                bits |= 1 << fd
                count += 1
        k.space.write(addr, bits.to_bytes(nbytes, "little"))
    return count


# poll events that make a descriptor ready for select's read, write and exception sets (Linux's
# POLLIN_SET, POLLOUT_SET and POLLEX_SET in fs/select.c)
_SELECT_SETS = (0x001 | 0x040 | 0x080 | 0x010 | 0x008,     # POLLIN RDNORM RDBAND HUP ERR
                0x004 | 0x100 | 0x200 | 0x008,             # POLLOUT WRNORM WRBAND ERR
                0x002)                                     # POLLPRI


def sys_select(k: Kernel, nfds: int, readfds: int, writefds: int, exceptfds: int, timeout: int) -> int:
    """select(2): the remaining time is not written back"""
    t = None
    if timeout:
        sec, usec = struct.unpack("<qq", k.space.read(timeout, 16))
        t = max(0.0, sec + usec / 1e6)
    return _select(k, nfds, (readfds, writefds, exceptfds), t)


def sys_pselect6(k: Kernel, nfds: int, readfds: int, writefds: int, exceptfds: int, timeout: int,
                 sigmask: int) -> int:
    """pselect6(2): the signal mask argument is ignored"""
    from vkernel.syscalls.args import get_timespec_ns
    t = None if timeout == 0 else get_timespec_ns(k, timeout) / 1e9
    mask, size = (k.space.u64(sigmask), k.space.u64(sigmask + 8)) if sigmask else (0, 8)
    if not mask:
        return _select(k, nfds, (readfds, writefds, exceptfds), t)
    return with_sigmask(k, mask, size, lambda: _select(k, nfds, (readfds, writefds, exceptfds), t))
