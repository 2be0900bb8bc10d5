"""Read an OCI image layout (a directory or an archive of one) and select one image."""
from __future__ import annotations

from dataclasses import dataclass

from .blobs import FileStore
from .digest import split_digest, verify_stream
from .documents import Manifest, load_json, parse_config, parse_index, parse_manifest
from .errors import BlobError, MalformedImageError, PlatformNotFoundError
from .jsondoc import listing
from .mediatypes import INDEX_TYPES, MANIFEST_TYPES
from .model import Descriptor, ImageConfig, Limits, Platform
from .platform import matches

__all__ = ["blob_path", "read_blob", "SelectedImage", "read_oci_layout", "REF_NAME"]

REF_NAME = "org.opencontainers.image.ref.name"
_MAX_DEPTH = 4


def blob_path(digest: str) -> str:
    """Where a blob lives in an OCI layout: ``blobs/<algo>/<hex>``."""
    algo, hexpart = split_digest(digest)
    return f"blobs/{algo}/{hexpart}"


def read_blob(store: FileStore, desc: Descriptor, where: str, limits: Limits) -> bytes:
    """A small blob (JSON) read whole, digest and size verified."""
    rel = blob_path(desc.digest)
    if not store.exists(rel):
        raise store.missing(rel, desc.digest)
    if desc.size > limits.max_json_bytes:
        raise MalformedImageError(
            f"{where}: {desc.digest} declares {desc.size} bytes, more than the "
            f"{limits.max_json_bytes} allowed for an index, manifest or config")
    with store.open(rel) as f:
        data = f.read(limits.max_json_bytes + 1)
    import io
    verify_stream(io.BytesIO(data), desc.digest, desc.size, f"{store.name}: {rel}")
    return data


@dataclass(frozen=True)
class SelectedImage:
    """The one image chosen from a layout: manifest and config, with raw bytes."""

    manifest_descriptor: Descriptor
    manifest_raw: bytes
    manifest: Manifest
    config: ImageConfig
    ref: str | None


@dataclass(frozen=True)
class _Leaf:
    desc: Descriptor
    ref: str | None


def _check_layout_file(store: FileStore) -> None:
    if not store.exists("oci-layout"):
        raise MalformedImageError(f"{store.name}: has index.json but no oci-layout file",
                                  hint="an OCI image layout needs both files")
    with store.open("oci-layout") as f:
        doc = load_json(f.read(65536), f"{store.name}: oci-layout")
    if not isinstance(doc.get("imageLayoutVersion"), str):
        raise MalformedImageError(f"{store.name}: oci-layout has no string 'imageLayoutVersion'")


def _is_attestation(desc: Descriptor) -> bool:
    if desc.annotations.get("vnd.docker.reference.type") == "attestation-manifest":
        return True
    return desc.platform is not None and desc.platform.os == "unknown"


def read_oci_layout(store: FileStore, *, ref: str | None, platform: Platform,
                    limits: Limits) -> SelectedImage:
    """Select the image for ``platform`` (and tag ``ref``) from an OCI layout in ``store``."""
    _check_layout_file(store)
    if not store.exists("index.json"):
        raise MalformedImageError(f"{store.name}: OCI layout has no index.json")
    with store.open("index.json") as f:
        raw = f.read(limits.max_json_bytes + 1)
    where = f"{store.name}: index.json"
    if len(raw) > limits.max_json_bytes:
        raise MalformedImageError(f"{where}: larger than {limits.max_json_bytes} bytes")
    top = parse_index(raw, where)
    if not top:
        raise MalformedImageError(f"{where}: lists no manifests", hint="the layout is empty")
    if ref is not None:
        named = [d for d in top if d.annotations.get(REF_NAME) == ref]
        if not named:
            refs = sorted({d.annotations.get(REF_NAME, "") for d in top} - {""})
            raise PlatformNotFoundError(
                f"{where}: no image tagged {ref!r}; tags present: {listing(refs)}",
                available=refs, hint="pick one of the tags listed")
        top = named

    leaves: list[_Leaf] = []

    def walk(descs: list[Descriptor], tag: str | None, depth: int, at: str) -> None:
        for i, d in enumerate(descs):
            name = d.annotations.get(REF_NAME, tag) if depth == 0 else tag
            if d.media_type in INDEX_TYPES:
                if depth >= _MAX_DEPTH:
                    raise MalformedImageError(f"{at}: image indexes nested more than "
                                              f"{_MAX_DEPTH} deep")
                sub = f"{store.name}: index {d.digest}"
                walk(parse_index(read_blob(store, d, sub, limits), sub), name, depth + 1, sub)
            elif d.media_type in MANIFEST_TYPES:
                if not _is_attestation(d):
                    leaves.append(_Leaf(d, name))
            # other artifact types (signatures, SBOMs) are not images: skipped

    walk(top, None, 0, where)

    loaded: dict[str, SelectedImage] = {}

    def load(leaf: _Leaf) -> SelectedImage:
        if leaf.desc.digest not in loaded:
            mwhere = f"{store.name}: manifest {leaf.desc.digest}"
            mraw = read_blob(store, leaf.desc, mwhere, limits)
            manifest = parse_manifest(mraw, mwhere)
            cwhere = f"{store.name}: config {manifest.config.digest}"
            config = parse_config(read_blob(store, manifest.config, cwhere, limits), cwhere)
            loaded[leaf.desc.digest] = SelectedImage(leaf.desc, mraw, manifest, config, leaf.ref)
        return loaded[leaf.desc.digest]

    def leaf_platform(leaf: _Leaf) -> Platform:
        return leaf.desc.platform or load(leaf).config.platform

    chosen = [leaf for leaf in leaves if matches(leaf_platform(leaf), platform)]
    if not chosen:
        avail = sorted({str(leaf_platform(leaf)) for leaf in leaves})
        raise PlatformNotFoundError(
            f"{store.name}: no image for platform {platform}; available: {listing(avail)}",
            available=avail,
            hint="choose one of the available platforms (Kiln recompiles linux/amd64)")
    digests = {leaf.desc.digest for leaf in chosen}
    if len(digests) > 1:
        refs = sorted({leaf.ref or "(untagged)" for leaf in chosen})
        raise PlatformNotFoundError(
            f"{store.name}: {len(digests)} different images match {platform}; tags: "
            f"{listing(refs)}", available=refs, hint="name the tag to use")
    return load(chosen[0])


def missing_blob(store: FileStore, desc: Descriptor) -> BlobError:
    """The error for a layer blob absent from the layout."""
    return store.missing(blob_path(desc.digest), desc.digest)
