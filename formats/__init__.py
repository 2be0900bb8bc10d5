"""Kiln's on-disk and in-memory contracts, shared by the recompiler and vkernel.

`formats` is pure data: encoders, decoders, validators and declared tables.
It imports nothing from the rest of Kiln, and the rest of Kiln meets here.
"""
from __future__ import annotations

from formats.errors import KilnError, FormatError

__all__ = ["KilnError", "FormatError"]
