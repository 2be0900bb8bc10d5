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
