"""``--console-socket``: hand a container's pseudo-terminal master to its manager, as runc does.

containerd's shim (and ``runc``'s own tools) listen on a unix socket and read
one message carrying the master's descriptor (SCM_RIGHTS) and the terminal's
name; they then relay the terminal to the user (``ctr run -t``).
"""
from __future__ import annotations

import os
import socket
from typing import Callable

from shim.oci.bundle import BundleError

__all__ = ["sender"]


def sender(path: str) -> Callable[[int], None]:
    """A function that sends a pty master to the console socket at ``path``."""
    def send(master: int) -> None:
        try:
            name = os.ttyname(master)
        except OSError:
            name = "/dev/ptmx"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(path)
                socket.send_fds(s, [name.encode()], [master])
        except OSError as e:
            raise BundleError(f"cannot send the terminal to --console-socket {path}: "
                              f"{e.strerror or e}") from None
    return send
