"""`recompile IMAGE -o OUT`: the output image, its megabinary, determinism, caching, bad input."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import blake3
import pytest

from formats.annotations import (ANNOTATION_LAYER_ROLE, ANNOTATION_MEGABINARY_DIGEST,
                                 LAYER_ROLE_MEGABINARY, MEGABINARY_PATH)
from formats.engine import current_fingerprint
from formats.megabinary import read_megabinary

RECOMPILE = [sys.executable, "-m", "recompiler.cli"]

HELLO_C = r"""
#include <stdio.h>
int main(int argc, char **argv) { printf("hello from %s with %d args\n", argv[0], argc); return 3; }
"""


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def small_rootfs(tmp_path_factory) -> Path:
    """A rootfs with a musl static program, a dynamic program and a text file."""
    if shutil.which("musl-gcc") is None:
        pytest.fail("musl-gcc is missing: run scripts/setup.sh")
    root = tmp_path_factory.mktemp("rootfs")
    (root / "bin").mkdir()
    (root / "etc").mkdir()
    src = root.parent / "hello.c"
    src.write_text(HELLO_C)
    subprocess.run(["musl-gcc", "-static", "-O2", "-o", str(root / "bin/hello"), str(src)], check=True)
    subprocess.run(["gcc", "-O2", "-o", str(root / "bin/dyn"), str(src)], check=True)
    os.symlink("hello", root / "bin/hi")
    (root / "etc/motd").write_text("not an ELF\n")
    return root


def _oci_manifest(layout: Path) -> dict:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    return json.loads((layout / "blobs/sha256" / digest).read_text())


def _megabinary_from_layout(layout: Path, tmp: Path) -> Path:
    manifest = _oci_manifest(layout)
    layer = manifest["layers"][-1]
    assert layer["annotations"][ANNOTATION_LAYER_ROLE] == LAYER_ROLE_MEGABINARY
    blob = layout / "blobs/sha256" / layer["digest"].split(":", 1)[1]
    with tarfile.open(blob) as tf:
        member = tf.getmember(MEGABINARY_PATH.lstrip("/"))
        assert member.isfile() and member.mode == 0o444
        data = tf.extractfile(member).read()
    out = tmp / "mb.kmb"
    out.write_bytes(data)
    return out


def test_recompile_rootfs_writes_oci_image_with_megabinary(small_rootfs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    proc = _run([*RECOMPILE, str(small_rootfs), "-o", str(out), "--json", "--cache-dir", str(cache)])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    by_path = {u["path"]: u for u in report["units"]}
    assert by_path["/bin/hello"]["status"] == "recompiled"
    assert by_path["/bin/hello"]["instructions"] > 100
    assert by_path["/bin/dyn"]["status"] == "recompiled"      # a PIE: lifted position-independently
    assert by_path["/bin/dyn"]["instructions"] > 10

    # A real OCI tool reads the output.
    inspect = _run(["skopeo", "inspect", f"oci:{out}:latest"])
    assert inspect.returncode == 0, inspect.stderr
    info = json.loads(inspect.stdout)
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert info["Labels"]["io.kiln.recompiled"] == "true"

    manifest = _oci_manifest(out)
    mb_path = _megabinary_from_layout(out, tmp_path)
    with read_megabinary(mb_path) as mb:
        mb.validate()
        assert manifest["annotations"][ANNOTATION_MEGABINARY_DIGEST] == mb.digest
        hello_hash = blake3.blake3((small_rootfs / "bin/hello").read_bytes()).digest()
        unit = mb.index.lookup(hello_hash)
        assert unit is not None and "/bin/hello" in unit.paths and "/bin/hi" in unit.paths
        assert unit.entries, "a recompiled program has translated entry points"
        dyn_hash = blake3.blake3((small_rootfs / "bin/dyn").read_bytes()).digest()
        dyn = mb.index.lookup(dyn_hash)
        assert dyn is not None and dyn.pic and not unit.pic
        assert mb.aot_for(current_fingerprint()) is not None


def test_recompile_is_deterministic_and_cached(small_rootfs: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    digests, statuses = [], []
    for n in range(2):
        out = tmp_path / f"out{n}"
        proc = _run([*RECOMPILE, str(small_rootfs), "-o", str(out), "--json", "--cache-dir", str(cache)])
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        digests.append(report["manifest_digest"])
        statuses.append({u["path"]: u["status"] for u in report["units"]}["/bin/hello"])
    assert digests[0] == digests[1]
    assert statuses == ["recompiled", "cached"]


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_recompile_archive_formats_read_by_skopeo(small_rootfs: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out.tar"
    proc = _run([*RECOMPILE, str(small_rootfs), "-o", str(out), "--format", fmt,
                 "--cache-dir", str(tmp_path / "cache")])
    assert proc.returncode == 0, proc.stderr
    inspect = _run(["skopeo", "inspect", f"{fmt}:{out}"])
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["Labels"]["io.kiln.recompiled"] == "true"


def test_recompile_bad_input_clear_error_nothing_written(tmp_path: Path) -> None:
    bogus = tmp_path / "image.tar"
    bogus.write_bytes(b"this is not a tar archive at all" * 10)
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = _run([*RECOMPILE, str(bogus), "-o", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "hint: " in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    after = sorted(p.name for p in tmp_path.iterdir() if p.name != "cache")
    assert after == before


def test_recompile_refuses_nonempty_output(small_rootfs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    keep = out / "precious.txt"
    keep.write_text("user data")
    proc = _run([*RECOMPILE, str(small_rootfs), "-o", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert keep.read_text() == "user data"
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]


def test_recompile_help_explains_options() -> None:
    proc = _run([*RECOMPILE, "--help"])
    assert proc.returncode == 0
    for opt in ("--output", "--format", "--platform", "--jobs", "--no-cache", "--json", "--tag"):
        assert opt in proc.stdout
