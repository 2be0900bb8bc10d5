"""Read a docker-archive (``docker save``): manifest.json, config JSON and layer tars.

Both layouts Docker has written are read: the old one (``<id>.json``,
``<id>/layer.tar``, often symlinked between images) and the newer one (Docker
25+: ``blobs/sha256/<hex>`` plus an OCI index, which Kiln reads as OCI when
present). Layer files in a docker save are usually uncompressed, so their
sha256 is the diff_id from the config, which is what verifies them.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .blobs import FileStore
from .digest import CHUNK, verify_stream
from .documents import config_diff_ids, load_json, parse_config
from .errors import MalformedImageError, PlatformNotFoundError
from .jsondoc import decode_json, listing
from .layers import sniff_compression
from .mediatypes import DOCKER_LAYER, DOCKER_LAYER_GZIP, OCI_LAYER_ZSTD
from .model import Compression, Descriptor, ImageConfig, LayerRef, Limits, Platform
from .platform import matches

__all__ = ["DockerImage", "read_docker_archive"]

_HEX_NAME = re.compile(r"(?:^|/)(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json|\.tar|/layer\.tar)?$")


@dataclass(frozen=True)
class DockerImage:
    """The image selected from a docker save: config, its digest, layers, tag."""

    config: ImageConfig
    config_digest: str
    layers: tuple[LayerRef, ...]
    ref: str | None


def _digest_in_name(name: str) -> str | None:
    m = _HEX_NAME.search(name)
    return f"sha256:{m.group(1)}" if m and not name.endswith("/layer.tar") else None


def _tag_matches(tag: str, ref: str) -> bool:
    """Does RepoTag ``tag`` answer to ``ref`` ("v1", "kiln/bb:v1", "docker.io/kiln/bb:v1")?"""
    names = {tag}
    for prefix in ("docker.io/library/", "docker.io/"):
        if tag.startswith(prefix):
            names.add(tag[len(prefix):])
    if ref in names:
        return True
    repo, _, version = tag.rpartition(":")
    return ("/" not in ref and ":" not in ref and ref == version) or \
        any(n.rpartition(":")[0] == ref for n in names)


def _sha256_of(store: FileStore, rel: str) -> str:
    h = hashlib.sha256()
    with store.open(rel) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def read_docker_archive(store: FileStore, *, ref: str | None, platform: Platform,
                        limits: Limits) -> DockerImage:
    """Select one image (by tag ``ref`` if given) from a docker save in ``store``."""
    where = f"{store.name}: manifest.json"
    with store.open("manifest.json") as f:
        raw = f.read(limits.max_json_bytes + 1)
    if len(raw) > limits.max_json_bytes:
        raise MalformedImageError(f"{where}: larger than {limits.max_json_bytes} bytes")
    doc = decode_json(raw, where)
    if not isinstance(doc, list) or not doc:
        raise MalformedImageError(f"{where}: expected a non-empty list of images")
    for i, ent in enumerate(doc):
        if not isinstance(ent, dict) or not isinstance(ent.get("Config"), str) \
                or not isinstance(ent.get("Layers"), list) \
                or not all(isinstance(x, str) for x in ent["Layers"]):
            raise MalformedImageError(f"{where}: entry {i} needs 'Config' (string) and "
                                      "'Layers' (list of strings)")
        tags = ent.get("RepoTags")
        if tags is not None and (not isinstance(tags, list)
                                 or not all(isinstance(t, str) for t in tags)):
            raise MalformedImageError(f"{where}: entry {i}: 'RepoTags' must be a list of strings")

    def tags_of(ent: dict) -> list[str]:
        return list(ent.get("RepoTags") or [])

    if ref is not None:
        picked = [e for e in doc if any(_tag_matches(t, ref) for t in tags_of(e))]
        if not picked:
            avail = sorted(t for e in doc for t in tags_of(e))
            raise PlatformNotFoundError(f"{where}: no image tagged {ref!r}; tags present: "
                                        f"{listing(avail)}", available=avail,
                                        hint="pick one of the tags listed")
    else:
        picked = doc
    if len(picked) > 1:
        avail = sorted(t for e in picked for t in tags_of(e)) or [e["Config"] for e in picked]
        raise PlatformNotFoundError(f"{where}: the archive holds {len(picked)} images; "
                                    f"tags: {listing(avail)}", available=avail,
                                    hint="name the tag to use")
    ent = picked[0]
    tag = (tags_of(ent) or [None])[0]

    cfg_rel = ent["Config"]
    cwhere = f"{store.name}: {cfg_rel}"
    size = store.size(cfg_rel)
    if size > limits.max_json_bytes:
        raise MalformedImageError(f"{cwhere}: config larger than {limits.max_json_bytes} bytes")
    with store.open(cfg_rel) as f:
        cfg_raw = f.read()
    cfg_digest = f"sha256:{hashlib.sha256(cfg_raw).hexdigest()}"
    named = _digest_in_name(cfg_rel)
    if named is not None:
        import io
        verify_stream(io.BytesIO(cfg_raw), named, size, cwhere)
    config = parse_config(cfg_raw, cwhere)
    if not matches(config.platform, platform):
        raise PlatformNotFoundError(
            f"{cwhere}: the image is {listing([str(config.platform)])}, not {platform}",
            available=[str(config.platform)], hint="choose the image's platform")
    diff_ids = config_diff_ids(load_json(cfg_raw, cwhere), cwhere)
    if len(diff_ids) != len(ent["Layers"]):
        raise MalformedImageError(f"{where}: {len(ent['Layers'])} layers listed but the config "
                                  f"has {len(diff_ids)} diff_ids")

    layers = []
    for i, (rel, diff_id) in enumerate(zip(ent["Layers"], diff_ids)):
        if not store.exists(rel):
            raise store.missing(rel, diff_id)
        lsize = store.size(rel)
        with store.open(rel) as f:
            comp = sniff_compression(f.read(8))
        digest = _digest_in_name(rel)
        if digest is None:
            digest = diff_id if comp is Compression.NONE else _sha256_of(store, rel)
        mt = {Compression.NONE: DOCKER_LAYER, Compression.GZIP: DOCKER_LAYER_GZIP,
              Compression.ZSTD: OCI_LAYER_ZSTD}[comp]
        layers.append(LayerRef(Descriptor(mt, digest, lsize), diff_id, rel))
    return DockerImage(config, cfg_digest, tuple(layers), tag)

