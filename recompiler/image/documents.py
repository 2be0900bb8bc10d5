"""Strict parsing of the JSON documents of an image: index, manifest, config."""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from .digest import check_digest
from .errors import MalformedImageError
from .jsondoc import decode_json, shown
from .mediatypes import INDEX_TYPES, MANIFEST_TYPES
from .model import Descriptor, ImageConfig, Platform
from .platform import platform_from_json

__all__ = ["load_json", "parse_descriptor", "parse_index", "Manifest", "parse_manifest",
           "parse_config", "config_diff_ids"]


def load_json(data: bytes, where: str) -> dict:
    """Parse a JSON object (checked by :func:`decode_json`); MalformedImageError otherwise."""
    obj = decode_json(data, where)
    if not isinstance(obj, dict):
        raise MalformedImageError(f"{where}: expected a JSON object, got {_json_type(obj)}")
    return obj


def _str_map(obj: object, where: str) -> MappingProxyType:
    if obj is None:
        return MappingProxyType({})
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                            for k, v in obj.items()):
        raise MalformedImageError(f"{where}: must be an object of strings")
    return MappingProxyType(dict(obj))


def _str_list(obj: object, where: str) -> tuple[str, ...] | None:
    if obj is None:
        return None
    if not isinstance(obj, list) or not all(isinstance(x, str) for x in obj):
        raise MalformedImageError(f"{where}: must be a list of strings")
    return tuple(obj)


def parse_descriptor(obj: object, where: str) -> Descriptor:
    """A JSON descriptor → Descriptor, every field type-checked."""
    if not isinstance(obj, dict):
        raise MalformedImageError(f"{where}: descriptor must be an object")
    mt = obj.get("mediaType")
    if not isinstance(mt, str) or not mt:
        raise MalformedImageError(f"{where}: descriptor has no string 'mediaType'")
    digest = check_digest(obj.get("digest"), where)
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise MalformedImageError(f"{where}: descriptor 'size' must be a non-negative integer")
    plat = obj.get("platform")
    platform = platform_from_json(plat, where) if plat is not None else None
    annotations = _str_map(obj.get("annotations"), f"{where}: annotations")
    return Descriptor(mt, digest, size, platform, annotations)


def _media_type(doc: dict, where: str, allowed: frozenset[str], what: str) -> None:
    """A document's own optional ``mediaType``: a string, and one of ``allowed``."""
    mt = doc.get("mediaType")
    if mt is None:
        return
    if not isinstance(mt, str):
        raise MalformedImageError(f"{where}: mediaType must be a string, got "
                                  f"{_json_type(mt)}", hint="the image is corrupt")
    if mt not in allowed:
        raise MalformedImageError(f"{where}: mediaType {shown(mt)} is not {what}")


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type (object, array, number...)."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _schema2(doc: dict, where: str) -> None:
    if doc.get("schemaVersion") != 2:
        raise MalformedImageError(f"{where}: schemaVersion must be 2, got "
                                  f"{shown(doc.get('schemaVersion'))}")


def parse_index(data: bytes, where: str) -> list[Descriptor]:
    """An image index (or index.json, or a Docker manifest list) → its manifests."""
    doc = load_json(data, where)
    _schema2(doc, where)
    _media_type(doc, where, INDEX_TYPES, "an image index")
    items = doc.get("manifests")
    if not isinstance(items, list):
        raise MalformedImageError(f"{where}: 'manifests' must be a list")
    return [parse_descriptor(d, f"{where}: manifests[{i}]") for i, d in enumerate(items)]


@dataclass(frozen=True)
class Manifest:
    """An image manifest: its config and layer descriptors, and its annotations."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: MappingProxyType


def parse_manifest(data: bytes, where: str) -> Manifest:
    """An OCI image manifest (or Docker schema 2 manifest) → Manifest."""
    doc = load_json(data, where)
    _schema2(doc, where)
    _media_type(doc, where, MANIFEST_TYPES, "an image manifest")
    if "config" not in doc:
        raise MalformedImageError(f"{where}: manifest has no 'config'")
    config = parse_descriptor(doc["config"], f"{where}: config")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise MalformedImageError(f"{where}: manifest 'layers' must be a list")
    descs = tuple(parse_descriptor(d, f"{where}: layers[{i}]") for i, d in enumerate(layers))
    return Manifest(config, descs, _str_map(doc.get("annotations"), f"{where}: annotations"))


def parse_config(data: bytes, where: str) -> ImageConfig:
    """An image config blob → ImageConfig (Entrypoint, Cmd, Env, ...; raw bytes kept)."""
    doc = load_json(data, where)
    os_ = doc.get("os")
    arch = doc.get("architecture")
    if not isinstance(os_, str) or not isinstance(arch, str):
        raise MalformedImageError(f"{where}: config needs string fields 'os' and 'architecture'")
    variant = doc.get("variant")
    if variant is not None and not isinstance(variant, str):
        raise MalformedImageError(f"{where}: config 'variant' must be a string")
    cfg = doc.get("config") or {}
    if not isinstance(cfg, dict):
        raise MalformedImageError(f"{where}: config 'config' must be an object")
    wd = cfg.get("WorkingDir") or ""
    user = cfg.get("User") or ""
    if not isinstance(wd, str) or not isinstance(user, str):
        raise MalformedImageError(f"{where}: WorkingDir and User must be strings")
    config_diff_ids(doc, where)
    return ImageConfig(
        entrypoint=_str_list(cfg.get("Entrypoint"), f"{where}: Entrypoint"),
        cmd=_str_list(cfg.get("Cmd"), f"{where}: Cmd"),
        env=_str_list(cfg.get("Env"), f"{where}: Env") or (),
        working_dir=wd,
        user=user,
        labels=_str_map(cfg.get("Labels"), f"{where}: Labels"),
        platform=Platform(os_, arch, variant or None),
        raw=bytes(data),
    )


def config_diff_ids(doc: dict, where: str) -> list[str]:
    """``rootfs.diff_ids`` of a parsed config, each a checked digest."""
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict):
        raise MalformedImageError(f"{where}: config has no 'rootfs' object")
    ids = rootfs.get("diff_ids")
    if ids is None:
        ids = []
    if not isinstance(ids, list):
        raise MalformedImageError(f"{where}: rootfs.diff_ids must be a list")
    return [check_digest(d, f"{where}: rootfs.diff_ids[{i}]") for i, d in enumerate(ids)]
