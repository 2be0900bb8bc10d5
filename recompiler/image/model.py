"""The records image intake hands to the rest of Kiln: descriptors, config, limits, results."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

__all__ = [
    "Descriptor", "Platform", "ImageConfig", "Limits", "LayerRef", "Compression",
    "SpecialFile", "EntryMeta", "UnpackResult", "ImageKind",
]

GiB = 1 << 30


class ImageKind(str, enum.Enum):
    """What kind of input an image path turned out to be."""

    OCI_LAYOUT = "oci"                    # a directory: oci-layout + index.json + blobs/
    OCI_ARCHIVE = "oci-archive"           # a tar of an OCI layout
    DOCKER_ARCHIVE = "docker-archive"     # `docker save` output (manifest.json + layer tars)
    DOCKER_DIRECTORY = "docker-dir"       # an unpacked `docker save` tar
    ROOTFS = "rootfs"                     # a plain root filesystem directory, no layers
    SCRATCH = "scratch"                   # no input: an empty image with a given config


class Compression(str, enum.Enum):
    """How a layer blob is compressed."""

    NONE = "none"     # plain tar
    GZIP = "gzip"     # RFC 1952, magic 1f 8b
    ZSTD = "zstd"     # Zstandard frames, magic 28 b5 2f fd


@dataclass(frozen=True)
class Platform:
    """An OCI platform: os/architecture[/variant]."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and size."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def to_json(self) -> dict:
        """The descriptor as OCI JSON (platform and annotations when present)."""
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform is not None:
            plat = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                plat["variant"] = self.platform.variant
            out["platform"] = plat
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class LayerRef:
    """One layer of the selected image, in application order (bottom first).

    ``descriptor`` is the blob as stored (its digest verified on read);
    ``diff_id`` is the digest of the uncompressed tar from the config, checked
    while the layer is applied; ``location`` names where the blob lives in the
    input (a path inside a layout or archive), for error messages.
    """

    descriptor: Descriptor
    diff_id: str | None
    location: str


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config a runtime uses, plus the raw JSON for the output."""

    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    env: tuple[str, ...]
    working_dir: str
    user: str
    labels: Mapping[str, str]
    platform: Platform
    raw: bytes


@dataclass(frozen=True)
class Limits:
    """Bounds on what unpacking may consume; going past one is a LimitExceededError."""

    max_total_bytes: int = 8 * GiB
    """Sum of regular-file bytes written, over all layers."""
    max_files: int = 1_000_000
    """Number of tar entries applied, over all layers (whiteouts included)."""
    max_ratio: float = 1000.0
    """Uncompressed / compressed bytes, measured while streaming each layer."""
    ratio_grace_bytes: int = 1 << 20
    """The ratio is checked only once this many uncompressed bytes were produced
    (tiny layers of zeros legitimately compress very well)."""
    max_json_bytes: int = 4 << 20
    """Largest index, manifest or config blob read into memory."""
    max_depth: int = 4096
    """Most components in one tar member's path or hard link target. Deeper trees are
    removed and walked fine, but bookkeeping per member grows with the square of its
    depth; Linux's PATH_MAX (4096 bytes) cannot name a file half as deep in one path."""


@dataclass(frozen=True)
class SpecialFile:
    """A device node or fifo found in a layer: recorded, never created on the host."""

    path: str           # guest path, "/dev/null"
    kind: str           # "chr", "blk" or "fifo"
    major: int
    minor: int
    mode: int           # permission bits from the tar header
    uid: int
    gid: int


@dataclass(frozen=True)
class EntryMeta:
    """Metadata of a guest file that was not applied to the host file as-is.

    Kept for entries owned by a non-root uid/gid (not chowned unless asked) or
    whose mode had setuid/setgid bits (never set on host files).
    """

    uid: int
    gid: int
    mode: int           # the full mode from the tar header, setuid bits included


@dataclass(frozen=True)
class UnpackResult:
    """What unpacking an image into a root directory produced."""

    root: str
    files: int
    bytes_written: int
    special_files: tuple[SpecialFile, ...]
    metadata: Mapping[str, EntryMeta]
