"""placeholder"""
from shim.sandbox.errors import ApiError, not_found


class Snapshots:
    def __init__(self, root, manager):
        self.root = root
        self.manager = manager

    def get(self, sid, token):
        raise not_found(f"no snapshot {sid}")

    async def restore_into(self, snap, sb):
        raise ApiError(501, "not yet")
