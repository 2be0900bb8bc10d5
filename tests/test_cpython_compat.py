"""A sample of CPython's regression tests has the same outcome under ``kiln run`` as natively.

The full comparison (tests/cpython_compat.py, docs/compat.md) takes too long
for every CI run; these modules cover pure Python and C extension modules
loaded by dlopen, and stay quick.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cpython_compat import kiln, native

SAMPLE = ("test_binascii", "test_bisect", "test_cmath", "test_csv")
"""C extension modules (binascii, _bisect, cmath, _csv) whose runs take seconds under Kiln.
test_json (about a minute: it starts interpreters) and the modules that start threads or many
processes are left to the full comparison (tests/cpython_compat.py, docs/compat.md)."""

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the native side needs root (overlay, unshare)")]


@pytest.mark.parametrize("module", SAMPLE)
def test_module_outcome_matches_native(module: str, debian_tree: Path,
                                       debian_recompiled: tuple[Path, dict]) -> None:
    want, _ = native(debian_tree, module)
    got, out = kiln(debian_recompiled[0], module)
    assert want.ran > 10 and want.result == "SUCCESS"
    assert got.same_as(want), out[-3000:].decode(errors="replace")
