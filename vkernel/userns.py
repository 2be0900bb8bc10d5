"""Guest root is not host root: a user namespace per run, mapped to an unprivileged id range.

When ``kiln run`` runs as root, every guest process of the run lives in a
user namespace of its own whose ids 0..N-1 are the host's ids B..B+N-1, as
rootless Podman and Docker's ``userns-remap`` do. The range comes from the
``kiln`` entry of ``/etc/subuid`` and ``/etc/subgid`` when there is one, else
:data:`DEFAULT_RANGE`. A guest's root is then host uid B, which owns nothing on
the host and holds capabilities only over the run's own namespace.

The image's root filesystem keeps its owners on disk (uid 0 for most files)
and is shown to the guest through an *idmapped mount* of it (Linux 5.12+,
``mount_setattr(MOUNT_ATTR_IDMAP)``): inside the namespace a file owned by
host uid 0 appears owned by 0, and the host kernel checks every access as it
would in a container. The same works for a volume given with ``:idmap``.
Everything is built by the still-privileged first process of the run
(:func:`make_namespace`, :func:`idmapped_mount`) before it enters the namespace
(:func:`enter`), after which it cannot get host privileges back.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from vkernel.errors import VkernelError

DEFAULT_RANGE = (1_000_000_000, 65536)
"""(first host id, count) when /etc/subuid has no ``kiln`` entry: a range no account uses."""
SUBID_NAME = "kiln"

CLONE_NEWUSER = 0x1000_0000
_NR_OPEN_TREE, _NR_MOVE_MOUNT, _NR_MOUNT_SETATTR = 428, 429, 442
_OPEN_TREE_CLONE, _OPEN_TREE_CLOEXEC, _AT_EMPTY_PATH = 1, 0o2000000, 0x1000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
_MOUNT_ATTR_IDMAP = 0x10_0000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_PR_SET_NO_NEW_PRIVS = 38
MOUNT_ATTR_RDONLY_FLAG, _MS_NOSUID, _MS_NODEV = 0x1, 0x2, 0x4    # mount(2)'s MS_RDONLY...
_AT_FDCWD = -100

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


@dataclass(frozen=True)
class IdRange:
    """Host ids ``first``..``first + count - 1`` are guest ids 0..count-1."""
    first: int
    count: int

    def host(self, guest_id: int) -> int:
        return self.first + guest_id

    def line(self) -> str:
        return f"0 {self.first} {self.count}\n"


def _subid(path: str) -> IdRange | None:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                name, _, rest = line.strip().partition(":")
                first, _, count = rest.partition(":")
                if name == SUBID_NAME and first.isdigit() and count.isdigit() and int(count) > 0:
                    return IdRange(int(first), int(count))
    except OSError:
        pass
    return None


def id_ranges() -> tuple[IdRange, IdRange]:
    """(uid range, gid range) of guests: /etc/subuid and /etc/subgid ``kiln``, else the default."""
    default = IdRange(*DEFAULT_RANGE)
    return _subid("/etc/subuid") or default, _subid("/etc/subgid") or default


def _fail(what: str) -> VkernelError:
    e = ctypes.get_errno()
    return VkernelError(f"cannot isolate the run's user ids: {what}: {os.strerror(e)}",
                        hint="kiln run as root needs Linux user namespaces and idmapped mounts "
                             "(Linux 5.12+, on a file system that supports them, such as ext4, xfs, "
                             "btrfs or tmpfs); run kiln as an ordinary user instead, where guests "
                             "run with that user's ids")


def make_namespace(uids: IdRange, gids: IdRange) -> int:
    """A new user namespace with guest ids mapped to ``uids``/``gids``: an O_RDONLY fd of it.

    A short-lived child creates the namespace and waits while this (privileged)
    process writes its id maps; the fd keeps the namespace after the child ends.
    """
    r, w = os.pipe2(os.O_CLOEXEC)
    r2, w2 = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:                              # the namespace's first member, briefly
        try:
            os.close(r)
            os.close(w2)
            ok = _libc.unshare(CLONE_NEWUSER) == 0
            os.write(w, b"1" if ok else b"0")
            os.read(r2, 1)
        finally:
            os._exit(0)
    os.close(w)
    os.close(r2)
    try:
        if os.read(r, 1) != b"1":
            raise VkernelError("cannot isolate the run's user ids: this kernel refuses a new "
                               "user namespace",
                               hint="enable user namespaces (user.max_user_namespaces > 0)")
        try:
            for name, rng in (("uid_map", uids), ("gid_map", gids)):
                with open(f"/proc/{pid}/{name}", "w", encoding="ascii") as f:
                    f.write(rng.line())
            return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise VkernelError(f"cannot map the run's user ids: {e.strerror}",
                               hint="kiln run as root needs to write /proc/PID/uid_map") from None
    finally:
        os.close(r)
        os.close(w2)
        os.waitpid(pid, 0)


def idmapped_mount(source: str, target: str, userns_fd: int | None, *,
                   readonly: bool = False) -> None:
    """Mount a copy of the tree at host path ``source`` on ``target`` (in this process's
    mount namespace), ids shifted by ``userns_fd``'s maps (None: not shifted), nosuid and
    nodev, read-only if asked. Only the file system ``source`` is on comes along, not the
    ones mounted below it (procfs, sysfs and the like cannot be idmapped, and a run has its
    own /proc and /dev anyway)."""
    tree = _libc.syscall(_NR_OPEN_TREE, _AT_FDCWD, os.fsencode(source),
                         _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC)
    if tree < 0:
        raise _fail(f"open_tree {source}")
    try:
        flags = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (MOUNT_ATTR_RDONLY if readonly else 0)
        if userns_fd is not None:
            flags |= _MOUNT_ATTR_IDMAP
        attr = _MountAttr(flags, 0, 0, userns_fd if userns_fd is not None else 0)
        if _libc.syscall(_NR_MOUNT_SETATTR, tree, b"", _AT_EMPTY_PATH,
                         ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
            raise _fail(f"idmapped mount of {source}")
        if _libc.syscall(_NR_MOVE_MOUNT, tree, b"", _AT_FDCWD, os.fsencode(target),
                         _MOVE_MOUNT_F_EMPTY_PATH) != 0:
            raise _fail(f"mount of {source} on {target}")
    finally:
        os.close(tree)


OVERLAYFS_MAGIC = 0x794C7630


def overlay_layers(path: str) -> list[str] | None:
    """The layer directories, top first, of the overlay file system mounted at ``path``
    (upperdir, then lowerdirs), as /proc/self/mountinfo lists them; None when ``path`` is
    not the root of an overlay mount."""
    real = os.path.realpath(path)
    found = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                head, _, tail = line.rstrip("\n").partition(" - ")
                fields, rest = head.split(" "), tail.split(" ")
                if len(fields) >= 5 and len(rest) >= 3 and _unescape(fields[4]) == real:
                    found = (rest[0], rest[2])          # the last mount there is on top
    except OSError:
        return None
    if found is None or found[0] != "overlay":
        return None
    opts = dict(o.partition("=")[::2] for o in found[1].split(","))
    layers = [_unescape(p) for p in opts.get("lowerdir", "").split(":") if p]
    if opts.get("upperdir"):
        layers.insert(0, _unescape(opts["upperdir"]))
    return layers or None


def _unescape(text: str) -> str:
    """A path from mountinfo (space, tab, newline and backslash are octal escapes)."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        text = text.replace(code, chr(int(code[1:], 8)))
    return text


def idmapped_rootfs(source: str, target: str, userns_fd: int, scratch: str) -> None:
    """The image's root filesystem at ``target``, idmapped, read-only, nosuid and nodev. An
    overlay mount (containerd's snapshotter) cannot be idmapped itself: each of its layers is
    (under ``scratch``) and a read-only overlay of them is mounted at ``target``."""
    layers = overlay_layers(source)
    if layers is None or len(layers) == 1:
        idmapped_mount(layers[0] if layers else source, target, userns_fd, readonly=True)
        return
    names = []
    for i, layer in enumerate(layers):
        name = f"layer-{i}"
        os.mkdir(os.path.join(scratch, name), 0o700)
        idmapped_mount(layer, os.path.join(scratch, name), userns_fd, readonly=True)
        names.append(name)
    here = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(scratch)                 # relative layer names keep the options short
        options = ("lowerdir=" + ":".join(names)).encode()
        flags = MOUNT_ATTR_RDONLY_FLAG | _MS_NOSUID | _MS_NODEV
        if _libc.mount(b"overlay", os.fsencode(target), b"overlay", flags, options) != 0:
            raise _fail(f"overlay of the layers of {source}")
    finally:
        os.fchdir(here)
        os.close(here)


def enter(userns_fd: int) -> None:
    """Join the namespace as its root (host id ``first`` of the range) for good: no way back
    to host privileges. The process must be single-threaded."""
    if _libc.setns(userns_fd, CLONE_NEWUSER) != 0:
        raise _fail("setns")
    os.close(userns_fd)
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: nothing this process or its children run gains privileges."""
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _fail("no_new_privs")
