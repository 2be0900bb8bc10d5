"""Apply layer tars into a root directory safely: whiteouts, links, limits, no escapes.

Every path is resolved by hand from a directory file descriptor of the root,
one component at a time with ``O_NOFOLLOW``: a parent that is a symbolic link
is refused (never followed), ``..`` and absolute names are refused, and links
are created as links. Nothing is ever written outside the root. Device nodes
and fifos are recorded, not created; owners and setuid/setgid bits are
recorded, not applied (unless ``chown=True``, which applies owners only).
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from .digest import CHUNK
from .errors import BlobError, LayerError, LimitExceededError, UnsafeLayerError
from .layerstream import LayerStream, Prefixed
from .mediatypes import layer_compression
from .model import Compression, EntryMeta, LayerRef, Limits, SpecialFile, UnpackResult
from .tarheaders import HEADER_ERRORS, header_error, member_name, read_members
from formats.trees import empty_directory, remove_tree, remove_tree_at, walk_down

__all__ = ["sniff_compression", "apply_layers", "WHITEOUT_PREFIX", "OPAQUE_WHITEOUT"]

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def sniff_compression(head: bytes) -> Compression:
    """The compression a blob's first bytes show (plain tar when neither magic matches)."""
    if head[:2] == b"\x1f\x8b":
        return Compression.GZIP
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return Compression.ZSTD
    return Compression.NONE


def _path_of(parts: tuple[str, ...]) -> str:
    return "/" + "/".join(parts)


@dataclass
class _State:
    root_fd: int
    limits: Limits
    chown: bool
    files: int = 0
    bytes_written: int = 0
    special: dict[str, SpecialFile] = field(default_factory=dict)
    meta: dict[str, EntryMeta] = field(default_factory=dict)
    dir_attrs: dict[tuple[str, ...], tuple[int, float]] = field(default_factory=dict)


class _LayerApplier:
    """Applies one layer's tar members in order."""

    def __init__(self, st: _State, where: str) -> None:
        self.st = st
        self.where = where
        self.created: set[tuple[str, ...]] = set()
        self.touched: set[tuple[str, ...]] = set()

    # -- names and parents -------------------------------------------------
    def _at(self, member: str) -> str:
        """How errors name a member: the layer, then the member name (cut if long)."""
        return f"{self.where}: tar member {member_name(member)}"

    def _split(self, name: str, member: str, what: str = "entry") -> tuple[str, ...]:
        if name.startswith("/"):
            raise UnsafeLayerError(f"{self._at(member)}: absolute {what} path "
                                   "refused", layer=self.where, member=member,
                                   hint="layer entries must be relative to the image root")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if len(parts) > self.st.limits.max_depth:
            raise LimitExceededError(
                f"{self._at(member)}: {what} path has {len(parts)} "
                f"components, more than the {self.st.limits.max_depth} allowed",
                layer=self.where, member=member,
                hint="raise Limits.max_depth if this image is trusted")
        if ".." in parts:
            raise UnsafeLayerError(f"{self._at(member)}: {what} path {member_name(name)} "
                                   "contains '..'", layer=self.where, member=member,
                                   hint="the layer tries to reach outside the image root; "
                                   "do not use this image")
        return parts

    def _open_dir(self, parts: tuple[str, ...], member: str, create: bool) -> int | None:
        """An fd for directory ``parts`` under the root, walking with O_NOFOLLOW."""
        fd = os.dup(self.st.root_fd)
        try:
            for i, comp in enumerate(parts):
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    self.created.add(parts[:i + 1])
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError as err:
                    if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.stat(comp, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        raise UnsafeLayerError(
                            f"{self._at(member)}: parent "
                            f"{_path_of(parts[:i + 1])} is a symbolic link; Kiln never "
                            "writes through links (it could escape the image root)",
                            layer=self.where, member=member,
                            hint="the layer is malformed or hostile") from err
                    raise LayerError(f"{self._at(member)}: parent "
                                     f"{_path_of(parts[:i + 1])} is not a directory",
                                     layer=self.where, member=member) from err
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _remove(self, parent_fd: int, name: str, parts: tuple[str, ...]) -> bool:
        """Delete ``name`` (any type, dirs recursively) if present; True if it was."""
        path = _path_of(parts)
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            # device nodes and fifos exist only in the records
            return self.st.special.pop(path, None) is not None
        if stat.S_ISDIR(st.st_mode):
            remove_tree_at(parent_fd, name)
            prefix = _path_of(parts) + "/"
            for table in (self.st.special, self.st.meta):
                for key in [k for k in table if k.startswith(prefix)]:
                    del table[key]
            for key in [k for k in self.st.dir_attrs if k[:len(parts)] == parts]:
                del self.st.dir_attrs[key]
        else:
            os.unlink(name, dir_fd=parent_fd)
        self.st.special.pop(path, None)
        self.st.meta.pop(path, None)
        return True

    # -- members -----------------------------------------------------------
    def apply(self, tf: tarfile.TarFile) -> None:
        for m in read_members(tf, self.where):
            self.st.files += 1
            if self.st.files > self.st.limits.max_files:
                raise LimitExceededError(
                    f"{self.where}: more than {self.st.limits.max_files} entries "
                    f"(at tar member {member_name(m.name)})", layer=self.where, member=m.name,
                    hint="raise Limits.max_files if this image is trusted")
            try:
                self._member(tf, m)
            except OSError as err:
                raise LayerError(f"{self._at(m.name)}: {err.strerror or err}",
                                 layer=self.where, member=m.name) from err

    def _member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = self._split(m.name, m.name)
        if not parts:
            _skip_data(tf, m)                       # the root itself ("./")
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, m.name)
            _skip_data(tf, m)
            return
        parent = self._open_dir(parts[:-1], m.name, create=True)
        assert parent is not None
        try:
            for i in range(len(parts), 0, -1):      # touched holds every prefix of a path
                if parts[:i] in self.touched:
                    break
                self.touched.add(parts[:i])
            if m.isdir():
                self._dir(parent, parts, m)
            elif m.isreg():
                self._file(tf, parent, parts, m)
            elif m.issym():
                self._symlink(parent, parts, m)
            elif m.islnk():
                self._hardlink(parent, parts, m)
            elif m.ischr() or m.isblk() or m.isfifo():
                self._remove(parent, base, parts)
                kind = "chr" if m.ischr() else "blk" if m.isblk() else "fifo"
                path = _path_of(parts)
                self.st.special[path] = SpecialFile(path, kind, m.devmajor, m.devminor,
                                                    m.mode & 0o7777, m.uid, m.gid)
                self.created.add(parts)
            else:
                raise LayerError(f"{self._at(m.name)} has unsupported type "
                                 f"{m.type!r}", layer=self.where, member=m.name)
        finally:
            os.close(parent)

    def _owner(self, parts: tuple[str, ...], m: tarfile.TarInfo, fd: int | None,
               parent: int) -> None:
        path = _path_of(parts)
        self.st.meta.pop(path, None)
        if m.uid or m.gid or m.mode & 0o6000:
            self.st.meta[path] = EntryMeta(m.uid, m.gid, m.mode & 0o7777)
        if self.st.chown and (m.uid or m.gid):
            if fd is not None:
                os.fchown(fd, m.uid, m.gid)
            else:
                os.chown(parts[-1], m.uid, m.gid, dir_fd=parent, follow_symlinks=False)

    def _dir(self, parent: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        name = parts[-1]
        try:
            is_dir = stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            is_dir = False
        if not is_dir:
            self._remove(parent, name, parts)
            os.mkdir(name, 0o700, dir_fd=parent)
        self.created.add(parts)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        try:
            self._owner(parts, m, fd, parent)
        finally:
            os.close(fd)
        self.st.dir_attrs[parts] = (m.mode & 0o1777, m.mtime)

    def _file(self, tf: tarfile.TarFile, parent: int, parts: tuple[str, ...],
              m: tarfile.TarInfo) -> None:
        lim = self.st.limits.max_total_bytes
        if self.st.bytes_written + m.size > lim:
            raise LimitExceededError(
                f"{self._at(m.name)} ({m.size} bytes) takes the unpacked size "
                f"past the {lim}-byte limit", layer=self.where, member=m.name,
                hint="raise Limits.max_total_bytes if this image is trusted")
        self._remove(parent, parts[-1], parts)
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600, dir_fd=parent)
        self.created.add(parts)
        try:
            src = tf.extractfile(m)
            assert src is not None
            left = m.size
            while left:
                chunk = src.read(min(CHUNK, left))
                if not chunk:
                    raise LayerError(f"{self._at(m.name)} is truncated",
                                     layer=self.where, member=m.name)
                _write_all(fd, chunk)
                left -= len(chunk)
            self.st.bytes_written += m.size
            os.fchmod(fd, m.mode & 0o777)
            self._owner(parts, m, fd, parent)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)

    def _symlink(self, parent: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        if not m.linkname:
            raise LayerError(f"{self._at(m.name)}: symbolic link with an "
                             "empty target", layer=self.where, member=m.name)
        self._remove(parent, parts[-1], parts)
        os.symlink(m.linkname, parts[-1], dir_fd=parent)
        self.created.add(parts)
        self._owner(parts, m, None, parent)
        os.utime(parts[-1], (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)

    def _hardlink(self, parent: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        target = self._split(m.linkname, m.name, "hard link target")
        if not target:
            raise UnsafeLayerError(f"{self._at(m.name)}: hard link to the "
                                   "root directory", layer=self.where, member=m.name)
        tparent = self._open_dir(target[:-1], m.name, create=False)
        if tparent is None:
            raise LayerError(f"{self._at(m.name)}: hard link target {member_name(m.linkname)} "
                             "does not exist", layer=self.where, member=m.name)
        try:
            try:
                st = os.stat(target[-1], dir_fd=tparent, follow_symlinks=False)
            except FileNotFoundError:
                special = self.st.special.get(_path_of(target))
                if special is not None:             # a link to a recorded device or fifo
                    self._remove(parent, parts[-1], parts)
                    path = _path_of(parts)
                    self.st.special[path] = SpecialFile(path, special.kind, special.major,
                                                        special.minor, special.mode,
                                                        special.uid, special.gid)
                    self.created.add(parts)
                    return
                raise LayerError(f"{self._at(m.name)}: hard link target "
                                 f"{member_name(m.linkname)} does not exist", layer=self.where,
                                 member=m.name) from None
            if stat.S_ISDIR(st.st_mode):
                raise UnsafeLayerError(f"{self._at(m.name)}: hard link to "
                                       f"directory {member_name(m.linkname)}", layer=self.where,
                                       member=m.name)
            if target == parts:
                return
            self._remove(parent, parts[-1], parts)
            os.link(target[-1], parts[-1], src_dir_fd=tparent, dst_dir_fd=parent,
                    follow_symlinks=False)
            self.created.add(parts)
            tpath = _path_of(target)
            for table in (self.st.meta, self.st.special):
                if tpath in table:
                    table[_path_of(parts)] = table[tpath]  # type: ignore[index]
        finally:
            os.close(tparent)

    def _whiteout(self, parts: tuple[str, ...], member: str) -> None:
        base = parts[-1]
        dirparts = parts[:-1]
        if base == OPAQUE_WHITEOUT:
            self._prune(dirparts, member)
            return
        if base.startswith(OPAQUE_WHITEOUT[:8]):
            return                                  # other .wh..wh. names are reserved
        victim = base[len(WHITEOUT_PREFIX):]
        if victim in ("", ".", ".."):
            raise UnsafeLayerError(f"{self._at(member)}: whiteout of {member_name(victim)} "
                                   "refused", layer=self.where, member=member,
                                   hint="the layer is malformed or hostile")
        vparts = dirparts + (victim,)
        if vparts in self.created:
            return                                  # whiteouts hide lower layers only
        fd = self._open_dir(dirparts, member, create=False)
        if fd is None:
            return
        try:
            self._remove(fd, victim, vparts)
        finally:
            os.close(fd)

    def _prune(self, dirparts: tuple[str, ...], member: str) -> None:
        """Opaque whiteout: remove what lower layers put under the directory.

        Directories this layer touched are kept and pruned in turn, at any
        depth, with one descriptor open at a time (:func:`walk_down`).
        """
        prefix = _path_of(dirparts) + "/" if dirparts else "/"
        for key in [k for k in self.st.special if k.startswith(prefix)]:
            if tuple(key[1:].split("/")) not in self.touched:
                del self.st.special[key]
        fd = self._open_dir(dirparts, member, create=False)
        if fd is None:
            return

        def enter(dir_fd: int, rel: list[str]) -> list[str]:
            keep = []
            here = dirparts + tuple(rel)
            for child in sorted(os.listdir(dir_fd)):
                cparts = here + (child,)
                if cparts not in self.touched:
                    self._remove(dir_fd, child, cparts)
                elif stat.S_ISDIR(os.stat(child, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    keep.append(child)
            return keep

        try:
            walk_down(fd, enter)
        finally:
            os.close(fd)


def _skip_data(tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
    """Read past the data of a regular member that is not written (a whiteout, the root).

    Left to ``tarfile``, the skip is a loop of 10 KiB reads as long as the size
    the header claims, which for a base-256 size of 2**80 never ends; read, the
    data ends where the stream does (ReadError "unexpected end of data").
    """
    if m.isreg() and m.size:
        src = tf.extractfile(m)
        assert src is not None
        while src.read(CHUNK):
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _check_dest(dest: Path) -> bool:
    """Refuse a destination that is a link, a file or a non-empty directory; True if made here."""
    if dest.is_symlink():
        raise LayerError(f"{dest}: the destination is a symbolic link",
                         hint="give a real directory for the unpacked root")
    if dest.exists():
        if not dest.is_dir():
            raise LayerError(f"{dest}: the destination exists and is not a directory")
        if any(dest.iterdir()):
            raise LayerError(f"{dest}: the destination directory is not empty",
                             hint="unpack into a new or empty directory")
        return False
    dest.mkdir()
    return True


def apply_layers(layers: Iterable[tuple[LayerRef, Callable[[], BinaryIO]]], dest: Path, *,
                 limits: Limits = Limits(), chown: bool = False,
                 name: str = "") -> UnpackResult:
    """Apply ``layers`` (bottom first; each with a function opening its blob) into ``dest``.

    ``dest`` must not exist or be an empty directory. Raises a LayerError
    subclass naming the layer and tar member on anything unsafe or malformed,
    and BlobError when a layer's uncompressed digest differs from its diff_id. When
    it fails, nothing it wrote is left in ``dest`` (nor ``dest``, if it made it).
    """
    dest = Path(dest)
    created = _check_dest(dest)
    root_fd = os.open(dest, _DIR_FLAGS)
    st = _State(root_fd, limits, chown)
    try:
        _apply_all(layers, st, limits, name)
    except BaseException:
        with contextlib.suppress(OSError):         # the unpack's own error is reported
            if created:
                remove_tree(dest)
            else:
                empty_directory(dest)
        raise
    finally:
        os.close(root_fd)
    return UnpackResult(str(dest), st.files, st.bytes_written,
                        tuple(sorted(st.special.values(), key=lambda s: s.path)),
                        dict(sorted(st.meta.items())))


def _apply_all(layers: Iterable[tuple[LayerRef, Callable[[], BinaryIO]]], st: _State,
               limits: Limits, name: str) -> None:
    """Apply every layer in order, then the directory modes and times."""
    for ref, opener in layers:
        where = f"{name}: layer {ref.descriptor.digest}" if name else \
            f"layer {ref.descriptor.digest}"
        with opener() as raw:
            head = raw.read(8)
            magic = sniff_compression(head)
            # The magic bytes decide; the media type is only a claim (some Docker tools
            # label uncompressed layers ".tar.gzip"). A blob whose magic is neither gzip
            # nor zstd is read as a plain tar, and fails clearly if it is not one.
            comp = magic
            stream = LayerStream(Prefixed(head, raw), comp, limits, where)
            try:
                tf = tarfile.open(fileobj=io.BufferedReader(stream, CHUNK), mode="r|")
            except tarfile.TarError as err:
                declared = layer_compression(ref.descriptor.media_type)
                note = ""
                if declared not in (None, Compression.NONE) and comp is Compression.NONE:
                    note = (f"; its media type says {declared.value} but the blob does not "
                            f"start with {declared.value} magic bytes")
                raise LayerError(f"{where}: not a tar archive ({err}){note}", layer=where,
                                 hint="the layer blob is corrupt or not a layer") from err
            except HEADER_ERRORS as err:                # tarfile.open reads the first header
                raise header_error(where, err) from err
            try:
                _LayerApplier(st, where).apply(tf)
            except tarfile.TarError as err:
                raise LayerError(f"{where}: corrupt tar data ({err})", layer=where) from err
            stream.drain()
            if ref.diff_id is not None:
                got = f"sha256:{stream.hasher.hexdigest()}"
                if ref.diff_id.startswith("sha256:") and got != ref.diff_id:
                    raise BlobError(f"{where}: uncompressed content hashes to {got}, the "
                                    f"config's diff_id is {ref.diff_id}",
                                    digest=ref.diff_id,
                                    hint="the image is corrupt or was tampered with")
    _apply_dir_attrs(st)


def _apply_dir_attrs(st: _State) -> None:
    """Directory modes and mtimes, set last (adding children changes mtimes)."""
    for parts, (mode, mtime) in sorted(st.dir_attrs.items(), key=lambda kv: -len(kv[0])):
        fd = os.dup(st.root_fd)
        try:
            for comp in parts:
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
            os.fchmod(fd, mode)
            os.utime(fd, (mtime, mtime))
        except OSError:
            pass                                    # removed or replaced by a later layer
        finally:
            os.close(fd)
