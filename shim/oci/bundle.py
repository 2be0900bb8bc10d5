"""An OCI runtime bundle (config.json + rootfs) as the vkernel run it describes.

What of the runtime spec kiln-oci honours, and how (docs/integration.md has
the table): ``process`` (args, env, cwd, user, terminal, rlimits;
noNewPrivileges is always on), ``root`` (path, readonly), ``hostname``,
``mounts`` (bind mounts of directories become volumes, tmpfs becomes a tmpfs of
the run, proc/sysfs/devpts/mqueue/cgroup and the tmpfs on /dev are vkernel's
own), ``linux.resources`` memory and pids limits, and ``annotations``. What it
cannot honour and that would change what the guest may do is refused with an
error naming the field (a mount of another type, a file bind mount, a
namespace to join, custom id mappings, devices); what does not widen the
guest's reach is accepted and documented (capabilities: vkernel's guests have
no host privilege at all; the seccomp profile: vkernel's own filter is
stricter on the host side; cpu shares; hooks are not run).
"""
from __future__ import annotations

import json
import os
import resource
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from formats.annotations import MEGABINARY_PATH
from formats.errors import KilnError
from vkernel import caps
from vkernel.netpolicy import HOST, ISOLATED, NetPolicy
from vkernel.runtime import RunSpec
from vkernel.vfs import Volume

__all__ = ["BundleError", "OciProcess", "check_linux", "load_config", "megabinary_of", "run_spec",
           "process_spec"]

_VKERNEL_OWN = {"proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2"}
"""Mount types whose file systems vkernel provides itself (or, for /sys, leaves to the image)."""
_BIND_OPTIONS = {"bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "private", "rprivate",
                 "slave", "rslave", "shared", "rshared", "relatime", "norelatime", "strictatime",
                 "nostrictatime", "noatime", "atime", "suid", "dev", "exec"}
_RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}


class BundleError(KilnError):
    """config.json asks for something kiln-oci cannot do, or is malformed."""


@dataclass(frozen=True)
class OciProcess:
    """The ``process`` object (config.json, or exec's --process file), as vkernel takes it."""
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str                    # "uid:gid" ("" when absent)
    terminal: bool
    rlimits: tuple[tuple[int, int, int], ...]
    capabilities: tuple[int, ...] = ()   # (effective, permitted, inheritable, bounding,
                                         # ambient); () when absent: a container's default
    no_new_privs: bool = False           # noNewPrivileges: set-user-ID bits do nothing


def load_config(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise BundleError(f"{path} does not exist",
                          hint="--bundle names the directory holding config.json") from None
    except (OSError, ValueError) as e:
        raise BundleError(f"{path} is unreadable: {e}") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path} is not a JSON object")
    return data


def _get(obj: Any, key: str, kind: type, default: Any, where: str) -> Any:
    if not isinstance(obj, dict):
        raise BundleError(f"config.json: {where} must be an object")
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise BundleError(f"config.json: {where}.{key} must be a {kind.__name__}")
    return value


def process_spec(proc: Any, where: str = "process") -> OciProcess:
    args = _get(proc, "args", list, [], where)
    if not args or not all(isinstance(a, str) for a in args):
        raise BundleError(f"{where}.args must be a non-empty list of strings",
                          hint="the image has no Entrypoint or Cmd: give a command")
    env = _get(proc, "env", list, [], where)
    user = _get(proc, "user", dict, {}, where)
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    if not isinstance(uid, int) or not isinstance(gid, int) or uid < 0 or gid < 0:
        raise BundleError(f"{where}.user.uid and .gid must be non-negative integers")
    if user.get("username"):
        raise BundleError(f"{where}.user.username is for Windows containers")
    limits = []
    for i, rl in enumerate(_get(proc, "rlimits", list, [], where)):
        name = _get(rl, "type", str, "", f"{where}.rlimits[{i}]")
        if name not in _RLIMITS:
            raise BundleError(f"{where}.rlimits[{i}].type {name!r} is not a Linux resource limit")
        soft = _get(rl, "soft", int, 0, f"{where}.rlimits[{i}]")
        hard = _get(rl, "hard", int, 0, f"{where}.rlimits[{i}]")
        limits.append((_RLIMITS[name], soft, hard))
    if not any(r[0] == resource.RLIMIT_NOFILE for r in limits):
        # Limits the config leaves out are the runtime's own, as under runc (vkernel's fd
        # table would otherwise hold 1024).
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limits.append((resource.RLIMIT_NOFILE, soft, hard))
    cwd = _get(proc, "cwd", str, "/", where) or "/"
    if not cwd.startswith("/"):
        raise BundleError(f"{where}.cwd {cwd!r} must be an absolute path")
    return OciProcess(tuple(args), tuple(str(e) for e in env), cwd, f"{uid}:{gid}",
                      bool(_get(proc, "terminal", bool, False, where)), tuple(limits),
                      _capabilities(proc, where),
                      bool(_get(proc, "noNewPrivileges", bool, False, where)))


_CAP_SETS = ("effective", "permitted", "inheritable", "bounding", "ambient")


def _capabilities(proc: Any, where: str) -> tuple[int, ...]:
    """``process.capabilities`` as the five sets, given as runc applies them (a set left out
    is empty); () without the object."""
    given = _get(proc, "capabilities", dict, None, where)
    if given is None:
        return ()
    out = []
    for name in _CAP_SETS:
        names = _get(given, name, list, [], f"{where}.capabilities")
        if not all(isinstance(n, str) for n in names):
            raise BundleError(f"{where}.capabilities.{name} must be a list of strings")
        try:
            out.append(caps.parse(names, f"{where}.capabilities.{name}"))
        except ValueError as e:
            raise BundleError(str(e), hint="capability names as in capabilities(7): "
                                           "CAP_NET_BIND_SERVICE, ...") from None
    return tuple(out)


def rootfs_of(bundle: Path, config: dict[str, Any]) -> Path:
    root = _get(config, "root", dict, {}, "config")
    path = Path(_get(root, "path", str, "rootfs", "root"))
    rootfs = path if path.is_absolute() else bundle / path
    if not rootfs.is_dir():
        raise BundleError(f"the container's root filesystem {rootfs} is not a directory",
                          hint="root.path in config.json names it, relative to the bundle")
    return rootfs


def megabinary_of(rootfs: Path) -> Path:
    """The megabinary ``recompile`` put in the image, or a refusal: kiln-oci never runs a
    program natively. No symbolic link is followed (the image's files are untrusted)."""
    path = rootfs
    for part in MEGABINARY_PATH.strip("/").split("/"):
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise BundleError(
                f"this image was not recompiled by Kiln: its root filesystem has no "
                f"{MEGABINARY_PATH}, and kiln-oci never runs a program natively",
                hint="recompile it first: recompile IMAGE -o OUT.tar --format oci-archive, "
                     "then ctr image import OUT.tar") from None
        if stat.S_ISLNK(st.st_mode):
            raise BundleError(f"{MEGABINARY_PATH} in the image is a symbolic link",
                              hint="the recompiler writes a regular file there; re-run recompile")
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{MEGABINARY_PATH} in the image is not a regular file")
    return path


def _volumes(config: dict[str, Any], rootfs: Path) -> tuple[Volume, ...]:
    out = []
    for i, m in enumerate(_get(config, "mounts", list, [], "config")):
        where = f"mounts[{i}]"
        dest = _get(m, "destination", str, "", where)
        kind = _get(m, "type", str, "", where)
        source = _get(m, "source", str, "", where)
        options = [str(o) for o in _get(m, "options", list, [], where)]
        if not dest.startswith("/"):
            raise BundleError(f"config.json: {where}.destination {dest!r} must be absolute")
        norm = os.path.normpath(dest)
        if kind in _VKERNEL_OWN or (kind == "tmpfs" and norm == "/dev"):
            continue                                # vkernel's own /proc, /dev, /sys
        if kind == "tmpfs":
            keep = [o for o in options if o.startswith(("size=", "mode=", "nr_inodes="))]
            out.append(Volume("", norm, "ro" in options, False,
                              ",".join(keep or ["mode=1777"])))
            continue
        if kind in ("bind", "none", "") and ({"bind", "rbind"} & set(options) or kind == "bind"):
            unknown = set(options) - _BIND_OPTIONS
            if unknown:
                raise BundleError(f"config.json: {where} ({dest}): bind options "
                                  f"{sorted(unknown)} are not supported by kiln-oci")
            if os.path.isfile(source) and not norm.startswith(("/proc/", "/dev/")):
                continue                            # a file: copied in (see _files)
            if not os.path.isdir(source):
                raise BundleError(
                    f"config.json: {where}: {source} -> {dest}: kiln-oci binds directories, "
                    "and regular files outside /dev and /proc (as copies)",
                    hint="bind the directory that holds it instead")
            if norm == "/" or (norm.startswith(("/proc/", "/dev/")) and norm != "/dev/shm") \
                    or norm in ("/proc", "/dev"):
                # /dev/shm may be bound: a pod's containers share the sandbox's (CRI does it).
                raise BundleError(f"config.json: {where}: cannot bind {source} at {dest}: "
                                  "/, /proc and /dev (but for /dev/shm) are vkernel's own")
            out.append(Volume(os.path.realpath(source), norm, "ro" in options, True))
            continue
        raise BundleError(f"config.json: {where}: mounts of type {kind!r} ({dest}) are not "
                          "supported by kiln-oci",
                          hint="kiln-oci supports bind mounts of directories and tmpfs")
    return tuple(out)


_MAX_FILE = 1 << 20


def _files(config: dict[str, Any]) -> tuple[tuple[str, bytes, int], ...]:
    """Bind mounts of regular files (dockerd's and the kubelet's /etc/hosts, /etc/hostname,
    /etc/resolv.conf): copied into the container's tree at create time. Later changes of the
    host file are not seen, and the guest's writes stay in the container."""
    out = []
    for m in _get(config, "mounts", list, [], "config"):
        source, dest = m.get("source", ""), os.path.normpath(m.get("destination", "/"))
        options = m.get("options") or []
        if m.get("type") not in ("bind", "none", "", None) or not (
                m.get("type") == "bind" or {"bind", "rbind"} & set(options)):
            continue
        if not os.path.isfile(source) or dest.startswith(("/proc/", "/dev/")):
            continue
        st = os.stat(source)
        if st.st_size > _MAX_FILE:
            raise BundleError(f"config.json: the file bind mount {source} -> {dest} is larger "
                              f"than {_MAX_FILE} bytes", hint="bind its directory instead")
        with open(source, "rb") as f:
            out.append((dest, f.read(_MAX_FILE), stat.S_IMODE(st.st_mode) & 0o777))
    return tuple(out)


def check_linux(config: dict[str, Any]) -> None:
    """Refuse what of ``linux`` kiln-oci cannot honour (before anything is joined or made)."""
    linux = _get(config, "linux", dict, {}, "config")
    for i, ns in enumerate(_get(linux, "namespaces", list, [], "linux")):
        kind = _get(ns, "type", str, "", f"linux.namespaces[{i}]")
        path = _get(ns, "path", str, "", f"linux.namespaces[{i}]")
        if path and kind not in ("network", "ipc", "uts", "cgroup"):
            raise BundleError(f"config.json: linux.namespaces[{i}] asks to join the {kind} "
                              f"namespace {path}; kiln-oci makes a new one for every container",
                              hint="shared pid, mount or user namespaces are not supported")
    if linux.get("uidMappings") or linux.get("gidMappings"):
        raise BundleError("config.json: linux.uidMappings/gidMappings are not supported: "
                          "kiln-oci maps guest ids to its own unprivileged range",
                          hint="the range is the 'kiln' entry of /etc/subuid and /etc/subgid")
    if linux.get("devices"):
        raise BundleError("config.json: linux.devices is not supported: guests see vkernel's "
                          "own /dev (null, zero, full, random, urandom, tty)",
                          hint="leave out --device")


def run_spec(bundle: Path, config: dict[str, Any], megabinary: Path, digest: str,
             audit_log: Path | None, network_shared: bool = False) -> RunSpec:
    """The vkernel run config.json describes. ``network_shared``: the guest uses the network
    this process is in: a pod's it joined, or the host's when config.json has no network
    namespace (shim/oci/podns.py)."""
    rootfs = rootfs_of(bundle, config)
    proc = process_spec(config.get("process"))
    check_linux(config)
    linux = _get(config, "linux", dict, {}, "config")
    res = _get(linux, "resources", dict, {}, "linux")
    memory = _get(_get(res, "memory", dict, {}, "linux.resources"), "limit", int, 0,
                  "linux.resources.memory")
    pids = _get(_get(res, "pids", dict, {}, "linux.resources"), "limit", int, 0,
                "linux.resources.pids")
    root = _get(config, "root", dict, {}, "config")
    return RunSpec(
        rootfs=rootfs, megabinary=megabinary, argv=proc.args, env=proc.env, workdir=proc.cwd,
        audit_log=audit_log, volumes=_volumes(config, rootfs), pids_limit=max(pids, 0),
        memory=max(memory, 0), user=proc.user, pid_namespace=True, tty=proc.terminal,
        lockdown=True, megabinary_digest=digest,
        # Without a hostname a new UTS namespace keeps the host's, as under runc.
        hostname=_get(config, "hostname", str, "", "config") or os.uname().nodename,
        rlimits=proc.rlimits, cap_sets=proc.capabilities, no_new_privs=proc.no_new_privs,
        readonly_root=bool(_get(root, "readonly", bool, False, "root")), files=_files(config),
        # A loopback of its own (docs/threat-model.md), or the network it shares.
        net=NetPolicy(HOST if network_shared else ISOLATED))
