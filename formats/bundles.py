"""Where a recompiled image's runtime bundle is cached, and finding a finished one from an OCI layout's index alone."""
from __future__ import annotations

import json
from pathlib import Path

from formats.cache import use

__all__ = ["COMPLETE", "bundle_dir", "cached_layout_bundle", "finished_bundle", "layout_manifest_digest"]

COMPLETE = ".kiln-bundle-complete"
"""The file a bundle's builder writes last (recompiler/bundle.py): a bundle without it is not one."""

_IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_INDEX_LIMIT = 1 << 20


def bundle_dir(cache: Path, key: str) -> Path:
    """The bundle of the image whose manifest (or config) digest is ``key``."""
    return cache / "bundles" / key.replace(":", "-")


def finished_bundle(dest: Path) -> Path | None:
    """``dest``, leased until this process ends, if it is a finished bundle; else None."""
    lease = use(dest)
    if lease is None:
        return None
    if not (dest / COMPLETE).is_file():       # not a bundle Kiln finished: leave it be
        lease.close()
        return None
    return lease.keep()


def layout_manifest_digest(image: Path) -> str | None:
    """The manifest digest of an OCI layout directory whose index names exactly one image
    manifest: the key ``kiln run IMAGE`` finds its bundle by, read without the image library
    (about a tenth of a second of start-up). None for anything else (archives, nested or
    multi-platform indexes, unreadable or odd files): the caller then asks the recompiler's
    image code, which checks the image fully."""
    try:
        if not (image / "oci-layout").is_file():
            return None
        with open(image / "index.json", "rb") as f:
            raw = f.read(_INDEX_LIMIT + 1)
        if len(raw) > _INDEX_LIMIT:
            return None
        index = json.loads(raw)
    except (OSError, ValueError):
        return None
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or len(manifests) != 1 or not isinstance(manifests[0], dict):
        return None
    m = manifests[0]
    digest = m.get("digest")
    if m.get("mediaType") != _IMAGE_MANIFEST or not isinstance(digest, str):
        return None
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        return None
    return digest


def cached_layout_bundle(image: Path, cache: Path) -> Path | None:
    """The finished bundle of OCI layout ``image`` if the cache has one (leased), else None."""
    digest = layout_manifest_digest(image)
    return None if digest is None else finished_bundle(bundle_dir(cache, digest))
