"""The megabinary's CBOR index: one record per recompiled ELF, keyed by its BLAKE3 hash.

The index is the runtime's list of what may run. vkernel hashes a file it is
asked to execute or map executable and looks the digest up here; no record,
no execution. Each :class:`UnitRecord` names that ELF's own WebAssembly module
(the MODULE section named by the unit's BLAKE3), how many guest functions it
puts in the dispatch table, and which guest addresses have a translation
(``entries``), so an indirect branch to any other address is a fault, never a
reason to translate at run time.

One validator (:func:`validate_index_obj`) checks the plain CBOR data model in
both directions: the writer runs it before encoding, the reader after
decoding. docs/formats.md ("INDEX section") is the normative description.
"""
from __future__ import annotations

import bisect
import enum
import io
import types
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple

import cbor2

from formats.errors import FormatError

__all__ = [
    "UnitKind", "Entry", "TrapSite", "UnitRecord", "Index",
    "IndexSchemaError", "CborError", "encode_index", "decode_index",
    "validate_index_obj", "canonical_cbor", "decode_canonical_cbor",
    "DIGEST_SIZE", "CBOR_MAX_DEPTH",
]

DIGEST_SIZE = 32
"""Bytes in a BLAKE3 digest as Kiln stores it (the default 256-bit output)."""

CBOR_MAX_DEPTH = 32
"""Deepest container nesting the reader accepts in an INDEX or META payload."""

_U64_LIMIT = 1 << 64
_GUEST_PAGE = 4096
_HINT_RECOMPILE = "the megabinary is damaged or was written by a broken tool; re-run recompile"


class IndexSchemaError(FormatError):
    """The index (or metadata) decoded as CBOR but breaks the schema.

    ``where`` names the element, e.g. ``units[3].entries[17]``.
    """

    def __init__(self, message: str, *, where: str = "", offset: int | None = None,
                 path: str | None = None, hint: str | None = _HINT_RECOMPILE) -> None:
        text = f"{where}: {message}" if where else message
        super().__init__(text, offset=offset, path=path, hint=hint)
        self.where = where


class CborError(FormatError):
    """A CBOR payload does not decode, or is not in canonical (deterministic) form."""


class UnitKind(str, enum.Enum):
    """How an ELF is loaded; the ``kind`` key of a unit."""
    EXEC = "exec"              #: ET_EXEC: loaded at its link-time addresses
    PIE = "pie"                #: ET_DYN with an entry point used as a program (static-pie, PIE)
    SHARED_LIB = "shared-lib"  #: ET_DYN shared object, loaded anywhere by the dynamic linker


class Entry(NamedTuple):
    """A translated entry point: a link-time guest address and the number of the unit's
    function that serves it (its slot, counted from the unit's first dispatch-table slot)."""
    guest_addr: int
    slot: int


class TrapSite(NamedTuple):
    """An instruction the lifter did not translate; reaching it faults (UNSUPPORTED)."""
    guest_addr: int
    mnemonic: str
    reason: str


def _at_address(records: tuple, guest_addr: int):
    """The record of an address-sorted tuple (Entry, TrapSite) whose guest_addr is ``guest_addr``."""
    i = bisect.bisect_left(records, guest_addr, key=lambda r: r.guest_addr)
    return records[i] if i < len(records) and records[i].guest_addr == guest_addr else None


@dataclass(frozen=True)
class UnitRecord:
    """One recompiled ELF file (a "unit"), identified by the BLAKE3 of its bytes."""
    blake3: bytes
    paths: tuple[str, ...]
    kind: UnitKind
    pie: bool
    entry: int
    link_base: int
    functions: int
    """Guest functions in the unit's module: the dispatch-table slots it takes."""
    entries: tuple[Entry, ...] = ()
    pic: bool = False
    """The translation reads its load bias at run time (shared objects, ld.so, dynamic PIE
    programs). When false the code assumes the one load address vkernel gives that kind of
    program: link-time addresses for ``exec``, ``PIE_LOAD_BASE`` for a static-pie."""
    trap_sites: tuple[TrapSite, ...] = ()
    stats: Mapping[str, int] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Normalise containers so records are immutable whatever the caller passed.
        object.__setattr__(self, "paths", tuple(self.paths))
        if not isinstance(self.kind, UnitKind) and isinstance(self.kind, str):
            try:
                object.__setattr__(self, "kind", UnitKind(self.kind))
            except ValueError:
                pass  # reported by the validator
        if type(self.entries) is not tuple or not all(type(e) is Entry for e in self.entries):
            object.__setattr__(self, "entries", tuple(Entry(*e) for e in self.entries))
        object.__setattr__(self, "trap_sites", tuple(TrapSite(*t) for t in self.trap_sites))
        object.__setattr__(self, "stats", types.MappingProxyType(dict(self.stats)))

    def slot_for(self, guest_addr: int) -> int | None:
        """The dispatch slot translated for link-time address ``guest_addr``, if any."""
        entry = _at_address(self.entries, guest_addr)
        return None if entry is None else entry.slot

    def trap_site_at(self, guest_addr: int) -> TrapSite | None:
        """The trap site at link-time address ``guest_addr``, if the lifter left one there."""
        return _at_address(self.trap_sites, guest_addr)

    def to_obj(self) -> dict[str, Any]:
        """The unit as the CBOR data model (docs/formats.md, "Unit map")."""
        kind = self.kind.value if isinstance(self.kind, UnitKind) else self.kind
        return {
            "blake3": self.blake3,
            "paths": list(self.paths),
            "kind": kind,
            "pie": self.pie,
            "entry": self.entry,
            "link_base": self.link_base,
            "functions": self.functions,
            "pic": self.pic,
            "entries": [[e.guest_addr, e.slot] for e in self.entries],
            "trap_sites": [[t.guest_addr, t.mnemonic, t.reason] for t in self.trap_sites],
            "stats": dict(self.stats),
        }


@dataclass(frozen=True)
class Index:
    """The whole index: ABI version and the units sorted by hash."""
    abi_version: int
    units: tuple[UnitRecord, ...] = ()

    def __post_init__(self) -> None:
        units = tuple(sorted(self.units,
                             key=lambda u: u.blake3 if isinstance(u.blake3, bytes) else b""))
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "_by_hash", {u.blake3: n for n, u in enumerate(units)})
        object.__setattr__(self, "_by_path", {p: n for n, u in enumerate(units) for p in u.paths})

    def lookup(self, blake3_digest: bytes) -> UnitRecord | None:
        """The unit whose file hashes to ``blake3_digest``, or None (not recompiled: refuse)."""
        n = self._by_hash.get(bytes(blake3_digest))  # type: ignore[attr-defined]
        return None if n is None else self.units[n]

    def unit_number(self, blake3_digest: bytes) -> int | None:
        """The position of the unit in :attr:`units` (the code-region table's ``unit``)."""
        return self._by_hash.get(bytes(blake3_digest))  # type: ignore[attr-defined]

    def by_path(self, guest_path: str) -> UnitRecord | None:
        """The unit recompiled from ``guest_path`` in the source image, if any.

        Only a hint for tools: the runtime must still hash the file it opens.
        """
        n = self._by_path.get(guest_path)  # type: ignore[attr-defined]
        return None if n is None else self.units[n]

    def to_obj(self) -> dict[str, Any]:
        """The index as the CBOR data model (docs/formats.md, "Index map")."""
        return {
            "abi_version": self.abi_version,
            "units": [u.to_obj() for u in self.units],
        }


# ---------------------------------------------------------------------------
# Canonical CBOR
# ---------------------------------------------------------------------------

def canonical_cbor(obj: Any) -> bytes:
    """Deterministic CBOR (length-first sorted map keys, shortest forms, definite lengths)."""
    return cbor2.dumps(obj, canonical=True)


def decode_canonical_cbor(payload: bytes, *, what: str, offset: int | None = None,
                          path: str | None = None) -> Any:
    """Decode one CBOR item that must fill ``payload`` exactly and be canonical.

    Raises :class:`CborError` for anything else: malformed bytes, trailing
    data, duplicate keys, tags, indefinite lengths or non-shortest encodings
    (the payload is re-encoded and compared byte for byte).
    """
    payload = bytes(payload)
    stream = io.BytesIO(payload)
    try:
        decoder = cbor2.CBORDecoder(stream, max_depth=CBOR_MAX_DEPTH,
                                    allow_duplicate_keys=False, allow_indefinite=False)
        obj = decoder.decode()
    except Exception as exc:  # untrusted bytes: any decoder failure is a format error
        raise CborError(f"{what} is not valid CBOR ({exc})", offset=offset, path=path,
                        hint=_HINT_RECOMPILE) from None
    if stream.tell() != len(payload):
        raise CborError(f"{what} has {len(payload) - stream.tell()} bytes after its CBOR item",
                        offset=None if offset is None else offset + stream.tell(), path=path,
                        hint=_HINT_RECOMPILE)
    try:
        again = canonical_cbor(obj)
    except Exception:
        again = None
    if again != payload:
        raise CborError(f"{what} is not canonical CBOR (tags, floats or non-deterministic "
                        "encoding are not allowed)", offset=offset, path=path, hint=_HINT_RECOMPILE)
    return obj


# ---------------------------------------------------------------------------
# Schema validation (plain data model -> records)
# ---------------------------------------------------------------------------

class _Ctx:
    def __init__(self, offset: int | None, path: str | None) -> None:
        self.offset = offset
        self.path = path

    def fail(self, where: str, message: str) -> IndexSchemaError:
        return IndexSchemaError(message, where=where, offset=self.offset, path=self.path)


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _U64_LIMIT


def _uint(ctx: _Ctx, where: str, v: Any) -> int:
    if not _is_uint(v):
        raise ctx.fail(where, f"expected an unsigned 64-bit integer, got {_describe(v)}")
    return v


def _text(ctx: _Ctx, where: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ctx.fail(where, f"expected a text string, got {_describe(v)}")
    return v


def _array(ctx: _Ctx, where: str, v: Any) -> list:
    if not isinstance(v, (list, tuple)):
        raise ctx.fail(where, f"expected an array, got {_describe(v)}")
    return list(v)


def _map(ctx: _Ctx, where: str, v: Any, required: Iterable[str]) -> Mapping:
    if not isinstance(v, Mapping):
        raise ctx.fail(where, f"expected a map, got {_describe(v)}")
    for key in required:
        if key not in v:
            raise ctx.fail(where, f"missing required key {key!r}")
    return v


def _describe(v: Any) -> str:
    text = repr(v)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(v).__name__} {text}"


def _check_path(ctx: _Ctx, where: str, p: str) -> None:
    if not p.startswith("/") or p == "/" or "\0" in p or p.endswith("/"):
        raise ctx.fail(where, f"{p!r} is not an absolute guest file path")
    for part in p[1:].split("/"):
        if part in ("", ".", ".."):
            raise ctx.fail(where, f"{p!r} is not a normalised guest path")


_UNIT_KEYS = ("blake3", "paths", "kind", "pie", "entry", "link_base", "functions",
              "entries", "trap_sites", "stats")
_INDEX_KEYS = ("abi_version", "units")
_REQUIRED_STATS = ("instructions", "functions")


def _unit(ctx: _Ctx, where: str, v: Any) -> UnitRecord:
    m = _map(ctx, where, v, _UNIT_KEYS)
    digest = m["blake3"]
    if not isinstance(digest, bytes) or len(digest) != DIGEST_SIZE:
        raise ctx.fail(where + ".blake3", f"expected {DIGEST_SIZE} bytes, got {_describe(digest)}")
    paths = _array(ctx, where + ".paths", m["paths"])
    if not paths:
        raise ctx.fail(where + ".paths", "a unit needs at least one guest path")
    for i, p in enumerate(paths):
        _check_path(ctx, f"{where}.paths[{i}]", _text(ctx, f"{where}.paths[{i}]", p))
        if i and paths[i - 1] >= p:
            raise ctx.fail(f"{where}.paths[{i}]", "paths must be sorted and unique")
    kind_text = _text(ctx, where + ".kind", m["kind"])
    try:
        kind = UnitKind(kind_text)
    except ValueError:
        raise ctx.fail(where + ".kind", f"unknown unit kind {kind_text!r} "
                       f"(expected one of {', '.join(k.value for k in UnitKind)})") from None
    pie = m["pie"]
    if not isinstance(pie, bool):
        raise ctx.fail(where + ".pie", f"expected a boolean, got {_describe(pie)}")
    if pie != (kind is not UnitKind.EXEC):
        raise ctx.fail(where + ".pie",
                       f"kind {kind.value!r} requires pie={kind is not UnitKind.EXEC}")
    entry = _uint(ctx, where + ".entry", m["entry"])
    link_base = _uint(ctx, where + ".link_base", m["link_base"])
    if link_base % _GUEST_PAGE:
        raise ctx.fail(where + ".link_base", f"{link_base:#x} is not page-aligned")
    functions = _uint(ctx, where + ".functions", m["functions"])
    if functions >= 1 << 32:
        raise ctx.fail(where + ".functions", f"{functions} functions do not fit a dispatch table")
    raw_entries = _array(ctx, where + ".entries", m["entries"])
    entries: list[Entry] = _entries_fast(raw_entries, functions) or []
    for i, e in enumerate(raw_entries if not entries else ()):   # to name what is wrong
        w = f"{where}.entries[{i}]"
        pair = _array(ctx, w, e)
        if len(pair) != 2:
            raise ctx.fail(w, f"expected [guest_addr, slot], got {len(pair)} elements")
        addr, slot = _uint(ctx, w + "[0]", pair[0]), _uint(ctx, w + "[1]", pair[1])
        if entries and entries[-1].guest_addr >= addr:
            raise ctx.fail(w, f"entries must be sorted by guest address without duplicates "
                              f"({addr:#x} after {entries[-1].guest_addr:#x})")
        if slot >= functions:
            raise ctx.fail(w, f"slot {slot} is outside the unit's {functions} functions")
        entries.append(Entry(addr, slot))
    traps: list[TrapSite] = []
    for i, t in enumerate(_array(ctx, where + ".trap_sites", m["trap_sites"])):
        w = f"{where}.trap_sites[{i}]"
        triple = _array(ctx, w, t)
        if len(triple) != 3:
            raise ctx.fail(w, "expected [guest_addr, mnemonic, reason], "
                              f"got {len(triple)} elements")
        addr = _uint(ctx, w + "[0]", triple[0])
        site = TrapSite(addr, _text(ctx, w + "[1]", triple[1]), _text(ctx, w + "[2]", triple[2]))
        if traps and traps[-1].guest_addr >= addr:
            raise ctx.fail(w, "trap sites must be sorted by guest address without duplicates")
        traps.append(site)
    stats_map = _map(ctx, where + ".stats", m["stats"], _REQUIRED_STATS)
    stats: dict[str, int] = {}
    for key, value in stats_map.items():
        _text(ctx, where + ".stats", key)
        stats[key] = _uint(ctx, f"{where}.stats.{key}", value)
    pic = m.get("pic", False)
    if not isinstance(pic, bool):
        raise ctx.fail(where + ".pic", f"expected a boolean, got {_describe(pic)}")
    if pic and kind is UnitKind.EXEC:
        raise ctx.fail(where + ".pic", "an exec unit is never position-independent")
    return UnitRecord(blake3=digest, paths=tuple(paths), kind=kind, pie=pie, entry=entry,
                      link_base=link_base, functions=functions, pic=pic,
                      entries=tuple(entries), trap_sites=tuple(traps), stats=stats)


def _entries_fast(raw: list, functions: int) -> list[Entry] | None:
    """The entries when all are well-formed (the same checks as the loop in :func:`_unit`, in
    one quick pass: start-up time); None when any is not, so that the loop names it."""
    first, end = 0, functions
    prev = -1
    out: list[Entry] = []
    append = out.append
    for e in raw:
        if type(e) is not list or len(e) != 2:
            return None
        addr, slot = e
        if type(addr) is not int or type(slot) is not int or not prev < addr < _U64_LIMIT \
                or not first <= slot < end:
            return None
        prev = addr
        append(Entry(addr, slot))
    return out


def validate_index_obj(obj: Any, *, offset: int | None = None, path: str | None = None) -> Index:
    """Check the CBOR data model of an index and build the :class:`Index`.

    Unknown map keys are ignored (a later minor version may add some).
    Raises :class:`IndexSchemaError` naming the first offending element.
    """
    ctx = _Ctx(offset, path)
    m = _map(ctx, "index", obj, _INDEX_KEYS)
    abi_version = _uint(ctx, "index.abi_version", m["abi_version"])
    units: list[UnitRecord] = []
    seen_paths: dict[str, int] = {}
    for i, u in enumerate(_array(ctx, "index.units", m["units"])):
        where = f"units[{i}]"
        unit = _unit(ctx, where, u)
        if units and units[-1].blake3 >= unit.blake3:
            raise ctx.fail(where + ".blake3", "units must be sorted by blake3 without duplicates")
        for p in unit.paths:
            if p in seen_paths:
                raise ctx.fail(where + ".paths", f"{p!r} is also a path of units[{seen_paths[p]}]")
            seen_paths[p] = i
        units.append(unit)
    return Index(abi_version=abi_version, units=tuple(units))


def encode_index(index: Index) -> bytes:
    """The INDEX section payload for ``index`` (validated, canonical CBOR)."""
    obj = index.to_obj()
    validate_index_obj(obj)
    return canonical_cbor(obj)


def decode_index(payload: bytes, *, offset: int | None = None, path: str | None = None) -> Index:
    """Decode and validate an INDEX section payload (``offset``: where it starts in the file)."""
    obj = decode_canonical_cbor(payload, what="INDEX section", offset=offset, path=path)
    return validate_index_obj(obj, offset=offset, path=path)
