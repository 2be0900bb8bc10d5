"""An image's ``User`` (or ``kiln run --user``) resolved in its /etc/passwd and /etc/group.

What a container's first process runs as: ids, supplementary groups (the
primary group and those that list the user, as ``initgroups`` and ``su``
make them) and home, as Docker and runc resolve them. Shared by the two sides
that need it: ``recompiler/bundle.py`` writes the ids into an OCI bundle's
``process.user``, and ``vkernel/imageuser.py`` gives them to the guest.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from formats.errors import KilnError

NGROUPS_MAX = 65536
"""Supplementary groups a Linux process may have at most."""
_MAX_ID = 0xFFFFFFFE


@dataclass(frozen=True)
class User:
    """An image ``User`` (or ``kiln run --user``) resolved in the image's /etc/passwd and /etc/group."""
    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str | None            # passwd name, None for a uid that has no entry
    home: str                   # passwd home, "/" without an entry (as docker)


def tree_reader(root: Path) -> Callable[[str], bytes | None]:
    """``read`` for :func:`resolve_user` over an unpacked root directory (None: no such file).
    The path is taken as given under ``root``: callers pass only /etc/passwd and /etc/group of
    a tree they unpacked themselves."""
    def read(path: str) -> bytes | None:
        try:
            return (root / path.lstrip("/")).read_bytes()
        except OSError:
            return None
    return read


def _table(text: bytes | None) -> list[list[str]]:
    if not text:
        return []
    rows = []
    for line in text.decode("utf-8", "replace").splitlines():
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def resolve_user(spec: str, read: Callable[[str], bytes | None], where: str = "the image") -> User:
    """Resolve ``uid``, ``uid:gid``, ``name``, ``name:group`` (any mix) as docker does.

    ``read(path)`` returns a guest file's bytes or None. The primary group is the
    passwd entry's (0 for a uid without one) unless a group is given. Without a
    group, the supplementary groups are the primary group plus every /etc/group
    entry that lists the user's name (as ``initgroups``, which ``su`` also
    uses); with one, that group only.
    """
    spec = spec.strip()
    name, _, group = spec.partition(":")
    if not name:
        name = "0"
    passwd = [r for r in _table(read("/etc/passwd")) if len(r) >= 7]
    groups = [r for r in _table(read("/etc/group")) if len(r) >= 3]
    entry = None
    if name.isdigit():
        uid = int(name)
        entry = next((r for r in passwd if r[2] == name), None)
    else:
        entry = next((r for r in passwd if r[0] == name), None)
        if entry is None or not entry[2].isdigit():
            raise KilnError(f"user {name!r} is not in {where}'s /etc/passwd",
                            hint="give a numeric --user UID[:GID], or a name from the image's "
                                 "/etc/passwd")
        uid = int(entry[2])
    if uid > _MAX_ID:
        raise KilnError(f"user id {uid} is out of range", hint="uids are 0..4294967294")
    gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    if gid > _MAX_ID:
        raise KilnError(f"user {name!r} has group id {gid} in {where}'s /etc/passwd, out of range",
                        hint="gids are 0..4294967294; fix the image's /etc/passwd")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((r for r in groups if r[0] == group and r[2].isdigit()), None)
            if g is None:
                raise KilnError(f"group {group!r} is not in {where}'s /etc/group",
                                hint="give a numeric --user UID:GID, or a group from the image's "
                                     "/etc/group")
            gid = int(g[2])
        if gid > _MAX_ID:
            raise KilnError(f"group id {gid} is out of range", hint="gids are 0..4294967294")
    uname = entry[0] if entry is not None else None
    supp = [gid]
    if uname is not None and not group:       # an explicit group is the only one (as runc)
        for r in groups:
            members = r[3].split(",") if len(r) >= 4 else []
            if uname in members and r[2].isdigit() and int(r[2]) <= _MAX_ID \
                    and int(r[2]) not in supp:
                supp.append(int(r[2]))
        if len(supp) > NGROUPS_MAX:
            raise KilnError(f"user {uname!r} is in {len(supp)} groups in {where}'s /etc/group, "
                            f"more than Linux allows ({NGROUPS_MAX})",
                            hint="give --user UID:GID to run with one group")
    home = entry[5] if entry is not None and entry[5] else "/"
    return User(uid, gid, tuple(supp), uname, home)
