"""containerd / OCI-runtime integration for Kiln images."""
from __future__ import annotations
