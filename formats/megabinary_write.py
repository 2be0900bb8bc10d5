"""Writing megabinaries: sections laid out 4 KiB-aligned, sealed with the header checksum."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterable, Mapping, NamedTuple

import blake3

from formats.container import (_CHECKSUM_AT, _ENTRY, _HEADER, CORE, FORMAT_MAJOR, FORMAT_MINOR,
                               HEADER_SIZE, MAGIC, SECTION_ALIGN, SECTION_ENTRY_SIZE, WASM_HEADER,
                               MegabinaryWriteError, SectionKind)
from formats.fingerprint import EngineFingerprint, aot_name
from formats.index import Index, encode_index
from formats.metadata import Metadata, encode_metadata

class Section(NamedTuple):
    """A section to write: kind, name (MODULE: module name; AOT: :func:`aot_name`), contents:
    bytes, or a file holding them (read when written, never held whole in memory)."""
    kind: int
    name: str
    payload: bytes | Path


_CHUNK = 1 << 22


def _size(payload: bytes | Path) -> int:
    return payload.stat().st_size if isinstance(payload, Path) else len(payload)


def _chunks(payload: bytes | Path) -> Iterable[bytes]:
    if not isinstance(payload, Path):
        yield payload
        return
    with open(payload, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def _head(payload: bytes | Path, n: int) -> bytes:
    if not isinstance(payload, Path):
        return payload[:n]
    with open(payload, "rb") as f:
        return f.read(n)


def _digest(payload: bytes | Path) -> bytes:
    h = blake3.blake3()
    for chunk in _chunks(payload):
        h.update(chunk)
    return h.digest()


def file_blake3(path: Path) -> bytes:
    """BLAKE3 of a file's contents, read in pieces (a megabinary may be gigabytes)."""
    return _digest(path)


def _align(n: int) -> int:
    return (n + SECTION_ALIGN - 1) // SECTION_ALIGN * SECTION_ALIGN


def _layout(sections: list[Section]) -> tuple[bytes, list[int], int]:
    """Header + table + names (sealed) for ``sections``; their offsets; the file size."""
    names = b""
    name_spans: list[tuple[int, int]] = []
    for s in sections:
        raw = s.name.encode("utf-8")
        name_spans.append((len(names) if raw else 0, len(raw)))
        names += raw
    table_end = HEADER_SIZE + SECTION_ENTRY_SIZE * len(sections) + len(names)
    offsets, pos = [], _align(table_end)
    sizes = [_size(s.payload) for s in sections]
    for size in sizes:
        offsets.append(pos)
        pos = _align(pos + size)
    file_size = offsets[-1] + sizes[-1] if sections else table_end
    table = b"".join(
        _ENTRY.pack(int(s.kind), 0, off, size, no, nl, _digest(s.payload))
        for s, off, size, (no, nl) in zip(sections, offsets, sizes, name_spans))
    header = _HEADER.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, HEADER_SIZE, 0, len(sections),
                          len(names), 0, file_size, bytes(32))
    unsealed = header + table + names
    checksum = blake3.blake3(unsealed).digest()
    sealed = unsealed[:_CHECKSUM_AT] + checksum + unsealed[_CHECKSUM_AT + 32:]
    return sealed, offsets, file_size


def _emit(out: BinaryIO, sections: list[Section]) -> str:
    head, offsets, _ = _layout(sections)
    out.write(head)
    pos = len(head)
    for s, off in zip(sections, offsets):
        out.write(bytes(off - pos))
        pos = off
        for chunk in _chunks(s.payload):
            out.write(chunk)
            pos += len(chunk)
    return "blake3:" + head[_CHECKSUM_AT:_CHECKSUM_AT + 32].hex()


def assemble(sections: Iterable[Section]) -> bytes:
    """A megabinary from raw sections, in the order given, with no schema checks.

    For tools and tests that need exact control; :func:`write_megabinary` is
    the normal entry point.
    """
    import io
    buf = io.BytesIO()
    _emit(buf, list(sections))
    return buf.getvalue()


Modules = Mapping[str, "bytes | Path"]
"""Module name (``core``, or a unit's BLAKE3 in hex) -> portable WebAssembly module (or a file
holding it)."""
Artifacts = Mapping["EngineFingerprint | str", Mapping[str, "bytes | Path"]]
"""Engine fingerprint -> module name -> the AOT artifact of that module for that engine (or a
file holding it)."""


def _sections(index: Index, modules: Modules, aot: Artifacts, metadata: Metadata) -> list[Section]:
    want = {CORE} | {u.blake3.hex() for u in index.units}
    if set(modules) != want:
        missing = sorted(want - set(modules))
        extra = sorted(set(modules) - want)
        raise MegabinaryWriteError(
            "the modules do not match the index: "
            + (f"missing {', '.join(missing[:3])}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"not in the index {', '.join(extra[:3])}" if extra else ""),
            hint="this is a bug in the recompiler's linker")
    out = [Section(SectionKind.INDEX, "", encode_index(index)),
           Section(SectionKind.META, "", encode_metadata(metadata))]
    for name in sorted(modules, key=str.encode):
        module = modules[name]
        if not isinstance(module, Path):
            module = bytes(module)
        if not _head(module, len(WASM_HEADER)).startswith(WASM_HEADER):
            raise MegabinaryWriteError(f"module {name} is not a WebAssembly binary module "
                                       "(it must start with \\0asm and version 1)",
                                       hint="this is a bug in the recompiler's module emitter")
        out.append(Section(SectionKind.MODULE, name, module))
    artifacts: dict[str, bytes | Path] = {}
    for fp, blobs in aot.items():
        for name, blob in blobs.items():
            if name not in modules:
                raise MegabinaryWriteError(f"an AOT artifact for module {name}, which is not "
                                           "in the megabinary")
            key = aot_name(name, fp)
            if key in artifacts:
                raise MegabinaryWriteError(f"two AOT artifacts {key}")
            if not _size(blob):
                raise MegabinaryWriteError(f"the AOT artifact {key} is empty")
            artifacts[key] = blob if isinstance(blob, Path) else bytes(blob)
    for key in sorted(artifacts, key=str.encode):
        out.append(Section(SectionKind.AOT, key, artifacts[key]))
    return out


def build_megabinary(*, index: Index, modules: Modules, aot: Artifacts | None = None,
                     metadata: Metadata) -> bytes:
    """The megabinary bytes for these contents (what :func:`write_megabinary` writes)."""
    return assemble(_sections(index, modules, aot or {}, metadata))


def write_megabinary(path: str | os.PathLike[str], *, index: Index, modules: Modules,
                     aot: Artifacts | None = None, metadata: Metadata) -> str:
    """Write a megabinary atomically (temp file in the same directory, then rename).

    Returns its digest ``"blake3:<hex>"`` (the header checksum, which covers
    every section through the section table's hashes).
    """
    sections = _sections(index, modules, aot or {}, metadata)
    target = Path(path)
    parent = target.parent
    if not parent.is_dir():
        raise MegabinaryWriteError(f"cannot write {target}: directory {parent} does not exist",
                                   hint="create the output directory first")
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            digest = _emit(out, sections)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as exc:
        raise MegabinaryWriteError(
            f"cannot write {target}: {exc.strerror or exc}",
            hint="check free space and permissions of the output directory") from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return digest

