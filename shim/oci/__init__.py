"""kiln-oci: the runc-compatible OCI runtime (containerd's runc shim, dockerd and CRI call it)."""
from __future__ import annotations
