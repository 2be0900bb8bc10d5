"""The image-intake exception tree: every problem with an input or output image."""
from __future__ import annotations

from formats.errors import KilnError

__all__ = [
    "ImageError", "NotAnImageError", "MalformedImageError", "BlobError",
    "PlatformNotFoundError", "LayerError", "UnsafeLayerError", "LimitExceededError",
    "OutputError",
]


class ImageError(KilnError):
    """Base of every error about a container image Kiln reads or writes."""


class NotAnImageError(ImageError):
    """The path is none of: OCI layout, OCI archive, docker-archive, rootfs directory."""


class MalformedImageError(ImageError):
    """index.json, a manifest, a config or manifest.json is not valid (JSON, types, fields)."""


class BlobError(ImageError):
    """A blob is missing, or its digest or size disagrees with its descriptor."""

    def __init__(self, message: str, *, digest: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.digest = digest


class PlatformNotFoundError(ImageError):
    """The image has no manifest for the requested platform (or tag)."""

    def __init__(self, message: str, *, available: list[str],
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.available = available


class LayerError(ImageError):
    """A layer could not be read: not a tar, truncated or corrupt compression."""

    def __init__(self, message: str, *, layer: str | None = None,
                 member: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.layer = layer
        self.member = member


class UnsafeLayerError(LayerError):
    """A layer entry would write, link or delete outside the destination root."""


class LimitExceededError(LayerError):
    """Unpacking went past a configured limit (bytes, file count, compression ratio)."""


class OutputError(ImageError):
    """The output image could not be written where the user asked."""
