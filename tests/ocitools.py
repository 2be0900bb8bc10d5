"""Test helpers: build layer tars and OCI / docker images by hand, byte by byte.

Independent of ``recompiler.image.writer`` on purpose: intake is tested
against images this module writes with plain ``tarfile``/``json``/``hashlib``,
and against images real tools (skopeo, umoci) write.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import zstandard

from formats.trees import remove_tree, walk_tree

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {"none": "application/vnd.oci.image.layer.v1.tar",
               "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}


# -- tar members ------------------------------------------------------------

@dataclass
class M:
    """One tar member to write: a TarInfo-like spec."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    linkname: str = ""
    mtime: int = 1_600_000_000
    uid: int = 0
    gid: int = 0
    major: int = 0
    minor: int = 0


def reg(name: str, data: bytes = b"", mode: int = 0o644, **kw) -> M:
    return M(name, tarfile.REGTYPE, data, mode, **kw)


def dir_(name: str, mode: int = 0o755, **kw) -> M:
    return M(name, tarfile.DIRTYPE, b"", mode, **kw)


def sym(name: str, target: str) -> M:
    return M(name, tarfile.SYMTYPE, b"", 0o777, target)


def hard(name: str, target: str) -> M:
    return M(name, tarfile.LNKTYPE, b"", 0o644, target)


def whiteout(dirpath: str, victim: str) -> M:
    return reg(f"{dirpath}/.wh.{victim}" if dirpath else f".wh.{victim}")


def opaque(dirpath: str) -> M:
    return reg(f"{dirpath}/.wh..wh..opq")


def chrdev(name: str, major: int, minor: int) -> M:
    return M(name, tarfile.CHRTYPE, b"", 0o666, major=major, minor=minor)


def fifo(name: str) -> M:
    return M(name, tarfile.FIFOTYPE, b"", 0o644)


def tar_bytes(members: list[M]) -> bytes:
    """A tar holding ``members`` in the given order, names exactly as given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = m.type
            info.mode = m.mode
            info.mtime = m.mtime
            info.uid, info.gid = m.uid, m.gid
            info.linkname = m.linkname
            info.devmajor, info.devminor = m.major, m.minor
            info.size = len(m.data) if m.type == tarfile.REGTYPE else 0
            tf.addfile(info, io.BytesIO(m.data) if info.size else None)
    return buf.getvalue()


# -- raw tar headers, for hostile layers tarfile would not write ------------

FIELDS = {"name": (0, 100), "mode": (100, 8), "uid": (108, 8), "gid": (116, 8),
          "size": (124, 12), "mtime": (136, 12), "chksum": (148, 8), "typeflag": (156, 1),
          "linkname": (157, 100), "magic": (257, 6), "version": (263, 2), "uname": (265, 32),
          "gname": (297, 32), "devmajor": (329, 8), "devminor": (337, 8), "prefix": (345, 155)}
"""(offset, width) of each field of a POSIX ustar header block."""


def base256(value: int, width: int) -> bytes:
    """``value`` in the GNU base-256 encoding of a numeric field (negative allowed)."""
    if value >= 0:
        return b"\x80" + value.to_bytes(width - 1, "big")
    return b"\xff" + (256 ** (width - 1) + value).to_bytes(width - 1, "big")


def fix_checksum(block: bytearray) -> bytearray:
    """Recompute a header block's checksum, as a writer would (the field counted as spaces)."""
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return block


def header(name: str, kind: bytes = tarfile.REGTYPE, length: int = 0, target: str = "",
           **fields: bytes) -> bytearray:
    """A ustar header block (type ``kind``, size ``length``, link ``target``); ``fields``
    (raw bytes, by FIELDS name) overwrite fields, then the checksum is fixed."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mtime = kind, length, target, 1_600_000_000
    block = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    for field, raw in fields.items():
        off, width = FIELDS[field]
        block[off:off + width] = raw.ljust(width, b"\0")[:width]
    return fix_checksum(block)


def pad(data: bytes) -> bytes:
    """``data`` padded with NULs to whole 512-byte blocks."""
    return data + b"\0" * (-len(data) % 512)


def pax_record(keyword: str | bytes, value: str | bytes) -> bytes:
    """One pax extended-header record, ``"<len> <keyword>=<value>\\n"`` with its own length."""
    kw = keyword.encode() if isinstance(keyword, str) else keyword
    val = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    body = b" " + kw + b"=" + val + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def pax_block(records: bytes, kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A pax extended header (type x, or g for global) holding ``records``, padded."""
    return bytes(header("././@PaxHeader", kind, len(records))) + pad(records)


def raw_tar(*parts: bytes) -> bytes:
    """Header blocks and data, in order, then the end-of-archive blocks."""
    return b"".join(parts) + b"\0" * 1024


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- OCI layouts ------------------------------------------------------------

@dataclass
class Layout:
    """An OCI image layout under construction."""

    root: Path
    index: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def blob(self, data: bytes, media_type: str, algo: str = "sha256", **extra) -> dict:
        hexd = hashlib.new(algo, data).hexdigest()
        d = self.root / "blobs" / algo
        d.mkdir(parents=True, exist_ok=True)
        (d / hexd).write_bytes(data)
        return {"mediaType": media_type, "digest": f"{algo}:{hexd}", "size": len(data), **extra}

    def blob_file(self, desc: dict) -> Path:
        algo, hexd = desc["digest"].split(":")
        return self.root / "blobs" / algo / hexd

    def image(self, layers: list[bytes], *, compression: str = "gzip",
              config: dict | None = None, arch: str = "amd64", os_: str = "linux",
              variant: str | None = None, media_types: list[str] | None = None,
              diff_ids: list[str] | None = None) -> dict:
        """Add one image (layers given as uncompressed tars); return its manifest descriptor."""
        layer_descs = []
        for i, tar in enumerate(layers):
            blob = compress(tar, compression)
            mt = media_types[i] if media_types else LAYER_TYPES[compression]
            layer_descs.append(self.blob(blob, mt))
        cfg = {"architecture": arch, "os": os_,
               "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
               "rootfs": {"type": "layers",
                          "diff_ids": diff_ids or [sha256(t) for t in layers]}}
        if variant:
            cfg["variant"] = variant
        if config:
            cfg["config"].update(config)
        cdesc = self.blob(json.dumps(cfg).encode(), OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc,
                    "layers": layer_descs}
        plat = {"architecture": arch, "os": os_}
        if variant:
            plat["variant"] = variant
        return self.blob(json.dumps(manifest).encode(), OCI_MANIFEST, platform=plat)

    def sub_index(self, manifests: list[dict]) -> dict:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return self.blob(json.dumps(doc).encode(), OCI_INDEX)

    def add(self, desc: dict, tag: str | None = "latest") -> None:
        d = dict(desc)
        if tag:
            d["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.index.append(d)
        self.write_index()

    def write_index(self) -> None:
        (self.root / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.index}))


def single_layer_image(root: Path, members: list[M], compression: str = "gzip") -> Layout:
    lay = Layout(root)
    lay.add(lay.image([tar_bytes(members)], compression=compression))
    return lay


def layered_image(root: Path, layers: list[list[M]], compression: str = "gzip") -> Layout:
    lay = Layout(root)
    lay.add(lay.image([tar_bytes(ms) for ms in layers], compression=compression))
    return lay


# -- docker save (Docker 25+ "blobs/sha256" style, without index.json) ------

def docker_archive(path: Path, layers: list[bytes], *, tag: str = "test/img:latest",
                   config: dict | None = None, old_style: bool = False) -> Path:
    """A docker-save tar written by hand; ``old_style`` uses ``<id>/layer.tar`` names."""
    cfg = {"architecture": "amd64", "os": "linux",
           "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/true"], **(config or {})},
           "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in layers]}}
    cfg_raw = json.dumps(cfg).encode()
    files: dict[str, bytes] = {}
    cfg_hex = sha256(cfg_raw).split(":")[1]
    if old_style:
        cfg_name = f"{cfg_hex}.json"
        names = []
        for i, t in enumerate(layers):
            lid = hashlib.sha256(f"layer{i}".encode() + t).hexdigest()
            files[f"{lid}/layer.tar"] = t
            files[f"{lid}/VERSION"] = b"1.0"
            names.append(f"{lid}/layer.tar")
    else:
        cfg_name = f"blobs/sha256/{cfg_hex}"
        names = []
        for t in layers:
            n = "blobs/sha256/" + sha256(t).split(":")[1]
            files[n] = t
            names.append(n)
    files[cfg_name] = cfg_raw
    files["manifest.json"] = json.dumps([{"Config": cfg_name, "RepoTags": [tag],
                                          "Layers": names}]).encode()
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


# -- images whose JSON documents are edited as text --------------------------

DOCUMENTS = ("oci-layout", "index.json", "manifest", "config", "manifest.json")
"""The JSON documents of an image: an OCI layout's four, and a docker save's manifest.json."""

Edit = Callable[[str, bytes], bytes]
"""``edit(document, data)``: the bytes to write for one document (``data`` is as generated)."""


def _as_is(_name: str, data: bytes) -> bytes:
    return data


@dataclass
class ImageDocs:
    """One image's layers and JSON documents (as objects), written out with each document
    passed through an ``edit`` function as bytes; digests and sizes of what a document
    refers to are fixed up first, so an edit is what the reader sees, past the blob checks."""

    layers: list[bytes]
    config: dict
    manifest: dict = field(default_factory=lambda: {"schemaVersion": 2,
                                                    "mediaType": OCI_MANIFEST})
    index: dict = field(default_factory=lambda: {"schemaVersion": 2, "mediaType": OCI_INDEX})
    layout: dict = field(default_factory=lambda: {"imageLayoutVersion": "1.0.0"})

    @classmethod
    def of(cls, layers: list[bytes], config: dict | None = None) -> "ImageDocs":
        cfg = config or {"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}}
        cfg = {**cfg, "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in layers]}}
        return cls(list(layers), cfg)

    def write_oci(self, root: Path, edit: Edit = _as_is) -> Path:
        """An OCI image layout directory at ``root`` (layers as given; it may exist)."""
        blobs = root / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)

        def blob(data: bytes, media_type: str) -> dict:
            (blobs / sha256(data).split(":")[1]).write_bytes(data)
            return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}

        layers = [blob(t, LAYER_TYPES["none"]) for t in self.layers]
        config = edit("config", json.dumps(self.config).encode())
        manifest = {**self.manifest, "config": blob(config, OCI_CONFIG), "layers": layers}
        mdesc = blob(edit("manifest", json.dumps(manifest).encode()), OCI_MANIFEST)
        mdesc["platform"] = {"architecture": "amd64", "os": "linux"}
        mdesc["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
        index = {**self.index, "manifests": [mdesc]}
        (root / "index.json").write_bytes(edit("index.json", json.dumps(index).encode()))
        (root / "oci-layout").write_bytes(edit("oci-layout", json.dumps(self.layout).encode()))
        return root

    def docker_members(self, edit: Edit = _as_is) -> dict[str, bytes]:
        """The files of a docker save (Docker 25+ names) of this image: name -> bytes."""
        files = {f"blobs/sha256/{sha256(t).split(':')[1]}": t for t in self.layers}
        layer_names = list(files)
        config = edit("config", json.dumps(self.config).encode())
        config_name = f"blobs/sha256/{sha256(config).split(':')[1]}"
        files[config_name] = config
        manifest = [{"Config": config_name, "RepoTags": ["test/img:latest"],
                     "Layers": layer_names}]
        files["manifest.json"] = edit("manifest.json", json.dumps(manifest).encode())
        return files


def tar_of(files: dict[str, bytes], pax: dict[str, dict[str, str]] | None = None,
           global_pax: dict[str, str] | None = None) -> bytes:
    """A tar of ``files`` (name -> bytes); ``pax[name]`` adds pax records to that member,
    ``global_pax`` a global pax header (for every member) at the start."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers=global_pax) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = dict((pax or {}).get(name, {}))
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_tar(path: Path, files: dict[str, bytes], pax: dict[str, dict[str, str]] | None = None,
              global_pax: dict[str, str] | None = None) -> Path:
    """:func:`tar_of` written to ``path``."""
    path.write_bytes(tar_of(files, pax, global_pax))
    return path


def write_image_docs(docs: ImageDocs, path: Path, which: str, edit: Edit = _as_is) -> Path:
    """``docs`` written as the kind of image that holds document ``which``: a docker-archive
    for manifest.json, an OCI layout directory otherwise."""
    if which == "manifest.json":
        return write_tar(path.with_suffix(".tar"), docs.docker_members(edit))
    return docs.write_oci(path, edit)


# -- scratch space ------------------------------------------------------------

@contextmanager
def memory_scratch(fallback: Path, prefix: str) -> Iterator[Path]:
    """A fresh directory on a tmpfs (/dev/shm) when there is one, else ``fallback``; emptied
    afterwards without recursion, whatever happened. For tests that create and remove
    thousands of directories: on a disk mounted with ``discard`` each rmdir takes
    milliseconds, and pytest's own cleanup (shutil.rmtree) breaks on a deep tree left behind."""
    shm = Path("/dev/shm")
    own = shm.is_dir() and os.access(shm, os.W_OK | os.X_OK)
    path = Path(tempfile.mkdtemp(dir=shm, prefix=prefix)) if own else fallback
    try:
        yield path
    finally:
        if own:
            remove_tree(path)
        else:
            for child in path.iterdir():
                remove_tree(child)


# -- comparing trees --------------------------------------------------------

def tree(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every entry under ``root``: type, permission bits, content or link target, mtime.

    The walk does not recurse (trees can be thousands deep); ``skip`` is left out.
    """
    out: dict[str, tuple] = {}
    root = Path(root)
    for dirpath, dirnames, filenames in walk_tree(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = "/" + p.relative_to(root).as_posix()
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", stat.S_IMODE(st.st_mode),
                            hashlib.sha256(p.read_bytes()).hexdigest(), int(st.st_mtime))
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode))
    return out


def snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    """:func:`tree` of ``root`` without the subtree ``skip`` (the destination)."""
    return tree(root, Path(skip))


def umoci_unpack(layout: Path, tag: str, bundle: Path) -> Path:
    """Unpack with the real umoci; return the bundle's rootfs."""
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)],
                   check=True, capture_output=True)
    return bundle / "rootfs"


def skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True)
    return proc.stdout


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (host mtimes ignored): for output images."""
    return {"/" + p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file() and not p.is_symlink()}
