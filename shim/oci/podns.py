"""A pod's shared namespaces: what ``kiln-oci create`` joins by path, or makes, for a container.

A CRI runtime (containerd's CRI plugin, driven by the kubelet) runs a pod as
one sandbox container (the pause process) and the pod's containers, and
writes into each container's config.json the namespaces the pod shares:
``{"type": "network", "path": "/var/run/netns/cni-…"}``, the network CNI set
up for the pod, and ``{"type": "uts", "path": "/proc/PID/ns/uts"}``, the
sandbox's. kiln-oci honours them as runc does, in the ``create`` process
before it forks the run's supervisor, so that every process of the container
inherits them:

- **network** with a path: joined. The guest's sockets are then the pod's
  network, shared with the pod's other containers (they meet on its
  127.0.0.1) and configured by CNI, instead of a loopback of the run's own;
  every guest user may listen on any port there, as in a runc container.
  Without a path, the run has a loopback of its own, as under ``kiln run``.
  With no entry at all the container keeps the runtime's network, as the
  runtime spec says and runc does: the host's (a pod with ``hostNetwork:
  true``, ``docker run --network host``), as ``kiln run --network host``.
- **uts**: with a path, joined, and its host name is the guest's; without
  one, a new one is made and the config's ``hostname`` set in it, so that
  the containers joining it later (and the pod's ``/etc/hostname``) agree.
- **ipc**: accepted either way. vkernel's guests have no System V IPC; what
  a pod shares for POSIX shared memory is its ``/dev/shm``, which CRI binds
  into every container and kiln-oci honours (shim/oci/bundle.py).
- **pid**, **mount** and **user** with a path are refused by
  shim/oci/bundle.py: vkernel makes its own for every container (a pod with
  ``shareProcessNamespace`` cannot run under kiln-oci).
"""
from __future__ import annotations

import ctypes
import os
import socket
from dataclasses import dataclass
from typing import Any

from formats.errors import KilnError

__all__ = ["PodNamespaces", "enter"]

CLONE_NEWUTS, CLONE_NEWNET = 0x0400_0000, 0x4000_0000
_libc = ctypes.CDLL(None, use_errno=True)


class PodNamespaceError(KilnError):
    """A namespace config.json names cannot be joined or made."""


@dataclass(frozen=True)
class PodNamespaces:
    """What :func:`enter` did: whether the container uses the network this process is in
    (the pod's, joined; or the host's, which config.json does not ask to leave)."""
    network_shared: bool


def _entries(config: dict[str, Any]) -> dict[str, str | None]:
    linux = config.get("linux") or {}
    out: dict[str, str | None] = {}
    for ns in linux.get("namespaces") or []:
        if isinstance(ns, dict) and isinstance(ns.get("type"), str):
            path = ns.get("path")
            out[ns["type"]] = path if isinstance(path, str) and path else None
    return out


def _setns(path: str, nstype: int, kind: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise PodNamespaceError(f"config.json: cannot open the {kind} namespace {path}: "
                                f"{e.strerror}",
                                hint="the pod's sandbox has ended: start the pod again") from None
    try:
        if _libc.setns(fd, nstype) != 0:
            err = ctypes.get_errno()
            raise PodNamespaceError(f"config.json: cannot join the {kind} namespace {path}: "
                                    f"{os.strerror(err)}",
                                    hint=f"{path} must be a {kind} namespace, and kiln-oci "
                                         "runs as root")
    finally:
        os.close(fd)


def _unprivileged_ports() -> None:
    """Every guest user may listen on any port of the pod's network: a guest's root is an
    unprivileged host id, and a runc container's root holds CAP_NET_BIND_SERVICE."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as f:
            f.write("0")
    except OSError:
        pass


def _new_uts(hostname: str) -> None:
    if _libc.unshare(CLONE_NEWUTS) != 0:
        err = ctypes.get_errno()
        raise PodNamespaceError(f"cannot make the container's UTS namespace: {os.strerror(err)}",
                                hint="kiln-oci runs as root")
    if hostname:
        try:
            socket.sethostname(hostname)
        except (OSError, ValueError) as e:
            raise PodNamespaceError(f"config.json: hostname {hostname!r} cannot be set: {e}",
                                    hint="a host name is at most 64 bytes") from None


def enter(config: dict[str, Any]) -> PodNamespaces:
    """Join or make the namespaces ``config`` shares (see the module's text), in this process
    (kiln-oci create, as root), before it forks the run's supervisor."""
    entries = _entries(config)
    if "uts" in entries:
        path = entries["uts"]
        if path is not None:
            _setns(path, CLONE_NEWUTS, "uts")
        else:
            _new_uts(config.get("hostname") or "")
    net_path = entries.get("network")
    if net_path is not None:
        _setns(net_path, CLONE_NEWNET, "network")
        _unprivileged_ports()
    return PodNamespaces(network_shared=net_path is not None or "network" not in entries)
