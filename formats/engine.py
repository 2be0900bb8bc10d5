"""Which Wasmtime engine this machine runs, as the megabinary's EngineFingerprint.

The recompiler stores each AOT artifact under the fingerprint of the engine
that produced it; vkernel loads only the artifact whose fingerprint equals its
own. Both compute it here, from the installed wasmtime package's version, the
host target and ``formats.abi.ENGINE_SETTINGS``.
"""
from __future__ import annotations

import os
from pathlib import Path

from formats.abi import ENGINE_SETTINGS
from formats.errors import KilnError
from formats.megabinary import EngineFingerprint

__all__ = ["host_target", "current_fingerprint"]

_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def host_target() -> str:
    """The target triple Wasmtime compiles for on this host (e.g. x86_64-unknown-linux-gnu)."""
    uname = os.uname()
    machine = _MACHINES.get(uname.machine.lower(), uname.machine.lower() or "unknown")
    system = uname.sysname.lower() or "unknown"
    return f"{machine}-unknown-{system}-gnu" if system == "linux" else f"{machine}-unknown-{system}"


def _wasmtime_version() -> str:
    """The installed wasmtime package's version. Read from the ``.dist-info`` next to the
    package Python imports (a few file reads; ``importlib.metadata`` costs ``kiln run`` about
    20 ms of start-up), else asked of importlib.metadata."""
    import importlib.util
    spec = importlib.util.find_spec("wasmtime")
    if spec is not None and spec.origin:
        site = Path(spec.origin).parent.parent
        found = list(site.glob("wasmtime-*.dist-info"))
        if len(found) == 1:
            try:
                with open(found[0] / "METADATA", encoding="utf-8") as f:
                    for line in f:
                        if line.startswith("Version:"):
                            return line.split(":", 1)[1].strip()
                        if not line.strip():
                            break
            except OSError:
                pass
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("wasmtime")
    except PackageNotFoundError:
        raise KilnError("the wasmtime Python package is not installed",
                        hint="run scripts/setup.sh (or pip install -e .)") from None


def current_fingerprint() -> EngineFingerprint:
    """The fingerprint of the engine the installed wasmtime package provides here."""
    return EngineFingerprint.create(_wasmtime_version(), host_target(), ENGINE_SETTINGS)
