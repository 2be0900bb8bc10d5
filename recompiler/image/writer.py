"""Write the output image: the source's layers byte-for-byte, plus Kiln's extra layers.

Formats: an OCI image layout directory (``oci``, the default), an OCI archive
(``oci-archive``, a tar of that layout) or a ``docker-archive``, written the
way Docker 25+ saves: the OCI layout plus ``manifest.json``, so both Docker
and OCI tools read it.

Extra layers are left **uncompressed**. Deflate output is not specified
byte-for-byte across zlib builds (zlib, zlib-ng, cloudflare zlib differ), so
a gzip layer's digest would depend on the machine that ran the recompile;
a plain tar's digest depends only on its entries, so identical input gives
an identical image everywhere. The layer's digest is then also its diff_id,
and registries or ``skopeo copy --dest-compress`` compress on push anyway.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Mapping, Sequence

from .digest import CHUNK, split_digest
from .documents import load_json
from .errors import BlobError, ImageError, OutputError
from .layers import sniff_compression
from .layout import REF_NAME, blob_path
from .mediatypes import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, oci_layer_type
from .model import Compression, Descriptor, ImageKind
from .source import SourceImage
from .tarbuild import HashingSink, LayerEntry, measure_layer_tar, rootfs_entries, write_layer_tar
from formats.trees import remove_tree

__all__ = ["ExtraLayer", "OutputImage", "write_image", "FORMATS"]

FORMATS = ("oci", "oci-archive", "docker-archive")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class ExtraLayer:
    """A layer Kiln adds on top of the source's: its entries, its history line and the
    annotations of its descriptor in the manifest (e.g. ``io.kiln.layer.role``)."""

    entries: tuple[LayerEntry, ...]
    created_by: str = "kiln recompile"
    comment: str | None = None
    annotations: Mapping[str, str] | None = None


@dataclass(frozen=True)
class OutputImage:
    """What :func:`write_image` wrote."""

    path: Path
    fmt: str
    tag: str
    manifest_digest: str
    config_digest: str
    layers: tuple[Descriptor, ...]
    index_json: bytes = field(repr=False, default=b"")


@dataclass
class _Blob:
    desc: Descriptor
    produce: Callable[[HashingSink], None]


class _DirSink:
    """Blobs into an OCI layout directory, each written under a temporary name first."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def blob(self, b: _Blob) -> None:
        final = self.root / blob_path(b.desc.digest)
        if final.exists():
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".partial-{split_digest(b.desc.digest)[1]}")
        with open(tmp, "wb") as f:
            sink = HashingSink(f, split_digest(b.desc.digest)[0])
            b.produce(sink)
        _check(b.desc, sink)
        os.replace(tmp, final)

    def file(self, name: str, data: bytes) -> None:
        (self.root / name).write_bytes(data)

    def close(self) -> None:
        pass


class _TarSink:
    """Blobs into a tar archive written in one pass (sizes known ahead)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.written: set[str] = set()
        self.dirs: set[str] = set()

    def _header(self, name: str, size: int, dir_: bool = False) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE if dir_ else tarfile.REGTYPE
        info.mode = 0o755 if dir_ else 0o644
        info.size = 0 if dir_ else size
        info.mtime = 0
        info.uname = info.gname = ""
        self.f.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                self._header(d, 0, dir_=True)

    def _pad(self, size: int) -> None:
        if size % 512:
            self.f.write(b"\0" * (512 - size % 512))

    def blob(self, b: _Blob) -> None:
        name = blob_path(b.desc.digest)
        if name in self.written:
            return
        self.written.add(name)
        self._parents(name)
        self._header(name, b.desc.size)
        sink = HashingSink(self.f, split_digest(b.desc.digest)[0])
        b.produce(sink)
        _check(b.desc, sink)
        self._pad(sink.size)

    def file(self, name: str, data: bytes) -> None:
        self._parents(name)
        self._header(name, len(data))
        self.f.write(data)
        self._pad(len(data))

    def close(self) -> None:
        self.f.write(b"\0" * 1024)
        pos = self.f.tell()
        if pos % tarfile.RECORDSIZE:
            self.f.write(b"\0" * (tarfile.RECORDSIZE - pos % tarfile.RECORDSIZE))


def _check(desc: Descriptor, sink: HashingSink) -> None:
    if sink.digest != desc.digest or sink.size != desc.size:
        raise BlobError(f"blob {desc.digest} ({desc.size} bytes) came out as {sink.digest} "
                        f"({sink.size} bytes) while writing the output image",
                        digest=desc.digest, hint="an input file changed while Kiln was "
                        "writing; run the command again")


def _copy_from(opener: Callable[[], BinaryIO], desc: Descriptor) -> Callable[[HashingSink], None]:
    def produce(sink: HashingSink) -> None:
        with opener() as f:
            while chunk := f.read(CHUNK):
                sink.write(chunk)
    return produce


def _tar_of(entries: Sequence[LayerEntry]) -> Callable[[HashingSink], None]:
    def produce(sink: HashingSink) -> None:
        write_layer_tar(entries, sink)  # type: ignore[arg-type]
    return produce


def _json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def write_image(source: SourceImage, out: Path | str, *,
                extra_layers: Sequence[ExtraLayer] = (),
                annotations: Mapping[str, str] | None = None,
                config_labels: Mapping[str, str] | None = None,
                fmt: str = "oci", tag: str = "latest") -> OutputImage:
    """Write ``source`` plus ``extra_layers`` as a new image at ``out``.

    ``fmt`` is ``oci`` (``out`` is a directory that must not exist or be
    empty), ``oci-archive`` or ``docker-archive`` (``out`` is a file that must
    not exist). Source layer blobs are copied byte-for-byte (same digests);
    a rootfs-directory source becomes one layer first. ``annotations`` go on
    the manifest, ``config_labels`` into the config's Labels; the index
    entry carries ``org.opencontainers.image.ref.name`` = ``tag``.
    """
    out = Path(out)
    if fmt not in FORMATS:
        raise OutputError(f"unknown output format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    if not _TAG_RE.match(tag):
        raise OutputError(f"{tag!r} is not a valid tag",
                          hint="letters, digits, '_', '.', '-'; at most 128 characters")
    _check_out(out, fmt)

    blobs: list[_Blob] = []
    diff_ids: list[str] = []
    layer_descs: list[Descriptor] = []
    src_doc = load_json(source.config.raw, f"{source.path}: config")
    src_diff_ids = list((src_doc.get("rootfs") or {}).get("diff_ids") or [])

    if source.kind is ImageKind.ROOTFS:
        assert source.rootfs is not None
        try:
            entries = rootfs_entries(source.rootfs)
        except OSError as err:
            raise ImageError(f"{source.path}: reading the root filesystem failed: "
                             f"{err.strerror or err}" + (f" ({err.filename})" if err.filename
                                                         else ""),
                             hint="check the directory's permissions") from err
        digest, size = measure_layer_tar(entries)
        desc = Descriptor(oci_layer_type(Compression.NONE), digest, size)
        blobs.append(_Blob(desc, _tar_of(entries)))
        layer_descs.append(desc)
        diff_ids.append(digest)
        src_history_extra = [{"created": _EPOCH, "created_by": f"kiln: rootfs {source.path.name}"}]
    else:
        src_history_extra = []
        for ref, diff_id in zip(source.layers, src_diff_ids):
            with source.open_layer(ref) as f:
                comp = sniff_compression(f.read(8))
            d = ref.descriptor
            desc = Descriptor(oci_layer_type(comp), d.digest, d.size, None, d.annotations)
            blobs.append(_Blob(desc, _copy_from(lambda ref=ref: source.open_layer(ref), desc)))
            layer_descs.append(desc)
            diff_ids.append(diff_id)

    history = src_doc.get("history")
    if not isinstance(history, list):
        history = [{"created": _EPOCH, "created_by": "(layer of the source image)"}
                   for _ in diff_ids] if not src_history_extra else []
    history = list(history) + src_history_extra
    created = src_doc.get("created") if isinstance(src_doc.get("created"), str) else _EPOCH
    for extra in extra_layers:
        digest, size = measure_layer_tar(extra.entries)
        desc = Descriptor(oci_layer_type(Compression.NONE), digest, size, None,
                          dict(sorted((extra.annotations or {}).items())))
        blobs.append(_Blob(desc, _tar_of(extra.entries)))
        layer_descs.append(desc)
        diff_ids.append(digest)
        h = {"created": created, "created_by": extra.created_by}
        if extra.comment:
            h["comment"] = extra.comment
        history.append(h)

    doc = dict(src_doc)
    doc["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    doc["history"] = history
    cfg = dict(doc.get("config") or {})
    if config_labels:
        labels = dict(cfg.get("Labels") or {})
        labels.update(config_labels)
        cfg["Labels"] = labels
    doc["config"] = cfg
    config_raw = _json(doc)
    config_desc = Descriptor(OCI_CONFIG, _sha256(config_raw), len(config_raw))

    manifest: dict = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": config_desc.to_json(),
                      "layers": [d.to_json() for d in layer_descs]}
    ann = dict(source.manifest_annotations)
    ann.update(annotations or {})
    if ann:
        manifest["annotations"] = ann
    manifest_raw = _json(manifest)
    plat = source.config.platform
    manifest_desc = Descriptor(OCI_MANIFEST, _sha256(manifest_raw), len(manifest_raw), plat,
                               {REF_NAME: tag})
    index_raw = _json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                       "manifests": [manifest_desc.to_json()]})

    small = [_Blob(config_desc, lambda s: s.write(config_raw)),
             _Blob(Descriptor(OCI_MANIFEST, manifest_desc.digest, manifest_desc.size),
                   lambda s: s.write(manifest_raw))]
    created_dir = not out.exists()
    try:
        if fmt == "oci":
            out.mkdir(exist_ok=True)
            dsink = _DirSink(out)
            for b in blobs + small:
                dsink.blob(b)
            dsink.file("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
            dsink.file("index.json", index_raw)
        else:
            with open(out, "xb") as f:
                tsink = _TarSink(f)
                tsink.file("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
                for b in blobs + small:
                    tsink.blob(b)
                tsink.file("index.json", index_raw)
                if fmt == "docker-archive":
                    repo_tag = tag if ":" in tag else f"kiln:{tag}"
                    tsink.file("manifest.json", _json([{
                        "Config": blob_path(config_desc.digest),
                        "RepoTags": [repo_tag],
                        "Layers": [blob_path(d.digest) for d in layer_descs]}]))
                tsink.close()
    except OSError as err:
        _cleanup(out, fmt, created_dir)
        raise OutputError(f"{out}: writing the image failed: {err.strerror or err}"
                          + (f" ({err.filename})" if err.filename else ""),
                          hint="check free space and permissions") from err
    except BaseException:
        _cleanup(out, fmt, created_dir)
        raise
    return OutputImage(out, fmt, tag, manifest_desc.digest, config_desc.digest,
                       tuple(layer_descs), index_raw)


def _sha256(data: bytes) -> str:
    import hashlib
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _check_out(out: Path, fmt: str) -> None:
    if not out.parent.is_dir():
        raise OutputError(f"{out}: the parent directory {out.parent} does not exist",
                          hint="create it first")
    if fmt == "oci":
        if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
            raise OutputError(f"{out}: exists and is not an empty directory",
                              hint="give a new path for the output image")
    elif out.exists() or out.is_symlink():
        raise OutputError(f"{out}: already exists; Kiln does not overwrite files",
                          hint="give a new path for the output archive")


def _cleanup(out: Path, fmt: str, created_dir: bool) -> None:
    try:
        if fmt != "oci":
            out.unlink(missing_ok=True)
        elif created_dir:
            remove_tree(out)
        elif out.is_dir():
            for child in out.iterdir():
                with contextlib.suppress(OSError):
                    remove_tree(child)
    except OSError:
        pass
