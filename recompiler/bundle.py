"""Turn a recompiled image into an OCI runtime bundle (config.json + rootfs/) for vkernel.

``kiln run IMAGE`` needs what an OCI runtime gets from containerd: an unpacked
root filesystem and a runtime config. This module makes one from a
recompiled image, once per manifest digest, under the cache
(``bundles/<digest>/``); the rootfs there is the read-only lower layer of
every run. The process that asked for a bundle holds a lease on it until it
ends (formats/cache.py), so eviction never removes a bundle a run uses.
vkernel reaches this through the ``kiln.image_bundles`` entry point (it must
not import the recompiler).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from formats.annotations import ANNOTATION_MEGABINARY_DIGEST, MEGABINARY_PATH
from formats.bundles import COMPLETE, bundle_dir, finished_bundle
from formats.cache import after_write, cache_root, publish_dir, scratch
from formats.errors import KilnError
from formats.imageuser import resolve_user, tree_reader
from formats.megabinary import read_megabinary
from recompiler.image import ImageKind, open_image

__all__ = ["prepare_bundle", "BundleError"]

class BundleError(KilnError):
    """The image cannot be run: not recompiled, or its megabinary does not match."""


def prepare_bundle(image: Path | str, *, platform: str | None = None,
                   cache: Path | None = None) -> Path:
    """An OCI runtime bundle for the recompiled image at ``image``; returns its directory.

    The bundle holds ``config.json`` (process args from Entrypoint + Cmd, Env,
    cwd from WorkingDir, user) and ``rootfs/``. It is built once per manifest
    digest and reused; a partly built bundle is never visible. This process
    holds a lease on it until it ends: eviction leaves it alone meanwhile.
    """
    image = Path(image)
    with open_image(image, platform=platform) as src:
        if src.kind == ImageKind.ROOTFS:
            raise BundleError(f"{image} is a plain directory, not a recompiled image",
                              hint=f"recompile it first: recompile {image} -o OUT, then kiln run OUT")
        expected = (src.manifest_annotations or {}).get(ANNOTATION_MEGABINARY_DIGEST) \
            or src.config.labels.get(ANNOTATION_MEGABINARY_DIGEST)
        if not expected:
            raise BundleError(f"{image} has not been recompiled by Kiln (no {ANNOTATION_MEGABINARY_DIGEST})",
                              hint=f"run: recompile {image} -o OUT, then kiln run OUT")
        cache = Path(cache) if cache is not None else cache_root()
        dest = bundle_dir(cache, src.manifest_digest or src.config_digest)
        if finished_bundle(dest) is not None:
            return dest
        with scratch(dest.parent, "partial-") as tmp:
            rootfs = tmp / "rootfs"
            # As root, files keep the image's owners: guest ids are real host ids
            # (vkernel/creds.py), so the host checks permissions as in a container.
            src.unpack(rootfs, chown=os.geteuid() == 0)
            mb_path = rootfs / MEGABINARY_PATH.lstrip("/")
            if not mb_path.is_file():
                raise BundleError(f"{image}: the image has no megabinary at {MEGABINARY_PATH}",
                                  hint="recompile the source image again")
            with read_megabinary(mb_path) as mb:
                if mb.digest != expected:
                    raise BundleError(f"{image}: megabinary digest {mb.digest} does not match the "
                                      f"image's annotation {expected}",
                                      hint="the image was modified after recompiling; recompile it again")
            cfg = src.config
            user = resolve_user(cfg.user or "0", tree_reader(rootfs))
            args = list(cfg.entrypoint or []) + list(cfg.cmd or [])
            spec = {
                "ociVersion": "1.0.2",
                "process": {"args": args, "env": list(cfg.env or []), "cwd": cfg.working_dir or "/",
                            "user": {"uid": user.uid, "gid": user.gid}, "terminal": False},
                "root": {"path": "rootfs", "readonly": True},
                "hostname": "kiln",
                "annotations": {ANNOTATION_MEGABINARY_DIGEST: expected,
                                "io.kiln.megabinary.path": MEGABINARY_PATH,
                                "io.kiln.image.entrypoint": json.dumps(list(cfg.entrypoint or [])),
                                "io.kiln.image.cmd": json.dumps(list(cfg.cmd or [])),
                                "io.kiln.image.user": cfg.user or ""},
            }
            (tmp / "config.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
            (tmp / COMPLETE).write_text(expected + "\n")
            _publish(tmp, dest)
    after_write(cache)
    return dest


def _publish(tmp: Path, dest: Path) -> None:
    """Rename the finished bundle ``tmp`` to ``dest``, leased until this process ends; when
    another process published one there first, lease theirs instead."""
    for _ in range(10):
        lease = publish_dir(tmp, dest)
        if lease is not None:
            lease.keep()
            return
        if finished_bundle(dest) is not None:   # another run finished the same bundle first
            return
    raise BundleError(f"{dest} exists but is not a complete bundle",
                      hint=f"remove it (rm -r {dest}) and run again")
