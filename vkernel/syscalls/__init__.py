"""vkernel's Linux syscalls: one module per family, one declarative table (``table.TABLE``)."""
from __future__ import annotations
