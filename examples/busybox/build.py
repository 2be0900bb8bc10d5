"""Build the example busybox image from Debian's busybox-static package.

One layer: ``/bin/busybox``, one **relative** symbolic link per applet (as
``busybox --list-full`` lists them, e.g. ``usr/bin/awk -> ../../bin/busybox``;
relative so the links also resolve in an unpacked bundle on the host), a
minimal ``/etc`` (passwd, group with root), ``/tmp`` (1777), ``/root`` and the
package's copyright file. Every entry has mtime 0 and owner root, and the
config's dates are the epoch, so building twice gives identical digests.

    python3 -m examples.busybox.build OUT [--format oci|oci-archive|docker-archive]
"""
from __future__ import annotations

import posixpath
import subprocess
import sys
from pathlib import Path

from examples.debs import unpacked_deb
from formats.errors import KilnError, user_report
from recompiler.image import (ExtraLayer, LayerEntry, dir_entry, file_entry, scratch_image,
                              symlink_entry, write_image)
from recompiler.image.source import DEFAULT_ENV_PATH

__all__ = ["build_busybox_image", "busybox_entries", "applet_paths", "main"]

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def _deb_version(root: Path) -> str:
    """The package version from the cached .deb's name (``busybox-static_1_1.35.0-4_amd64``)."""
    name = (root / ".complete").read_text().strip() if (root / ".complete").exists() else root.name
    parts = name.removesuffix(".deb").split("_")
    return parts[-2] if len(parts) >= 3 else "unknown"


def applet_paths(busybox: Path) -> list[str]:
    """Guest paths of every applet (``bin/sh``, ``usr/bin/awk``...) from ``busybox --list-full``."""
    proc = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise KilnError(f"{busybox} --list-full failed (status {proc.returncode}): "
                        f"{proc.stderr.strip()}", hint="is this an x86-64 host?")
    return sorted({line.strip().lstrip("/") for line in proc.stdout.splitlines()
                   if line.strip()} - {"bin/busybox"})


def busybox_entries(root: Path) -> list[LayerEntry]:
    """The example layer's entries, from the unpacked busybox-static package at ``root``."""
    busybox = root / "bin" / "busybox"
    entries = [
        file_entry("/bin/busybox", busybox, 0o755),
        file_entry("/etc/passwd", PASSWD, 0o644),
        file_entry("/etc/group", GROUP, 0o644),
        dir_entry("/tmp", 0o1777),
        dir_entry("/root", 0o700),
    ]
    copyright_file = root / "usr/share/doc/busybox-static/copyright"
    if copyright_file.is_file():
        entries.append(file_entry("/usr/share/doc/busybox-static/copyright", copyright_file))
    for applet in applet_paths(busybox):
        rel = posixpath.relpath("bin/busybox", posixpath.dirname(applet))
        entries.append(symlink_entry("/" + applet, rel))
    return entries


def build_busybox_image(out: Path, fmt: str = "oci", tag: str = "latest") -> Path:
    """Write the busybox example image to ``out`` (a new directory, or archive file); return it."""
    root = unpacked_deb("busybox-static")
    version = _deb_version(root)
    config = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Cmd": ["/bin/sh"],
            "Env": [DEFAULT_ENV_PATH],
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.title": "busybox (Debian busybox-static)",
                "org.opencontainers.image.version": version,
                "org.opencontainers.image.source": "https://packages.debian.org/busybox-static",
                "org.opencontainers.image.licenses": "GPL-2.0-only",
            },
        },
    }
    layer = ExtraLayer(tuple(busybox_entries(root)),
                       created_by=f"examples/busybox/build.py: busybox-static {version}",
                       comment="Debian busybox-static with applet links")
    write_image(scratch_image(config, "busybox"), Path(out), extra_layers=[layer], fmt=fmt,
                tag=tag, annotations={"org.opencontainers.image.title": "busybox"})
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python3 -m examples.busybox.build",
                                     description="Build the example busybox OCI image.")
    parser.add_argument("out", type=Path, help="output path (new directory or archive file)")
    parser.add_argument("--format", dest="fmt", default="oci",
                        choices=["oci", "oci-archive", "docker-archive"])
    parser.add_argument("--tag", default="latest")
    args = parser.parse_args(argv)
    try:
        path = build_busybox_image(args.out, args.fmt, args.tag)
    except KilnError as err:
        print(user_report(err), file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
