"""Which Wasmtime engine this machine runs, as the megabinary's EngineFingerprint.

The recompiler stores each AOT artifact under the fingerprint of the engine
that produced it; vkernel loads only the artifact whose fingerprint equals its
own. Both compute it here, from the installed wasmtime package's version, the
host target and ``formats.abi.ENGINE_SETTINGS``.
"""
from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from formats.abi import ENGINE_SETTINGS
from formats.errors import KilnError
from formats.megabinary import EngineFingerprint

__all__ = ["host_target", "current_fingerprint"]

_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def host_target() -> str:
    """The target triple Wasmtime compiles for on this host (e.g. x86_64-unknown-linux-gnu)."""
    machine = _MACHINES.get(platform.machine().lower(), platform.machine().lower() or "unknown")
    system = platform.system().lower() or "unknown"
    return f"{machine}-unknown-{system}-gnu" if system == "linux" else f"{machine}-unknown-{system}"


def current_fingerprint() -> EngineFingerprint:
    """The fingerprint of the engine the installed wasmtime package provides here."""
    try:
        wasmtime_version = version("wasmtime")
    except PackageNotFoundError:
        raise KilnError("the wasmtime Python package is not installed",
                        hint="run scripts/setup.sh (or pip install -e .)") from None
    return EngineFingerprint.create(wasmtime_version, host_target(), ENGINE_SETTINGS)
