"""Shared builders for vkernel tests that run real C programs: compile, recompile, run both ways.

A test hands C sources (kept as strings in the test files) to
:func:`recompiled`, which compiles each with ``musl-gcc -static`` (or
``gcc -static`` for glibc), puts the binaries in a fresh rootfs, and runs the
real recompiler (``python3 -m recompiler.cli ROOTFS -o OUT``) over it. The
same binaries then run natively on the host and under ``kiln run``; the tests
compare what a user would see.

``libc="glibc-dynamic"`` links with the host's glibc dynamically instead and
copies what ``ldd`` lists for each program (its interpreter, libc.so.6...)
from the host into the rootfs at the same paths, so the program runs on the
host and recompiled with the very same libraries. Lifting libc.so.6 is slow
the first time; its unit is cached by hash like any other.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

KILN = [sys.executable, "-m", "vkernel.cli"]
RECOMPILE = [sys.executable, "-m", "recompiler.cli"]


@dataclass(frozen=True)
class Guest:
    """A recompiled rootfs: the directory the programs live in and the recompiled image."""
    rootfs: Path
    image: Path

    def host(self, guest_path: str) -> Path:
        return self.rootfs / guest_path.lstrip("/")


LIBCS = {"musl": "musl-gcc", "glibc": "gcc", "glibc-dynamic": "gcc"}
"""The C libraries a test program can be built with, and the compiler of each."""


def compile_c(source: str, out: Path, *, libc: str = "musl", flags: tuple[str, ...] = (),
              pie: bool = False) -> Path:
    """Compile ``source`` statically (``pie``: static-pie, glibc only), or dynamically linked
    with ``libc="glibc-dynamic"``; skip the test when the compiler is missing."""
    cc = LIBCS[libc]
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed (scripts/setup.sh installs it)")
    src = out.with_suffix(".c")
    src.write_text(source)
    link = [] if libc == "glibc-dynamic" else ["-static-pie" if pie else "-static"]
    subprocess.run([cc, *link, "-O2", *flags, "-o", str(out), str(src)], check=True,
                   capture_output=True)
    src.unlink()
    return out


def host_libraries(program: Path) -> list[str]:
    """The host paths of the interpreter and shared libraries a dynamically linked program
    loads, as ``ldd`` lists them (the vDSO, which has no file, left out)."""
    out = subprocess.run(["ldd", str(program)], check=True, capture_output=True,
                         text=True).stdout
    paths = []
    for line in out.splitlines():
        words = line.split()
        path = words[2] if len(words) > 2 and words[1] == "=>" else words[0] if words else ""
        if path.startswith("/"):
            paths.append(path)
    return paths


def recompiled(tmp: Path, programs: dict[str, str], *, libc: str = "musl",
               files: dict[str, bytes] | None = None, links: dict[str, str] | None = None,
               pie: bool = False) -> Guest:
    """A rootfs with each C program compiled at its guest path (plus ``files`` and symlinks
    ``links``: guest path -> target), recompiled into an image. Dynamically linked programs
    get the host's libraries they load at the same paths."""
    root = tmp / "rootfs"
    for d in ("bin", "tmp", "etc", "data"):
        (root / d).mkdir(parents=True, exist_ok=True)
    libraries: set[str] = set()
    for guest, source in programs.items():
        dst = root / guest.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        compile_c(source, dst, libc=libc, pie=pie)
        if libc == "glibc-dynamic":
            libraries.update(host_libraries(dst))
    for lib in sorted(libraries - set(files or {})):
        dst = root / lib.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, dst)            # what a symlink names, as a file; its mode (ld.so: x)
    for guest, data in (files or {}).items():
        dst = root / guest.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
    for guest, target in (links or {}).items():
        dst = root / guest.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(target)
    out = tmp / "image"
    proc = subprocess.run([*RECOMPILE, str(root), "-o", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return Guest(root, out)


def bundle_rootfs(g: Guest) -> Path:
    """The lower layer `kiln run IMAGE` really runs over (the bundle unpacked from the image)."""
    from recompiler.bundle import prepare_bundle
    return prepare_bundle(g.image) / "rootfs"


def kiln(g: Guest, *argv: str, opts: tuple[str, ...] = (), stdin: bytes = b"",
         timeout: float = 60, **kw: object) -> subprocess.CompletedProcess:
    """``kiln run [opts] IMAGE -- argv``; stdout/stderr captured."""
    return subprocess.run([*KILN, "run", *opts, str(g.image), "--", *argv], input=stdin,
                          capture_output=True, timeout=timeout, **kw)  # type: ignore[call-overload]


def native(g: Guest, guest_path: str, *args: str, stdin: bytes = b"",
           timeout: float = 60) -> subprocess.CompletedProcess:
    """The same static binary run directly on the host (no rootfs needed for these programs)."""
    return subprocess.run([str(g.host(guest_path)), *args], input=stdin, capture_output=True,
                          timeout=timeout, cwd=g.rootfs)


def shell_status(returncode: int) -> int:
    """A subprocess return code as a shell reports it (128+N for signal N)."""
    return 128 - returncode if returncode < 0 else returncode


def host_tree_snapshot(path: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """(mode, size, content or link target) of everything under ``path``: to prove it unchanged."""
    out: dict[str, tuple[int, int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            s = p.lstat()
            if p.is_symlink():
                out[str(p.relative_to(path))] = (s.st_mode, s.st_size, os.readlink(p))
            elif p.is_file():
                out[str(p.relative_to(path))] = (s.st_mode, s.st_size, p.read_bytes())
            else:
                out[str(p.relative_to(path))] = (s.st_mode, 0, b"")
    return out
