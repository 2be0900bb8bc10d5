"""A container's process between its set-up and its guest (vkernel/containers.py).

The run's first process (and each process ``kiln-oci exec`` adds) reports to
whoever made it that it is ready, or why not, as one JSON line on
``RunSpec.ready_fd``; the first process then waits for ``start`` (one byte on
``RunSpec.start_fd``) before the guest's first instruction. Before any of that,
while still host root, it writes the files the container's config binds in
(``RunSpec.files``) into its upper layer.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from vkernel.errors import VkernelError

if TYPE_CHECKING:
    from vkernel.runtime import Runtime, RunSpec


def place_files(rt: "Runtime") -> None:
    """Write ``spec.files`` into the run's tree (its upper layer), owned by the image's root,
    before the first process gives up host root (and before a read-only root is sealed)."""
    low = os.fstat(rt.vfs.lower_fd)
    for path, data, mode in rt.spec.files:
        try:
            _make_parents(rt, path)
            fd = rt.vfs.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        except OSError as e:
            raise VkernelError(f"cannot place {path} in the container: {e.strerror}",
                               hint="its directory must exist in the image") from None
        try:
            os.write(fd, data)
            os.fchmod(fd, mode)
            if os.geteuid() == 0:
                os.fchown(fd, low.st_uid, low.st_gid)
        finally:
            os.close(fd)


def _make_parents(rt: "Runtime", path: str) -> None:
    """The directories above a bound file that the image lacks (a pause image has no /etc),
    made as runc makes a mount point's: mode 0755, in the upper layer."""
    parts = [p for p in os.path.dirname(path).split("/") if p]
    for i in range(1, len(parts) + 1):
        d = "/" + "/".join(parts[:i])
        if not rt.vfs.is_dir(d):
            rt.vfs.mkdir(d, 0o755)


ready_sent = False
"""Whether this (container's first) process has reported ready: later errors go to stderr."""


def ready_then_wait(spec: "RunSpec") -> None:
    """A container's process, set up and locked down (vkernel/containers.py): report ready,
    then (its first process) wait for ``start``, one byte, before the guest's first
    instruction."""
    global ready_sent
    os.write(spec.ready_fd, b'{"ready": true}\n')
    os.close(spec.ready_fd)
    ready_sent = True
    if spec.start_fd < 0:
        return
    while True:
        try:
            got = os.read(spec.start_fd, 1)
            break
        except InterruptedError:
            continue
    os.close(spec.start_fd)
    if not got:
        raise VkernelError("the container was deleted before it started")
