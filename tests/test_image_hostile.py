"""Hostile and malformed images: each is refused with a clear KilnError, nothing escapes.

After every attempt the filesystem around the destination (the test's whole
tmp directory, outside ``dest``) must be exactly as before, and files an
attack aims at must be untouched.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import zstandard

from formats.annotations import ANNOTATION_MEGABINARY_DIGEST
from formats.errors import KilnError
from recompiler.bundle import BundleError, prepare_bundle
from recompiler.image import (BlobError, LayerError, LimitExceededError, MalformedImageError,
                              UnsafeLayerError, open_image)
from tests.ocitools import (DOCUMENTS, ImageDocs, Layout, base256, compress, dir_, hard, header,
                            layered_image, memory_scratch, pad, pax_block, pax_record,
                            raw_tar, reg, write_tar,
                            single_layer_image, snapshot, sym, tar_bytes, write_image_docs)


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
    assert not dest.exists()                    # a failed unpack leaves nothing behind
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


# -- hostile JSON documents: refused with the document and the field named ---------

def _with_field(name: str, raw: str, which: str | None = None, key: str = "x"):
    """An edit putting ``key: <raw JSON text>`` into document ``which`` (``name`` is the one
    being written; a docker manifest.json gets it in its image entry)."""
    def edit(doc: str, data: bytes) -> bytes:
        if doc != (which or name):
            return data
        obj = json.loads(data)
        (obj[0] if isinstance(obj, list) else obj)[key] = "@@RAW@@"
        return json.dumps(obj).replace('"@@RAW@@"', raw).encode()
    return edit


def _document_image(arena: Path, which: str, raw: str, key: str = "x") -> Path:
    docs = ImageDocs.of([tar_bytes([reg("f", b"x")])])
    return write_image_docs(docs, arena / "img", which, _with_field(which, raw, key=key))


# How each document is named in errors: by file name, or by digest for blobs.
NAMED = {"oci-layout": "oci-layout", "index.json": "index.json", "manifest": ": manifest sha256:",
         "config": ": config sha256:", "manifest.json": "manifest.json"}


@pytest.mark.parametrize("which", DOCUMENTS)
def test_deeply_nested_json_is_refused(arena, which):
    # issue 13, item 1: ~1000 levels of nesting gave RecursionError
    img = _document_image(arena, which, "[" * 1000 + "]" * 1000)
    err = attempt(arena, img, MalformedImageError, NAMED[which], "x[0][0][0]",
                  "nested more than 100 levels deep")
    assert err.hint


def test_nesting_inside_objects_names_the_keys(arena):
    img = _document_image(arena, "config", '{"a": ' * 150 + "1" + "}" * 150, key="Labels")
    attempt(arena, img, MalformedImageError, "Labels.a.a.a", "nested more than 100")


@pytest.mark.parametrize("which", DOCUMENTS)
def test_integer_past_the_digit_limit_is_refused(arena, which):
    # issue 13, item 2: more than 4,300 digits gave ValueError from int()
    img = _document_image(arena, which, "9" * 5000)
    attempt(arena, img, MalformedImageError, NAMED[which],
            "x: an integer of 5000 digits is out of range")


@pytest.mark.parametrize("raw,needle", [
    (str(1 << 64), "integer 18446744073709551616 is out of range"),
    ("-1e400", "number -1e400 is too large"),
    ("NaN", "NaN is not a JSON number"),
    ("-Infinity", "-Infinity is not a JSON number"),
])
def test_numbers_json_cannot_carry_are_refused(arena, raw, needle):
    attempt(arena, _document_image(arena, "index.json", raw), MalformedImageError,
            "index.json: x: " + needle)


def test_descriptor_size_past_64_bits_names_the_descriptor(arena):
    docs = ImageDocs.of([tar_bytes([reg("f", b"x")])])

    def edit(doc: str, data: bytes) -> bytes:
        if doc != "index.json":
            return data
        return re.sub(rb'"size": \d+', b'"size": ' + b"1" * 30, data)
    img = docs.write_oci(arena / "img", edit)
    attempt(arena, img, MalformedImageError, "index.json: manifests[0].size: an integer of 30")


@pytest.mark.parametrize("raw", ['"\\ud800"', '"ok \\udfff"'])
def test_string_with_a_lone_surrogate(arena, raw):
    # found by tests/test_image_fuzz.py: decoded, such a label could not be written out
    # again as UTF-8, so recompile failed with UnicodeEncodeError writing the output image
    img = _document_image(arena, "config", "{" + f'"a": {raw}' + "}", key="Labels")
    attempt(arena, img, MalformedImageError, ": config sha256:",
            "Labels.a: the string holds a lone UTF-16 surrogate")


@pytest.mark.parametrize("raw,shown", [("{}", "an object"), ("[]", "an array"), ("7", "a number")])
@pytest.mark.parametrize("which", ["index.json", "manifest"])
def test_media_type_that_is_not_a_string(arena, which, raw, shown):
    # issue 13, item 3: {} or [] gave "TypeError: unhashable type" in parse_index/parse_manifest
    img = _document_image(arena, which, raw, key="mediaType")
    attempt(arena, img, MalformedImageError, NAMED[which],
            f"mediaType must be a string, got {shown}")


# -- hostile tar headers: refused with the member and the header field named -------

def _layer_image(arena: Path, *tars: bytes) -> Path:
    return ImageDocs.of(list(tars)).write_oci(arena / "img")


@pytest.mark.parametrize("how", ["base-256", "pax"])
def test_negative_member_size(arena, how):
    # issue 13, item 4: ValueError in layers._file
    if how == "base-256":
        tar = raw_tar(bytes(header("f", size=base256(-5, 12))), pad(b"hello"))
    else:
        tar = raw_tar(pax_block(pax_record("size", "-5")), bytes(header("f", length=5)),
                      pad(b"hello"))
    attempt(arena, _layer_image(arena, tar), LayerError, "tar member 'f'",
            "header field 'size' is -5")


@pytest.mark.parametrize("how,shown", [("base-256", "a 81-bit number"), ("pax", "inf")])
def test_file_mtime_no_time_t_holds(arena, how, shown):
    # issue 13, item 5: OverflowError in os.utime
    if how == "base-256":
        tar = raw_tar(bytes(header("f", length=2, mtime=base256(1 << 80, 12))), pad(b"hi"))
    else:
        tar = raw_tar(pax_block(pax_record("mtime", "1e400")), bytes(header("f", length=2)),
                      pad(b"hi"))
    attempt(arena, _layer_image(arena, tar), LayerError, "tar member 'f'",
            f"header field 'mtime' is {shown}, not a time a 64-bit time_t holds")


@pytest.mark.parametrize("value,shown", [("1e400", "inf"), ("nan", "nan"), ("-inf", "-inf")])
def test_directory_mtime_no_time_t_holds(arena, value, shown):
    # issue 13, item 6: OverflowError/ValueError in _apply_dir_attrs (it caught only OSError)
    tar = raw_tar(pax_block(pax_record("mtime", value)), bytes(header("d", tarfile.DIRTYPE)))
    attempt(arena, _layer_image(arena, tar), LayerError, "tar member 'd'",
            f"header field 'mtime' is {shown}")


def test_nul_byte_in_pax_path(arena):
    # issue 13, item 7: "ValueError: embedded null byte" in _remove
    tar = raw_tar(pax_block(pax_record("path", "etc/pass\0wd")), bytes(header("f", length=1)),
                  pad(b"x"))
    attempt(arena, _layer_image(arena, tar), LayerError, r"tar member 'etc/pass\x00wd'",
            "header field 'path' contains a NUL byte")


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE], ids=["symlink", "hardlink"])
def test_nul_byte_in_pax_linkpath(arena, kind):
    # issue 13, item 8: the same error in _symlink (and for hard links, in _split's stat)
    tar = raw_tar(bytes(header("f", length=1)), pad(b"x"),
                  pax_block(pax_record("linkpath", "f\0/../../secret")),
                  bytes(header("l", kind, target="f")))
    attempt(arena, _layer_image(arena, tar), LayerError, "tar member 'l'",
            r"header field 'linkpath' 'f\x00/../../secret' contains a NUL byte")


@pytest.mark.parametrize("field,raw,needle", [
    ("uid", base256(-1, 8), "header field 'uid' is -1, not a Linux id"),
    ("gid", base256(1 << 40, 8), "header field 'gid' is 1099511627776, not a Linux id"),
], ids=["uid", "gid"])
def test_owner_ids_outside_linux_ids(arena, field, raw, needle):
    tar = raw_tar(bytes(header("f", length=1, **{field: raw})), pad(b"x"))
    attempt(arena, _layer_image(arena, tar), LayerError, "tar member 'f'", needle)


def test_device_number_outside_dev_t(arena):
    tar = raw_tar(bytes(header("dev/x", tarfile.CHRTYPE, devmajor=base256(1 << 40, 8))))
    attempt(arena, _layer_image(arena, tar), LayerError, "tar member 'dev/x'",
            "header field 'devmajor' is 1099511627776, not a device number")


def test_pax_record_length_past_the_digit_limit(arena):
    # tarfile's own int() of the record length raises ValueError from inside tarfile
    tar = raw_tar(pax_block(b"9" * 5000 + b" comment=x\n"), bytes(header("f")))
    attempt(arena, _layer_image(arena, tar), LayerError, "a tar header cannot be read",
            "ValueError")


def test_thousands_of_chained_extended_headers(arena):
    # tarfile reads each extended header by recursing into the next one
    tar = raw_tar(pax_block(pax_record("comment", "x")) * 3000, bytes(header("f")))
    attempt(arena, _layer_image(arena, tar), LayerError, "a tar header cannot be read",
            "RecursionError")


@pytest.mark.parametrize("how", ["pax", "gnu"])
def test_sparse_member_in_a_layer(arena, how):
    # tarfile makes up a sparse file's holes: 100 header bytes unpacked into 100 MB of zeros,
    # past the compression-ratio limit (found by fuzzing the archives around layers)
    if how == "pax":
        tar = raw_tar(pax_block(pax_record("GNU.sparse.size", str(100 << 20))
                                + pax_record("GNU.sparse.map", "0,0")), bytes(header("f")))
        field = "GNU.sparse"
    else:
        tar = raw_tar(bytes(header("f", tarfile.GNUTYPE_SPARSE)))
        field = "typeflag"
    attempt(arena, _layer_image(arena, tar), LayerError, "tar member 'f'",
            f"header field '{field}' makes it a sparse file")


def _docker_save(arena: Path, pax: dict[str, dict[str, str]],
                 global_pax: dict[str, str] | None = None) -> Path:
    """A docker save of a one-file image, with pax records added to some of its members."""
    files = ImageDocs.of([tar_bytes([reg("f", b"x")])]).docker_members()
    layer = next(name for name in files if name.startswith("blobs/"))
    return write_tar(arena / "save.tar", files,
                     {layer if k == "LAYER" else k: v for k, v in pax.items()}, global_pax)


@pytest.mark.timeout(60)
def test_sparse_member_in_an_archive(arena):
    # the layer blob of a docker save, read in place, made up 2**40 bytes of zeros to hash
    img = _docker_save(arena, {"LAYER": {"GNU.sparse.size": str(1 << 40),
                                         "GNU.sparse.map": "0,0"}})
    attempt(arena, img, MalformedImageError, "save.tar: tar member 'blobs/sha256/",
            "a sparse file")


def test_archive_member_running_past_its_end(arena):
    # tarfile.ReadError escaped from reading manifest.json (a global pax header gives every
    # member a size of 2**64; tarfile lists them all the same)
    img = _docker_save(arena, {}, {"size": str(1 << 64)})
    attempt(arena, img, BlobError, "save.tar: manifest.json: the archive ends inside this file")


def test_failed_unpack_into_an_empty_directory_empties_it_again(arena):
    dest = arena / "given"
    dest.mkdir()
    good = tar_bytes([reg("etc/passwd", b"root"), reg("bin/sh", b"#!")])
    bad = raw_tar(bytes(header("f", size=base256(-5, 12))))
    with pytest.raises(LayerError, match="header field 'size'"):
        with open_image(_layer_image(arena, good, bad)) as img:
            img.unpack(dest)
    assert dest.is_dir() and list(dest.iterdir()) == []       # the user's directory stays


@pytest.mark.parametrize("name", [".wh.x", "./"])
def test_unwritten_member_claiming_a_huge_size(arena, name):
    # tarfile skipped the data of a member Kiln does not write (a whiteout, the root) in
    # 10 KiB reads for as long as the header claimed: 2**50 bytes never ended
    tar = raw_tar(bytes(header(name, size=base256(1 << 50, 12))), bytes(header("f", length=1)),
                  pad(b"x"))
    attempt(arena, _layer_image(arena, tar), LayerError, "corrupt tar data",
            "unexpected end of data")


def test_a_bad_header_in_a_later_layer_removes_the_earlier_layers(arena):
    good = tar_bytes([reg("etc/passwd", b"root"), reg("bin/sh", b"#!")])
    bad = raw_tar(bytes(header("f", size=base256(-5, 12))))
    attempt(arena, _layer_image(arena, good, bad), LayerError, "header field 'size'")


# -- directories thousands deep: unpacked, whited out and removed without recursion -

DEPTH = 1100          # past Python's recursion limit, which shutil.rmtree and os.walk hit


def _chain(n: int, name: str = "a") -> str:
    return "/".join([name] * n)


@pytest.fixture
def deep_tmp(tmp_path):
    """A scratch directory for deep trees (see :func:`memory_scratch`)."""
    with memory_scratch(tmp_path, "kiln-deep-") as path:
        yield path


def test_deep_directories_whited_out_and_pruned(deep_tmp):
    # issue 13, item 9, inside unpacking: a whiteout removes a deep tree (was shutil.rmtree)
    # and an opaque directory is pruned down a deep chain this layer touched (was recursion)
    a, c = _chain(DEPTH, "a"), _chain(DEPTH, "c")
    lower = tar_bytes([reg(f"{a}/lower", b"1"), reg(f"{c}/lower", b"2"), reg("top", b"3")])
    upper = tar_bytes([reg(f"{a}/upper", b"4"), reg(".wh..wh..opq")])
    dest = deep_tmp / "dest"
    with open_image(_layer_image(deep_tmp, lower, upper)) as img:
        img.unpack(dest)
    assert (dest / a / "upper").read_bytes() == b"4"
    assert sorted(os.listdir(dest / a)) == ["upper"]       # pruned at the bottom
    assert sorted(os.listdir(dest)) == ["a"]                # c (deep) and top removed


def test_member_deeper_than_the_depth_limit(arena):
    tar = tar_bytes([reg(_chain(5000) + "/f", b"x")])
    err = attempt(arena, _layer_image(arena, tar), LimitExceededError,
                  "path has 5001 components, more than the 4096 allowed")
    assert "Limits.max_depth" in (err.hint or "")


def test_failed_bundle_of_a_deep_image_leaves_nothing(deep_tmp):
    # prepare_bundle removed its partial bundle with shutil.rmtree, which raised RecursionError
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Labels": {ANNOTATION_MEGABINARY_DIGEST: "blake3:" + "0" * 64}}}
    tar = tar_bytes([reg(_chain(DEPTH) + "/f", b"x")])
    img = ImageDocs.of([tar], config).write_oci(deep_tmp / "img")
    cache = deep_tmp / "cache"
    with pytest.raises(BundleError, match="no megabinary"):
        prepare_bundle(img, cache=cache)
    assert list((cache / "bundles").iterdir()) == []


# -- through the CLIs: `error:` and exit 2, or a JSON error with --json -------------

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Hostile:
    """One hostile image of issue 13 and what its error must say."""

    name: str
    build: Callable[[Path], Path]
    kind: str
    needles: tuple[str, ...]


def _docs(which: str, raw: str, key: str = "x") -> Callable[[Path], Path]:
    return lambda root: write_image_docs(ImageDocs.of([tar_bytes([reg("f", b"x")])]),
                                         root / "img", which, _with_field(which, raw, key=key))


def _layer(tar: bytes) -> Callable[[Path], Path]:
    return lambda root: ImageDocs.of([tar]).write_oci(root / "img")


HOSTILE = [
    Hostile("1-nested-json", _docs("index.json", "[" * 1000 + "]" * 1000),
            "MalformedImageError", ("index.json: x[0][0]", "nested more than 100 levels")),
    Hostile("2-long-integer", _docs("manifest.json", "9" * 5000), "MalformedImageError",
            ("manifest.json: [0].x: an integer of 5000 digits",)),
    Hostile("3-media-type", _docs("manifest", "[]", key="mediaType"), "MalformedImageError",
            (": manifest sha256:", "mediaType must be a string, got an array")),
    Hostile("4-negative-size", _layer(raw_tar(bytes(header("f", size=base256(-5, 12))))),
            "LayerError", ("tar member 'f'", "header field 'size' is -5")),
    Hostile("5-file-mtime", _layer(raw_tar(bytes(header("f", mtime=base256(1 << 80, 12))))),
            "LayerError", ("tar member 'f'", "header field 'mtime' is a 81-bit number")),
    Hostile("6-directory-mtime", _layer(raw_tar(pax_block(pax_record("mtime", "nan")),
                                                bytes(header("d", tarfile.DIRTYPE)))),
            "LayerError", ("tar member 'd'", "header field 'mtime' is nan")),
    Hostile("7-nul-path", _layer(raw_tar(pax_block(pax_record("path", "a\0b")),
                                         bytes(header("f")))),
            "LayerError", (r"tar member 'a\x00b'", "header field 'path' contains a NUL")),
    Hostile("8-nul-linkpath", _layer(raw_tar(pax_block(pax_record("linkpath", "a\0b")),
                                             bytes(header("l", tarfile.SYMTYPE, target="x")))),
            "LayerError", ("tar member 'l'", "header field 'linkpath'")),
]


def _cli(cli: str, image: Path, tmp: Path) -> subprocess.CompletedProcess:
    cache = tmp / "cache"
    if cli.startswith("recompile"):
        args = [str(BIN / "recompile"), str(image), "-o", str(tmp / "out"),
                "--cache-dir", str(cache), *cli.split()[1:]]
    else:
        args = [str(BIN / "kiln"), "inspect", "--json", str(image)]
    return subprocess.run(args, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KILN_CACHE": str(cache)})


def _no_work_left(tmp: Path) -> None:
    """Nothing of the run is left in the cache's work directory, and no output was written."""
    work = tmp / "cache" / "work"
    assert not work.exists() or list(work.iterdir()) == []
    assert not (tmp / "out").exists()


@pytest.mark.parametrize("cli", ["kiln inspect --json", "recompile"])
@pytest.mark.parametrize("case", HOSTILE, ids=[h.name for h in HOSTILE])
def test_hostile_image_through_the_cli(tmp_path, case, cli):
    image = case.build(tmp_path)
    proc = _cli(cli, image, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    if cli == "recompile":
        first, hint = proc.stderr.splitlines()
        assert first.startswith(f"error: {image}: ") and hint.startswith("hint: ")
        message = first
    else:
        err = json.loads(proc.stderr)                  # one JSON object, nothing else
        assert err["kind"] == case.kind and err["hint"]
        message = err["error"]
        assert message.startswith(f"{image}: ")
    for needle in case.needles:
        assert needle in message
    _no_work_left(tmp_path)


@pytest.mark.parametrize("case", [HOSTILE[0], HOSTILE[3]], ids=["json", "tar"])
def test_recompile_json_error(tmp_path, case):
    image = case.build(tmp_path)
    proc = _cli("recompile --json", image, tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    err = json.loads(proc.stderr)
    assert err["kind"] == case.kind and err["hint"] and err["error"].startswith(f"{image}: ")
    assert all(needle in err["error"] for needle in case.needles)
    _no_work_left(tmp_path)


def test_deep_tree_through_kiln_inspect(deep_tmp, busybox_bin):
    # issue 13, item 9: the unpack succeeded, then removing the tree from ~/.cache/kiln/work
    # raised RecursionError and left it there. Past PATH_MAX the inventory lists the
    # directory it cannot read, with the reason.
    elf = busybox_bin.read_bytes()
    near, far = _chain(DEPTH, "d"), _chain(2 * DEPTH, "d")
    tar = tar_bytes([reg(f"{near}/busybox", elf, 0o755), reg(f"{far}/busybox", elf, 0o755),
                     dir_(far, 0o555), sym("bin/sh", f"../{near}/busybox")])
    image = ImageDocs.of([tar]).write_oci(deep_tmp / "img")
    proc = _cli("kiln inspect --json", image, deep_tmp)
    assert proc.returncode == 0, proc.stderr
    inv = json.loads(proc.stdout)
    [rec] = inv["elves"]
    assert rec["path"] == f"/{near}/busybox" and rec["aliases"] == ["/bin/sh"]
    [skipped] = inv["skipped"]
    assert skipped["path"].startswith(f"/{near}/") and skipped["path"] in f"/{far}"
    assert skipped["reason"] == "directory cannot be read: File name too long"
    _no_work_left(deep_tmp)


def test_failed_unpack_of_a_deep_tree_through_recompile(deep_tmp):
    deep = tar_bytes([reg(_chain(DEPTH) + "/f", b"x")])
    bad = raw_tar(bytes(header("g", size=base256(-5, 12))))
    image = ImageDocs.of([deep, bad]).write_oci(deep_tmp / "img")
    proc = _cli("recompile", image, deep_tmp)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {image}: layer sha256:")
    assert "tar member 'g': header field 'size' is -5" in proc.stderr
    _no_work_left(deep_tmp)


def test_deep_rootfs_directory_through_recompile(deep_tmp):
    # a rootfs directory input is copied and packed into a layer: both walked it with
    # os.walk, which recursed once per level
    root = deep_tmp / "rootfs"
    chain = _chain(DEPTH)
    here = root
    here.mkdir()
    for name in chain.split("/"):                   # os.makedirs recurses too
        here = here / name
        here.mkdir()
    (here / "f").write_bytes(b"deep")
    proc = _cli("recompile", root, deep_tmp)
    assert proc.returncode == 0, proc.stderr
    with open_image(deep_tmp / "out") as img:
        layer = img.layers[0]
        with img.open_layer(layer) as blob, tarfile.open(fileobj=blob, mode="r|") as tf:
            files = {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}
    assert files[chain + "/f"] == b"deep"
    work = deep_tmp / "cache" / "work"
    assert list(work.iterdir()) == []


def test_unprivileged_cleanup_of_unreadable_directories(tmp_path):
    # Without capabilities (as any user but root) directories of mode 000 or 555 cannot be
    # entered or emptied until Kiln gives them back to itself; nothing may be left.
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is missing")
    tar = tar_bytes([reg("locked/inside/f", b"x"), dir_("locked", 0o000),
                     reg("ro/f", b"y"), dir_("ro", 0o555)])
    image = ImageDocs.of([tar]).write_oci(tmp_path / "img")
    cache = tmp_path / "cache"
    proc = subprocess.run(["setpriv", "--bounding-set=-all", "--", str(BIN / "kiln"),
                           "inspect", "--json", str(image)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "KILN_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr
    assert [s["path"] for s in json.loads(proc.stdout)["skipped"]] == ["/locked"]
    _no_work_left(tmp_path)
