"""Where an input image's files live: a directory, or a tar archive read in place."""
from __future__ import annotations

import io
import os
import posixpath
import tarfile
from pathlib import Path
from typing import BinaryIO

from .errors import BlobError, MalformedImageError, NotAnImageError
from .tarheaders import HEADER_ERRORS

__all__ = ["FileStore", "DirStore", "TarStore"]


class FileStore:
    """Read-only access to the files of a layout or docker save, by relative path."""

    name: str

    def exists(self, rel: str) -> bool:
        raise NotImplementedError

    def size(self, rel: str) -> int:
        raise NotImplementedError

    def open(self, rel: str) -> BinaryIO:
        raise NotImplementedError

    def close(self) -> None:
        """Release open files (no-op for directories)."""

    def missing(self, rel: str, digest: str | None = None) -> BlobError:
        """The error for a file the image refers to but does not contain."""
        what = f"blob {digest}" if digest else rel
        return BlobError(f"{self.name}: {what} is missing (expected at {rel})", digest=digest,
                         hint="the image is incomplete; copy it again, e.g. with "
                         "'skopeo copy docker://REF oci:DIR:TAG'")


def _clean(rel: str) -> str | None:
    """Normalize a relative path inside a store; None if it escapes or is absolute."""
    if rel.startswith("/"):
        return None
    norm = posixpath.normpath(rel)
    if norm == ".." or norm.startswith("../"):
        return None
    return norm


class DirStore(FileStore):
    """Files of a directory; a path resolving outside the directory does not exist."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.name = str(root)

    def _path(self, rel: str) -> Path | None:
        norm = _clean(rel)
        if norm is None:
            return None
        real = os.path.realpath(self.root / norm)
        if real != str(self.root) and not real.startswith(str(self.root) + os.sep):
            return None
        return Path(real)

    def exists(self, rel: str) -> bool:
        p = self._path(rel)
        return p is not None and p.is_file()

    def size(self, rel: str) -> int:
        p = self._path(rel)
        if p is None or not p.is_file():
            raise self.missing(rel)
        return p.stat().st_size

    def open(self, rel: str) -> BinaryIO:
        p = self._path(rel)
        if p is None or not p.is_file():
            raise self.missing(rel)
        return open(p, "rb")


class TarStore(FileStore):
    """Members of a tar archive (uncompressed or gzip), read in place without extracting."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        tar = None
        try:
            tar = tarfile.open(path, "r:*")
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError, *HEADER_ERRORS) as err:
            if tar is not None:
                tar.close()
            raise NotAnImageError(f"{path}: not a readable tar archive ({type(err).__name__}: "
                                  f"{str(err)[:200]})",
                                  hint="give an OCI layout directory, an OCI archive, a "
                                  "docker-archive (docker save) or a rootfs directory") from err
        self._tar = tar
        self._members: dict[str, tarfile.TarInfo] = {}
        for m in members:
            if m.size < 0 or m.issparse():
                self._tar.close()
                why = (f"header field 'size' is {m.size}; a size cannot be negative"
                       if m.size < 0 else "a sparse file, which no image archive holds")
                raise MalformedImageError(f"{path}: tar member {m.name[:200]!r}: {why}",
                                          hint="the archive is corrupt; fetch or save it again")
            norm = _clean(m.name)
            if norm is not None:
                self._members[norm] = m    # a later duplicate wins, as with tar -x

    def names(self) -> list[str]:
        return list(self._members)

    def _resolve(self, rel: str) -> tarfile.TarInfo | None:
        norm = _clean(rel)
        for _ in range(16):
            if norm is None:
                return None
            m = self._members.get(norm)
            if m is None:
                return None
            if m.isfile():
                return m
            if m.issym():
                norm = _clean(posixpath.join(posixpath.dirname(norm), m.linkname))
            elif m.islnk():
                norm = _clean(m.linkname)
            else:
                return None
        return None

    def exists(self, rel: str) -> bool:
        return self._resolve(rel) is not None

    def size(self, rel: str) -> int:
        m = self._resolve(rel)
        if m is None:
            raise self.missing(rel)
        return m.size

    def open(self, rel: str) -> BinaryIO:
        m = self._resolve(rel)
        if m is None:
            raise self.missing(rel)
        f = self._tar.extractfile(m)
        assert f is not None
        return io.BufferedReader(_MemberReader(f, f"{self.name}: {rel}"))  # type: ignore[arg-type]

    def close(self) -> None:
        self._tar.close()


class _MemberReader(io.RawIOBase):
    """A member of an archive read in place; its data ending early is a BlobError."""

    def __init__(self, member: BinaryIO, where: str) -> None:
        self._member = member
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        try:
            data = self._member.read(len(b))
        except tarfile.TarError as err:
            raise BlobError(f"{self._where}: the archive ends inside this file ({err})",
                            hint="the archive is truncated or corrupt; fetch or save it "
                            "again") from err
        b[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._member.close()
        super().close()
