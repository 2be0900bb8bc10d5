"""vkernel running code from the real lifter (recompiler.lift_api), compared with the native run."""
from __future__ import annotations

import subprocess
from pathlib import Path

import blake3
import pytest
import wasmtime

from formats import abi
from formats.index import Index, UnitKind, UnitRecord
from formats.megabinary import Metadata, write_megabinary
from test_vkernel_support import build_elf, make_rootfs
from test_vkernel_run import kiln_run
from vkernel.engine import engine_fingerprint, make_engine

lift_api = pytest.importorskip("recompiler.lift_api")


def lifted_megabinary(tmp: Path, elf: Path, guest_path: str, pie: bool) -> Path:
    """Lift and link one ELF as the recompiler does, AOT-compile it, write the megabinary."""
    unit = lift_api.lift_elf(elf, name=guest_path)
    linked = lift_api.link_unit(unit)
    digest = blake3.blake3(elf.read_bytes()).digest()
    rec = UnitRecord(blake3=digest, paths=(guest_path,),
                     kind=UnitKind.PIE if pie else UnitKind.EXEC, pie=pie, entry=unit.entry,
                     link_base=0, functions=linked.functions, entries=tuple(sorted(linked.entries)),
                     trap_sites=tuple(linked.trap_sites),
                     stats={"instructions": 0, "functions": linked.functions})
    index = Index(abi_version=abi.ABI_VERSION, units=(rec,))
    modules = {abi.CORE_MODULE: lift_api.core_module(), digest.hex(): linked.wasm}
    engine = make_engine()
    aot = {name: wasmtime.Module(engine, m).serialize() for name, m in modules.items()}
    out = tmp / "lifted.kmb"
    write_megabinary(out, index=index, modules=modules, aot={engine_fingerprint(): aot},
                     metadata=Metadata(tool_version="vkernel-tests"))
    return out


@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
def test_lifted_hello_matches_native(tmp_path: Path, pie: bool) -> None:
    elf = build_elf(tmp_path, "hello", pie=pie)
    native = subprocess.run([str(elf.path)], capture_output=True)
    root = make_rootfs(tmp_path, {"/bin/hello": elf.path})
    mb = lifted_megabinary(tmp_path, elf.path, "/bin/hello", pie)
    got = kiln_run(root, mb, "/bin/hello")
    assert (got.returncode, got.stdout, got.stderr) == (native.returncode, native.stdout, b"")
