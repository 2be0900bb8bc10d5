"""OCI and Docker media types Kiln reads and writes, and what each one means."""
from __future__ import annotations

from .model import Compression

__all__ = [
    "OCI_INDEX", "OCI_MANIFEST", "OCI_CONFIG", "OCI_LAYER", "OCI_LAYER_GZIP", "OCI_LAYER_ZSTD",
    "DOCKER_LIST", "DOCKER_MANIFEST", "DOCKER_CONFIG", "INDEX_TYPES", "MANIFEST_TYPES",
    "layer_compression", "is_layer", "oci_layer_type",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})

_LAYERS: dict[str, Compression] = {
    OCI_LAYER: Compression.NONE, OCI_LAYER_ND: Compression.NONE,
    OCI_LAYER_GZIP: Compression.GZIP, OCI_LAYER_ND_GZIP: Compression.GZIP,
    OCI_LAYER_ZSTD: Compression.ZSTD, OCI_LAYER_ND_ZSTD: Compression.ZSTD,
    DOCKER_LAYER: Compression.NONE, DOCKER_LAYER_GZIP: Compression.GZIP,
    DOCKER_FOREIGN_GZIP: Compression.GZIP,
}


def is_layer(media_type: str) -> bool:
    """True for every tar layer media type Kiln knows."""
    return media_type in _LAYERS


def layer_compression(media_type: str) -> Compression | None:
    """The compression a layer media type declares, or None for an unknown type."""
    return _LAYERS.get(media_type)


def oci_layer_type(compression: Compression) -> str:
    """The OCI layer media type for a blob with ``compression`` (found from its magic)."""
    return {Compression.NONE: OCI_LAYER, Compression.GZIP: OCI_LAYER_GZIP,
            Compression.ZSTD: OCI_LAYER_ZSTD}[compression]
