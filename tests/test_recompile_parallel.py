"""Parallel lifting and the batched linker give exactly what one process and one text assembly give.

The lifter splits one ELF into batches of functions lifted in worker processes, and
the linker assembles batches of functions separately (stubs standing in for the
rest) and merges their binary code. Both must be invisible in the output: these
tests lift and link real static binaries both ways and compare the bytes.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus.build import build_corpus  # noqa: E402
from recompiler.lift_api import lift_elf, link_unit  # noqa: E402
from recompiler.wasm import module as wasm_module  # noqa: E402


def _binary(variant: str) -> Path:
    for b in build_corpus():
        if b.variant == variant:
            return b.path
    pytest.skip(f"no {variant} corpus binary")


@pytest.fixture(scope="module")
def glibc_units():
    """A glibc-static corpus program lifted with one job and with two."""
    exe = _binary("glibc-static")
    return lift_elf(exe, name="/prog", jobs=1), lift_elf(exe, name="/prog", jobs=2)


def test_parallel_lift_gives_the_same_unit(glibc_units) -> None:
    one, two = glibc_units
    assert len(one.functions) > 64            # enough functions to be cut into batches
    s1, s2 = dict(one.stats), dict(two.stats)
    s1.pop("lift_seconds")
    s2.pop("lift_seconds")
    assert s1 == s2
    assert (one.functions, one.entries, one.trap_sites) == (two.functions, two.entries, two.trap_sites)
    assert one.functions_wat == two.functions_wat


def _code_section(wasm: bytes) -> bytes:
    return dict(wasm_module._sections(wasm))[10]


def test_batched_link_equals_one_text_assembly(glibc_units, monkeypatch) -> None:
    one, _ = glibc_units
    # small batches, so the unit is cut into several; one worker and two
    small = link_unit(one, jobs=1).wasm
    batched = wasm_module.link_unit(one, jobs=2, batch_text=1 << 16).wasm
    assert batched == small
    # the reference: the whole module's text assembled in one piece
    captured: list[str] = []
    real = wasm_module._assemble

    def keep_skeleton(text: str) -> bytes:
        captured.append(text)
        return real(text)

    monkeypatch.setattr(wasm_module, "_assemble", keep_skeleton)
    wasm_module.link_unit(one, jobs=1)
    skeleton = captured[0]
    stubs = [line for line in skeleton.splitlines() if line.endswith("(type $guestfn) unreachable)")]
    assert len(stubs) == len(one.functions)
    whole = skeleton.replace("\n".join(stubs), one.functions_wat)
    assert _code_section(wasmtime.wat2wasm(whole)) == _code_section(batched)
    # and Wasmtime accepts the merged module
    from recompiler.aot import engine_config
    wasmtime.Module(wasmtime.Engine(engine_config()), batched)


def test_modules_built_in_workers_and_alone_give_the_same_megabinary(tmp_path, monkeypatch) -> None:
    """Units are linked and compiled one per worker process, or alone here with every thread
    (recompiler/assemble.py): whichever way each unit goes, the megabinary is the same bytes."""
    from recompiler import assemble
    from recompiler.pipeline import RecompileOptions, recompile_image
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    for b in [b for b in build_corpus() if b.variant == "musl-static"][:3]:
        shutil.copy(b.path, root / "bin" / b.name)
    sizes = sorted(len(lift_elf(p, name=p.name).to_bytes()) for p in (root / "bin").iterdir())
    assert len(sizes) >= 2, "the corpus has too few programs to split"

    def digest(jobs: int, alone: int) -> str:
        monkeypatch.setattr(assemble, "ALONE_UNIT_BYTES", alone)
        out = tmp_path / f"out-{jobs}-{alone}"
        report = recompile_image(root, out, RecompileOptions(jobs=jobs, cache=tmp_path / "cache",
                                                             use_cache=False))
        assert report.stage_seconds["modules"] > 0
        return report.megabinary_digest

    one = digest(1, 1 << 40)                 # this process, one unit after another
    assert digest(2, 1 << 40) == one         # every unit in a worker, one thread each
    assert digest(2, sizes[-1]) == one       # the largest alone with every thread, the rest in workers


def _die(args) -> None:
    os._exit(9)                              # as a worker the OOM killer ends does


@pytest.mark.parametrize("stage", ["lift", "compile"])
def test_a_worker_that_dies_is_a_clear_error(stage: str, tmp_path, monkeypatch) -> None:
    """A worker killed while it lifts or compiles (the OOM killer, say) ends the recompile
    with what happened and what to do, and nothing is written."""
    from formats.errors import KilnError
    from recompiler import assemble, pipeline
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    for b in [b for b in build_corpus() if b.variant == "musl-static"][:2]:
        shutil.copy(b.path, root / "bin" / b.name)
    if stage == "lift":
        monkeypatch.setattr(pipeline, "_lift_one", _die)
    else:
        monkeypatch.setattr(assemble, "_build_unit", _die)
    with pytest.raises(KilnError) as err:
        pipeline.recompile_image(root, tmp_path / "out",
                                 pipeline.RecompileOptions(jobs=2, cache=tmp_path / "cache"))
    assert "worker process" in err.value.message and "--jobs 1" in (err.value.hint or "")
    assert not (tmp_path / "out").exists()
