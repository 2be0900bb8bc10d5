"""Checkpoint and restore of one guest process waiting for input: its image on disk, and back.

What a process image holds (format ``KILNPROC`` version 1)
----------------------------------------------------------
The guest's whole state, taken while its only thread waits in ``read`` on its
stdin pipe (a run_code interpreter between two cells, shim/sandbox/sessions.py):

* the memory map (vkernel/memory.py ``Mapping`` rows, brk) and the contents of
  every mapped range, in 64 KiB chunks, all-zero chunks left out;
* the code map (the process's code regions: unit number, its BLAKE3, bias);
* the CPU state record of the control memory (formats/abi.py), complete at a
  syscall, and the pending syscall's frame;
* the fd table: regular files and directories by guest path, open flags and
  offset; character devices (``/dev/null``...) by path; descriptors of the
  process's stdin, stdout and stderr pipes by which of the three they are;
* cwd, umask, the program's path and name, resource limits, credentials,
  signal dispositions, the blocked set, the alternate stack, the restart
  sites and fault frames of signal handlers, set_tid_address and the robust
  list.

The file is ``KILNPROC`` + u32 version + u32 length + that many bytes of JSON
(the tables) + the data blobs the JSON lists, in order + the BLAKE3 of
everything before it (32 bytes). A file whose digest, lengths or tables do
not check out is refused (:class:`CheckpointError`) before anything is
restored.

What cannot be saved honestly is refused, naming it (:class:`Refused`): a
second thread, a pending syscall other than that read, a socket, pipe or
event descriptor of its own, a file deleted while open, a MAP_SHARED file
mapping, an interval timer or alarm, a pending signal, a vfork child.

Restore (:func:`restore`) runs in a forked process of the new sandbox whose
stdio are the new session pipes: a fresh store gets the code map
instantiated, the memory and the CPU state written back, the tables rebuilt;
the pending read is then made again (``Kernel._restart``, as an ``SA_RESTART``
handler's return does) and lifted code goes on from the instruction after
the ``syscall`` (a dispatch entry). The WebAssembly call stack is not saved:
at a syscall the CPU state is complete and dispatch can resume anywhere.

How a checkpoint is asked for
-----------------------------
:func:`enable` names a host socket (``control``) the process keeps outside
the guest's fd table. Every interruptible wait (vkernel/signals.py
``wait_interruptibly``) also watches it; a request there (one byte and the
descriptor of the file to write) is served on the spot by :func:`_serve`,
which answers one JSON line, and the wait goes on.
"""
from __future__ import annotations

import array
import bisect
import ctypes
import json
import os
import resource
import signal as hsignal
import socket
import stat as st
import struct
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import blake3

from formats import abi
from formats.errors import KilnError

if TYPE_CHECKING:
    from vkernel.kernel import Kernel
    from vkernel.runtime import Runtime

__all__ = ["CheckpointError", "Refused", "enable", "save", "restore", "MAGIC", "VERSION"]

MAGIC = b"KILNPROC"
VERSION = 1
CHUNK = 64 * 1024
_HEAD = struct.Struct("<8sII")
_DIGEST = 32
_META_MAX = 64 << 20
_READ = 0
_libc = ctypes.CDLL(None, use_errno=True)
_libc.memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
_ZERO = ctypes.create_string_buffer(CHUNK)
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


class CheckpointError(KilnError):
    """A process image that cannot be restored (damaged, truncated, from another image)."""


class Refused(KilnError):
    """The process is in a state no image can hold honestly; the message names what."""


# -- asking for a checkpoint -----------------------------------------------------------------
_control: socket.socket | None = None


def enable(control_fd: int) -> None:
    """Serve checkpoint requests arriving on host socket ``control_fd`` during blocking waits."""
    global _control
    from vkernel import signals
    _control = socket.socket(fileno=control_fd)
    signals.checkpoint_fd = control_fd
    signals.checkpoint_hook = _serve


def _serve(k: "Kernel") -> None:
    """One request: write the image to the descriptor it carries; answer {"ok"...} or
    {"refused": why}."""
    assert _control is not None
    fds = array.array("i")
    try:
        data, anc, _, _ = _control.recvmsg(16, socket.CMSG_SPACE(fds.itemsize))
    except (BlockingIOError, InterruptedError):
        return
    if not data:                              # the sandbox's first process has gone
        from vkernel import signals
        signals.checkpoint_fd = -1
        return
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(raw[:len(raw) - len(raw) % fds.itemsize])
    if not fds:
        _control.send(b'{"refused": "no file to write the image to"}\n')
        return
    out = fds[0]
    try:
        reply: dict[str, Any] = {"ok": True, **save(k, out)}
    except KilnError as e:                    # Refused, or a guest address it cannot read
        reply = {"refused": e.message}
    except OSError as e:
        reply = {"refused": f"the image could not be written: {e.strerror or e}"}
    finally:
        for fd in fds:
            os.close(fd)
    _control.send(json.dumps(reply).encode() + b"\n")


# -- saving ----------------------------------------------------------------------------------
def _stdio_ids() -> dict[tuple[int, int], int]:
    out = {}
    for n in (0, 1, 2):
        try:
            s = os.fstat(n)
        except OSError:
            continue
        out.setdefault((s.st_dev, s.st_ino), n)
    return out


def _fd_rows(k: "Kernel") -> list[dict]:
    stdio = _stdio_ids()
    rows = []
    for fd, of in sorted(k.fds.files.items()):
        s = os.fstat(of.host_fd)
        row: dict[str, Any] = {"fd": fd, "flags": of.flags, "cloexec": of.cloexec,
                               "path": of.path, "inherited": of.inherited}
        where = f"fd {fd} ({of.path})"
        if of.state is not None:
            raise Refused(f"{where} is a socket or event descriptor")
        if (s.st_dev, s.st_ino) in stdio:
            row["kind"], row["stdio"] = "stdio", stdio[(s.st_dev, s.st_ino)]
        elif st.S_ISREG(s.st_mode) or st.S_ISDIR(s.st_mode):
            path = k.vfs.guest_path_of(of.host_fd)
            try:
                now = k.vfs.stat(path, follow=False)
            except OSError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (s.st_dev, s.st_ino):
                raise Refused(f"{where} is a file that was deleted or replaced while open")
            row["kind"], row["path"] = ("dir" if st.S_ISDIR(s.st_mode) else "file"), path
            row["offset"] = os.lseek(of.host_fd, 0, os.SEEK_CUR) if st.S_ISREG(s.st_mode) else 0
            row["dir_pos"] = of.dir_pos
        elif st.S_ISCHR(s.st_mode) and of.path in _DEVICES:
            row["kind"] = "device"
        else:
            raise Refused(f"{where} is a pipe, socket or device of the process's own")
        rows.append(row)
    return rows


def _check_saveable(k: "Kernel") -> tuple[int, ...]:
    p, t = k.proc, k.thread
    if len(p.threads) > 1:
        raise Refused(f"{p.exe} has {len(p.threads)} threads; only single-threaded "
                      "processes can be saved")
    frame = k.ctl.read_frame()
    nr, fd = frame[0], frame[1]
    of = k.fds.get(fd) if nr == _READ else None
    stdin = [ids for ids, n in _stdio_ids().items() if n == 0]
    s = os.fstat(of.host_fd) if of is not None else None
    if s is None or (s.st_dev, s.st_ino) not in stdin:
        from vkernel.syscalls.numbers import SYSCALL_NAMES
        raise Refused(f"{p.exe} is in {SYSCALL_NAMES.get(nr, f'syscall {nr}')}, not waiting "
                      "for input on its stdin")
    if p.vfork_fd >= 0:
        raise Refused(f"{p.exe} is a vfork child")
    if p.sigpending or t.sigpending:
        raise Refused(f"{p.exe} has a signal pending")
    for which, name in ((hsignal.ITIMER_REAL, "alarm or ITIMER_REAL"),
                        (hsignal.ITIMER_VIRTUAL, "ITIMER_VIRTUAL"),
                        (hsignal.ITIMER_PROF, "ITIMER_PROF")):
        if hsignal.getitimer(which)[0]:
            raise Refused(f"{p.exe} has an interval timer set ({name})")
    for m in k.space.maps:
        if m.shared:
            raise Refused(f"{p.exe} has {m.name or 'a file'} mapped MAP_SHARED at {m.start:#x}")
    return frame


def _runs(k: "Kernel") -> list[tuple[int, int]]:
    """(address, length) of the non-zero 64 KiB chunks of every mapped range, joined."""
    space, runs = k.space, []
    for m in k.space.maps:
        a = m.start
        while a < m.end:
            b = min(m.end, (a // CHUNK + 1) * CHUNK)
            if _libc.memcmp(space.host_base + a, _ZERO, b - a) != 0:
                if runs and runs[-1][0] + runs[-1][1] == a:
                    runs[-1] = (runs[-1][0], runs[-1][1] + b - a)
                else:
                    runs.append((a, b - a))
            a = b
    return runs


def save(k: "Kernel", out: int) -> dict[str, Any]:
    """Write the image of the process ``k`` serves to ``out`` (Refused when it cannot be
    saved; nothing is written then). Returns {"bytes", "memory_bytes"}."""
    from vkernel import creds
    frame = _check_saveable(k)
    p, t, space = k.proc, k.thread, k.space
    units = k.policy.units
    runs = _runs(k)
    meta = {
        "exe": p.exe, "comm": p.comm.decode("latin-1"), "cwd": p.cwd, "umask": p.umask,
        "rlimits": {str(r): list(v) for r, v in p.rlimits.items()},
        "sigactions": {str(s): [a.handler, a.flags, a.restorer, a.mask]
                       for s, a in p.sigactions.items()},
        "thread": {"sigmask": t.sigmask, "altstack": list(t.altstack),
                   "clear_child_tid": t.clear_child_tid, "robust_list": list(t.robust_list),
                   "restart_sites": sorted(t.restart_sites),
                   "fault_frames": [[f, *v] for f, v in t.fault_frames.items()]},
        "creds": asdict(creds.current()), "caps": asdict(creds.capabilities()),
        "maps": [asdict(m) for m in space.maps], "brk": [space.brk_start, space.brk_cur],
        "regions": [[r.start, r.end, r.unit, r.bias, units[r.unit].blake3.hex()]
                    for r in p.code_regions],
        "frame": list(frame), "fds": _fd_rows(k),
        "blobs": [["cpu", 0, abi.CPU_STATE_SIZE], *(["mem", a, n] for a, n in runs)],
    }
    text = json.dumps(meta, separators=(",", ":")).encode()
    h = blake3.blake3()
    written = 0

    def put(data: Any) -> None:
        nonlocal written
        h.update(data)
        view = memoryview(data)
        while view:
            n = os.write(out, view)
            view = view[n:]
            written += n
    put(_HEAD.pack(MAGIC, VERSION, len(text)))
    put(text)
    put(bytes(k.ctl.view[abi.CPU_STATE:abi.CPU_STATE + abi.CPU_STATE_SIZE]))
    for a, n in runs:
        put(space.view[a:a + n])
    digest = h.digest()
    os.write(out, digest)
    return {"bytes": written + _DIGEST, "memory_bytes": sum(n for _, n in runs), "exe": p.exe}


# -- restoring -------------------------------------------------------------------------------
def read_image(fd: int) -> tuple[dict, int]:
    """The tables of the image in ``fd`` and the offset of its first blob, after checking its
    digest and lengths (CheckpointError otherwise)."""
    size = os.fstat(fd).st_size
    if size < _HEAD.size + _DIGEST:
        raise CheckpointError(f"the process image is truncated ({size} bytes)")
    h = blake3.blake3()
    pos, end = 0, size - _DIGEST
    while pos < end:
        chunk = os.pread(fd, min(8 << 20, end - pos), pos)
        if not chunk:
            raise CheckpointError("the process image is truncated")
        h.update(chunk)
        pos += len(chunk)
    if h.digest() != os.pread(fd, _DIGEST, end):
        raise CheckpointError("the process image is damaged: its BLAKE3 does not match "
                              "(truncated or modified)")
    magic, version, n = _HEAD.unpack(os.pread(fd, _HEAD.size, 0))
    if magic != MAGIC or version != VERSION:
        raise CheckpointError(f"not a version-{VERSION} process image (magic {magic!r}, "
                              f"version {version})")
    if n > min(_META_MAX, end - _HEAD.size):
        raise CheckpointError("the process image's tables are longer than the file")
    try:
        meta = json.loads(os.pread(fd, n, _HEAD.size))
    except ValueError as e:
        raise CheckpointError(f"the process image's tables are not valid: {e}") from None
    first = _HEAD.size + n
    total = sum(int(b[2]) for b in meta.get("blobs", ()))
    if first + total != end:
        raise CheckpointError("the process image's blobs do not add up to its length")
    return meta, first


def _check_tables(rt: "Runtime", meta: dict) -> None:
    from vkernel.memory import Mapping
    size = 1 << 32
    maps = [Mapping(**m) for m in meta["maps"]]
    prev = 0
    for m in maps:
        if not (prev <= m.start < m.end <= size) or m.start % abi.GUEST_PAGE or \
                m.end % abi.GUEST_PAGE or m.shared:
            raise CheckpointError(f"the process image's memory map is not valid at {m.start:#x}")
        prev = m.end
    units = rt.policy.units
    for start, end, unit, bias, digest in meta["regions"]:
        if not (0 <= unit < len(units)) or units[unit].blake3.hex() != digest:
            raise CheckpointError("the process image's code is not this image's (a unit "
                                  f"{digest[:16]} is not in its megabinary)",
                                  hint="restore it where the same recompiled image is served")
        if not any(m.start <= start and end <= m.end and m.unit == unit for m in maps):
            raise CheckpointError(f"the process image maps code at {start:#x} outside the "
                                  "file it comes from")
    blobs = meta["blobs"]
    if not blobs or blobs[0] != ["cpu", 0, abi.CPU_STATE_SIZE]:
        raise CheckpointError("the process image has no CPU state of this ABI")
    spans = _joined(maps)
    starts = [a for a, _ in spans]
    for kind, addr, n in blobs[1:]:
        i = bisect.bisect_right(starts, addr) - 1
        if kind != "mem" or n <= 0 or i < 0 or addr + n > spans[i][1]:
            raise CheckpointError(f"the process image has memory at {addr:#x} that is not mapped")


def _joined(maps: list) -> list[tuple[int, int]]:
    """The mapped ranges as (start, end), adjacent mappings joined."""
    out: list[tuple[int, int]] = []
    for m in maps:
        if out and out[-1][1] == m.start:
            out[-1] = (out[-1][0], m.end)
        else:
            out.append((m.start, m.end))
    return out


def _open_fds(rt: "Runtime", rows: list[dict]) -> None:
    from vkernel.fdtable import FdTable, OpenFile
    table = FdTable(rt.fds.limit)
    try:
        for row in rows:
            fd, kind = int(row["fd"]), row["kind"]
            flags = int(row["flags"]) & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC)
            if kind == "stdio":
                h = os.dup(int(row["stdio"]))
                os.set_inheritable(h, False)
            elif kind in ("file", "dir"):
                h = rt.vfs.open(row["path"], flags | (os.O_DIRECTORY if kind == "dir" else 0))
                if kind == "file":
                    os.lseek(h, int(row["offset"]), os.SEEK_SET)
            elif kind == "device":
                h = rt.vfs.open(row["path"], flags)
            else:
                raise CheckpointError(f"the process image has an fd of unknown kind {kind!r}")
            of = OpenFile(h, str(row["path"]), int(row["flags"]), bool(row["cloexec"]),
                          is_dir=kind == "dir", inherited=bool(row.get("inherited")))
            of.dir_pos = int(row.get("dir_pos", 0))
            table.put(fd, of)
    except OSError as e:
        table.close_all()
        raise CheckpointError(f"a file the process had open cannot be opened again: "
                              f"{e.filename or ''}: {e.strerror}") from None
    rt.fds.close_all()
    rt.fds = table
    rt.proc.fds = table


def _announce(reply: dict[str, Any]) -> None:
    if _control is not None:
        try:
            _control.send(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass


def restore(rt: "Runtime", fd: int) -> int:
    """Run the process saved in image ``fd`` in this (forked, fresh) process of the sandbox
    until it ends; its status as :meth:`Runtime.run` gives it. The control socket (when
    :func:`enable` named one) hears {"restored": true}, or {"failed": why}; the guest goes on
    when it answers ``G``."""
    try:
        inst, first = _rebuild(rt, fd)
    except KilnError as e:
        _announce({"failed": e.message, "hint": e.hint})
        raise
    except OSError as e:
        err = CheckpointError(f"the process image cannot be restored: {e.strerror or e}")
        _announce({"failed": err.message})
        raise err from None
    os.close(fd)
    _announce({"restored": True})
    if _control is not None:
        # Nothing of this process may take a pid before the other processes of the image are
        # restored with theirs (the signal watcher is a thread: it takes one): wait for "go".
        if _control.recv(16) != b"G":
            raise CheckpointError("the sandbox ended while it was being restored")
    return rt.resume(inst, first)


def _rebuild(rt: "Runtime", fd: int) -> tuple[Any, Any]:
    from vkernel import caps, creds
    from vkernel.cpustate import CodeRegion
    from vkernel.memory import Mapping
    from vkernel.process import SignalAction
    meta, at = read_image(fd)
    try:
        _check_tables(rt, meta)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"the process image's tables are not valid: {e}") from None
    p, t = rt.proc, rt.thread
    inst = rt._instance()
    k = inst.kernel
    space = k.space
    space.maps = [Mapping(**m) for m in meta["maps"]]
    space.brk_start, space.brk_cur = (int(x) for x in meta["brk"])
    with p.lock:
        p.code_regions = [CodeRegion(s, e, u, b) for s, e, u, b, _ in meta["regions"]]
        p.code_generation += 1
    k.sync_code()                               # units first: then memory is the saved one
    cpu = os.pread(fd, abi.CPU_STATE_SIZE, at)
    k.ctl.view[abi.CPU_STATE:abi.CPU_STATE + abi.CPU_STATE_SIZE] = cpu
    at += abi.CPU_STATE_SIZE
    for _, addr, n in meta["blobs"][1:]:
        got = os.preadv(fd, [space.window(addr, n)], at)
        if got != n:
            raise CheckpointError("the process image is truncated")
        at += n
    p.exe, p.comm, p.cwd, p.umask = meta["exe"], meta["comm"].encode("latin-1"), meta["cwd"], \
        int(meta["umask"])
    for r, (soft, hard) in meta["rlimits"].items():
        p.rlimits[int(r)] = (int(soft), int(hard))
    p.sigactions = {int(s): SignalAction(*(int(x) for x in a))
                    for s, a in meta["sigactions"].items()}
    th = meta["thread"]
    t.tid = os.getpid()
    p.threads = {t.tid: t}
    t.sigmask = int(th["sigmask"])
    t.altstack = tuple(int(x) for x in th["altstack"])  # type: ignore[assignment]
    t.clear_child_tid = int(th["clear_child_tid"])
    t.robust_list = tuple(int(x) for x in th["robust_list"])  # type: ignore[assignment]
    t.fault_frames = {int(f): (int(s), int(r), str(m)) for f, s, r, m in th["fault_frames"]}
    # The pending read is made again from the registers, as after an SA_RESTART handler.
    nr, *args, nxt = (int(x) for x in meta["frame"])
    site = (nxt - 2) & 0xFFFF_FFFF_FFFF_FFFF
    t.restart_sites = {int(s) for s in th["restart_sites"]} | {site}
    k.ctl.set("rip", site)
    k.ctl.set("rax", nr)
    for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
        k.ctl.set(name, value)
    _open_fds(rt, meta["fds"])
    c = creds.Creds(**{**meta["creds"], "groups": tuple(meta["creds"]["groups"])})
    sets = caps.Caps(**meta["caps"]) if "caps" in meta else None
    if c != creds.current() or sets is not None and sets != creds.capabilities():
        creds.become(c, sets)
    for res in (resource.RLIMIT_NOFILE,):
        if res in p.rlimits:
            rt.fds.limit = min(p.rlimits[res][0], 1 << 20)
    return inst, k._restart
