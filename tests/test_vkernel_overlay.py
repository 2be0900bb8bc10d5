"""The guest's file tree: rootfs + upper layer must behave like one plain directory tree.

Differential: the same operations run natively on a copy of the rootfs and
through vkernel's syscalls on the read-only rootfs; the trees the guest then
sees must equal the native copy, and the rootfs must be byte-for-byte unchanged.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat as st
import struct
from pathlib import Path

from test_vkernel_support import SCRATCH, call, make_kernel, put_str
from vkernel.syscalls.numbers import SYSCALL_NUMBERS as NR

P1, P2, B = SCRATCH, SCRATCH + 0x1000, SCRATCH + 0x2000


def make_tree(root: Path) -> None:
    """A small Debian-like tree: merged /usr (/bin -> usr/bin), nested dirs, symlinks."""
    for d in ("usr/bin", "usr/lib", "etc/apt/sources.list.d", "var/log", "home/user"):
        (root / d).mkdir(parents=True)
    os.symlink("usr/bin", root / "bin")
    os.symlink("usr/lib", root / "lib")
    (root / "usr/bin/tool").write_bytes(b"\x7fELF tool")
    os.chmod(root / "usr/bin/tool", 0o755)
    (root / "etc/hostname").write_text("box\n")
    (root / "etc/apt/sources.list.d/debian.sources").write_text("Types: deb\n")
    (root / "var/log/old.log").write_text("x" * 5000)
    (root / "home/user/.profile").write_text("PS1=$\n")
    # Relative: the native side of the comparison must never follow a link out to the host.
    os.symlink("hostname", root / "etc/hostname.link")


def tree(root: Path) -> dict[str, tuple]:
    """path -> (type, mode, content digest or link target), without following symlinks."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            s = os.lstat(p)
            rel = "/" + str(p.relative_to(root))
            if st.S_ISLNK(s.st_mode):
                out[rel] = ("l", os.readlink(p))
            elif st.S_ISDIR(s.st_mode):
                out[rel] = ("d", st.S_IMODE(s.st_mode))
            else:
                out[rel] = ("f", st.S_IMODE(s.st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def guest_tree(k) -> dict[str, tuple]:
    """The same listing, taken through the guest's getdents64/lstat/readlink/read."""
    out = {}

    def walk(d: str) -> None:
        fd = call(k, NR["open"], put_str(k, P1, d), os.O_RDONLY | os.O_DIRECTORY, 0)
        assert fd >= 0, d
        names = []
        while True:
            n = call(k, NR["getdents64"], fd, B, 4096)
            if n <= 0:
                break
            buf, pos = k.space.read(B, n), 0
            while pos < n:
                reclen, = struct.unpack_from("<H", buf, pos + 16)
                names.append(buf[pos + 19:pos + reclen].split(b"\0")[0].decode())
                pos += reclen
        call(k, NR["close"], fd)
        for name in names:
            if name in (".", ".."):
                continue
            p = d.rstrip("/") + "/" + name
            assert call(k, NR["lstat"], put_str(k, P1, p), B) == 0
            mode, = struct.unpack_from("<I", k.space.read(B, 32), 24)
            if st.S_ISLNK(mode):
                n = call(k, NR["readlink"], put_str(k, P1, p), B, 4096)
                out[p] = ("l", k.space.read(B, n).decode())
            elif st.S_ISDIR(mode):
                out[p] = ("d", st.S_IMODE(mode))
                walk(p)
            else:
                fd2 = call(k, NR["open"], put_str(k, P1, p), os.O_RDONLY, 0)
                data = b""
                while (n := call(k, NR["read"], fd2, B, 4096)) > 0:
                    data += k.space.read(B, n)
                call(k, NR["close"], fd2)
                out[p] = ("f", st.S_IMODE(mode), hashlib.sha256(data).hexdigest())
    walk("/")
    return out


# Each operation: (syscall name, arguments as Python values) and the native equivalent.
def g_write(k, path: str, data: bytes, flags: int) -> int:
    fd = call(k, NR["open"], put_str(k, P1, path), flags, 0o644)
    if fd < 0:
        return fd
    k.space.write(B, data)
    assert call(k, NR["write"], fd, B, len(data)) == len(data)
    return call(k, NR["close"], fd)


def inside(root: Path, path: str) -> Path:
    """The native path, refusing (test bug) anything that would resolve outside ``root``."""
    p = root / path.lstrip("/")
    real = os.path.realpath(p)
    assert real == str(root.resolve()) or real.startswith(str(root.resolve()) + "/"), path
    return p


def n_write(root: Path, path: str, data: bytes, flags: int) -> int:
    inside(root, path)
    try:
        fd = os.open(root / path.lstrip("/"), flags, 0o644)
    except OSError as e:
        return -e.errno
    os.write(fd, data)
    os.close(fd)
    return 0


OPS = [
    ("write", "/bin/newtool", b"new", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
    ("write", "/etc/hostname", b"renamed-box\n", os.O_WRONLY | os.O_TRUNC),
    ("write", "/var/log/old.log", b"more", os.O_WRONLY | os.O_APPEND),
    ("write", "/etc/hostname.link", b"via link\n", os.O_WRONLY | os.O_TRUNC),
    ("write", "/nodir/file", b"", os.O_WRONLY | os.O_CREAT),
    ("unlink", "/usr/bin/tool"),
    ("unlink", "/etc/apt/sources.list.d/debian.sources"),
    ("rmdir", "/etc/apt/sources.list.d"),
    ("rmdir", "/etc/apt"),
    ("rmdir", "/var"),
    ("mkdir", "/etc/apt", 0o700),
    ("mkdir", "/lib/extra", 0o755),
    ("symlink", "../usr/bin/newtool", "/home/user/tool"),
    ("rename", "/home/user/.profile", "/home/user/.bash_profile"),
    ("rename", "/bin/newtool", "/usr/lib/newtool"),
    ("rename", "/etc/hostname.link", "/etc/hn"),
    ("chmod", "/etc/hostname", 0o600),
    ("unlink", "/etc/hn"),
    ("write", "/usr/bin/tool", b"recreated", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
]


def run_native(root: Path, op: tuple) -> int:
    name, *args = op
    p = lambda a: inside(root, a)  # noqa: E731
    if name == "write":
        return n_write(root, *args)
    try:
        if name == "unlink":
            os.unlink(p(args[0]))
        elif name == "rmdir":
            os.rmdir(p(args[0]))
        elif name == "mkdir":
            os.mkdir(p(args[0]), args[1])
            os.chmod(p(args[0]), args[1] & ~0o022)
        elif name == "symlink":
            os.symlink(args[0], p(args[1]))
        elif name == "rename":
            os.rename(p(args[0]), p(args[1]))
        elif name == "chmod":
            os.chmod(p(args[0]), args[1])
    except OSError as e:
        return -e.errno
    return 0


def run_guest_op(k, op: tuple) -> int:
    name, *args = op
    if name == "write":
        return g_write(k, *args)
    if name in ("unlink", "rmdir"):
        return call(k, NR[name], put_str(k, P1, args[0]))
    if name in ("mkdir", "chmod"):
        return call(k, NR[name], put_str(k, P1, args[0]), args[1])
    return call(k, NR[name], put_str(k, P1, args[0]), put_str(k, P2, args[1]))


def test_overlay_behaves_like_a_plain_tree(tmp_path: Path) -> None:
    rootfs, native = tmp_path / "rootfs", tmp_path / "native"
    make_tree(rootfs)
    before = tree(rootfs)
    shutil.copytree(rootfs, native, symlinks=True)
    # The native copy gets the writes as a process with umask 022 would make them.
    old = os.umask(0o022)
    try:
        k = make_kernel(tmp_path, rootfs)
        for op in OPS:
            want = run_native(native, op)
            got = run_guest_op(k, op)
            assert got == want, (op, got, want)
        assert guest_tree(k) == tree(native)
    finally:
        os.umask(old)
    assert tree(rootfs) == before                      # the rootfs was never written


def test_rename_of_rootfs_directory_is_exdev(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    make_tree(rootfs)
    k = make_kernel(tmp_path, rootfs)
    assert call(k, NR["rename"], put_str(k, P1, "/home/user"), put_str(k, P2, "/home/u2")) == -errno.EXDEV
    assert call(k, NR["rmdir"], put_str(k, P1, "/etc")) == -errno.ENOTEMPTY
    assert call(k, NR["unlink"], put_str(k, P1, "/etc")) == -errno.EISDIR
    assert call(k, NR["mkdir"], put_str(k, P1, "/bin"), 0o755) == -errno.EEXIST


def test_upper_symlinks_cannot_escape(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    make_tree(rootfs)
    k = make_kernel(tmp_path, rootfs)
    secret = tmp_path / "host-secret"
    secret.write_text("host only\n")
    depth = "../" * 20
    assert call(k, NR["symlink"], put_str(k, P1, depth + str(secret)), put_str(k, P2, "/etc/esc")) == 0
    assert call(k, NR["symlink"], put_str(k, P1, str(tmp_path)), put_str(k, P2, "/etc/escdir")) == 0
    for path in ("/etc/esc", "/etc/escdir/host-secret"):
        assert call(k, NR["open"], put_str(k, P1, path), os.O_RDONLY, 0) == -errno.ENOENT
        # ... and writing through it creates a file inside the upper layer, never on the host
    assert call(k, NR["open"], put_str(k, P1, "/etc/escdir/new"), os.O_WRONLY | os.O_CREAT, 0o644) == -errno.ENOENT
    assert secret.read_text() == "host only\n"
