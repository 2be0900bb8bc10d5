"""The built-in example image: Debian's busybox-static as a one-layer OCI image."""
from __future__ import annotations

from pathlib import Path

__all__ = ["build_busybox_image"]


def build_busybox_image(out: Path, fmt: str = "oci", tag: str = "latest") -> Path:
    """See :func:`examples.busybox.build.build_busybox_image` (imported lazily so that
    ``python3 -m examples.busybox.build`` runs without a double import)."""
    from .build import build_busybox_image as build
    return build(out, fmt, tag)
