"""Replacements for programs that cannot be recompiled ahead of time (JIT runtimes)."""
from __future__ import annotations
