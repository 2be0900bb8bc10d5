"""strace-style formatting of one syscall for ``kiln run --trace``."""
from __future__ import annotations

import errno
import os
import signal as hsignal

from vkernel.errors import GuestFault
from vkernel.kernel import Kernel
from vkernel.syscalls.args import s32, s64
from vkernel.syscalls.numbers import SYSCALL_NAMES

_OFLAGS = [(os.O_WRONLY, "O_WRONLY"), (os.O_RDWR, "O_RDWR")]
_OFLAG_BITS = [(os.O_CREAT, "O_CREAT"), (os.O_EXCL, "O_EXCL"), (os.O_NOCTTY, "O_NOCTTY"),
               (os.O_TRUNC, "O_TRUNC"), (os.O_APPEND, "O_APPEND"), (os.O_NONBLOCK, "O_NONBLOCK"),
               (os.O_DIRECTORY, "O_DIRECTORY"), (os.O_NOFOLLOW, "O_NOFOLLOW"),
               (os.O_CLOEXEC, "O_CLOEXEC"), (os.O_PATH, "O_PATH")]


def _oflags(v: int) -> str:
    acc = v & os.O_ACCMODE
    parts = ["O_RDONLY" if acc == 0 else dict(_OFLAGS).get(acc, hex(acc))]
    parts += [n for b, n in _OFLAG_BITS if v & b]
    return "|".join(parts)


def _str(k: Kernel, addr: int, limit: int = 64) -> str:
    if addr == 0:
        return "NULL"
    try:
        b = k.space.cstring(addr, 4096)
    except GuestFault:
        return hex(addr)
    text = b[:limit].decode("utf-8", "backslashreplace").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"' + ("..." if len(b) > limit else "")


def _buf(k: Kernel, addr: int, n: int) -> str:
    if addr == 0:
        return "NULL"
    try:
        b = k.space.read(addr, min(n, 32))
    except GuestFault:
        return hex(addr)
    text = b.decode("utf-8", "backslashreplace").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"' + ("..." if n > 32 else "")


def format_arg(k: Kernel, kind: str, v: int, args: tuple[int, ...], i: int) -> str:
    if kind == "fd":
        return str(s32(v))
    if kind == "dirfd":
        return "AT_FDCWD" if s32(v) == -100 else str(s32(v))
    if kind == "str":
        return _str(k, v)
    if kind == "buf":
        return _buf(k, v, args[i + 1] if i + 1 < len(args) else 32)
    if kind == "oflags":
        return _oflags(s32(v))
    if kind == "mode":
        return oct(v & 0o7777)
    if kind == "sig":
        try:
            return hsignal.Signals(s32(v)).name
        except ValueError:
            return str(s32(v))
    if kind in ("hex", "ptr"):
        return "NULL" if kind == "ptr" and v == 0 else hex(v)
    return str(s64(v))


def format_result(result: int | None) -> str:
    if result is None:
        return "?"
    r = s64(result & 0xFFFF_FFFF_FFFF_FFFF)
    if -4096 < r < 0:
        return f"-1 {errno.errorcode.get(-r, str(-r))} ({os.strerror(-r)})"
    return hex(r) if r > 0xFFFF else str(r)


def format_call(k: Kernel, nr: int, args: tuple[int, ...], result: int | None) -> str:
    """``name(arg, ...) = result`` as strace prints it."""
    entry = k.table.get(nr)
    name = SYSCALL_NAMES.get(nr, f"syscall_{nr}")
    if entry is not None and entry.args:
        kinds = entry.args.split(",")
        shown = ", ".join(format_arg(k, kd, args[i], args, i) for i, kd in enumerate(kinds))
    elif entry is not None:
        shown = ""
    else:
        shown = ", ".join(hex(a) for a in args[:3])
    return f"{name}({shown}) = {format_result(result)}"
