"""Zstandard frame tracking (RFC 8878 framing only), to tell a complete stream from a cut one.

python-zstandard's streaming reader ends quietly when its input stops in the
middle of a frame; this tracker follows frame and block headers as the
compressed bytes go by (no decompression) and says whether the stream ended
exactly between frames.
"""
from __future__ import annotations

__all__ = ["ZstdFrameTracker", "ZstdFramingError"]

_ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE_MASK = 0xFFFFFFF0
_SKIPPABLE_MAGIC = 0x184D2A50


class ZstdFramingError(ValueError):
    """The bytes are not a sequence of zstd (or skippable) frames."""


class ZstdFrameTracker:
    """Feed compressed bytes in order; :meth:`complete` says if the last frame ended."""

    def __init__(self) -> None:
        self._state = "magic"
        self._need = 4
        self._buf = bytearray()
        self._skip = 0
        self._after_skip = "magic"
        self._checksum = False
        self.frames = 0

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
                if not self._skip:
                    self._goto(self._after_skip)
                continue
            take = min(self._need - len(self._buf), n - i)
            self._buf += data[i:i + take]
            i += take
            if len(self._buf) == self._need:
                header = bytes(self._buf)
                self._buf.clear()
                self._step(header)

    def _goto(self, state: str) -> None:
        self._state = state
        self._need = {"magic": 4, "fhd": 1, "block": 3, "skipsize": 4}.get(state, self._need)

    def _skip_then(self, count: int, state: str) -> None:
        self._after_skip = state
        self._skip = count
        if not count:
            self._goto(state)

    def _step(self, header: bytes) -> None:
        if self._state == "magic":
            magic = int.from_bytes(header, "little")
            if magic == _ZSTD_MAGIC:
                self._goto("fhd")
            elif magic & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC:
                self._goto("skipsize")
            else:
                raise ZstdFramingError(f"bad frame magic {header.hex()}")
        elif self._state == "skipsize":
            self._skip_then(int.from_bytes(header, "little"), "magic")
        elif self._state == "fhd":
            fhd = header[0]
            fcs_flag, single = fhd >> 6, (fhd >> 5) & 1
            if fhd & 0x08:
                raise ZstdFramingError("reserved bit set in a frame header")
            self._checksum = bool((fhd >> 2) & 1)
            did = (0, 1, 2, 4)[fhd & 3]
            fcs = (1 if single else 0, 2, 4, 8)[fcs_flag]
            rest = (0 if single else 1) + did + fcs
            self.frames += 1
            self._skip_then(rest, "block")
        elif self._state == "block":
            value = int.from_bytes(header, "little")
            last, btype, size = value & 1, (value >> 1) & 3, value >> 3
            if btype == 3:
                raise ZstdFramingError("reserved block type")
            body = 1 if btype == 1 else size
            if last:
                self._skip_then(body + (4 if self._checksum else 0), "magic")
            else:
                self._skip_then(body, "block")

    def complete(self) -> bool:
        """True when the bytes fed so far end exactly after a whole frame."""
        return (self.frames > 0 and self._state == "magic" and not self._buf
                and not self._skip)
