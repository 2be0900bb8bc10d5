"""Shared fixtures: real Debian binaries fetched into Kiln's cache."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from examples.debs import busybox_static, unpacked_deb


def pytest_configure(config: pytest.Config) -> None:
    """Programs the tests start, natively and under Kiln, get SIGINT and SIGQUIT with their
    default actions, whoever started the suite: a shell starts a background job (``cmd &``)
    with both ignored, and an ignored signal stays ignored across exec, so the tests of what a
    signal does would test the launcher's shell instead."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def busybox_bin() -> Path:
    """Debian's busybox-static binary (stripped, glibc-static, with IFUNCs)."""
    return busybox_static()


@pytest.fixture(scope="session")
def busybox_deb_root() -> Path:
    """The busybox-static .deb unpacked: bin/busybox and usr/share/doc."""
    return unpacked_deb("busybox-static")


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory) -> Path:
    """The built-in example image (Debian's busybox-static), recompiled once per session."""
    import subprocess
    import sys
    from examples.busybox.build import build_busybox_image
    base = tmp_path_factory.mktemp("busybox-example")
    src = build_busybox_image(base / "busybox")
    out = base / "recompiled"
    proc = subprocess.run([sys.executable, "-m", "recompiler.cli", str(src), "-o", str(out)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def oci_probe_images(tmp_path_factory) -> dict[str, Path]:
    """The busybox example image plus tests/oci/probe.c (static): ``plain`` and
    ``recompiled`` oci-archives and ``rootfs``, the recompiled image unpacked (for bundles)."""
    from recompiler.bundle import prepare_bundle
    from tests.ocirig import build_probe_image, recompile
    base = tmp_path_factory.mktemp("oci-probe")
    plain = build_probe_image(base / "probe.tar")
    recompiled = recompile(plain, base / "probe-kiln.tar")
    return {"plain": plain, "recompiled": recompiled,
            "rootfs": Path(prepare_bundle(recompiled)) / "rootfs"}


@pytest.fixture(scope="session")
def debian_tree() -> Path:
    """The Debian example's debootstrap tree (minbase with python3 and the rest of
    examples.debian.build.PACKAGES), built once (as root) and cached."""
    import os
    from examples.debian.build import COMPLETE, PACKAGES, debootstrap_rootfs, tree_key
    from examples.debs import cache_dir
    if os.geteuid() != 0 and not (cache_dir() / "debootstrap" / f"bookworm-{tree_key(PACKAGES)}"
                                  / COMPLETE).is_file():
        pytest.skip("debootstrap needs root to build the Debian tree (none is cached)")
    return debootstrap_rootfs("bookworm")


@pytest.fixture(scope="session")
def debian_image(debian_tree: Path, tmp_path_factory) -> Path:
    """The Debian example image (two layers, OCI layout), written once per session."""
    from examples.debian.build import build_debian_image
    return build_debian_image(tmp_path_factory.mktemp("debian") / "img", suite="bookworm")


@pytest.fixture(scope="session")
def debian_recompiled(debian_image: Path, tmp_path_factory) -> tuple[Path, dict]:
    """(the recompiled Debian image, recompile's --json report), made once per session: every
    ELF of the image (about 900, 46 MB of code) is lifted and compiled here, or taken from
    Kiln's cache."""
    import json
    import os
    import subprocess
    import sys
    out = tmp_path_factory.mktemp("debian-recompiled") / "out"
    proc = subprocess.run([sys.executable, "-m", "recompiler.cli", str(debian_image), "-o", str(out),
                           "--json"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"},
                          timeout=3600)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)
