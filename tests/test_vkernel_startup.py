"""What `kiln run` does at start-up: which code it loads, and how it checks the AOT code.

The timing targets themselves are measured by ``bench/run.py`` (``true`` and
``fork-exec``), not here.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from formats.megabinary import read_megabinary
from test_vkernel_support import build_elf, make_rootfs, unit_for, wat_module, write_mb
from test_vkernel_run import hello_wat
from vkernel.engine import engine_fingerprint

KILN = [sys.executable, "-m", "vkernel.cli"]


def _hello(tmp: Path) -> tuple[Path, Path]:
    elf = build_elf(tmp, "hello")
    root = make_rootfs(tmp, {"/bin/hello": elf.path})
    mb = write_mb(tmp / "mb.kiln", hello_wat(elf.msg_addr, elf.msg_len, 0),
                  [unit_for(elf.path.read_bytes(), "/bin/hello")])
    return root, mb


def test_kiln_run_loads_no_recompiler_code(tmp_path: Path) -> None:
    root, mb = _hello(tmp_path)
    got = subprocess.run([sys.executable, "-X", "importtime", *KILN[1:], "run", "--rootfs",
                          str(root), "--megabinary", str(mb), "--", "/bin/hello"],
                         capture_output=True, timeout=60)
    assert got.returncode == 0 and got.stdout == b"hello from a real ELF\n", got.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in got.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "vkernel.runtime" in imported and "wasmtime" in imported
    heavy = {m for m in imported if m.split(".")[0] in ("lief", "capstone", "recompiler")}
    assert not heavy


def test_damaged_aot_code_is_refused_before_it_runs(tmp_path: Path) -> None:
    root, mb = _hello(tmp_path)
    offset, length = read_megabinary(mb).aot_location(engine_fingerprint())
    raw = bytearray(mb.read_bytes())
    raw[offset + length // 2] ^= 0x40              # one bit of the machine code
    mb.write_bytes(bytes(raw))
    got = subprocess.run([*KILN, "run", "--rootfs", str(root), "--megabinary", str(mb), "--",
                          "/bin/hello"], capture_output=True, timeout=60)
    err = got.stderr.decode()
    assert got.returncode != 0 and got.stdout == b""
    assert "BLAKE3" in err and "recompile" in err and "Traceback" not in err


def test_many_runs_in_one_process_share_nothing_stale(tmp_path: Path) -> None:
    """Runs one after another in the same host process (an agent host) each start clean."""
    root, mb = _hello(tmp_path)
    code = ("import sys\nfrom pathlib import Path\nfrom vkernel.runtime import RunSpec, run_guest\n"
            f"spec = RunSpec(rootfs=Path({str(root)!r}), megabinary=Path({str(mb)!r}), "
            "argv=('/bin/hello',))\n"
            "print([run_guest(spec) for _ in range(3)], file=sys.stderr)\n")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                         cwd=Path(__file__).parent)
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"hello from a real ELF\n" * 3
    assert got.stderr.decode().strip().endswith("[0, 0, 0]")
