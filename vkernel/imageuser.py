"""An image's ``User`` given to the guest's first process: the resolution is formats/imageuser.py's
(shared with recompiler/bundle.py); vkernel/creds.py then gives the ids to the process.
"""
from __future__ import annotations

import os

from formats.errors import KilnError
from formats.imageuser import User, resolve_user
from vkernel.creds import Creds

__all__ = ["User", "resolve_user", "creds_of", "check_possible"]


def creds_of(user: User) -> Creds:
    """The credentials a process running as ``user`` has (real, effective and saved ids alike)."""
    return Creds(user.uid, user.uid, user.uid, user.gid, user.gid, user.gid, user.groups)


def check_possible(user: User) -> None:
    """KilnError when ``user`` cannot be given to the guest (kiln does not run as root)."""
    if os.geteuid() == 0:
        return
    if (user.uid, user.gid) != (os.getuid(), os.getgid()):
        raise KilnError(
            f"cannot run the guest as uid {user.uid} gid {user.gid}: kiln is not running as root "
            f"(it runs as uid {os.getuid()} gid {os.getgid()})",
            hint="run kiln as root (guest ids are real host ids), or pass "
                 f"--user {os.getuid()}:{os.getgid()}")
