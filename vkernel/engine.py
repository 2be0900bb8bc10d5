"""The Wasmtime engine vkernel runs AOT artifacts in, configured from formats.abi."""
from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

import wasmtime

from formats import abi
from formats.engine import current_fingerprint
from vkernel.errors import VkernelError
from vkernel.verified import ArtifactMismatch, TrustDir, artifact_fd, copy_section, hash_matches

if TYPE_CHECKING:
    from formats.megabinary import EngineFingerprint, Megabinary, SectionEntry

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
    profiler = os.environ.get("KILN_PROFILER")
    if profiler:                        # "perfmap" or "jitdump": for `perf record` of guest code
        cfg.profiler = profiler
    return cfg


def make_engine() -> wasmtime.Engine:
    """A new engine configured as the recompiler's (see :func:`engine_config`)."""
    return wasmtime.Engine(engine_config())


@functools.lru_cache(maxsize=1)
def engine_fingerprint() -> "EngineFingerprint":
    """This runtime's engine identity (formats.engine.current_fingerprint), computed once."""
    return current_fingerprint()


def _aot_memfd(mb: "Megabinary", entry: "SectionEntry") -> int:
    """A memfd holding exactly the AOT section ``entry``, BLAKE3-checked against the section
    table (which the header checksum covers): the path when nothing can be kept on disk.

    The section is copied by the kernel (sendfile) and the copy is hashed, so what Wasmtime
    maps is what was checked (nobody else writes it).
    """
    fd = os.memfd_create("kiln-aot", os.MFD_CLOEXEC)
    try:
        with open(mb.path, "rb") as f:  # type: ignore[arg-type]
            copied = copy_section(f.fileno(), fd, entry)
        if not copied or not hash_matches(fd, entry):
            raise ArtifactMismatch()
    except BaseException:
        os.close(fd)
        raise
    return fd


def _aot_fd(mb: "Megabinary", fp: "EngineFingerprint", trust: TrustDir | None,
            name: str) -> int | None:
    """A descriptor of a file that is exactly the megabinary's AOT artifact of module ``name``
    for ``fp``, checked against its BLAKE3 (now, or by an earlier run when ``trust`` keeps
    checks: vkernel/verified.py); None when the file has no such section.

    Wasmtime maps a file it deserializes instead of copying and relocating a buffer; it
    needs a file that is the artifact alone.
    """
    entry = mb.aot_section(fp, name)
    if entry is None or mb.path is None:
        return None
    try:
        fd = artifact_fd(mb, entry, trust) if trust is not None else None
        return fd if fd is not None else _aot_memfd(mb, entry)
    except ArtifactMismatch:
        raise VkernelError(f"{mb.path}: the ahead-of-time code for {fp} does not match "
                           "its BLAKE3 (the file is damaged, or changed while opening)",
                           hint="re-run `recompile` to rebuild the megabinary") from None


def load_module(engine: wasmtime.Engine, mb: "Megabinary", trust: TrustDir | None = None,
                name: str = abi.CORE_MODULE) -> wasmtime.Module:
    """The AOT artifact of module ``name`` (the core, or a unit's BLAKE3 in hex) for this
    engine, deserialized (never compiled here). With ``trust``, the checked artifact is kept
    there for the next run."""
    fp = engine_fingerprint()
    where = mb.path or "the megabinary"
    if name != abi.CORE_MODULE:
        where += f" (unit {name[:16]})"
    fd = _aot_fd(mb, fp, trust, name)
    if fd is not None:
        try:
            return wasmtime.Module.deserialize_file(engine, f"/proc/self/fd/{fd}")
        except Exception as e:  # wasmtime raises WasmtimeError for incompatible artifacts
            raise VkernelError(f"{where}: the ahead-of-time code for {fp} does not load: {e}",
                               hint="re-run `recompile` to rebuild the AOT artifact") from None
        finally:
            os.close(fd)          # Wasmtime keeps its own mapping
    blob = mb.aot_for(fp, name)
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
