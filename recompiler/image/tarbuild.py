"""Deterministic layer tars: what Kiln adds to an image, byte-identical for identical input.

Entries are sorted by path, missing parent directories are added (0755),
owners are the entries' numeric uid/gid (0 unless given) with empty names, mtimes are fixed integers (so the PAX
format adds no time records) and the tar is written in stream mode, so the
same entries always give the same bytes.
"""
from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

from .errors import OutputError
from formats.trees import walk_tree

__all__ = ["LayerEntry", "file_entry", "dir_entry", "symlink_entry", "hardlink_entry",
           "write_layer_tar", "measure_layer_tar", "rootfs_entries", "FIXED_MTIME"]

FIXED_MTIME = 0
"""mtime of every entry Kiln creates (the epoch), unless an entry says otherwise."""

_KINDS = ("file", "dir", "symlink", "hardlink", "chr", "blk", "fifo")


@dataclass(frozen=True)
class LayerEntry:
    """One entry of a layer Kiln builds.

    ``path`` is the guest path ("/kiln/megabinary"); a file's content is
    ``data`` or the host file ``source`` (read while writing, never loaded
    whole); ``target`` is a link's target.
    """

    path: str
    kind: str = "file"
    mode: int = 0o644
    data: bytes | None = None
    source: Path | None = None
    target: str | None = None
    mtime: int = FIXED_MTIME
    major: int = 0
    minor: int = 0
    uid: int = 0
    gid: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise OutputError(f"layer entry {self.path!r}: unknown kind {self.kind!r}")
        parts = self.path.strip("/").split("/")
        if not self.path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise OutputError(f"layer entry {self.path!r}: give an absolute, normalized guest "
                              "path without '.' or '..' components")
        if self.kind == "file" and (self.data is None) == (self.source is None):
            raise OutputError(f"layer entry {self.path!r}: a file needs exactly one of data "
                              "or source")
        if self.kind in ("symlink", "hardlink") and not self.target:
            raise OutputError(f"layer entry {self.path!r}: a {self.kind} needs a target")

    @property
    def name(self) -> str:
        return self.path.strip("/")


def file_entry(path: str, content: bytes | Path, mode: int = 0o644) -> LayerEntry:
    """A regular file from bytes or from a host file."""
    if isinstance(content, (bytes, bytearray)):
        return LayerEntry(path, "file", mode, data=bytes(content))
    return LayerEntry(path, "file", mode, source=Path(content))


def dir_entry(path: str, mode: int = 0o755) -> LayerEntry:
    return LayerEntry(path, "dir", mode)


def symlink_entry(path: str, target: str) -> LayerEntry:
    return LayerEntry(path, "symlink", 0o777, target=target)


def hardlink_entry(path: str, target: str) -> LayerEntry:
    """A hard link to the guest path ``target`` (which must come earlier in sort order)."""
    return LayerEntry(path, "hardlink", 0o644, target=target)


def _with_parents(entries: Iterable[LayerEntry]) -> list[LayerEntry]:
    by_path: dict[str, LayerEntry] = {}
    for e in entries:
        if e.path in by_path:
            raise OutputError(f"layer entry {e.path!r} given twice")
        by_path[e.path] = e
    for e in list(by_path.values()):
        parts = e.name.split("/")
        # Nearest parent first: once one is a directory entry, its own parents are seen
        # to with it (this loop reaches every entry), so deep trees cost no more than once.
        for i in range(len(parts) - 1, 0, -1):
            p = "/" + "/".join(parts[:i])
            parent = by_path.get(p)
            if parent is None:
                by_path[p] = dir_entry(p)
            elif parent.kind != "dir":
                raise OutputError(f"layer entry {e.path!r}: its parent {p!r} is not a directory")
            else:
                break
    ordered = sorted(by_path.values(), key=lambda e: e.name.split("/"))
    # A hard link must follow its target in the tar: in each group of links to one
    # file, the first path in sort order carries the content, the others link to it.
    groups: dict[str, list[LayerEntry]] = {}
    for e in ordered:
        if e.kind == "hardlink":
            tgt = by_path.get("/" + (e.target or "").strip("/"))
            if tgt is None or tgt.kind != "file":
                raise OutputError(f"layer entry {e.path!r}: hard link target {e.target!r} "
                                  "is not a file of this layer")
            groups.setdefault(tgt.path, []).append(e)
    rewrite: dict[str, LayerEntry] = {}
    for tpath, links in groups.items():
        members = sorted([by_path[tpath], *links], key=lambda e: e.name.split("/"))
        first, content = members[0], by_path[tpath]
        rewrite[first.path] = LayerEntry(first.path, "file", content.mode, data=content.data,
                                         source=content.source, mtime=content.mtime,
                                         uid=content.uid, gid=content.gid)
        for other in members[1:]:
            rewrite[other.path] = LayerEntry(other.path, "hardlink", content.mode,
                                             target=first.path, mtime=content.mtime,
                                             uid=content.uid, gid=content.gid)
    return [rewrite.get(e.path, e) for e in ordered]


def _info(e: LayerEntry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(e.name)
    info.mode = e.mode & 0o7777
    info.mtime = int(e.mtime)
    info.uid, info.gid = int(e.uid), int(e.gid)
    info.uname = info.gname = ""
    if e.kind == "file":
        info.type = tarfile.REGTYPE
        info.size = len(e.data) if e.data is not None else os.stat(e.source).st_size  # type: ignore[arg-type]
    elif e.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif e.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = e.target or ""
    elif e.kind == "hardlink":
        info.type = tarfile.LNKTYPE
        info.linkname = (e.target or "").strip("/")
    else:
        info.type = {"chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
                     "fifo": tarfile.FIFOTYPE}[e.kind]
        info.devmajor, info.devminor = e.major, e.minor
    return info


def write_layer_tar(entries: Iterable[LayerEntry], sink: BinaryIO) -> None:
    """Write the deterministic tar of ``entries`` (parents added, sorted) to ``sink``."""
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for e in _with_parents(entries):
            info = _info(e)
            if e.kind != "file":
                tf.addfile(info)
            elif e.data is not None:
                import io
                tf.addfile(info, io.BytesIO(e.data))
            else:
                try:
                    with open(e.source, "rb") as f:  # type: ignore[arg-type]
                        tf.addfile(info, f)
                except OSError as err:
                    raise OutputError(f"layer entry {e.path!r}: cannot read {e.source}: "
                                      f"{err.strerror}") from err


class HashingSink:
    """A write-only sink that hashes (sha256 unless told) and counts what is written."""

    def __init__(self, target: BinaryIO | None = None, algo: str = "sha256") -> None:
        self.target = target
        self.algo = algo
        self.hasher = hashlib.new(algo)
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        if self.target is not None:
            self.target.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    @property
    def digest(self) -> str:
        return f"{self.algo}:{self.hasher.hexdigest()}"


def measure_layer_tar(entries: Iterable[LayerEntry]) -> tuple[str, int]:
    """(sha256 digest, size) of the tar :func:`write_layer_tar` would write."""
    sink = HashingSink()
    write_layer_tar(entries, sink)  # type: ignore[arg-type]
    return sink.digest, sink.size


def rootfs_entries(root: Path) -> list[LayerEntry]:
    """Entries for every file under a rootfs directory: modes and mtimes kept, owner 0.

    Symbolic links are kept as links (never followed); files with several
    links become hard links; device nodes and fifos are kept; sockets skipped.
    Any depth: the walk does not recurse.
    """
    root = Path(root)
    out: list[LayerEntry] = []
    seen: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in walk_tree(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            host = Path(dirpath) / name
            guest = "/" + host.relative_to(root).as_posix()
            st = os.lstat(host)
            mode = stat.S_IMODE(st.st_mode)
            mtime = int(st.st_mtime)
            if stat.S_ISDIR(st.st_mode):
                out.append(LayerEntry(guest, "dir", mode, mtime=mtime, uid=st.st_uid, gid=st.st_gid))
            elif stat.S_ISLNK(st.st_mode):
                out.append(LayerEntry(guest, "symlink", 0o777, target=os.readlink(host),
                                      mtime=mtime, uid=st.st_uid, gid=st.st_gid))
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen:
                    out.append(LayerEntry(guest, "hardlink", mode, target=seen[key],
                                          mtime=mtime, uid=st.st_uid, gid=st.st_gid))
                else:
                    seen[key] = guest
                    out.append(LayerEntry(guest, "file", mode, source=host, mtime=mtime, uid=st.st_uid, gid=st.st_gid))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append(LayerEntry(guest, "chr" if stat.S_ISCHR(st.st_mode) else "blk", mode,
                                      mtime=mtime, uid=st.st_uid, gid=st.st_gid, major=os.major(st.st_rdev),
                                      minor=os.minor(st.st_rdev)))
            elif stat.S_ISFIFO(st.st_mode):
                out.append(LayerEntry(guest, "fifo", mode, mtime=mtime, uid=st.st_uid, gid=st.st_gid))
    return out
