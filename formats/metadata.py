"""The megabinary's META section: what produced it (tool version, source image, parameters)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from formats.index import IndexSchemaError, canonical_cbor

_META_KEYS = ("tool_version", "source_image", "parameters")


def _check_param(value: Any, where: str, depth: int = 0) -> None:
    if depth > 16:
        raise IndexSchemaError("parameters nested too deeply", where=where)
    if value is None or isinstance(value, (bool, int, str, bytes)):
        if isinstance(value, int) and not -(1 << 64) <= value < (1 << 64):
            raise IndexSchemaError("integer does not fit in 64 bits", where=where)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_param(v, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise IndexSchemaError(f"map key {k!r} is not a text string", where=where)
            _check_param(v, f"{where}.{k}", depth + 1)
        return
    raise IndexSchemaError(f"{type(value).__name__} values are not allowed (only null, bool, "
                           "int, text, bytes, arrays and text-keyed maps; no timestamps)",
                           where=where)


@dataclass(frozen=True)
class Metadata:
    """What produced the megabinary. No timestamps: identical inputs give identical files."""
    tool_version: str
    source_image: str = ""
    """Digest of the input image (e.g. ``sha256:…``), empty when unknown."""
    parameters: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """The recompile options that shaped the output (CBOR-able plain data)."""

    def to_obj(self) -> dict[str, Any]:
        return {"tool_version": self.tool_version, "source_image": self.source_image,
                "parameters": dict(self.parameters)}

    @classmethod
    def from_obj(cls, obj: Any, *, offset: int | None = None,
                 path: str | None = None) -> "Metadata":
        """Validate the META data model (unknown keys ignored) and build the record."""
        try:
            if not isinstance(obj, Mapping):
                raise IndexSchemaError(f"expected a map, got {type(obj).__name__}", where="meta")
            for key in _META_KEYS:
                if key not in obj:
                    raise IndexSchemaError(f"missing required key {key!r}", where="meta")
            for key in ("tool_version", "source_image"):
                if not isinstance(obj[key], str):
                    raise IndexSchemaError(f"expected a text string, got {type(obj[key]).__name__}",
                                           where=f"meta.{key}")
            if not isinstance(obj["parameters"], Mapping):
                raise IndexSchemaError("expected a map", where="meta.parameters")
            _check_param(obj["parameters"], "meta.parameters")
        except IndexSchemaError as err:
            raise IndexSchemaError(err.message, offset=offset, path=path, hint=err.hint) from None
        return cls(obj["tool_version"], obj["source_image"], dict(obj["parameters"]))


def encode_metadata(meta: Metadata) -> bytes:
    obj = meta.to_obj()
    Metadata.from_obj(obj)
    return canonical_cbor(obj)

