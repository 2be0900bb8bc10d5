"""Shared fixtures: real Debian binaries fetched into Kiln's cache."""
from __future__ import annotations

from pathlib import Path

import pytest

from examples.debs import busybox_static, unpacked_deb


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
