"""The output image: original layers untouched plus Kiln's layer, read by skopeo and umoci."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from examples.busybox.build import build_busybox_image
from recompiler.image import (ExtraLayer, OutputError, file_entry, open_image, symlink_entry,
                              write_image)
from tests.ocitools import file_hashes, skopeo, tree, umoci_unpack

MEGABINARY = hashlib.sha256(b"seed").digest() * 40000          # 1.28 MB, stands in for it


@pytest.fixture(scope="module")
def bb(tmp_path_factory) -> Path:
    return build_busybox_image(tmp_path_factory.mktemp("bb") / "layout")


@pytest.fixture(scope="module")
def bb_gz(bb, tmp_path_factory) -> Path:
    """The busybox image with a gzip layer, as skopeo compresses it."""
    out = tmp_path_factory.mktemp("bbgz") / "layout"
    skopeo("copy", "-q", "--dest-compress", f"oci:{bb}:latest", f"oci:{out}:latest")
    return out


def _extra(tmp_path: Path) -> ExtraLayer:
    host = tmp_path / "index.cbor"
    host.write_bytes(b"\xa1\x61k\x61v")
    return ExtraLayer((file_entry("/kiln/megabinary", MEGABINARY, 0o644),
                       file_entry("/kiln/index.cbor", host),
                       symlink_entry("/kiln/current", "megabinary")),
                      created_by="kiln recompile (test)", comment="megabinary",
                      annotations={"io.kiln.layer.role": "megabinary"})


def _write(src: Path, out: Path, tmp_path: Path, fmt: str = "oci"):
    with open_image(src) as img:
        return write_image(img, out, extra_layers=[_extra(tmp_path)], fmt=fmt,
                           annotations={"dev.kiln.megabinary": "sha256:test"},
                           config_labels={"dev.kiln.recompiled": "true"})


def test_oci_output_read_by_skopeo_and_umoci(bb_gz, tmp_path):
    out = tmp_path / "out"
    res = _write(bb_gz, out, tmp_path)
    src_layer = json.loads(skopeo("inspect", "--raw", f"oci:{bb_gz}:latest"))["layers"][0]
    manifest = json.loads(skopeo("inspect", "--raw", f"oci:{out}:latest"))
    assert manifest["layers"][0] == src_layer                    # untouched, same digest
    assert manifest["annotations"]["dev.kiln.megabinary"] == "sha256:test"
    assert len(manifest["layers"]) == 2
    assert manifest["layers"][1]["annotations"] == {"io.kiln.layer.role": "megabinary"}
    assert res.manifest_digest == "sha256:" + hashlib.sha256(
        skopeo("inspect", "--raw", f"oci:{out}:latest").encode()).hexdigest()
    # the source blob's bytes were copied, not re-encoded
    algo, hexd = src_layer["digest"].split(":")
    assert (out / "blobs" / algo / hexd).read_bytes() == (bb_gz / "blobs" / algo / hexd).read_bytes()

    info = json.loads(skopeo("inspect", f"oci:{out}:latest"))
    assert info["Labels"]["dev.kiln.recompiled"] == "true"
    assert info["Labels"]["org.opencontainers.image.licenses"] == "GPL-2.0-only"
    config = json.loads(skopeo("inspect", "--config", f"oci:{out}:latest"))
    assert config["config"]["Cmd"] == ["/bin/sh"]
    assert len(config["rootfs"]["diff_ids"]) == 2
    assert config["history"][-1]["created_by"] == "kiln recompile (test)"
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}
    assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "latest"}

    rootfs = umoci_unpack(out, "latest", tmp_path / "bundle")
    assert (rootfs / "kiln/megabinary").read_bytes() == MEGABINARY
    assert (rootfs / "kiln/index.cbor").read_bytes() == b"\xa1\x61k\x61v"
    assert os.readlink(rootfs / "kiln/current") == "megabinary"
    base = tree(umoci_unpack(bb_gz, "latest", tmp_path / "base"))
    got = tree(rootfs)
    assert {k: v for k, v in got.items() if not k.startswith("/kiln")} == base


@pytest.mark.parametrize("fmt,transport", [("oci-archive", "oci-archive:{}:latest"),
                                           ("docker-archive", "docker-archive:{}")])
def test_archive_outputs_read_by_skopeo(bb_gz, tmp_path, fmt, transport):
    out = tmp_path / "out.tar"
    res = _write(bb_gz, out, tmp_path, fmt)
    info = json.loads(skopeo("inspect", transport.format(out)))
    assert info["Labels"]["dev.kiln.recompiled"] == "true"
    assert len(info["Layers"]) == 2
    # skopeo can copy every blob out of it (it re-reads and verifies them)
    skopeo("copy", "-q", transport.format(out), f"oci:{tmp_path / 'copy'}:latest")
    rootfs = umoci_unpack(tmp_path / "copy", "latest", tmp_path / "bundle")
    assert (rootfs / "kiln/megabinary").read_bytes() == MEGABINARY
    with open_image(out) as img:                                 # and Kiln reads it back
        assert img.config.labels["dev.kiln.recompiled"] == "true"
        assert img.manifest_digest in (None, res.manifest_digest)


def test_round_trip_through_skopeo_docker_archive(bb, tmp_path):
    out = tmp_path / "out"
    _write(bb, out, tmp_path)
    docker = tmp_path / "docker.tar"
    skopeo("copy", "-q", f"oci:{out}:latest", f"docker-archive:{docker}:kiln/out:v1")
    with open_image(docker) as img:
        assert img.config.labels["dev.kiln.recompiled"] == "true"
        assert len(img.layers) == 2
        img.unpack(tmp_path / "root")
    assert (tmp_path / "root/kiln/megabinary").read_bytes() == MEGABINARY
    assert tree(tmp_path / "root") == tree(umoci_unpack(out, "latest", tmp_path / "bundle"))


@pytest.mark.parametrize("fmt", ["oci", "oci-archive", "docker-archive"])
def test_output_is_deterministic(bb_gz, tmp_path, fmt):
    a = _write(bb_gz, tmp_path / "a", tmp_path, fmt)
    b = _write(bb_gz, tmp_path / "b", tmp_path, fmt)
    assert a.manifest_digest == b.manifest_digest
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b") if fmt == "oci" else \
        (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_rootfs_directory_source_becomes_one_layer(tmp_path):
    src = tmp_path / "rootfs"
    (src / "bin").mkdir(parents=True)
    (src / "bin/app").write_bytes(b"#!/bin/sh\necho hi\n")
    (src / "bin/app").chmod(0o755)
    os.symlink("app", src / "bin/alias")
    os.link(src / "bin/app", src / "bin/zz-hard")
    os.link(src / "bin/app", src / "aa-hard")                   # sorts before its target
    (src / "etc").mkdir()
    (src / "etc/conf").write_text("x=1\n")
    out = tmp_path / "out"
    with open_image(src) as img:
        write_image(img, out, extra_layers=[_extra(tmp_path)])
    manifest = json.loads(skopeo("inspect", "--raw", f"oci:{out}:latest"))
    assert len(manifest["layers"]) == 2
    rootfs = umoci_unpack(out, "latest", tmp_path / "bundle")
    got = tree(rootfs)
    want = tree(src)
    assert {k: v for k, v in got.items() if not k.startswith("/kiln")} == want
    assert (rootfs / "aa-hard").stat().st_ino == (rootfs / "bin/app").stat().st_ino


def test_output_path_errors(bb, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_text("mine")
    existing = tmp_path / "exists.tar"
    existing.write_text("mine")
    with open_image(bb) as img:
        with pytest.raises(OutputError, match="not an empty directory"):
            write_image(img, busy)
        with pytest.raises(OutputError, match="does not overwrite"):
            write_image(img, existing, fmt="oci-archive")
        with pytest.raises(OutputError, match="unknown output format"):
            write_image(img, tmp_path / "x", fmt="tarball")
        with pytest.raises(OutputError, match="parent directory"):
            write_image(img, tmp_path / "no" / "such" / "dir")
        with pytest.raises(OutputError, match="not a valid tag"):
            write_image(img, tmp_path / "y", tag="bad tag/../x")
    assert (busy / "keep").read_text() == "mine" and existing.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "exists.tar"]


def test_failed_write_leaves_nothing(bb, tmp_path):
    vanishing = tmp_path / "gone.bin"
    vanishing.write_bytes(b"x")
    layer = ExtraLayer((file_entry("/kiln/f", vanishing),))
    out = tmp_path / "out.tar"
    with open_image(bb) as img:
        # the measure pass reads 1 byte; then the file changes before the write pass
        import recompiler.image.writer as writer
        real = writer.measure_layer_tar

        def measure_then_change(entries):
            result = real(entries)
            vanishing.write_bytes(b"changed")
            return result
        writer.measure_layer_tar = measure_then_change
        try:
            with pytest.raises(Exception, match="changed while Kiln was writing|truncated|"
                               "came out as"):
                write_image(img, out, extra_layers=[layer], fmt="oci-archive")
        finally:
            writer.measure_layer_tar = real
    assert not out.exists()
