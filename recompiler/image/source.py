"""Open any input image (auto-detected) as a SourceImage: config, layers, unpack."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Mapping

from .archive import read_docker_archive
from .blobs import DirStore, FileStore, TarStore
from .digest import digest_of_bytes, verify_stream
from .documents import config_diff_ids, load_json, parse_config
from .errors import ImageError, LayerError, MalformedImageError, NotAnImageError
from .jsondoc import shown
from .layers import apply_layers
from .layout import blob_path, read_oci_layout
from .mediatypes import is_layer
from .model import (EntryMeta, ImageConfig, ImageKind, LayerRef, Limits, Platform,
                    SpecialFile, UnpackResult)
from .platform import DEFAULT_PLATFORM, parse_platform
from formats.trees import empty_directory, remove_tree, walk_tree

__all__ = ["SourceImage", "open_image", "scratch_image", "DEFAULT_ENV_PATH", "rootfs_config"]

DEFAULT_ENV_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NOT_AN_IMAGE_HINT = ("give an OCI image layout directory, an OCI archive (oci-archive), a "
                      "docker-archive (docker save) or a root filesystem directory")


def rootfs_config(platform: Platform = DEFAULT_PLATFORM) -> bytes:
    """The config Kiln gives a plain rootfs directory: PATH, WorkingDir /, no command."""
    doc = {"architecture": platform.architecture, "os": platform.os,
           "config": {"Env": [DEFAULT_ENV_PATH], "WorkingDir": "/"},
           "rootfs": {"type": "layers", "diff_ids": []}}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class SourceImage:
    """One selected input image: its config and layers, and how to read its blobs.

    ``manifest_digest`` / ``manifest_raw`` are None for docker-archive and
    rootfs inputs (they have no OCI manifest); ``rootfs`` is set only for a
    rootfs directory. Close it (or use ``with``) to release an archive.
    """

    path: Path
    kind: ImageKind
    config: ImageConfig
    config_digest: str
    layers: tuple[LayerRef, ...]
    manifest_digest: str | None = None
    manifest_raw: bytes | None = None
    manifest_annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ref: str | None = None
    rootfs: Path | None = None
    store: FileStore | None = None
    limits: Limits = field(default_factory=Limits)

    def __enter__(self) -> SourceImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    # -- blobs ---------------------------------------------------------------
    def open_layer(self, layer: LayerRef) -> BinaryIO:
        """The layer's blob as stored (compressed or not)."""
        assert self.store is not None
        return self.store.open(layer.location)

    def verify(self) -> None:
        """Check every layer blob's digest and size against its descriptor (BlobError)."""
        if self.store is None:
            return
        for layer in self.layers:
            if not self.store.exists(layer.location):
                raise self.store.missing(layer.location, layer.descriptor.digest)
            with self.open_layer(layer) as f:
                verify_stream(f, layer.descriptor.digest, layer.descriptor.size,
                              f"{self.store.name}: {layer.location}")

    # -- unpack --------------------------------------------------------------
    def unpack(self, dest: Path, *, chown: bool = False) -> UnpackResult:
        """Verify the blobs, then apply the layers in order into ``dest`` (new or empty)."""
        try:
            if self.kind is ImageKind.ROOTFS:
                assert self.rootfs is not None
                return _copy_rootfs(self.rootfs, Path(dest), self.limits)
            self.verify()
            return apply_layers(((ref, lambda ref=ref: self.open_layer(ref))
                                 for ref in self.layers),
                                Path(dest), limits=self.limits, chown=chown, name=str(self.path))
        except OSError as err:
            raise LayerError(f"{self.path}: unpacking into {dest} failed: "
                             f"{err.strerror or err}" + (f" ({err.filename})" if err.filename
                                                         else ""),
                             hint="check free space and permissions of the destination") from err


def scratch_image(config: dict, name: str = "scratch") -> SourceImage:
    """An empty image (no layers) with ``config`` (an OCI image config object).

    For building images from nothing with :func:`recompiler.image.write_image`.
    """
    doc = dict(config)
    doc.setdefault("architecture", DEFAULT_PLATFORM.architecture)
    doc.setdefault("os", DEFAULT_PLATFORM.os)
    doc["rootfs"] = {"type": "layers", "diff_ids": []}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    parsed = parse_config(raw, f"{name}: config")
    return SourceImage(Path(name), ImageKind.SCRATCH, parsed, digest_of_bytes(raw), ())


def _is_tar(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512)
    return head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar"


def open_image(path: Path | str, *, platform: str | Platform | None = None,
               ref: str | None = None, limits: Limits = Limits()) -> SourceImage:
    """Open the image at ``path``, whatever its kind, and select one platform's image.

    ``platform`` ("linux/amd64" by default) picks from multi-platform indexes;
    ``ref`` picks a tag (``org.opencontainers.image.ref.name`` in a layout,
    ``RepoTags`` in a docker save). Raises NotAnImageError, MalformedImageError,
    PlatformNotFoundError or BlobError, each naming the file or digest.
    """
    path = Path(path)
    want = (parse_platform(platform) if isinstance(platform, str)
            else platform or DEFAULT_PLATFORM)
    try:
        return _open(path, want, ref, limits)
    except OSError as err:
        raise ImageError(f"{path}: cannot read the image: {err.strerror or err}"
                         + (f" ({err.filename})" if err.filename else ""),
                         hint="check the path and its permissions") from err


def _open(path: Path, want: Platform, ref: str | None, limits: Limits) -> SourceImage:
    if not path.exists():
        raise NotAnImageError(f"{path}: no such file or directory", hint=_NOT_AN_IMAGE_HINT)
    if path.is_dir():
        if (path / "index.json").exists() or (path / "oci-layout").exists():
            return _open_oci(DirStore(path), path, ImageKind.OCI_LAYOUT, want, ref, limits)
        if (path / "manifest.json").exists():
            return _open_docker(DirStore(path), path, ImageKind.DOCKER_DIRECTORY, want, ref,
                                limits)
        if (path / "blobs").is_dir():
            raise NotAnImageError(f"{path}: has blobs/ but neither index.json nor "
                                  "manifest.json", hint=_NOT_AN_IMAGE_HINT)
        if not any(path.iterdir()):
            raise NotAnImageError(f"{path}: the directory is empty", hint=_NOT_AN_IMAGE_HINT)
        raw = rootfs_config(want)
        config = parse_config(raw, f"{path}: default config")
        return SourceImage(path, ImageKind.ROOTFS, config, digest_of_bytes(raw), (),
                           rootfs=path, limits=limits)
    if not path.is_file() or not _is_tar(path):
        raise NotAnImageError(f"{path}: not a directory or a tar archive",
                              hint=_NOT_AN_IMAGE_HINT)
    store = TarStore(path)
    try:
        if store.exists("index.json") and store.exists("oci-layout"):
            return _open_oci(store, path, ImageKind.OCI_ARCHIVE, want, ref, limits)
        if store.exists("manifest.json"):
            return _open_docker(store, path, ImageKind.DOCKER_ARCHIVE, want, ref, limits)
        if store.exists("index.json"):
            return _open_oci(store, path, ImageKind.OCI_ARCHIVE, want, ref, limits)
        raise NotAnImageError(
            f"{path}: a tar archive with neither index.json + oci-layout (OCI archive) nor "
            "manifest.json (docker-archive)",
            hint="if it is a root filesystem tarball (docker export), unpack it into a "
            "directory and give that directory")
    except BaseException:
        store.close()
        raise


def _open_oci(store: FileStore, path: Path, kind: ImageKind, want: Platform,
              ref: str | None, limits: Limits) -> SourceImage:
    sel = read_oci_layout(store, ref=ref, platform=want, limits=limits)
    where = f"{store.name}: manifest {sel.manifest_descriptor.digest}"
    cwhere = f"{store.name}: config {sel.manifest.config.digest}"
    diff_ids = config_diff_ids(load_json(sel.config.raw, cwhere), cwhere)
    if len(diff_ids) != len(sel.manifest.layers):
        raise MalformedImageError(f"{where}: {len(sel.manifest.layers)} layers but the config "
                                  f"has {len(diff_ids)} diff_ids")
    layers = []
    for i, (desc, diff_id) in enumerate(zip(sel.manifest.layers, diff_ids)):
        if not is_layer(desc.media_type):
            raise MalformedImageError(f"{where}: layers[{i}] has media type "
                                      f"{shown(desc.media_type)}, which is not a tar layer")
        layers.append(LayerRef(desc, diff_id, blob_path(desc.digest)))
    return SourceImage(path, kind, sel.config, sel.manifest.config.digest, tuple(layers),
                       manifest_digest=sel.manifest_descriptor.digest,
                       manifest_raw=sel.manifest_raw,
                       manifest_annotations=sel.manifest.annotations, ref=sel.ref,
                       store=store, limits=limits)


def _open_docker(store: FileStore, path: Path, kind: ImageKind, want: Platform,
                 ref: str | None, limits: Limits) -> SourceImage:
    img = read_docker_archive(store, ref=ref, platform=want, limits=limits)
    return SourceImage(path, kind, img.config, img.config_digest, img.layers, ref=img.ref,
                       store=store, limits=limits)


def _copy_rootfs(src: Path, dest: Path, limits: Limits) -> UnpackResult:
    """A rootfs directory copied into ``dest``: links kept, specials recorded, setuid dropped.

    Walked without recursion (any depth); when it fails, what it copied is removed.
    """
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise LayerError(f"{dest}: the destination exists and is not an empty directory")
    created = not dest.exists()
    dest.mkdir(exist_ok=True)
    try:
        return _copy_tree(src, dest, limits)
    except BaseException:
        with contextlib.suppress(OSError):         # the copy's own error is reported
            if created:
                remove_tree(dest)
            else:
                empty_directory(dest)
        raise


def _copy_tree(src: Path, dest: Path, limits: Limits) -> UnpackResult:
    # Paths as strings: pathlib's parsing of every path made deep trees slow.
    src_s, dest_s = os.fspath(src), os.fspath(dest)
    special: list[SpecialFile] = []
    meta: dict[str, EntryMeta] = {}
    files = 0
    total = 0
    links: dict[tuple[int, int], str] = {}
    dirs: list[str] = []
    for dirpath, dirnames, filenames in walk_tree(src_s):
        rel_dir = dirpath[len(src_s):].lstrip("/")
        dirs.append(rel_dir)
        for name in sorted(dirnames + filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            s = os.path.join(src_s, rel)
            d = os.path.join(dest_s, rel)
            guest = "/" + rel
            st = os.lstat(s)
            files += 1
            if files > limits.max_files:
                raise LayerError(f"{src}: more than {limits.max_files} files")
            if st.st_uid or st.st_gid or st.st_mode & 0o6000:
                meta[guest] = EntryMeta(st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISDIR(st.st_mode):
                os.mkdir(d, 0o700)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    os.link(links[key], d)
                    continue
                total += st.st_size
                if total > limits.max_total_bytes:
                    raise LayerError(f"{src}: more than {limits.max_total_bytes} bytes")
                shutil.copyfile(s, d, follow_symlinks=False)
                os.chmod(d, stat.S_IMODE(st.st_mode) & 0o777)
                os.utime(d, ns=(st.st_mtime_ns, st.st_mtime_ns))
                links[key] = d
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
                kind = "chr" if stat.S_ISCHR(st.st_mode) else \
                    "blk" if stat.S_ISBLK(st.st_mode) else "fifo"
                special.append(SpecialFile(guest, kind, os.major(st.st_rdev),
                                           os.minor(st.st_rdev), stat.S_IMODE(st.st_mode),
                                           st.st_uid, st.st_gid))
    for rel_dir in reversed(dirs):                  # deepest first
        st = os.lstat(os.path.join(src_s, rel_dir))
        target = os.path.join(dest_s, rel_dir)
        os.chmod(target, stat.S_IMODE(st.st_mode) & 0o1777)
        os.utime(target, ns=(st.st_mtime_ns, st.st_mtime_ns))
    return UnpackResult(str(dest), files, total, tuple(special), meta)
