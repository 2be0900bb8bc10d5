"""The tar stream of a layer blob: decompressed, hashed for its diff_id, ratio-checked."""
from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from typing import BinaryIO

import zstandard

from .digest import CHUNK
from .errors import LayerError, LimitExceededError
from .model import Compression, Limits
from .zstdframes import ZstdFrameTracker, ZstdFramingError

__all__ = ["LayerStream", "Prefixed"]


class _Counting(io.RawIOBase):
    """Counts the compressed bytes read from a blob."""

    def __init__(self, raw: BinaryIO, tracker: ZstdFrameTracker | None = None) -> None:
        self._raw = raw
        self.count = 0
        self.tracker = tracker

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        # Small reads keep the ratio measurement fine-grained (decompressors ask for more).
        data = self._raw.read(min(len(b), 1 << 16))
        n = len(data)
        if self.tracker is not None:
            self.tracker.feed(data)
        b[:n] = data
        self.count += n
        return n


class LayerStream(io.RawIOBase):
    """The uncompressed tar stream of a layer: hashed (diff_id) and ratio-checked."""

    def __init__(self, raw: BinaryIO, compression: Compression, limits: Limits,
                 where: str) -> None:
        self.compression = compression
        self._counted = _Counting(raw, ZstdFrameTracker() if compression is Compression.ZSTD
                                  else None)
        self._limits = limits
        self._where = where
        self.hasher = hashlib.sha256()
        self.out = 0
        src: BinaryIO
        if compression is Compression.GZIP:
            src = gzip.GzipFile(fileobj=self._counted, mode="rb")  # type: ignore[arg-type]
        elif compression is Compression.ZSTD:
            src = zstandard.ZstdDecompressor().stream_reader(
                self._counted, read_across_frames=True, closefd=False)
        else:
            src = self._counted  # type: ignore[assignment]
        self._src = src

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        try:
            data = self._src.read(len(b))
        except EOFError as err:
            raise LayerError(f"{self._where}: compressed data is truncated ({err})",
                             layer=self._where, hint="the layer blob is incomplete; fetch "
                             "the image again") from err
        except (OSError, zlib.error, zstandard.ZstdError, ZstdFramingError) as err:
            raise LayerError(f"{self._where}: corrupt {self.compression.value} data ({err})",
                             layer=self._where) from err
        n = len(data)
        tracker = self._counted.tracker
        if not n and tracker is not None and not tracker.complete():
            raise LayerError(f"{self._where}: compressed data is truncated (the zstd stream "
                             "ends inside a frame)", layer=self._where,
                             hint="the layer blob is incomplete; fetch the image again")
        b[:n] = data
        self.out += n
        self.hasher.update(data)
        if (self.compression is not Compression.NONE and self.out > self._limits.ratio_grace_bytes
                and self.out > self._limits.max_ratio * max(1, self._counted.count)):
            raise LimitExceededError(
                f"{self._where}: compression ratio above {self._limits.max_ratio:g}:1 "
                f"({self.out} bytes from {self._counted.count}): a decompression bomb?",
                layer=self._where, hint="raise Limits.max_ratio if this image is trusted")
        return n

    def drain(self) -> None:
        buf = bytearray(CHUNK)
        while self.readinto(buf):
            pass


class Prefixed(io.RawIOBase):
    """A stream with bytes already read put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[:len(data)] = data
        return len(data)
