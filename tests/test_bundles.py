"""`kiln run IMAGE` finds a finished bundle from an OCI layout's index alone (formats/bundles.py):
the same bundle the recompiler's image code makes, and never a bundle of another manifest."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from formats.bundles import COMPLETE, cached_layout_bundle, layout_manifest_digest
from recompiler.bundle import prepare_bundle


def test_the_index_alone_finds_the_bundle_prepare_made(busybox_image: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert cached_layout_bundle(busybox_image, cache) is None          # nothing built yet
    made = prepare_bundle(busybox_image, cache=cache)
    assert cached_layout_bundle(busybox_image, cache) == made
    (made / COMPLETE).unlink()                                          # not a finished bundle
    assert cached_layout_bundle(busybox_image, cache) is None


def test_an_index_naming_another_manifest_never_gets_the_old_bundle(busybox_image: Path,
                                                                     tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    prepare_bundle(busybox_image, cache=cache)
    other = tmp_path / "other"
    shutil.copytree(busybox_image, other)
    index = json.loads((other / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:" + "0" * 64
    (other / "index.json").write_text(json.dumps(index))
    assert cached_layout_bundle(other, cache) is None


def test_what_the_index_alone_does_not_decide(busybox_image: Path, tmp_path: Path) -> None:
    """Anything but one image manifest by a well-formed sha256 digest goes to the image code."""
    good = json.loads((busybox_image / "index.json").read_text())
    assert layout_manifest_digest(busybox_image) == good["manifests"][0]["digest"]

    def variant(name: str, index: object, raw: bytes | None = None) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        (d / "index.json").write_bytes(raw if raw is not None else json.dumps(index).encode())
        return d

    m = good["manifests"][0]
    assert layout_manifest_digest(variant("two", {"manifests": [m, m]})) is None
    assert layout_manifest_digest(variant("nested", {"manifests": [
        dict(m, mediaType="application/vnd.oci.image.index.v1+json")]})) is None
    assert layout_manifest_digest(variant("path", {"manifests": [dict(m, digest="sha256:../../x")]})) is None
    assert layout_manifest_digest(variant("notjson", None, b"{")) is None
    assert layout_manifest_digest(variant("huge", None, b" " * (2 << 20))) is None
    assert layout_manifest_digest(tmp_path / "missing") is None
    archive = tmp_path / "image.tar"
    archive.write_bytes(b"not a directory")
    assert layout_manifest_digest(archive) is None
