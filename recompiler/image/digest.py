"""Content digests: parse and validate ``algo:hex``, hash streams, verify blobs."""
from __future__ import annotations

import hashlib
import re
from typing import BinaryIO

from .errors import BlobError, MalformedImageError
from .jsondoc import shown

__all__ = ["ALGORITHMS", "check_digest", "split_digest", "new_hasher", "digest_of_bytes",
           "verify_stream", "CHUNK"]

CHUNK = 1 << 20

ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
"""Digest algorithms Kiln verifies, with their hex length (OCI registered algorithms)."""

_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


def check_digest(value: object, where: str) -> str:
    """Return ``value`` if it is a digest Kiln can verify, else MalformedImageError.

    Only lowercase hex of the exact length is accepted, so a digest can safely
    name a file under ``blobs/<algo>/``.
    """
    if not isinstance(value, str):
        raise MalformedImageError(f"{where}: digest must be a string, got {type(value).__name__}")
    m = _DIGEST_RE.match(value)
    if not m:
        raise MalformedImageError(f"{where}: {shown(value)} is not a digest "
                                  "(expected algorithm:hex)")
    algo, hexpart = m.groups()
    if algo not in ALGORITHMS:
        raise MalformedImageError(
            f"{where}: digest algorithm {shown(algo)} is not supported ({shown(value)})",
            hint="Kiln verifies sha256 and sha512 digests")
    if len(hexpart) != ALGORITHMS[algo] or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise MalformedImageError(
            f"{where}: {shown(value)} is not a valid {algo} digest "
            f"({ALGORITHMS[algo]} lowercase hex digits expected)")
    return value


def split_digest(digest: str) -> tuple[str, str]:
    """``"sha256:ab.."`` → ``("sha256", "ab..")`` (digest already checked)."""
    algo, _, hexpart = digest.partition(":")
    return algo, hexpart


def new_hasher(digest: str):
    """A hashlib object for ``digest``'s algorithm."""
    return hashlib.new(split_digest(digest)[0])


def digest_of_bytes(data: bytes, algo: str = "sha256") -> str:
    """``algo:hex`` of ``data``."""
    return f"{algo}:{hashlib.new(algo, data).hexdigest()}"


def verify_stream(stream: BinaryIO, digest: str, size: int | None, where: str) -> None:
    """Read ``stream`` to the end; BlobError unless its digest and size match."""
    hasher = new_hasher(digest)
    total = 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if size is not None and total > size:
            raise BlobError(f"{where}: blob {digest} is larger than its descriptor's size {size}",
                            digest=digest, hint="the image is corrupt or was tampered with; "
                            "fetch it again (e.g. skopeo copy)")
        hasher.update(chunk)
    if size is not None and total != size:
        raise BlobError(f"{where}: blob {digest} has {total} bytes, its descriptor says {size}",
                        digest=digest, hint="the image is truncated or corrupt; fetch it again")
    actual = f"{split_digest(digest)[0]}:{hasher.hexdigest()}"
    if actual != digest:
        raise BlobError(f"{where}: digest mismatch: expected {digest}, content hashes to {actual}",
                        digest=digest, hint="the image is corrupt or was tampered with; "
                        "fetch it again from a trusted source")
