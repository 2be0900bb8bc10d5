"""One ELF's lifted code and tables (a LiftedUnit), cacheable as bytes by the ELF's BLAKE3."""
from __future__ import annotations

from dataclasses import dataclass, field

import cbor2
import zstandard

from recompiler.x86_64.errors import LiftError

__all__ = ["LiftedUnit", "UNIT_FORMAT"]

UNIT_FORMAT = 3
"""Bumped when the serialised LiftedUnit changes; old cached units are then re-lifted."""


@dataclass(frozen=True)
class LiftedUnit:
    """Everything known about one lifted ELF; function names use the ``$U.`` placeholder.

    A unit read from bytes keeps its WebAssembly text compressed until ``functions_wat``
    is asked for (the linker asks one unit at a time), so many units fit in memory."""
    name: str
    bias: int                                   # 0: code uses link-time addresses (PIE: plus $bias)
    entry: int                                  # link-time entry point
    exec_ranges: tuple[tuple[int, int], ...]    # link-time executable ranges
    wat_source: str | bytes                     # WAT of every guest function, or its zstd compression
    functions: tuple[int, ...]                  # function entry addresses, in definition order
    entries: tuple[tuple[int, int, int], ...]   # (link address, function entry, block index), sorted
    trap_sites: tuple[tuple[int, str, str], ...]
    stats: dict = field(default_factory=dict)
    position_independent: bool = False
    """The code takes its load bias at run time from the module's ``$U.bias`` global (i64) instead
    of assuming ``bias``: shared objects, ld.so and dynamically linked PIE programs."""

    def __eq__(self, other: object) -> bool:
        """Equal units have equal fields, the text compared decompressed."""
        if not isinstance(other, LiftedUnit):
            return NotImplemented
        return ((self.name, self.bias, self.entry, self.exec_ranges, self.functions, self.entries,
                 self.trap_sites, self.stats, self.position_independent) ==
                (other.name, other.bias, other.entry, other.exec_ranges, other.functions, other.entries,
                 other.trap_sites, other.stats, other.position_independent)) and self.functions_wat == other.functions_wat

    __hash__ = None   # type: ignore[assignment]   # the stats dict makes units unhashable anyway

    @property
    def functions_wat(self) -> str:
        """The WAT of every guest function of the unit (decompressed on each call when stored compressed)."""
        if isinstance(self.wat_source, str):
            return self.wat_source
        try:
            return zstandard.ZstdDecompressor().decompress(self.wat_source).decode()
        except (zstandard.ZstdError, UnicodeDecodeError) as e:
            raise LiftError(f"cached lifted unit {self.name} is corrupt: {e}",
                            hint="delete the cache entry; it is re-lifted on the next recompile") from None

    def to_bytes(self) -> bytes:
        return cbor2.dumps({
            "format": UNIT_FORMAT, "name": self.name, "bias": self.bias, "entry": self.entry,
            "exec_ranges": [list(r) for r in self.exec_ranges],
            "wat_zst": (self.wat_source if isinstance(self.wat_source, bytes)
                        else zstandard.ZstdCompressor(level=3).compress(self.wat_source.encode())),
            "functions": list(self.functions), "entries": [list(e) for e in self.entries],
            "trap_sites": [list(t) for t in self.trap_sites], "stats": self.stats,
            "position_independent": self.position_independent,
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> "LiftedUnit":
        try:
            d = cbor2.loads(data)
            if d.get("format") != UNIT_FORMAT:
                raise LiftError(f"cached lifted unit has format {d.get('format')}, expected {UNIT_FORMAT}",
                                hint="delete the cache entry; it is re-lifted on the next recompile")
            return cls(d["name"], d["bias"], d["entry"], tuple(tuple(r) for r in d["exec_ranges"]),
                       _checked_zst(d["wat_zst"]), tuple(d["functions"]), tuple(tuple(e) for e in d["entries"]),
                       tuple(tuple(t) for t in d["trap_sites"]), d["stats"], bool(d["position_independent"]))
        except (cbor2.CBORDecodeError, zstandard.ZstdError, UnicodeDecodeError, KeyError, TypeError,
                AttributeError) as e:
            raise LiftError(f"cached lifted unit is corrupt: {e}",
                            hint="delete the cache entry; it is re-lifted on the next recompile") from None


def _checked_zst(data: object) -> bytes:
    """A unit's compressed text, checked to be a whole zstd frame (the text is decompressed later)."""
    if not isinstance(data, bytes) or zstandard.frame_content_size(data) < 0:
        raise LiftError("cached lifted unit has no readable text",
                        hint="delete the cache entry; it is re-lifted on the next recompile")
    return data
