"""The megabinary container (format 2.0): round trips with real lifted units, the real core
module and real Wasmtime artifacts, run as docs/formats.md says; determinism; lazy checks;
every validation error from real corruption; and an independent reader and runtime written
from docs/formats.md (tests/megabinary_spec.py) that must agree with the real ones."""
from __future__ import annotations

import importlib.metadata
import platform
import random
import shutil
import struct
import subprocess
from pathlib import Path

import blake3
import cbor2
import lief
import pytest
import wasmtime

from formats import abi
from formats.errors import FormatError, KilnError
from formats.index import CborError, Index, IndexSchemaError, UnitRecord, canonical_cbor
from formats.megabinary import (
    CORE, EMPTY_WASM_MODULE, HEADER_SIZE, SECTION_ALIGN, SECTION_ENTRY_SIZE, BadLayout, BadMagic,
    CorruptHeader, CorruptSection, EngineFingerprint, InvalidFingerprint, Metadata,
    MegabinaryWriteError, Section, SectionKind, Truncated, UnsupportedVersion, assemble,
    build_megabinary, read_megabinary, wasm_function_count, write_megabinary)
from formats.megabinary_write import file_blake3
from megabinary_spec import GuestFault, Reject, SpecProcess, spec_reader
from recompiler.lift_api import core_module, lift_elf, link_unit

HOST_TRUE = Path("/usr/bin/true")
MUSL = shutil.which("musl-gcc")

# Two small static programs, lifted for real. "rt" is run from the megabinary; "other" has an
# instruction the lifter does not translate (a real trap site) and is placed first, so that
# "rt" gets a non-zero table_base and entries after another unit's.
PROGRAMS = {
    "rt": r'''
#include <stdio.h>
#include <string.h>
static int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
int main(int argc, char **argv) {
    const char *name = strrchr(argv[0], '/');
    printf("kiln %s fib(20)=%d argc=%d\n", name ? name + 1 : argv[0], fib(20), argc);
    return 40 + argc;
}
''',
    "other": r'''
#include <stdio.h>
int main(int argc, char **argv) {
    unsigned long sum = 0;
    for (int i = 0; i < 1000; i++) sum += (unsigned long)i * i;
    if (argc > 99) __asm__ volatile("vpxor %%xmm0, %%xmm0, %%xmm0" ::: "xmm0");
    printf("sum=%lu\n", sum);
    return 0;
}
''',
}
GUEST_PATHS = {"rt": ("/bin/rt", "/usr/bin/rt-link"), "other": ("/bin/other",)}


def engine_settings() -> tuple[tuple[str, object], ...]:
    return abi.ENGINE_SETTINGS


def make_engine(settings: tuple[tuple[str, object], ...]) -> wasmtime.Engine:
    config = wasmtime.Config()
    for name, value in settings:
        setattr(config, name, value)
    return wasmtime.Engine(config)


def host_fingerprint(settings: tuple[tuple[str, object], ...]) -> EngineFingerprint:
    return EngineFingerprint.create(importlib.metadata.version("wasmtime"),
                                    f"{platform.machine()}-unknown-linux-gnu", settings)


def hex_name(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> dict[str, Path]:
    if MUSL is None:
        pytest.skip("musl-gcc not installed (scripts/setup.sh installs musl-tools)")
    out = tmp_path_factory.mktemp("progs")
    for name, source in PROGRAMS.items():
        (out / f"{name}.c").write_text(source)
        subprocess.run([MUSL, "-static", "-O2", "-o", str(out / name), str(out / f"{name}.c")],
                       check=True, capture_output=True)
    return {name: out / name for name in PROGRAMS}


@pytest.fixture(scope="module")
def linked(programs):
    """name -> the real unit module of that program (recompiler.lift_api)."""
    return {name: link_unit(lift_elf(path, name=GUEST_PATHS[name][0]))
            for name, path in programs.items()}


def unit_record(path: Path, unit, paths: tuple[str, ...]) -> UnitRecord:
    """A unit record from a real ELF (hash, type, entry, load base) and its linked module."""
    elf = lief.parse(str(path))
    loads = [s for s in elf.segments if s.type == lief.ELF.Segment.TYPE.LOAD]
    assert elf.header.file_type == lief.ELF.Header.FILE_TYPE.EXEC
    return UnitRecord(blake3=blake3.blake3(path.read_bytes()).digest(), paths=paths, kind="exec",
                      pie=False, entry=elf.entrypoint,
                      link_base=min(s.virtual_address for s in loads) // 4096 * 4096,
                      functions=unit.functions, entries=unit.entries, trap_sites=unit.trap_sites,
                      stats={k: v for k, v in unit.stats.items() if type(v) is int})


@pytest.fixture(scope="module")
def real_index(programs, linked) -> Index:
    return Index(abi_version=abi.ABI_VERSION,
                 units=tuple(unit_record(programs[n], linked[n], GUEST_PATHS[n]) for n in programs))


@pytest.fixture(scope="module")
def real_modules(programs, linked) -> dict[str, bytes]:
    out = {CORE: core_module()}
    out.update({hex_name(programs[n]): linked[n].wasm for n in programs})
    return out


def _other_settings() -> tuple[tuple[str, object], ...]:
    base = engine_settings()
    return tuple((k, "none" if k == "cranelift_opt_level" else v) for k, v in base)


@pytest.fixture(scope="module")
def real_aot(real_modules) -> dict[EngineFingerprint, dict[str, bytes]]:
    """Real artifacts of every module for two engines: Kiln's settings, and opt level 'none'."""
    out = {}
    for settings in (engine_settings(), _other_settings()):
        engine = make_engine(settings)
        out[host_fingerprint(settings)] = {
            name: bytes(wasmtime.Module(engine, wasm).serialize())
            for name, wasm in real_modules.items()}
    assert len(out) == 2
    return out


@pytest.fixture(scope="module")
def meta() -> Metadata:
    return Metadata("0.1.0", "sha256:" + "ab" * 32, {"opt": "speed", "jobs": 2, "skip": ["/bin/x"]})


@pytest.fixture(scope="module")
def written(tmp_path_factory, real_index, real_modules, real_aot, meta) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("mb") / "image.kmb"
    digest = write_megabinary(path, index=real_index, modules=real_modules, aot=real_aot,
                              metadata=meta)
    return path, digest


def run_from_file(aot_of, index_units: list, programs) -> tuple:
    """Run "rt" as docs/formats.md §3.3 and §7 say, from the AOT artifacts ``aot_of(module
    name)`` finds and the index's unit maps: the core, then "other" placed, then "rt" placed
    and mapped. Returns (stdout, exit status, placements, process), placements mapping a
    program to its (table_base, entries_at, directory row)."""
    engine = make_engine(engine_settings())
    numbers = {u["blake3"].hex(): n for n, u in enumerate(index_units)}
    proc = SpecProcess(engine, aot_of(CORE))
    placed = {}
    for name in ("other", "rt"):
        h = hex_name(programs[name])
        unit = index_units[numbers[h]]
        placed[name] = proc.place(aot_of(h), unit["functions"], len(unit["entries"]))
    entry = proc.map_exec(programs["rt"], placed["rt"][2])
    status = proc.run(entry, [b"/bin/rt"])
    return bytes(proc.stdout), status, placed, proc


# ---------------------------------------------------------------------------
# Round trip, determinism, empty file
# ---------------------------------------------------------------------------

def test_round_trip_runs_the_real_aot_artifacts(written, real_index, real_modules, real_aot,
                                                meta, programs):
    path, digest = written
    with read_megabinary(path) as mb:
        assert mb.version == (2, 0)
        assert mb.digest == digest
        assert mb.index == real_index
        assert mb.metadata == meta
        assert sorted(mb.module_names()) == sorted(real_modules)
        for name, wasm in real_modules.items():
            assert mb.module_bytes(name) == wasm
        assert set(mb.engines()) == set(real_aot)
        mb.validate()
        # vkernel's path: hash the real file, find its unit and module, load the AOT code
        rt = programs["rt"]
        unit = mb.index.lookup(blake3.blake3(rt.read_bytes()).digest())
        assert unit is not None and unit.kind == "exec" and "/usr/bin/rt-link" in unit.paths
        assert unit.slot_for(unit.entry) is not None
        fp = host_fingerprint(engine_settings())
        for name in real_modules:
            artifact = mb.aot_for(fp, name)
            offset, length = mb.aot_location(fp, name)
            assert offset % SECTION_ALIGN == 0 and length == len(artifact)
            assert mb.aot_for(str(fp), name) == artifact == real_aot[fp][name]
        other = EngineFingerprint.create("49.0.0", "x86_64-unknown-linux-gnu", engine_settings())
        assert mb.aot_for(other) is None and mb.aot_location(other) is None
        assert mb.aot_for(fp, "0" * 64) is None
        units = [u.to_obj() for u in mb.index.units]
        got = run_from_file(lambda name: mb.aot_for(fp, name), units, programs)
    native = subprocess.run([str(rt)], capture_output=True, timeout=30)
    assert native.stdout.startswith(b"kiln rt fib(20)=6765")
    assert got[:2] == (native.stdout, native.returncode)


def test_units_are_placed_as_the_spec_says(written, real_index, programs):
    """§3.3: each unit's element segment fills its slots from table_base, its data segment
    writes exactly its index entries at entries_at; a miss faults NO_TRANSLATION (§7)."""
    data = written[0].read_bytes()
    spec = spec_reader(data)
    fp = str(host_fingerprint(engine_settings()))
    _, _, placed, proc = run_from_file(lambda name: spec.aot[f"{name}:{fp}"], spec.index["units"],
                                       programs)
    store = proc.store
    by_name = {n: real_index.lookup(blake3.blake3(programs[n].read_bytes()).digest())
               for n in programs}
    assert placed["other"][0] == 0 and placed["rt"][0] == by_name["other"].functions
    assert placed["other"][1] == abi.ENTRIES_AREA
    assert (placed["other"][2], placed["rt"][2]) == (0, 1)
    assert proc.table.size(store) == sum(u.functions for u in real_index.units)
    assert all(proc.table.get(store, i) is not None for i in range(proc.table.size(store)))
    for name, (base, at, number) in placed.items():
        unit = by_name[name]
        raw = proc.ctl.read(store, at, at + abi.DISPATCH_ENTRY_SIZE * len(unit.entries))
        rows = [struct.unpack_from("<III", raw, i * 12) for i in range(len(unit.entries))]
        assert [(a, f) for a, f, _ in rows] == [(a & 0xFFFF_FFFF, s) for a, s in unit.entries]
        row = proc.ctl.read(store, abi.DIRECTORY + 16 * number, abi.DIRECTORY + 16 * number + 16)
        assert struct.unpack("<4I", row) == (at, len(unit.entries), base, 0)
    assert placed["rt"][1] >= placed["other"][1] + 12 * len(by_name["other"].entries)
    # an address inside rt's code with no translation: a fault, with the address recorded
    rt = by_name["rt"]
    miss = next(a for a in range(rt.entry + 1, rt.entry + 64) if rt.slot_for(a) is None)
    with pytest.raises(GuestFault) as fault:
        proc.run(miss, [b"/bin/rt"])
    assert (fault.value.code, fault.value.rip) == (abi.FaultCode.NO_TRANSLATION, miss)


def test_identical_input_gives_identical_bytes(tmp_path, real_index, real_modules, real_aot,
                                               meta):
    a = write_megabinary(tmp_path / "a.kmb", index=real_index, modules=real_modules,
                         aot=real_aot, metadata=meta)
    # the same contents handed over in other orders: units, modules, AOT maps, parameters
    shuffled_index = Index(real_index.abi_version, tuple(reversed(real_index.units)))
    shuffled_modules = dict(reversed(list(real_modules.items())))
    shuffled_aot = {str(k): dict(reversed(list(v.items())))
                    for k, v in reversed(list(real_aot.items()))}
    shuffled_meta = Metadata(meta.tool_version, meta.source_image,
                             dict(reversed(list(meta.parameters.items()))))
    b = write_megabinary(tmp_path / "b.kmb", index=shuffled_index, modules=shuffled_modules,
                         aot=shuffled_aot, metadata=shuffled_meta)
    assert a == b
    assert (tmp_path / "a.kmb").read_bytes() == (tmp_path / "b.kmb").read_bytes()
    assert build_megabinary(index=real_index, modules=real_modules, aot=real_aot,
                            metadata=meta) == (tmp_path / "a.kmb").read_bytes()
    # and a different parameter changes the digest
    c = write_megabinary(tmp_path / "c.kmb", index=real_index, modules=real_modules,
                         aot=real_aot,
                         metadata=Metadata(meta.tool_version, meta.source_image, {"opt": "size"}))
    assert c != a


def test_sections_read_from_files_give_the_same_megabinary(tmp_path, real_index, real_modules,
                                                          real_aot, meta):
    """The recompiler hands the writer files, not bytes, for a whole image's modules and
    artifacts: the megabinary is byte for byte the one made from the same bytes."""
    def on_disk(name: str, blob: bytes) -> Path:
        path = tmp_path / "parts" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(blob)
        return path
    modules = {name: on_disk(f"{name}.wasm", m) for name, m in real_modules.items()}
    aot = {fp: {name: on_disk(f"{name}.{n}.cwasm", a) for name, a in arts.items()}
           for n, (fp, arts) in enumerate(real_aot.items())}
    digest = write_megabinary(tmp_path / "files.kmb", index=real_index, modules=modules,
                              aot=aot, metadata=meta)
    want = build_megabinary(index=real_index, modules=real_modules, aot=real_aot, metadata=meta)
    assert (tmp_path / "files.kmb").read_bytes() == want
    assert digest == read_megabinary(want).digest
    assert file_blake3(tmp_path / "files.kmb") == blake3.blake3(want).digest()
    unit = real_index.units[0].blake3.hex()
    for what, bad in {"not wasm": {**modules, unit: on_disk("elf", b"\x7fELF")},
                      "empty artifact": None}.items():
        with pytest.raises(MegabinaryWriteError):
            if bad is None:
                write_megabinary(tmp_path / "bad.kmb", index=real_index, modules=modules,
                                 aot={next(iter(aot)): {CORE: on_disk("empty", b"")}},
                                 metadata=meta)
            else:
                write_megabinary(tmp_path / "bad.kmb", index=real_index, modules=bad,
                                 metadata=meta)


def test_megabinary_without_units_holds_the_core_alone(tmp_path):
    path = tmp_path / "empty.kmb"
    core = core_module()
    digest = write_megabinary(path, index=Index(abi_version=abi.ABI_VERSION),
                              modules={CORE: core}, metadata=Metadata("0.1.0"))
    with read_megabinary(path) as mb:
        assert mb.digest == digest
        assert mb.index.units == () and mb.engines() == () and mb.module_names() == (CORE,)
        assert mb.index.lookup(bytes(32)) is None
        wasmtime.Module(make_engine(engine_settings()), mb.module_bytes())  # Wasmtime accepts it
        mb.validate()
    assert path.stat().st_size % SECTION_ALIGN == len(core) % SECTION_ALIGN
    assert spec_reader(path.read_bytes()).order == [(1, ""), (2, ""), (3, CORE)]


def test_sections_are_sorted_4k_aligned_and_padding_is_zero(written, real_modules, real_aot):
    data = written[0].read_bytes()
    with read_megabinary(data) as mb:
        kinds = [e.kind for e in mb.sections]
        assert kinds == [SectionKind.INDEX, SectionKind.META] + [SectionKind.MODULE] * 3 + \
            [SectionKind.AOT] * 6
        modules = [e.name for e in mb.sections if e.kind == SectionKind.MODULE]
        aot = [e.name for e in mb.sections if e.kind == SectionKind.AOT]
        assert modules == sorted(real_modules, key=str.encode)
        assert aot == sorted((f"{m}:{fp}" for fp in real_aot for m in real_modules),
                             key=str.encode)
        pos = (HEADER_SIZE + SECTION_ENTRY_SIZE * len(mb.sections)
               + sum(len(n.encode()) for n in modules + aot))
        for e in mb.sections:
            assert e.offset % SECTION_ALIGN == 0
            assert data[pos:e.offset] == bytes(e.offset - pos)
            pos = e.end
        assert pos == len(data)


# ---------------------------------------------------------------------------
# Writer behaviour
# ---------------------------------------------------------------------------

def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, real_index, real_modules,
                                                  real_aot, meta):
    path = tmp_path / "out.kmb"
    write_megabinary(path, index=real_index, modules=real_modules, metadata=meta)
    before = path.read_bytes()
    unit = real_index.units[0]
    broken = Index(real_index.abi_version,
                   (UnitRecord(**{**unit.__dict__, "functions": 1}),) + real_index.units[1:])
    with pytest.raises(IndexSchemaError):                  # entries beyond the unit's functions
        write_megabinary(path, index=broken, modules=real_modules, metadata=meta)
    unit_name = unit.blake3.hex()
    fp = host_fingerprint(engine_settings())
    refused = {
        "not wasm": {**real_modules, unit_name: b"\x7fELF"},
        "no core": {k: v for k, v in real_modules.items() if k != CORE},
        "unit without module": {k: v for k, v in real_modules.items() if k != unit_name},
        "module that is no unit": {**real_modules, "0" * 64: EMPTY_WASM_MODULE},
    }
    for what, modules in refused.items():
        with pytest.raises(MegabinaryWriteError) as err:
            write_megabinary(path, index=real_index, modules=modules, metadata=meta)
        assert err.value.hint, what
    for what, aot in {"unknown module": {fp: {"f" * 64: b"x"}},
                      "empty artifact": {fp: {CORE: b""}}}.items():
        with pytest.raises(MegabinaryWriteError):
            write_megabinary(path, index=real_index, modules=real_modules, aot=aot,
                             metadata=meta)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.kmb"]
    with pytest.raises(MegabinaryWriteError) as err:
        write_megabinary(tmp_path / "missing" / "x.kmb", index=real_index,
                         modules=real_modules, metadata=meta)
    assert err.value.hint
    assert not (tmp_path / "missing").exists()


def test_write_failure_is_a_kiln_error_and_cleans_up(tmp_path, real_index, real_modules, meta):
    target = tmp_path / "taken.kmb"
    target.mkdir()                      # the rename onto a directory fails, even as root
    with pytest.raises(MegabinaryWriteError) as err:
        write_megabinary(target, index=real_index, modules=real_modules, metadata=meta)
    assert str(target) in str(err.value) and err.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.kmb"]


def test_metadata_refuses_timestamps_and_floats():
    import datetime
    for params in ({"when": datetime.datetime(2024, 1, 1)}, {"ratio": 0.5}):
        with pytest.raises(IndexSchemaError):
            build_megabinary(index=Index(abi.ABI_VERSION), modules={CORE: EMPTY_WASM_MODULE},
                             metadata=Metadata("0.1", "", params))


def test_engine_fingerprint_canonical_string_round_trips():
    fp = host_fingerprint(engine_settings())
    assert EngineFingerprint.parse(str(fp)) == fp
    assert " " not in str(fp) and ":" not in str(fp) and str(fp).startswith("wasmtime/")
    swapped = EngineFingerprint("wasmtime", "50.0.1", "x86_64-unknown-linux-gnu",
                                (("b", "1"), ("a", "2")))
    assert str(swapped).endswith("/a=2,b=1")
    for bad in ("wasmtime/50/x86_64/b=1,a=2", "wasmtime/50/x86_64", "Wasmtime/50/x/",
                "wasmtime/50/x/a=1,a=1", "wasmtime/5 0/x/", "wasmtime/50/x/a"):
        with pytest.raises(InvalidFingerprint):
            EngineFingerprint.parse(bad)


# ---------------------------------------------------------------------------
# Validation: each error from real corruption of a real written file
# ---------------------------------------------------------------------------

def reseal(data: bytearray) -> bytearray:
    """Recompute the header checksum the way docs/formats.md §1.2 rule 5 says."""
    header_size, _, count, names_size = struct.unpack_from("<IIII", data, 12)
    end = header_size + 64 * count + names_size
    region = bytearray(data[:end])
    region[40:72] = bytes(32)
    data[40:72] = blake3.blake3(bytes(region)).digest()
    return data


def entry_at(n: int) -> int:
    return HEADER_SIZE + SECTION_ENTRY_SIZE * n


def test_wrong_magic(written):
    data = bytearray(written[0].read_bytes())
    data[0] ^= 0xFF
    with pytest.raises(BadMagic) as err:
        read_megabinary(data)
    assert err.value.offset == 0 and err.value.hint
    with pytest.raises(BadMagic):
        read_megabinary(HOST_TRUE)     # a real ELF is not a megabinary


def test_unknown_major_version(written):
    data = bytearray(written[0].read_bytes())
    struct.pack_into("<H", data, 8, 3)
    with pytest.raises(UnsupportedVersion) as err:
        read_megabinary(data)
    assert "3.0" in str(err.value) and err.value.offset == 8
    # a newer minor is fine when the rest is consistent
    struct.pack_into("<H", data, 8, 2)
    struct.pack_into("<H", data, 10, 7)
    assert read_megabinary(reseal(data)).version == (2, 7)
    assert spec_reader(bytes(data)).version == (2, 7)


def format_1_file(real_modules, real_aot, meta) -> bytes:
    """A file laid out as format 1.0 was: major 1, an index with index-level function and
    table counts and per-unit ranges, one unnamed MODULE, AOT sections named by the
    fingerprint alone."""
    index = {"abi_version": 2, "functions": 9, "table_size": 4, "units": []}
    fp = host_fingerprint(engine_settings())
    data = bytearray(assemble([
        Section(SectionKind.INDEX, "", canonical_cbor(index)),
        Section(SectionKind.META, "", canonical_cbor(meta.to_obj())),
        Section(SectionKind.MODULE, "", real_modules[CORE]),
        Section(SectionKind.AOT, str(fp), real_aot[fp][CORE])]))
    struct.pack_into("<HH", data, 8, 1, 0)
    return bytes(reseal(data))


def test_a_format_1_file_is_refused_as_unsupported(tmp_path, real_modules, real_aot, meta):
    old = format_1_file(real_modules, real_aot, meta)
    path = tmp_path / "old.kmb"
    path.write_bytes(old)
    for source in (old, path):
        with pytest.raises(UnsupportedVersion) as err:
            read_megabinary(source)
        assert err.value.offset == 8 and "1.0" in str(err.value) and "2.x" in str(err.value)
        assert "recompile" in err.value.hint
    damaged = bytearray(old)
    damaged[50] ^= 1                   # the version is read before the checksum
    with pytest.raises(UnsupportedVersion):
        read_megabinary(damaged)
    with pytest.raises(Reject, match="major version 1"):
        spec_reader(old)
    # the same bytes claiming 2.0 break the 2.0 naming rules instead
    as_2 = bytearray(old)
    struct.pack_into("<H", as_2, 8, 2)
    with pytest.raises(BadLayout):
        read_megabinary(reseal(as_2))


def test_truncation_at_every_boundary_and_random_offsets(written):
    data = written[0].read_bytes()
    with read_megabinary(data) as mb:
        cuts = {0, 1, 7, 8, 11, 12, 40, HEADER_SIZE - 1, HEADER_SIZE}
        for e in mb.sections:
            cuts |= {e.offset - 1, e.offset, e.offset + 1, e.end - 1}
            cuts |= {entry_at(e.number), entry_at(e.number) + 33}
        names_at = entry_at(len(mb.sections))
        cuts |= {names_at, names_at + 1, names_at + 70}
    rng = random.Random(1)
    cuts |= {rng.randrange(len(data)) for _ in range(200)}
    for cut in sorted(c for c in cuts if 0 <= c < len(data)):
        with pytest.raises(Truncated) as err:
            read_megabinary(data[:cut])
        assert err.value.offset is not None and err.value.offset <= cut, cut
        with pytest.raises(Reject):
            spec_reader(data[:cut])


def test_truncated_file_on_disk(written, tmp_path):
    path = tmp_path / "cut.kmb"
    path.write_bytes(written[0].read_bytes()[:-1])
    with pytest.raises(Truncated) as err:
        read_megabinary(path)
    assert str(path) in str(err.value)
    path.write_bytes(b"")
    with pytest.raises(Truncated):
        read_megabinary(path)


def test_damaged_table_fails_the_header_checksum(written):
    data = bytearray(written[0].read_bytes())
    data[entry_at(2) + 40] ^= 1        # inside the first MODULE entry's blake3
    with pytest.raises(CorruptHeader) as err:
        read_megabinary(data)
    assert err.value.offset == 40


def _patched(data: bytes, n: int, field_fmt: str, at: int, value: int) -> bytearray:
    out = bytearray(data)
    struct.pack_into(field_fmt, out, entry_at(n) + at, value)
    return reseal(out)


def test_section_offsets_outside_overlapping_or_misaligned(written):
    data = written[0].read_bytes()
    with read_megabinary(data) as mb:
        s = mb.sections
    last = len(s) - 1
    cases = [
        _patched(data, last, "<Q", 8, len(data) + SECTION_ALIGN),  # starts past the end
        _patched(data, last, "<Q", 16, len(data)),                 # length past the end
        _patched(data, 1, "<Q", 8, s[0].offset),                   # overlaps INDEX
        _patched(data, 0, "<Q", 8, 0),                             # overlaps the header
        _patched(data, 2, "<Q", 8, s[2].offset + 8),               # misaligned
        _patched(data, 3, "<I", 28, 5000),                         # name outside name area
        _patched(data, 1, "<I", 0, SectionKind.AOT),               # AOT without a name
        _patched(data, 2, "<I", 0, SectionKind.META),              # a named, second META
        _patched(data, 5, "<I", 0, SectionKind.MODULE),            # MODULE after AOT names
        reseal(bytearray(data) + b"\0"),                           # trailing bytes
    ]
    grown = bytearray(data) + b"\0"
    struct.pack_into("<Q", grown, 32, len(grown))
    cases.append(reseal(grown))                                    # last section ends early
    for n, case in enumerate(cases):
        with pytest.raises(BadLayout) as err:
            read_megabinary(case)
        assert err.value.offset is not None, n
        with pytest.raises(Reject):
            spec_reader(bytes(case))


def test_reserved_fields_must_be_zero(written):
    data = bytearray(written[0].read_bytes())
    struct.pack_into("<I", data, 16, 1)
    with pytest.raises(CorruptHeader):
        read_megabinary(reseal(data))
    data = _patched(written[0].read_bytes(), 0, "<I", 4, 1)
    with pytest.raises(CorruptHeader):
        read_megabinary(data)


# ---------------------------------------------------------------------------
# Naming rules of format 2.0 (docs/formats.md §1.3 rules 7-11)
# ---------------------------------------------------------------------------

def _file(real_index, meta, modules: list[tuple[str, bytes]],
          aot: list[tuple[str, bytes]] = (), index: bytes | None = None) -> bytes:
    """Raw sections in the order given (a broken tool's file), real contents."""
    return assemble([Section(SectionKind.INDEX, "", index or canonical_cbor(real_index.to_obj())),
                     Section(SectionKind.META, "", canonical_cbor(meta.to_obj()))]
                    + [Section(SectionKind.MODULE, n, m) for n, m in modules]
                    + [Section(SectionKind.AOT, n, a) for n, a in aot])


def test_module_and_aot_names_follow_the_rules(real_index, real_modules, real_aot, meta):
    fp = str(host_fingerprint(engine_settings()))
    mods = sorted(real_modules.items())
    unit = real_index.units[0].blake3.hex()
    core_aot = real_aot[host_fingerprint(engine_settings())][CORE]
    good = _file(real_index, meta, mods, [(f"{CORE}:{fp}", core_aot)])
    with read_megabinary(good) as mb:
        mb.validate()
        assert mb.aot_for(fp) == core_aot
    assert spec_reader(good).aot == {f"{CORE}:{fp}": core_aot}
    without = [(n, m) for n, m in mods if n != unit]
    bad = {
        "no core module": (_file(real_index, meta, [(n, m) for n, m in mods if n != CORE]),
                           BadLayout),
        "module that is no unit": (_file(real_index, meta, mods + [("f" * 64, EMPTY_WASM_MODULE)]),
                                   BadLayout),
        "unit without a module": (_file(real_index, meta, without), IndexSchemaError),
        "two modules, one name": (_file(real_index, meta, mods + [(CORE, EMPTY_WASM_MODULE)]),
                                  BadLayout),
        "AOT for an unknown module": (_file(real_index, meta, mods, [(f"{'e' * 64}:{fp}", b"x")]),
                                      BadLayout),
        "AOT before its module": (assemble([
            Section(SectionKind.INDEX, "", canonical_cbor(Index(abi.ABI_VERSION).to_obj())),
            Section(SectionKind.META, "", canonical_cbor(meta.to_obj())),
            Section(SectionKind.AOT, f"{CORE}:{fp}", core_aot),
            Section(SectionKind.MODULE, CORE, real_modules[CORE])]), BadLayout),
        "two AOT, one name": (_file(real_index, meta, mods, [(f"{CORE}:{fp}", b"x"),
                                                             (f"{CORE}:{fp}", b"y")]), BadLayout),
        "AOT name without a colon (1.x)": (_file(real_index, meta, mods, [(fp, core_aot)]),
                                           BadLayout),
        "AOT name with an empty module": (_file(real_index, meta, mods, [(f":{fp}", b"x")]),
                                          BadLayout),
        "AOT with a non-canonical fingerprint": (_file(real_index, meta, mods, [
            (f"{CORE}:wasmtime/50/x86_64/b=1,a=2", b"x")]), BadLayout),
        "AOT with two colons": (_file(real_index, meta, mods, [(f"{CORE}:{CORE}:{fp}", b"x")]),
                                BadLayout),
        "named INDEX": (assemble([Section(SectionKind.INDEX, "index",
                                          canonical_cbor(Index(abi.ABI_VERSION).to_obj())),
                                  Section(SectionKind.META, "", canonical_cbor(meta.to_obj())),
                                  Section(SectionKind.MODULE, CORE, real_modules[CORE])]),
                        BadLayout),
    }
    for name in ("CORE", "Core", "core ", "", unit.upper(), unit[:63], unit + "0",
                 "blake3:" + unit, unit[:63] + "g", "\u0441ore"):
        renamed = [(name if n == unit else n, m) for n, m in mods]
        bad[f"module name {name!r}"] = (_file(real_index, meta, renamed), BadLayout)
    for what, (data, error) in bad.items():
        with pytest.raises(error) as err:
            with read_megabinary(data) as mb:
                mb.validate()
        assert err.value.offset is not None and err.value.hint, what
        if error is IndexSchemaError:
            assert err.value.where == "index.units" and unit in err.value.message, what
        with pytest.raises(Reject):
            spec_reader(data)


def test_flipped_byte_in_each_section_is_caught_when_read(written):
    data = written[0].read_bytes()
    with read_megabinary(data) as mb:
        sections = mb.sections
        names = mb.module_names()
    fps = {e.name.partition(":")[2] for e in sections if e.kind == SectionKind.AOT}
    for e in sections:
        bad = bytearray(data)
        bad[e.offset + e.length // 2] ^= 0x40
        with pytest.raises(Reject):
            spec_reader(bytes(bad))
        if e.kind in (SectionKind.INDEX, SectionKind.META):
            with pytest.raises(CorruptSection) as err:
                read_megabinary(bad)
            assert err.value.offset == e.offset
            continue
        with read_megabinary(bad) as mb:              # opening does not read MODULE/AOT
            for name in names:
                for fp in fps:
                    if f"{name}:{fp}" != e.name:
                        assert mb.aot_for(fp, name) is not None   # other artifacts still load
                if e.kind == SectionKind.MODULE and name == e.name:
                    with pytest.raises(CorruptSection) as err:
                        mb.module_bytes(name)
                    assert err.value.offset == e.offset
                else:
                    mb.module_bytes(name)
            if e.kind == SectionKind.AOT:
                module, _, fp = e.name.partition(":")
                with pytest.raises(CorruptSection) as err:
                    mb.aot_for(fp, module)
                assert err.value.offset == e.offset
            with pytest.raises(CorruptSection):
                mb.validate()


def test_nonzero_padding_is_caught_by_validate(written):
    data = bytearray(written[0].read_bytes())
    with read_megabinary(bytes(data)) as mb:
        gap = mb.sections[0].end + 1
    data[gap] = 1
    with read_megabinary(data) as mb:
        with pytest.raises(CorruptSection) as err:
            mb.validate()
        assert err.value.offset == mb.sections[0].end
    with pytest.raises(Reject, match="padding"):
        spec_reader(bytes(data))


def test_index_cbor_errors(real_index, real_modules, meta):
    mods = sorted(real_modules.items())
    good = canonical_cbor(real_index.to_obj())
    read_megabinary(_file(real_index, meta, mods, index=good))
    insertion_order = cbor2.dumps(real_index.to_obj())
    assert insertion_order != good
    for bad in (good[:-1], good + b"\0", b"\xff", insertion_order,
                b"\xd9\xd9\xf7" + good, b"\xa2\x61a\x01\x61a\x02"):
        data = _file(real_index, meta, mods, index=bad)
        with pytest.raises(CborError) as err:
            read_megabinary(data)
        assert SECTION_ALIGN <= err.value.offset <= SECTION_ALIGN + len(bad)
        with pytest.raises(Reject):
            spec_reader(data)


def test_index_schema_errors(real_index, real_modules, meta):
    mods = sorted(real_modules.items())

    def mutate(fn) -> bytes:
        obj = real_index.to_obj()
        fn(obj)
        return _file(real_index, meta, mods, index=canonical_cbor(obj))

    u = 0
    cases = {
        "missing key": lambda o: o.pop("units"),
        "wrong type": lambda o: o.__setitem__("abi_version", "1"),
        "unsorted entries": lambda o: o["units"][u]["entries"].reverse(),
        "slot out of range": lambda o: o["units"][u]["entries"][0].__setitem__(1, 99999),
        "slot equal to functions": lambda o: o["units"][u]["entries"][-1].__setitem__(
            1, o["units"][u]["functions"]),
        "functions as a 1.x range": lambda o: o["units"][u].__setitem__(
            "functions", [0, o["units"][u]["functions"]]),
        "bad digest": lambda o: o["units"][u].__setitem__("blake3", b"short"),
        "digest of no module": lambda o: o["units"][u].__setitem__("blake3", b"\0" * 32),
        "unsorted units": lambda o: o["units"].reverse(),
        "bad kind": lambda o: o["units"][u].__setitem__("kind", "core"),
    }
    for name, fn in cases.items():
        with pytest.raises(IndexSchemaError) as err:
            read_megabinary(mutate(fn))
        assert err.value.offset == SECTION_ALIGN, name
        assert err.value.hint and "recompile" in err.value.hint


def test_seeded_mutations_only_raise_format_errors(written):
    """Thousands of random corruptions: flips, cuts, inserts, patched table fields, renamed
    sections. Only FormatErrors come out, and the independent reader agrees: it accepts every
    file the real reader accepts, and refuses every file refused for its container."""
    data = written[0].read_bytes()
    with read_megabinary(data) as mb:
        sections = mb.sections
    names_at = entry_at(len(sections))
    names_size = sum(len(e.name.encode()) for e in sections)
    original = written[1]
    rng = random.Random(20240502)
    seen: dict[str, int] = {}
    for i in range(1400):
        bad = bytearray(data)
        op = i % 7
        if op == 0:         # flips anywhere, a third of them in the header
            limit = HEADER_SIZE if i % 3 == 0 else len(bad)
            for _ in range(rng.randint(1, 4)):
                bad[rng.randrange(limit)] ^= 1 << rng.randrange(8)
        elif op == 1:
            del bad[rng.randrange(len(bad)):]
        elif op == 2:
            at = rng.randrange(len(bad))
            bad[at:at] = rng.randbytes(rng.randint(1, 64))
        elif op == 3:       # patch a table field and reseal, reaching the layout checks
            n = rng.randrange(len(sections))
            fmt, off = rng.choice([("<I", 0), ("<Q", 8), ("<Q", 16), ("<I", 24), ("<I", 28)])
            value = rng.choice([0, 1, 3, 4, 4096, rng.randrange(1 << 20), len(data),
                                sections[rng.randrange(len(sections))].offset, (1 << 32) - 1])
            struct.pack_into(fmt, bad, entry_at(n) + off, value)
            reseal(bad)
        elif op == 4:       # flip inside a section and fix its hash: reaches CBOR/schema
            e = sections[rng.randrange(len(sections))]
            bad[e.offset + rng.randrange(max(e.length, 1))] ^= 1 << rng.randrange(8)
            struct.pack_into("32s", bad, entry_at(e.number) + 32,
                             blake3.blake3(bytes(bad[e.offset:e.end])).digest())
            reseal(bad)
        elif op == 5:       # rename: change a byte of the name area and reseal
            at = names_at + rng.randrange(names_size)
            bad[at] = rng.choice(b"0123456789abcdefABCDEF:/=,.core\xff ")
            reseal(bad)
        else:               # patch header counts and reseal
            field = rng.choice([(12, "<I"), (20, "<I"), (24, "<I"), (32, "<Q")])
            struct.pack_into(field[1], bad, field[0], rng.choice([0, 1, 71, 72, 200, 1 << 31]))
            if rng.random() < 0.5:
                try:
                    reseal(bad)
                except struct.error:
                    pass
        try:
            with read_megabinary(bytes(bad)) as mb:
                for name in mb.module_names():
                    mb.module_bytes(name)
                    for fp in mb.engines():
                        mb.aot_for(fp, name)
                mb.validate()
                # a modified file that passes every check has a different digest
                assert (mb.digest == original) == (bytes(bad) == data), i
            outcome = "ok"
        except FormatError as exc:
            outcome = type(exc).__name__
            assert exc.message and exc.hint is not None
        seen[outcome] = seen.get(outcome, 0) + 1
        if outcome == "ok":
            spec_reader(bytes(bad))
        elif outcome in ("BadMagic", "UnsupportedVersion", "Truncated", "CorruptHeader",
                         "BadLayout", "CborError"):
            with pytest.raises(Reject):
                spec_reader(bytes(bad))
    # the mutations reached every layer of checks
    for kind in ("Truncated", "CorruptHeader", "BadLayout", "CorruptSection", "CborError",
                 "IndexSchemaError", "BadMagic", "UnsupportedVersion", "ok"):
        assert seen.get(kind, 0) > 0, (kind, seen)
    print(seen)


# ---------------------------------------------------------------------------
# The independent reader (tests/megabinary_spec.py) on what the writer wrote
# ---------------------------------------------------------------------------

def test_independent_spec_reader_reads_what_the_writer_wrote(written, real_index, real_modules,
                                                             real_aot, meta, programs):
    path, digest = written
    got = spec_reader(path.read_bytes())
    assert got.version == (2, 0) and got.digest == digest
    assert got.modules == real_modules
    assert got.aot == {f"{m}:{fp}": blob for fp, blobs in real_aot.items()
                       for m, blob in blobs.items()}
    assert got.meta == meta.to_obj()
    index = got.index
    assert sorted(index) == ["abi_version", "units"] and index["abi_version"] == abi.ABI_VERSION
    assert [u["blake3"] for u in index["units"]] == sorted(u["blake3"] for u in index["units"])
    # §3.1: find rt by the BLAKE3 of the real file and read its unit like a runtime would
    rt = programs["rt"]
    want = blake3.blake3(rt.read_bytes()).digest()
    units = [u for u in index["units"] if u["blake3"] == want]
    assert len(units) == 1
    unit = units[0]
    assert unit["kind"] == "exec" and unit["pie"] is False
    assert unit["entry"] == lief.parse(str(rt)).entrypoint
    assert [tuple(e) for e in unit["entries"]] == list(real_index.lookup(want).entries)
    assert all(0 <= slot < unit["functions"] for _, slot in unit["entries"])
    other = next(u for u in index["units"] if u["blake3"] != want)
    assert [t[1] for t in other["trap_sites"]] == ["vpxor"]       # the real untranslated site
    # §3.3: its module, named by the hex BLAKE3, is one Wasmtime accepts, with the ABI's imports
    engine = make_engine(engine_settings())
    module = wasmtime.Module(engine, got.modules[want.hex()])
    assert [(i.module, i.name) for i in module.imports] == [
        ("kiln", n) for n in (abi.IMPORT_SYSCALL, abi.IMPORT_FAULT, abi.IMPORT_RDTSC,
                              abi.GUEST_MEMORY, abi.CONTROL_MEMORY, abi.TABLE, abi.DEPTH,
                              abi.TABLE_BASE, abi.ENTRIES_AT, abi.BIAS)]
    core = wasmtime.Module(engine, got.modules[CORE])
    assert [(i.module, i.name) for i in core.imports] == [
        ("kiln", n) for n in (abi.IMPORT_SYSCALL, abi.IMPORT_FAULT, abi.IMPORT_RDTSC,
                              abi.GUEST_MEMORY)]
    assert {e.name for e in core.exports} == {abi.CONTROL_MEMORY, abi.TABLE,
                                              abi.DEPTH, abi.GROW_TABLE, abi.EXPORT_RUN}
    # and the artifacts it found run the program as natively (§3.3, §7)
    fp = str(host_fingerprint(engine_settings()))
    out, status, _, _ = run_from_file(lambda name: got.aot[f"{name}:{fp}"], index["units"],
                                      programs)
    native = subprocess.run([str(rt)], capture_output=True, timeout=30)
    assert (out, status) == (native.stdout, native.returncode)


def test_errors_are_kiln_errors_with_readable_text(written):
    data = bytearray(written[0].read_bytes())
    data[0] = 0
    with pytest.raises(KilnError) as err:
        read_megabinary(data)
    from formats.errors import user_report
    report = user_report(err.value)
    assert report.startswith("error: offset 0x0: not a Kiln megabinary") and "hint:" in report


def test_engines_annotation_lists_the_real_fingerprints(written):
    import formats.annotations as ann
    with read_megabinary(written[0]) as mb:
        value = ann.format_engines([str(fp) for fp in mb.engines()])
        assert [EngineFingerprint.parse(s) for s in ann.parse_engines(value)] == \
            sorted(mb.engines(), key=lambda f: str(f).encode())
        assert ann.is_kiln_annotation(ann.ANNOTATION_MEGABINARY_DIGEST)
        assert mb.digest.startswith("blake3:") and len(mb.digest) == 7 + 64
    assert ann.MEGABINARY_PATH.startswith(ann.KILN_DIR + "/")
    assert ann.MEGABINARY_PATH.endswith(ann.MEGABINARY_SUFFIX)


def test_function_count_is_checked_against_the_real_modules(real_index, real_modules, meta):
    # every kind of import, including the typed dispatch table and a typed global (ABI 3)
    wat = f"""(module
      (type $guestfn (func (param i32)))
      (import "{abi.IMPORT_MODULE}" "{abi.IMPORT_SYSCALL}" (func))
      (import "{abi.IMPORT_MODULE}" "{abi.GUEST_MEMORY}" (memory 1 65536))
      (import "{abi.IMPORT_MODULE}" "{abi.CONTROL_MEMORY}" (memory 1))
      (import "{abi.IMPORT_MODULE}" "{abi.TABLE}" (table 0 (ref null $guestfn)))
      (import "{abi.IMPORT_MODULE}" "plain" (table 2 funcref))
      (import "{abi.IMPORT_MODULE}" "{abi.DEPTH}" (global (mut i32)))
      (import "{abi.IMPORT_MODULE}" "typed" (global (ref null $guestfn)))
      (import "{abi.IMPORT_MODULE}" "{abi.IMPORT_FAULT}" (func (param i32)))
      (func) (func) (func (export "x")))"""
    module = bytes(wasmtime.wat2wasm(wat))
    compiled = wasmtime.Module(make_engine(engine_settings()), module)
    imported = sum(isinstance(i.type, wasmtime.FuncType) for i in compiled.imports)
    assert imported == 2 and len(compiled.imports) == 8
    assert wasm_function_count(module) == imported + 3
    for unit in real_index.units:
        assert wasm_function_count(real_modules[unit.blake3.hex()]) >= unit.functions
    assert wasm_function_count(real_modules[CORE]) > 0
    assert wasm_function_count(EMPTY_WASM_MODULE) == 0
    # a file whose index claims more functions than the module has (a broken tool) fails
    unit = real_index.units[0]
    claimed = wasm_function_count(real_modules[unit.blake3.hex()]) + 1
    lying = Index(real_index.abi_version,
                  (UnitRecord(**{**unit.__dict__, "functions": claimed}),) + real_index.units[1:])
    data = _file(real_index, meta, sorted(real_modules.items()),
                 index=canonical_cbor(lying.to_obj()))
    with read_megabinary(data) as mb:
        with pytest.raises(IndexSchemaError) as err:
            mb.validate()
        assert err.value.where == "index.units" and unit.blake3.hex() in err.value.message
    # a module that is not well-formed fails validate, not opening
    broken = {**real_modules, unit.blake3.hex(): real_modules[unit.blake3.hex()][:-3]}
    with read_megabinary(_file(real_index, meta, sorted(broken.items()))) as mb:
        with pytest.raises(CorruptSection):
            mb.validate()
    with pytest.raises(CorruptSection):
        wasm_function_count(module[:-3])


def test_missing_or_unreadable_input_is_a_kiln_error(tmp_path):
    with pytest.raises(KilnError) as err:
        read_megabinary(tmp_path / "nope.kmb")
    assert not isinstance(err.value, FormatError) and "nope.kmb" in str(err.value)
    with pytest.raises(KilnError):
        read_megabinary(tmp_path)               # a directory


def test_aot_keys_must_be_canonical_fingerprints(real_index, real_modules, meta):
    with pytest.raises(InvalidFingerprint):
        build_megabinary(index=real_index, modules=real_modules, metadata=meta,
                         aot={"wasmtime/50/x86_64/b=1,a=2": {CORE: b"x"}})
    fp = host_fingerprint(engine_settings())
    with pytest.raises(MegabinaryWriteError):
        build_megabinary(index=real_index, modules=real_modules, metadata=meta,
                         aot={fp: {CORE: b"x"}, str(fp): {CORE: b"y"}})


def test_deferred_index_check_hashes_and_checks_on_use(written, real_index, real_modules,
                                                       meta):
    """``check_index=False`` (kiln run): the INDEX's BLAKE3 comes from the checksummed section
    table at open; a changed INDEX byte is refused when the index is first used (at open
    without the deferral), and so is a well-hashed INDEX that breaks the schema or does not
    match the modules."""
    data = written[0].read_bytes()
    with read_megabinary(data, check_index=False) as mb:
        assert mb.index == real_index
        assert mb.index_blake3 == blake3.blake3(canonical_cbor(real_index.to_obj())).digest()
        idx = next(e for e in mb.sections if e.kind == SectionKind.INDEX)
    bad = bytearray(data)
    bad[idx.offset + idx.length // 2] ^= 0x40
    with read_megabinary(bad, check_index=False) as mb:
        assert mb.index_blake3 == blake3.blake3(canonical_cbor(real_index.to_obj())).digest()
        with pytest.raises(CorruptSection) as err:
            mb.index
    assert err.value.offset == idx.offset
    with pytest.raises(CorruptSection) as err:
        read_megabinary(bad)
    assert err.value.offset == idx.offset
    mods = sorted(real_modules.items())
    obj = real_index.to_obj()
    obj["units"].reverse()
    with read_megabinary(_file(real_index, meta, mods, index=canonical_cbor(obj)),
                         check_index=False) as mb:
        with pytest.raises(IndexSchemaError) as err:
            mb.index
    assert "sorted by blake3" in err.value.message and err.value.offset == SECTION_ALIGN
    unit = real_index.units[0].blake3.hex()
    for modules, error in (([(n, m) for n, m in mods if n != unit], IndexSchemaError),
                           (mods + [("f" * 64, EMPTY_WASM_MODULE)], BadLayout)):
        with read_megabinary(_file(real_index, meta, modules), check_index=False) as mb:
            with pytest.raises(error):
                mb.index


def test_verify_section_checks_in_place(written):
    data = written[0].read_bytes()
    with read_megabinary(written[0]) as mb:
        assert mb.file_stat is not None and mb.file_stat.st_size == len(data)
        for fp in mb.engines():
            for name in mb.module_names():
                entry = mb.aot_section(fp, name)
                assert entry.name == f"{name}:{fp}"
                mb.verify_section(entry)
                assert entry.blake3 == blake3.blake3(data[entry.offset:entry.end]).digest()
        aot = [e for e in mb.sections if e.kind == SectionKind.AOT]
    for e in aot:
        bad = bytearray(data)
        bad[e.offset + 7] ^= 1
        module, _, fp = e.name.partition(":")
        with read_megabinary(bad) as mb:
            assert mb.file_stat is None
            with pytest.raises(CorruptSection) as err:
                mb.verify_section(mb.aot_section(fp, module))
            assert err.value.offset == e.offset
