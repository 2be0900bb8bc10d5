"""Hostile and malformed images: each is refused with a clear KilnError, nothing escapes.

After every attempt the filesystem around the destination (the test's whole
tmp directory, outside ``dest``) must be exactly as before, and files an
attack aims at must be untouched.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import zlib
from pathlib import Path

import pytest
import zstandard

from formats.errors import KilnError
from recompiler.image import (BlobError, LayerError, LimitExceededError, MalformedImageError,
                              UnsafeLayerError, open_image)
from tests.ocitools import (Layout, compress, hard, layered_image, reg, single_layer_image,
                            snapshot, sym, tar_bytes)


@pytest.fixture
def arena(tmp_path):
    """A directory with a secret file, an attack target dir and the destination path."""
    (tmp_path / "secret").write_text("do not touch")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x").write_text("lower x, outside dest")
    return tmp_path


def attempt(arena: Path, image: Path, error: type[KilnError], *needles: str) -> KilnError:
    """Unpack ``image`` into arena/dest; expect ``error`` whose message has every needle."""
    dest = arena / "dest"
    before = snapshot(arena, dest)
    with pytest.raises(error) as info:
        with open_image(image) as img:
            img.unpack(dest)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    assert snapshot(arena, dest) == before
    assert (arena / "secret").read_text() == "do not touch"
    return info.value


def image_of(arena: Path, *layers: list) -> Path:
    return layered_image(arena / "img", list(layers)).root


def test_dotdot_member(arena):
    attempt(arena, image_of(arena, [reg("a/../../secret", b"owned")]), UnsafeLayerError,
            "a/../../secret", "'..'")


def test_absolute_member(arena):
    target = str(arena / "outside" / "abs")
    attempt(arena, image_of(arena, [reg(target, b"owned")]), UnsafeLayerError, target,
            "absolute")
    assert not Path(target).exists()


@pytest.mark.parametrize("target", ["ABS", "../outside", "../../outside", "/"])
def test_symlink_then_write_through_it(arena, target):
    target = str(arena / "outside") if target == "ABS" else target
    img = image_of(arena, [sym("link", target), reg("link/planted", b"owned")])
    attempt(arena, img, UnsafeLayerError, "link/planted", "symbolic link")
    assert not (arena / "outside" / "planted").exists()


def test_symlink_in_lower_layer_then_write_in_upper(arena):
    img = image_of(arena, [sym("etc", str(arena / "outside"))], [reg("etc/passwd", b"owned")])
    attempt(arena, img, UnsafeLayerError, "etc/passwd", "symbolic link")


def test_symlink_to_parent_then_hard_link_named_through_it(arena):
    img = image_of(arena, [reg("f", b"inside"), sym("up", ".."), hard("up/evil", "f")])
    attempt(arena, img, UnsafeLayerError, "up/evil", "symbolic link")


def test_symlink_to_parent_then_hard_link_targeting_through_it(arena):
    img = image_of(arena, [sym("up", ".."), hard("stolen", "up/secret")])
    attempt(arena, img, UnsafeLayerError, "stolen", "symbolic link")
    assert os.stat(arena / "secret").st_nlink == 1


@pytest.mark.parametrize("linkname", ["../secret", "ABS", "a/../../secret"])
def test_hard_link_to_outside(arena, linkname):
    linkname = str(arena / "secret") if linkname == "ABS" else linkname
    err = attempt(arena, image_of(arena, [hard("stolen", linkname)]), UnsafeLayerError,
                  "stolen")
    assert os.stat(arena / "secret").st_nlink == 1
    assert "hard link target" in str(err)


@pytest.mark.parametrize("name", ["../.wh.x", "../outside/.wh.x", ".wh...", "sub/.wh.."])
def test_escaping_whiteouts(arena, name):
    img = image_of(arena, [reg("sub/keep", b"k")], [reg(name)])
    attempt(arena, img, UnsafeLayerError, name)
    assert (arena / "outside" / "x").exists()


def _bomb(how: str, size: int) -> bytes:
    """A tar holding one file of ``size`` zero bytes, compressed, built in a stream."""
    info = tarfile.TarInfo("zeros")
    info.size = size
    header = info.tobuf(tarfile.PAX_FORMAT)
    chunk = b"\0" * (1 << 20)
    if how == "gzip":
        comp = zlib.compressobj(9, zlib.DEFLATED, 31)
        parts = [comp.compress(header)]
        for _ in range(size // len(chunk)):
            parts.append(comp.compress(chunk))
        parts.append(comp.compress(b"\0" * 1024))
        parts.append(comp.flush())
        return b"".join(parts)
    cctx = zstandard.ZstdCompressor(level=19)
    buf = io.BytesIO()
    with cctx.stream_writer(buf, closefd=False) as w:
        w.write(header)
        for _ in range(size // len(chunk)):
            w.write(chunk)
        w.write(b"\0" * 1024)
    return buf.getvalue()


@pytest.mark.parametrize("how", ["gzip", "zstd"])
def test_decompression_bomb_with_default_limits(arena, how):
    blob = _bomb(how, 256 << 20)
    assert (256 << 20) / len(blob) > 1000          # it is a bomb by the default measure
    lay = Layout(arena / "img")
    lay.add(lay.image([b""], compression="none",
                      media_types=[f"application/vnd.oci.image.layer.v1.tar+{how}"],
                      diff_ids=["sha256:" + "0" * 64]))
    # replace the (empty) layer with the bomb, keeping the descriptor honest
    manifest_path = next(p for p in (arena / "img/blobs/sha256").iterdir()
                         if b'"layers"' in p.read_bytes())
    manifest = json.loads(manifest_path.read_bytes())
    desc = lay.blob(blob, manifest["layers"][0]["mediaType"])
    manifest["layers"] = [desc]
    lay.index = []
    mdesc = lay.blob(json.dumps(manifest).encode(),
                     "application/vnd.oci.image.manifest.v1+json")
    lay.add(mdesc)
    err = attempt(arena, lay.root, LimitExceededError, "compression ratio", desc["digest"])
    assert err.hint


def test_digest_mismatch(arena):
    lay = single_layer_image(arena / "img", [reg("f", b"original")])
    manifest = json.loads(_manifest_file(lay).read_bytes())
    desc = manifest["layers"][0]
    lay.blob_file(desc).write_bytes(compress(tar_bytes([reg("f", b"tampered")]), "gzip")
                                    [:desc["size"]].ljust(desc["size"], b"\0"))
    attempt(arena, lay.root, BlobError, desc["digest"], "digest mismatch")
    assert not (arena / "dest" / "f").exists()


def test_size_mismatch(arena):
    lay = single_layer_image(arena / "img", [reg("f", b"original")])
    desc = json.loads(_manifest_file(lay).read_bytes())["layers"][0]
    with open(lay.blob_file(desc), "ab") as f:
        f.write(b"extra")
    attempt(arena, lay.root, BlobError, desc["digest"], "larger")


@pytest.mark.parametrize("which", ["layer", "config", "manifest"])
def test_missing_blob(arena, which):
    lay = single_layer_image(arena / "img", [reg("f", b"x")])
    mfile = _manifest_file(lay)
    manifest = json.loads(mfile.read_bytes())
    desc = {"layer": manifest["layers"][0], "config": manifest["config"],
            "manifest": lay.index[0]}[which]
    lay.blob_file(desc).unlink()
    attempt(arena, lay.root, BlobError, desc["digest"], "missing")


def _manifest_file(lay: Layout) -> Path:
    return lay.blob_file(lay.index[0])


@pytest.mark.parametrize("index_text,needle", [
    ("{not json", "not valid JSON"),
    ("[]", "expected a JSON object"),
    ('{"schemaVersion": 2, "manifests": {}}', "'manifests' must be a list"),
    ('{"schemaVersion": 1, "manifests": []}', "schemaVersion"),
    ('{"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1'
     '+json", "size": 3}]}', "digest must be a string"),
    ('{"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1'
     '+json", "digest": "sha256:../../../../etc/passwd", "size": 3}]}', "not a digest"),
    ('{"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1'
     '+json", "digest": "sha256:' + "a" * 64 + '", "size": "3"}]}', "'size'"),
])
def test_malformed_index(arena, index_text, needle):
    lay = single_layer_image(arena / "img", [reg("f", b"x")])
    (lay.root / "index.json").write_text(index_text)
    attempt(arena, lay.root, MalformedImageError, "index.json", needle)


@pytest.mark.parametrize("mutate,needle", [
    (lambda m: m.pop("layers"), "'layers' must be a list"),
    (lambda m: m.pop("config"), "no 'config'"),
    (lambda m: m.update(layers=[{"mediaType": 5}]), "mediaType"),
    (lambda m: m["layers"][0].update(mediaType="application/json"), "not a tar layer"),
])
def test_malformed_manifest(arena, mutate, needle):
    lay = single_layer_image(arena / "img", [reg("f", b"x")])
    manifest = json.loads(_manifest_file(lay).read_bytes())
    mutate(manifest)
    lay.index = []
    mdesc = lay.blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    lay.add(mdesc)
    attempt(arena, lay.root, MalformedImageError, mdesc["digest"], needle)


@pytest.mark.parametrize("config,needle", [
    (b"{bad json", "not valid JSON"),
    (b'{"architecture": "amd64", "os": "linux", "config": {"Cmd": "/bin/sh"}, '
     b'"rootfs": {"type": "layers", "diff_ids": []}}', "Cmd: must be a list of strings"),
    (b'{"os": "linux", "rootfs": {"diff_ids": []}}', "architecture"),
    (b'{"architecture": "amd64", "os": "linux"}', "rootfs"),
])
def test_malformed_config(arena, config, needle):
    lay = single_layer_image(arena / "img", [reg("f", b"x")])
    manifest = json.loads(_manifest_file(lay).read_bytes())
    manifest["config"] = lay.blob(config, "application/vnd.oci.image.config.v1+json")
    lay.index = []
    lay.add(lay.blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json"))
    attempt(arena, lay.root, MalformedImageError, manifest["config"]["digest"], needle)


def test_malformed_docker_manifest_json(arena):
    p = arena / "save.tar"
    with tarfile.open(p, "w") as tf:
        data = b'[{"Config": 3, "Layers": "x"}]'
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    attempt(arena, p, MalformedImageError, "manifest.json", "'Config'")


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_layer_that_is_not_a_tar(arena, compression):
    lay = Layout(arena / "img")
    junk = os.urandom(3000)
    lay.add(lay.image([junk], compression=compression))
    desc = json.loads(_manifest_file(lay).read_bytes())["layers"][0]
    attempt(arena, lay.root, LayerError, desc["digest"], "not a tar")


@pytest.mark.parametrize("how", ["gzip", "zstd"])
def test_truncated_compressed_layer(arena, how):
    tar = tar_bytes([reg("a", os.urandom(200_000)), reg("b", b"tail")])
    blob = compress(tar, how)
    lay = Layout(arena / "img")
    cut = blob[: len(blob) // 2]
    lay.add(lay.image([b""], compression="none", diff_ids=[
        "sha256:" + "0" * 64]))
    manifest = json.loads(_manifest_file(lay).read_bytes())
    desc = lay.blob(cut, f"application/vnd.oci.image.layer.v1.tar+{how}")
    manifest["layers"] = [desc]
    lay.index = []
    lay.add(lay.blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json"))
    attempt(arena, lay.root, LayerError, desc["digest"], "compressed data is truncated")
