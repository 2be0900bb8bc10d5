"""The images ``kiln serve`` offers: ``--image NAME=PATH`` resolved to a rootfs and megabinary.

PATH is a recompiled image (OCI layout, OCI archive or docker-archive), made
into a runtime bundle in Kiln's cache by the recompiler's ``kiln.image_bundles``
entry point, as ``kiln run IMAGE`` does (shim may import vkernel and formats,
never the recompiler). The bundle is leased by the server for as long as it
runs, so cache eviction never removes an image a sandbox uses. The image's
Env, WorkingDir and User apply to every sandbox made from it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from formats.errors import KilnError

__all__ = ["ImageSpec", "ServedImage", "parse_image_option", "resolve_image"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")


class ImageError(KilnError):
    """An --image the server cannot serve."""


@dataclass(frozen=True)
class ImageSpec:
    name: str
    path: str


@dataclass(frozen=True)
class ServedImage:
    """An image resolved to what a zygote needs."""
    name: str
    source: str
    rootfs: str
    megabinary: str
    env: tuple[str, ...]
    workdir: str
    user: str


def parse_image_option(text: str) -> ImageSpec:
    name, eq, path = text.partition("=")
    if not eq or not path:
        raise ImageError(f"--image {text!r} is not NAME=PATH",
                         hint="e.g. --image busybox=./busybox-kiln.tar (an image made by recompile)")
    if not _NAME.match(name):
        raise ImageError(f"--image name {name!r} is not a valid name",
                         hint="letters, digits, '.', '_' and '-', starting with a letter or digit")
    return ImageSpec(name, path)


def resolve_image(spec: ImageSpec) -> ServedImage:
    """The bundle of a recompiled image (made once per manifest in the cache)."""
    from vkernel.cli import entry_points
    if not Path(spec.path).exists():
        raise ImageError(f"--image {spec.name}={spec.path}: no such file or directory",
                         hint="give the output of recompile (an OCI layout directory or archive)")
    eps = [ep for ep in entry_points(group="kiln.image_bundles") if ep.name == "prepare"]
    if not eps:
        raise ImageError("serving images needs Kiln's recompiler package (kiln.image_bundles)",
                         hint="install Kiln fully (scripts/setup.sh)")
    try:
        bundle = Path(eps[0].load()(spec.path))
    except OSError as e:
        raise ImageError(f"cannot prepare {spec.path}: {e.strerror or e}",
                         hint="check free space and permissions of Kiln's cache") from None
    try:
        config = json.loads((bundle / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ImageError(f"{bundle}/config.json is unreadable: {e}",
                         hint="delete the bundle directory from the cache and start again") from None
    rootfs = bundle / config.get("root", {}).get("path", "rootfs")
    annotations = config.get("annotations", {})
    megabinary = rootfs / annotations.get("io.kiln.megabinary.path",
                                          "/.kiln/megabinary.kmb").lstrip("/")
    process = config.get("process", {})
    user = annotations.get("io.kiln.image.user", "")
    ids = process.get("user") or {}
    if not user and (ids.get("uid") or ids.get("gid")):
        user = f"{int(ids.get('uid', 0))}:{int(ids.get('gid', 0))}"
    return ServedImage(spec.name, spec.path, str(rootfs), str(megabinary),
                       tuple(process.get("env", [])), process.get("cwd") or "/", user)
