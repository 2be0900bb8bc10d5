"""Platforms: parse ``os/arch[/variant]``, describe them, and match index entries."""
from __future__ import annotations

from .errors import MalformedImageError
from .model import Platform

__all__ = ["DEFAULT_PLATFORM", "parse_platform", "platform_from_json", "matches"]

DEFAULT_PLATFORM = Platform("linux", "amd64")
"""Kiln recompiles x86-64 Linux images, so this is what it picks from an index."""

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}


def parse_platform(text: str) -> Platform:
    """``"linux/arm64/v8"`` → Platform; ValueError-free: bad text is a MalformedImageError."""
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise MalformedImageError(f"platform {text!r} is not os/architecture[/variant]",
                                  hint="for example linux/amd64 or linux/arm64/v8")
    arch = _ARCH_ALIASES.get(parts[1], parts[1])
    return Platform(parts[0], arch, parts[2] if len(parts) == 3 else None)


def platform_from_json(obj: object, where: str) -> Platform:
    """A descriptor's or config's ``platform`` object → Platform."""
    if not isinstance(obj, dict):
        raise MalformedImageError(f"{where}: platform must be an object")
    os_ = obj.get("os")
    arch = obj.get("architecture")
    variant = obj.get("variant")
    if not isinstance(os_, str) or not isinstance(arch, str):
        raise MalformedImageError(f"{where}: platform needs string fields 'os' and 'architecture'")
    if variant is not None and not isinstance(variant, str):
        raise MalformedImageError(f"{where}: platform variant must be a string")
    return Platform(os_, arch, variant or None)


def matches(have: Platform, want: Platform) -> bool:
    """Does an image for ``have`` satisfy a request for ``want``?

    The variant matters only when the request names one (``linux/arm64/v8``);
    ``linux/arm64`` accepts any arm64 variant.
    """
    if have.os != want.os or have.architecture != want.architecture:
        return False
    return want.variant is None or have.variant == want.variant
