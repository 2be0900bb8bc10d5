"""The built-in busybox example image: contents, config, determinism, real tools."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from examples.busybox.build import applet_paths, build_busybox_image
from recompiler.image import open_image
from tests.ocitools import file_hashes, skopeo, tree, umoci_unpack


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    return build_busybox_image(tmp_path_factory.mktemp("ex") / "busybox")


@pytest.fixture(scope="module")
def rootfs(image, tmp_path_factory) -> Path:
    return umoci_unpack(image, "latest", tmp_path_factory.mktemp("bundle") / "b")


def test_config_as_skopeo_sees_it(image):
    config = json.loads(skopeo("inspect", "--config", f"oci:{image}:latest"))
    assert config["config"]["Cmd"] == ["/bin/sh"]
    assert config["config"]["WorkingDir"] == "/"
    assert any(e.startswith("PATH=") and "/bin" in e for e in config["config"]["Env"])
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.version"]
    assert len(config["rootfs"]["diff_ids"]) == 1


def test_contents(rootfs, busybox_bin):
    assert (rootfs / "bin/busybox").read_bytes() == busybox_bin.read_bytes()
    assert stat.S_IMODE((rootfs / "bin/busybox").stat().st_mode) == 0o755
    applets = applet_paths(busybox_bin)
    assert "bin/sh" in applets and len(applets) > 200
    for applet in applets:
        link = rootfs / applet
        assert link.is_symlink(), applet
        assert not os.readlink(link).startswith("/"), applet          # relative, by choice
        assert link.resolve() == (rootfs / "bin/busybox").resolve(), applet
    assert (rootfs / "etc/passwd").read_text().startswith("root:x:0:0:")
    assert (rootfs / "etc/group").read_text().startswith("root:x:0:")
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
    assert (rootfs / "root").is_dir()


def test_applet_links_run_natively(rootfs):
    """The unpacked links really reach busybox: run two applets by their link names."""
    out = subprocess.run([str(rootfs / "bin/echo"), "hello", "kiln"], capture_output=True,
                         text=True, check=True).stdout
    assert out == "hello kiln\n"
    out = subprocess.run([str(rootfs / "bin/sh"), "-c", "basename /a/b/c"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "c\n"


def test_deterministic(image, tmp_path):
    again = build_busybox_image(tmp_path / "again")
    assert (again / "index.json").read_bytes() == (image / "index.json").read_bytes()
    assert file_hashes(again) == file_hashes(image)


def test_kiln_intake_reads_it(image, rootfs, tmp_path):
    with open_image(image) as img:
        assert img.config.cmd == ("/bin/sh",)
        img.unpack(tmp_path / "root")
    assert tree(tmp_path / "root") == tree(rootfs)


@pytest.mark.parametrize("fmt,transport", [("oci-archive", "oci-archive:{}:latest"),
                                           ("docker-archive", "docker-archive:{}")])
def test_command_line_entry(tmp_path, fmt, transport):
    out = tmp_path / "bb.tar"
    proc = subprocess.run([sys.executable, "-m", "examples.busybox.build", str(out),
                           "--format", fmt], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    info = json.loads(skopeo("inspect", transport.format(out)))
    assert info["Architecture"] == "amd64" and len(info["Layers"]) == 1


def test_command_line_refuses_existing_output(tmp_path):
    out = tmp_path / "bb.tar"
    out.write_text("mine")
    proc = subprocess.run([sys.executable, "-m", "examples.busybox.build", str(out),
                           "--format", "oci-archive"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert out.read_text() == "mine"
