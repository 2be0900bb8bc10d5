"""Container images in and out: safe intake of OCI / docker images, and the output image.

Intake::

    with open_image("img.tar", platform="linux/amd64") as img:
        img.config.cmd, img.config.env, img.layers
        result = img.unpack(Path("rootfs"))       # verified, whiteouts applied, no escapes

Output::

    write_image(img, Path("out"), extra_layers=[ExtraLayer((file_entry("/kiln/mb", data),))],
                annotations={...}, config_labels={...}, fmt="oci")
"""
from __future__ import annotations

from .errors import (BlobError, ImageError, LayerError, LimitExceededError,
                     MalformedImageError, NotAnImageError, OutputError,
                     PlatformNotFoundError, UnsafeLayerError)
from .layers import apply_layers, sniff_compression
from .model import (Compression, Descriptor, EntryMeta, ImageConfig, ImageKind, LayerRef,
                    Limits, Platform, SpecialFile, UnpackResult)
from .platform import DEFAULT_PLATFORM, parse_platform
from .source import SourceImage, open_image, scratch_image
from .tarbuild import (LayerEntry, dir_entry, file_entry, hardlink_entry, rootfs_entries,
                       symlink_entry, write_layer_tar)
from .writer import FORMATS, ExtraLayer, OutputImage, write_image

__all__ = [
    "open_image", "scratch_image", "SourceImage", "write_image", "ExtraLayer", "OutputImage",
    "FORMATS", "apply_layers", "sniff_compression", "LayerEntry", "file_entry", "dir_entry",
    "symlink_entry", "hardlink_entry", "rootfs_entries", "write_layer_tar",
    "Compression", "Descriptor", "EntryMeta", "ImageConfig", "ImageKind", "LayerRef", "Limits",
    "Platform", "SpecialFile", "UnpackResult", "DEFAULT_PLATFORM", "parse_platform",
    "ImageError", "NotAnImageError", "MalformedImageError", "BlobError",
    "PlatformNotFoundError", "LayerError", "UnsafeLayerError", "LimitExceededError",
    "OutputError",
]
