"""Fetch and unpack Debian packages into Kiln's cache, for example images and tests.

``apt-get download`` fetches the .deb (no root needed, no install);
``dpkg-deb -x`` unpacks it. Results are cached under :func:`cache_dir`, keyed by
package name and version, so repeated runs do no network work.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from formats.errors import KilnError
from formats.trees import remove_tree, scratch_directory


def cache_dir() -> Path:
    """Kiln's cache root: $KILN_CACHE, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln."""
    env = os.environ.get("KILN_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "kiln" if xdg else Path.home() / ".cache" / "kiln"


def fetch_deb(package: str) -> Path:
    """Download ``package``'s .deb for this machine's Debian into the cache; return its path."""
    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    existing = sorted(debs.glob(f"{package}_*.deb"))
    if existing:
        return existing[-1]
    if shutil.which("apt-get") is None:
        raise KilnError(f"cannot fetch the Debian package {package!r}: apt-get is not installed",
                        hint="run scripts/setup.sh on a Debian machine")
    with scratch_directory(debs, prefix="download-") as tmp:
        proc = subprocess.run(["apt-get", "download", package], cwd=tmp,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise KilnError(f"apt-get download {package} failed: {proc.stderr.strip()}",
                            hint="run 'apt-get update' (as root) and try again")
        got = list(tmp.glob("*.deb"))
        if len(got) != 1:
            raise KilnError(f"apt-get download {package} produced {len(got)} files, expected one")
        final = debs / got[0].name.replace("%3a", "_")
        os.replace(got[0], final)
    return final


def unpacked_deb(package: str) -> Path:
    """The package's files unpacked (``dpkg-deb -x``) in the cache; return the directory."""
    deb = fetch_deb(package)
    dest = cache_dir() / "unpacked" / deb.stem
    if (dest / ".complete").exists():
        return dest
    if dest.exists():
        remove_tree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent))
    try:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True,
                       capture_output=True)
        (tmp / ".complete").write_text(deb.name + "\n")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            remove_tree(tmp)
    return dest


def busybox_static() -> Path:
    """Path to Debian's statically linked busybox binary (package busybox-static)."""
    path = unpacked_deb("busybox-static") / "bin" / "busybox"
    if not path.is_file():
        raise KilnError(f"busybox-static unpacked without bin/busybox at {path}")
    return path
