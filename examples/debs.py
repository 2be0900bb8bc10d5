"""Fetch and unpack Debian packages into Kiln's cache, for example images and tests.

``apt-get download`` fetches the .deb (no root needed, no install);
``dpkg-deb -x`` unpacks it. Results are cached under :func:`cache_dir`, keyed by
package name and version, so repeated runs do no network work. A process that
asked for an unpacked package holds a lease on it until it ends
(formats/cache.py), so eviction never removes files it is using.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from formats.cache import after_write, cache_root, publish_dir, scratch, use
from formats.errors import KilnError

cache_dir = cache_root
"""Kiln's cache root: $KILN_CACHE, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln."""


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
    with scratch(debs, "download-") as tmp:
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
    after_write()
    return final


def unpacked_deb(package: str) -> Path:
    """The package's files unpacked (``dpkg-deb -x``) in the cache; return the directory."""
    for _ in range(10):
        deb = fetch_deb(package)
        dest = cache_dir() / "unpacked" / deb.stem
        lease = use(dest)
        if lease is not None:
            if not (dest / ".complete").exists():
                lease.close()
                raise KilnError(f"{dest} is not a complete unpacked package",
                                hint=f"remove it (rm -r {dest}) and run again")
            return lease.keep()
        deb_lease = use(deb)
        if deb_lease is None:
            continue                          # evicted since it was fetched: fetch again
        with deb_lease, scratch(dest.parent, "unpack-") as tmp:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True, capture_output=True)
            (tmp / ".complete").write_text(deb.name + "\n")
            lease = publish_dir(tmp, dest)
        if lease is not None:
            after_write()
            return lease.keep()
    raise KilnError(f"cannot keep {package} in the cache {cache_dir()}: it was evicted each time",
                    hint="raise the cache budget (KILN_CACHE_MAX)")


def busybox_static() -> Path:
    """Path to Debian's statically linked busybox binary (package busybox-static)."""
    path = unpacked_deb("busybox-static") / "bin" / "busybox"
    if not path.is_file():
        raise KilnError(f"busybox-static unpacked without bin/busybox at {path}")
    return path
