"""The isolation of one run, built by its first process before any guest code runs.

``kiln run`` as root (vkernel/supervisor.py) forks the run's first process
into new pid and mount namespaces. That process, still host root, then:

1. joins the run's cgroup (vkernel/cgroup.py);
2. mounts a small tmpfs on the run's directory under the state directory
   (vkernel/statedir.py), seen only in its own mount namespace, for the
   scratch files (the /proc and /dev skeleton) and, unless ``--upper`` names
   a directory, a second tmpfs of ``--disk`` bytes for the upper layer: the
   quota is the file system's size, and the kernel frees both with the
   namespace however the run ends;
3. makes the run's user namespace and shows the image's root filesystem
   (and each ``:idmap`` volume) through an idmapped, read-only, nosuid mount
   there (vkernel/userns.py);
4. opens everything the run needs while it may (megabinary, AOT code, the
   layers, volumes, audit log) — that is ``Runtime.__init__`` — then
   :func:`drop`: joins the user namespace for good, imports every module
   vkernel may need later and loads the seccomp filter (vkernel/seccomp.py).

After that no process of the run holds a host privilege, can reach a host
path it did not open before, map new executable memory or start a host
program.

A process that joins a live run later (``kiln-oci exec``, vkernel/containers.py)
is forked into the run's pid namespace (:func:`enter_pid_namespace`), then
:func:`join` puts it in the run's cgroup and mount namespace with the run's
layers and volumes, and :func:`drop` takes it into the run's user namespace and
locks it down as step 4 does the first process.
"""
from __future__ import annotations

import ctypes
import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vkernel import userns
from vkernel.errors import VkernelError

if TYPE_CHECKING:
    from vkernel.cgroup import RunCgroup
    from vkernel.runtime import RunSpec
    from vkernel.statedir import RunDir
    from vkernel.vfs import Volume

SCRATCH_BYTES = 64 << 20
"""Size of the run's scratch tmpfs (the /proc and /dev skeleton, published command lines)."""

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND = 0x1, 0x2, 0x4, 0x8, 0x20, 0x1000
_CLONE_NEWNS, _CLONE_NEWPID, _CLONE_NEWNET = 0x0002_0000, 0x2000_0000, 0x4000_0000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]


@dataclass(frozen=True)
class Isolation:
    """What the first process prepared, for :func:`drop` (carried by RunSpec)."""
    userns_fd: int              # the run's user namespace (-1: none, kiln is not root)
    id_count: int               # guest ids 0..id_count-1 exist in it
    fs_fd: int                  # O_PATH fd of the run's private tmpfs (kept by every process)
    readonly_upper: str = ""    # the upper layer to make read-only before the drop (root.readonly)
    skeleton: str = ""          # a joining process: the run's /proc and /dev skeleton, shared


@dataclass(frozen=True)
class JoinTarget:
    """A live run another process joins (``kiln-oci exec``, vkernel/containers.py): its first
    process's host pid and the host path of its private file system (``runs/ID/fs``)."""
    first_pid: int
    fs: Path
    volumes: tuple["Volume", ...]   # the run's volumes as its RunSpec gave them
    readonly_root: bool = False


def _tmpfs(path: Path, options: str) -> None:
    if _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", _MS_NOSUID | _MS_NODEV,
                   options.encode()) != 0:
        e = ctypes.get_errno()
        raise VkernelError(f"cannot mount the run's private file system on {path}: "
                           f"{os.strerror(e)}", hint="kiln run as root needs to mount tmpfs")


def build(spec: "RunSpec", run: "RunDir", disk: int) -> "RunSpec":
    """Steps 2 and 3 above, in the run's first process (host root, own mount namespace):
    the spec to run with (lower layer, upper layer and volumes as mounted here)."""
    fs = run.path / "fs"
    _tmpfs(fs, f"mode=0711,size={SCRATCH_BYTES}")
    for name in ("scratch", "lower"):
        os.mkdir(fs / name, 0o755)
    _devpts(fs / "pts")
    uids, gids = userns.id_ranges()
    ns = userns.make_namespace(uids, gids)
    userns.idmapped_rootfs(str(spec.rootfs), str(fs / "lower"), ns, str(fs))
    upper = spec.upper
    if upper is None:
        upper = fs / "upper"
        os.mkdir(upper, 0o755)
        _tmpfs(upper, f"mode=0755,size={disk}")
    volumes = []
    for i, v in enumerate(spec.volumes):
        at = fs / f"volume-{i}"
        if v.tmpfs:
            os.mkdir(at, 0o755)
            _tmpfs(at, v.tmpfs)
            os.chown(at, uids.first, gids.first)        # the guest's root owns it
            v = dataclasses.replace(v, host=str(at))
        elif v.idmap:
            os.mkdir(at, 0o755)
            userns.idmapped_mount(v.host, str(at), ns, readonly=v.readonly)
            v = dataclasses.replace(v, host=str(at))
        volumes.append(v)
    iso = Isolation(ns, min(uids.count, gids.count), _private_fs(fs, uids.first, gids.first),
                    str(upper) if spec.readonly_root else "")
    return dataclasses.replace(spec, rootfs=fs / "lower", upper=Path(upper),
                               volumes=tuple(volumes), isolation=iso)


def _devpts(path: Path) -> None:
    """The run's own instance of devpts (its /dev/pts, /dev/ptmx: pseudo-terminals numbered
    from 0, none of the host's), as a container runtime mounts one. Left out when the kernel
    refuses: the guest then has no pseudo-terminals (ENOENT), nothing else changes."""
    os.mkdir(path, 0o755)
    if _libc.mount(b"devpts", os.fsencode(path), b"devpts", _MS_NOSUID | _MS_NOEXEC,
                   b"newinstance,ptmxmode=0666,mode=0620") != 0:
        os.rmdir(path)


def devpts_of(iso: "Isolation | None") -> str | None:
    """The run's devpts instance as the guest's processes reach it, None without one."""
    if iso is None or iso.fs_fd < 0:
        return None
    path = f"/proc/self/fd/{iso.fs_fd}/pts"
    return path if os.path.exists(f"{path}/ptmx") else None


def _private_fs(fs: Path, uid: int, gid: int) -> int:
    """An O_PATH fd of the run's tmpfs, whose ``scratch/`` becomes this process's tempdir
    (the skeleton and other scratch files): reached through the descriptor, since the state
    directory above it is closed to the run's unprivileged ids."""
    fs_fd = os.open(fs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    os.chown(fs / "scratch", uid, gid)
    tempfile.tempdir = f"/proc/self/fd/{fs_fd}/scratch"
    return fs_fd


def enter_pid_namespace(first_pid: int) -> None:
    """Before :func:`join`, as host root: this process's next children are born in the pid
    namespace of the run whose first process is ``first_pid``."""
    _setns(first_pid, "pid", _CLONE_NEWPID)


def join(spec: "RunSpec", target: JoinTarget, cgroup: "RunCgroup | None") -> "RunSpec":
    """What :func:`build` gives the first process, for a new process of a live run (host
    root, forked in the run's pid namespace after :func:`enter_pid_namespace`): it joins the
    run's cgroup and mount namespace and is given the run's lower and upper layers and
    volumes as mounted there; :func:`drop` then takes it into the run's user namespace and
    locks it down exactly as the first process. Nothing of the host stays reachable: the
    mount namespace is the run's, the user namespace has no host privilege."""
    if cgroup is not None:
        cgroup.join()
    ns = os.open(f"/proc/{target.first_pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    try:
        # Opened before joining the mount namespace, whose /proc is the run's pid namespace's
        # (where the first process has another number).
        net = _ns_fd(target.first_pid, "net")
        try:
            _setns(target.first_pid, "mnt", _CLONE_NEWNS)
            _setns_fd(net, target.first_pid, "net", _CLONE_NEWNET)   # the run's loopback
        finally:
            os.close(net)
    except BaseException:
        os.close(ns)
        raise
    fs = target.fs
    volumes = []
    for i, v in enumerate(target.volumes):
        if v.tmpfs or v.idmap:
            v = dataclasses.replace(v, host=str(fs / f"volume-{i}"))
        volumes.append(v)
    uids, gids = userns.id_ranges()
    upper = fs / "upper" if spec.upper is None else spec.upper
    fs_fd = _private_fs(fs, uids.first, gids.first)
    # The first process's skeleton (the only one: joining processes share it), so /proc lists
    # every process of the run.
    made = sorted(os.scandir(fs / "scratch"), key=lambda e: e.stat(follow_symlinks=False).st_mtime)
    skel = next((e.name for e in made if e.name.startswith("kiln-synth-") and e.is_dir()), "")
    iso = Isolation(ns, min(uids.count, gids.count), fs_fd,
                    skeleton=f"{tempfile.gettempdir()}/{skel}" if skel else "")
    return dataclasses.replace(spec, rootfs=fs / "lower", upper=Path(upper),
                               volumes=tuple(volumes), isolation=iso, net_namespace=True)


def _ns_fd(pid: int, kind: str) -> int:
    try:
        return os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise VkernelError(f"cannot join the run of process {pid}: {e.strerror}",
                           hint="the container is not running") from None


def _setns_fd(fd: int, pid: int, kind: str, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        e = ctypes.get_errno()
        raise VkernelError(f"cannot join the {kind} namespace of process {pid}: "
                           f"{os.strerror(e)}", hint="joining a run needs host root")


def _setns(pid: int, kind: str, nstype: int) -> None:
    fd = _ns_fd(pid, kind)
    try:
        _setns_fd(fd, pid, kind, nstype)
    finally:
        os.close(fd)


def drop(iso: Isolation) -> None:
    """Step 4: into the run's user namespace for good, then lock the process down. Python's
    own files may be in a directory only host root can read: import everything first."""
    preload()
    if iso.readonly_upper and _libc.mount(
            None, os.fsencode(iso.readonly_upper), None,
            _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, None) != 0:
        e = ctypes.get_errno()
        raise VkernelError(f"cannot make the root filesystem read-only: {os.strerror(e)}")
    userns.enter(iso.userns_fd)
    lock_down()


def lock_down() -> None:
    """Import what vkernel may import later, set no_new_privs and load the seccomp filter."""
    preload()
    userns.no_new_privs()
    from vkernel import seccomp
    seccomp.lock_down()


_preloaded = False


def preload() -> None:
    """Import every module vkernel (and what it imports lazily) may need from now on: after
    the lock-down the process can neither map a C extension's code nor, in the user
    namespace, read files of the host's root-only directories."""
    global _preloaded
    if _preloaded:
        return
    _preloaded = True
    import importlib
    import pkgutil

    import vkernel
    import vkernel.syscalls
    for pkg in (vkernel, vkernel.syscalls):
        for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
            # vkernel._gate is no Python module: vkernel.gate loads it with ctypes.
            if info.name not in ("vkernel.cli", "vkernel.syscalls.gendoc", "vkernel._gate"):
                importlib.import_module(info.name)
    for name in ("select", "mmap", "json", "struct", "termios", "fcntl", "resource", "signal",
                 "formats.index", "formats.megabinary", "cbor2", "blake3", "errno",
                 "encodings.utf_8", "encodings.ascii", "encodings.latin_1", "unicodedata"):
        importlib.import_module(name)
