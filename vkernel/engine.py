"""The Wasmtime engine vkernel runs AOT artifacts in, configured from formats.abi."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import wasmtime

from formats import abi
from formats.engine import current_fingerprint
from vkernel.errors import VkernelError

if TYPE_CHECKING:
    from formats.megabinary import EngineFingerprint, Megabinary

# Wasmtime 50 aborts the whole process (a Rust panic, not an exception) when
# max_wasm_stack exceeds its async stack size, so check before building.
_WASMTIME_MAX_STACK = 2 * 1024 * 1024


def engine_config() -> wasmtime.Config:
    """A Config with formats.abi.ENGINE_SETTINGS applied in order."""
    cfg = wasmtime.Config()
    for name, value in abi.ENGINE_SETTINGS:
        if name == "max_wasm_stack" and int(value) > _WASMTIME_MAX_STACK:  # type: ignore[call-overload]
            raise VkernelError(f"formats.abi.ENGINE_SETTINGS sets max_wasm_stack={value}, above "
                               f"wasmtime's limit of {_WASMTIME_MAX_STACK}",
                               hint="this Kiln build is misconfigured; lower the setting")
        setattr(cfg, name, value)
    return cfg


def make_engine() -> wasmtime.Engine:
    """A new engine configured as the recompiler's (see :func:`engine_config`)."""
    return wasmtime.Engine(engine_config())


@functools.lru_cache(maxsize=1)
def engine_fingerprint() -> "EngineFingerprint":
    """This runtime's engine identity (formats.engine.current_fingerprint), computed once."""
    return current_fingerprint()


def load_module(engine: wasmtime.Engine, mb: "Megabinary") -> wasmtime.Module:
    """The megabinary's AOT artifact for this engine, deserialized (never compiled here)."""
    fp = engine_fingerprint()
    blob = mb.aot_for(fp)
    where = mb.path or "the megabinary"
    if blob is None:
        have = ", ".join(str(e) for e in mb.engines()) or "none"
        raise VkernelError(f"{where} has no ahead-of-time code for this engine ({fp}); "
                           f"it has: {have}",
                           hint="re-run `recompile` on this machine (or with this Kiln version) "
                                "so it precompiles for this engine")
    try:
        return wasmtime.Module.deserialize(engine, blob)
    except Exception as e:  # wasmtime raises WasmtimeError for incompatible artifacts
        raise VkernelError(f"{where}: the ahead-of-time code for {fp} does not load: {e}",
                           hint="re-run `recompile` to rebuild the AOT artifact") from None
