"""Snapshots of sandboxes: not implemented yet. Every snapshot route answers 501 and says so.

Issue #11 asks for a snapshot to hold the guest memory, CPU state and vkernel
tables of a sandbox, restorable many times. vkernel cannot yet write its
tables (fd table, overlay, process tree) to disk and rebuild them, so this
server takes no snapshot rather than a partial one that would restore a
different sandbox than the one that was saved.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shim.sandbox.errors import ApiError

if TYPE_CHECKING:
    from shim.sandbox.tokens import Token

__all__ = ["Snapshots", "NOT_IMPLEMENTED"]

NOT_IMPLEMENTED = "snapshots are not implemented in this kiln serve yet"
_HINT = ("create a new sandbox and replay its setup (files API, exec); "
         "docs/sandboxes.md, 'Snapshots', says what is missing")


def _refuse() -> ApiError:
    return ApiError(501, NOT_IMPLEMENTED, _HINT)


class Snapshots:
    """The snapshot store of one server: it keeps none."""

    def __init__(self, root: Any, manager: Any) -> None:
        self.root = root
        self.manager = manager

    async def take(self, sb: Any, token: "Token") -> Any:
        raise _refuse()

    def get(self, snap_id: str, token: "Token") -> Any:
        raise _refuse()

    def visible(self, token: "Token") -> list:
        return []

    def remove(self, snap_id: str, token: "Token") -> None:
        raise _refuse()

    async def restore_into(self, snap: Any, sb: Any) -> None:
        raise _refuse()
