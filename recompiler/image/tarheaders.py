"""Check each tar header of a layer before its member is applied: names, size, times, ids.

``tarfile`` takes header fields as they come: a base-256 or pax ``size``
can be negative, a pax ``mtime`` can be ``1e400`` or ``nan``, a pax
``path`` or ``linkpath`` can hold a NUL byte, ids and device numbers can
have any size, and a sparse file's holes are made up from nothing. Applied as they are, these end in ValueError or
OverflowError deep in ``os``. :func:`check_header` refuses every such header
with a LayerError naming the layer, the member and the field, and
:func:`read_members` turns what ``tarfile`` itself raises on a broken header
into the same kind of error.
"""
from __future__ import annotations

import tarfile
from collections.abc import Iterator

from .errors import LayerError

__all__ = ["check_header", "read_members", "header_error", "member_name", "HEADER_ERRORS",
           "MTIME_RANGE", "ID_LIMIT", "DEVICE_LIMIT"]

MTIME_RANGE = (-(1 << 63), 1 << 63)
"""Times (seconds since the epoch) must fit a 64-bit time_t: low bound included, high not."""
ID_LIMIT = (1 << 32) - 1
"""uid and gid must be below this (Linux ids are 32 bits; 2**32 - 1 means "no id")."""
DEVICE_LIMIT = 1 << 32
"""Device major and minor numbers must be below this (glibc's dev_t halves)."""

_HINT = "the layer is corrupt or was made to break unpackers; do not use this image"

HEADER_ERRORS = (ValueError, OverflowError, RecursionError)
"""What ``tarfile`` itself raises on some broken headers besides TarError: a pax record
with a 5,000-digit length (ValueError), thousands of chained extended headers
(RecursionError)."""


def header_error(where: str, err: BaseException) -> LayerError:
    """The LayerError for one of HEADER_ERRORS raised by ``tarfile`` reading a header."""
    return LayerError(f"{where}: a tar header cannot be read ({type(err).__name__}: "
                      f"{str(err)[:200]})", layer=where, hint=_HINT)


def _refuse(where: str, m: tarfile.TarInfo, field: str, why: str) -> LayerError:
    return LayerError(f"{where}: tar member {member_name(m.name)}: header field '{field}' {why}",
                      layer=where, member=m.name, hint=_HINT)


def member_name(name: str, limit: int = 200) -> str:
    """``repr`` of a member name or link target for a message, cut to ``limit`` characters."""
    text = repr(name)
    return text if len(text) <= limit else f"{text[:limit - 1]}…"


def _num(value: int | float) -> str:
    """A header number for a message: exact when short, its size in bits when not."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value) if abs(value) < 10 ** 24 else f"a {value.bit_length()}-bit number"


def check_header(m: tarfile.TarInfo, where: str) -> None:
    """LayerError unless every field of ``m`` that Kiln applies can be applied as it is."""
    if "\0" in m.name:
        raise _refuse(where, m, "path", "contains a NUL byte")
    if "\0" in m.linkname:
        raise _refuse(where, m, "linkpath", f"{member_name(m.linkname)} contains a NUL byte")
    if m.size < 0:
        raise _refuse(where, m, "size", f"is {_num(m.size)}; a size cannot be negative")
    if m.issparse():
        # tarfile makes up the holes of a sparse file: a few header bytes would unpack
        # into as many zeros as the header claims, past the compression-ratio limit.
        field = "typeflag" if m.type == tarfile.GNUTYPE_SPARSE else "GNU.sparse"
        raise _refuse(where, m, field, "makes it a sparse file; image layers should not hold "
                      "sparse files (OCI image spec) and Kiln does not unpack them")
    mtime = m.mtime
    if not MTIME_RANGE[0] <= mtime < MTIME_RANGE[1]:          # NaN compares false too
        raise _refuse(where, m, "mtime", f"is {_num(mtime)}, not a time a 64-bit time_t holds")
    for field, value in (("uid", m.uid), ("gid", m.gid)):
        if not 0 <= value < ID_LIMIT:
            raise _refuse(where, m, field,
                          f"is {_num(value)}, not a Linux id (0 to {ID_LIMIT - 1})")
    if m.ischr() or m.isblk():
        for field, value in (("devmajor", m.devmajor), ("devminor", m.devminor)):
            if not 0 <= value < DEVICE_LIMIT:
                raise _refuse(where, m, field, f"is {_num(value)}, not a device number "
                              f"(0 to {DEVICE_LIMIT - 1})")


def read_members(tf: tarfile.TarFile, where: str) -> Iterator[tarfile.TarInfo]:
    """The members of a streamed tar, each header checked by :func:`check_header`.

    What ``tarfile`` raises while reading a header (TarError, HEADER_ERRORS)
    becomes a LayerError; nothing else is caught.
    """
    while True:
        try:
            m = tf.next()
        except tarfile.TarError as err:
            raise LayerError(f"{where}: corrupt tar data ({err})", layer=where) from err
        except HEADER_ERRORS as err:
            raise header_error(where, err) from err
        if m is None:
            return
        check_header(m, where)
        yield m
