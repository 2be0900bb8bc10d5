"""A real Debian image: ``debootstrap --variant=minbase`` as a two-layer OCI image."""
from __future__ import annotations

from pathlib import Path

__all__ = ["build_debian_image", "debootstrap_rootfs"]


def build_debian_image(out: Path, *, suite: str = "bookworm", fmt: str = "oci",
                       tag: str = "latest") -> Path:
    """See :func:`examples.debian.build.build_debian_image` (imported lazily so that
    ``python3 -m examples.debian.build`` runs without a double import)."""
    from .build import build_debian_image as build
    return build(out, suite=suite, fmt=fmt, tag=tag)


def debootstrap_rootfs(suite: str = "bookworm", *, mirror: str | None = None) -> Path:
    """See :func:`examples.debian.build.debootstrap_rootfs`."""
    from .build import debootstrap_rootfs as rootfs
    return rootfs(suite, mirror=mirror)
