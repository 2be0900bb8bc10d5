"""OCI annotation keys, config labels, media types and in-image paths that Kiln uses.

A recompiled image is the source image plus one layer holding the
megabinary at :data:`MEGABINARY_PATH`. These names are how the runtime, the
containerd shim and other tools find it and check that it belongs to the
image; docs/formats.md ("Output image") is the normative description.
"""
from __future__ import annotations

__all__ = [
    "ANNOTATION_PREFIX", "ANNOTATION_MEGABINARY_DIGEST", "ANNOTATION_MEGABINARY_VERSION",
    "ANNOTATION_ABI_VERSION", "ANNOTATION_ENGINES", "ANNOTATION_SOURCE_DIGEST",
    "ANNOTATION_TOOL_VERSION", "ANNOTATION_LAYER_ROLE", "LAYER_ROLE_MEGABINARY",
    "OCI_BASE_DIGEST", "OCI_BASE_NAME", "LABEL_RECOMPILED", "LABEL_MEGABINARY_DIGEST",
    "MEDIA_TYPE_MEGABINARY", "MEDIA_TYPE_MEGABINARY_LAYER", "KILN_DIR", "MEGABINARY_PATH",
    "MEGABINARY_SUFFIX", "SIGNATURE_PATH", "ANNOTATION_SIGNED_BY", "ENGINES_SEPARATOR", "format_engines", "parse_engines",
    "is_kiln_annotation",
]

ANNOTATION_PREFIX = "io.kiln."
"""Every Kiln-defined annotation and label key starts with this."""

# --- annotations on the output image manifest (and repeated on the layer descriptor) ---
ANNOTATION_MEGABINARY_DIGEST = "io.kiln.megabinary.digest"
"""The megabinary's digest, ``blake3:<64 hex>`` (its header checksum, see docs/formats.md)."""
ANNOTATION_MEGABINARY_VERSION = "io.kiln.megabinary.version"
"""Container format version of the megabinary, ``"<major>.<minor>"``, e.g. ``"2.0"``."""
ANNOTATION_ABI_VERSION = "io.kiln.abi.version"
"""Guest ABI version (``formats.abi.ABI_VERSION``) as decimal text."""
ANNOTATION_ENGINES = "io.kiln.megabinary.engines"
"""Engine fingerprints with an AOT artifact in the megabinary, separated by single spaces."""
ANNOTATION_SOURCE_DIGEST = "io.kiln.source.digest"
"""Manifest digest of the image that was recompiled (``sha256:<hex>``)."""
ANNOTATION_TOOL_VERSION = "io.kiln.recompiler.version"
"""Version of the recompiler that produced the image."""
ANNOTATION_SIGNED_BY = "io.kiln.megabinary.signed-by"
"""Key id of the key that signed the megabinary (``recompile --sign``); informative only: a
runtime verifies the signature file at :data:`SIGNATURE_PATH`, never this annotation."""

# --- annotation on the megabinary layer's descriptor only ---
ANNOTATION_LAYER_ROLE = "io.kiln.layer.role"
"""Marks Kiln's own layer in the manifest's ``layers`` list."""
LAYER_ROLE_MEGABINARY = "megabinary"
"""Value of :data:`ANNOTATION_LAYER_ROLE` on the layer that holds the megabinary."""

# --- standard OCI annotation keys Kiln also sets on the output manifest ---
OCI_BASE_DIGEST = "org.opencontainers.image.base.digest"
"""Standard OCI key: manifest digest of the source image (as ANNOTATION_SOURCE_DIGEST)."""
OCI_BASE_NAME = "org.opencontainers.image.base.name"
"""Standard OCI key: the reference the source image was named by, when known."""

# --- labels in the output image config (visible to `docker inspect`) ---
LABEL_RECOMPILED = "io.kiln.recompiled"
"""``"true"`` in the config labels of every image Kiln wrote."""
LABEL_MEGABINARY_DIGEST = "io.kiln.megabinary.digest"
"""Same value as the manifest annotation, for tools that only see the config."""

# --- media types ---
MEDIA_TYPE_MEGABINARY = "application/vnd.kiln.megabinary.v1"
"""A bare megabinary file as an OCI blob (artifact manifests, caches)."""
MEDIA_TYPE_MEGABINARY_LAYER = "application/vnd.oci.image.layer.v1.tar"
"""The megabinary layer is an ordinary uncompressed tar layer, so every OCI tool
can unpack it and the file inside can be memory-mapped where it lands."""

# --- where the megabinary lives in the image's root filesystem ---
KILN_DIR = "/.kiln"
"""Directory in the image rootfs that holds Kiln's files; guests never see it."""
MEGABINARY_SUFFIX = ".kmb"
"""File name extension of a megabinary."""
MEGABINARY_PATH = "/.kiln/megabinary.kmb"
"""Absolute guest path of the megabinary inside a recompiled image's rootfs."""
SIGNATURE_PATH = "/.kiln/megabinary.sig"
"""Absolute guest path of the megabinary's signature file (docs/formats.md §9), when signed."""

ENGINES_SEPARATOR = " "
"""Separator of the fingerprints in an ANNOTATION_ENGINES value (one space)."""


def format_engines(fingerprints: list[str] | tuple[str, ...]) -> str:
    """The :data:`ANNOTATION_ENGINES` value for these fingerprint strings (sorted, unique)."""
    items = sorted(set(str(f) for f in fingerprints))
    for f in items:
        if not f or any(c.isspace() for c in f):
            raise ValueError(f"engine fingerprint {f!r} is empty or contains whitespace")
    return ENGINES_SEPARATOR.join(items)


def parse_engines(value: str) -> tuple[str, ...]:
    """The fingerprint strings listed in an :data:`ANNOTATION_ENGINES` value."""
    return tuple(v for v in value.split(ENGINES_SEPARATOR) if v)


def is_kiln_annotation(key: str) -> bool:
    """Whether ``key`` is in Kiln's annotation namespace."""
    return key.startswith(ANNOTATION_PREFIX)
