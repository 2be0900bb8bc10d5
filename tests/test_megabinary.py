"""The megabinary container: round trips with real ELF units and real Wasmtime artifacts,
determinism, lazy AOT checks, every validation error from real corruption, and an
independent reader written from docs/formats.md."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import random
import struct
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
    EMPTY_WASM_MODULE, HEADER_SIZE, MAGIC, SECTION_ALIGN, SECTION_ENTRY_SIZE, BadLayout,
    BadMagic, CorruptHeader, CorruptSection, EngineFingerprint, InvalidFingerprint, Metadata,
    MegabinaryWriteError, Section, SectionKind, Truncated, UnsupportedVersion, assemble,
    build_megabinary, read_megabinary, write_megabinary)

HOST_TRUE = Path("/usr/bin/true")
HOST_LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")

# A real module shaped as the guest ABI says (memories defined and exported): it stores
# a marker into the control memory when kiln_run is called, so the AOT round trip can be run.
WAT = f"""
(module
  (memory (export "{abi.GUEST_MEMORY}") 1)
  (memory (export "{abi.CONTROL_MEMORY}") 1)
  (func (export "{getattr(abi, 'EXPORT_RUN', 'kiln_run')}")
    (i64.store 1 (i32.const {abi.CPU_STATE + abi.CPU_STATE_OFFSETS['rax']}) (i64.const 0x6b696c6e)))
  (func $second)
  (func $third)
  (table 6 funcref)
  (elem (i32.const 0) 0 0 1 1 2 2))
"""


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


def elf_unit(path: Path, fn_first: int, slot_first: int) -> UnitRecord:
    """A unit record from a real ELF: its hash, type, entry, load base, first instructions."""
    data = path.read_bytes()
    elf = lief.parse(str(path))
    loads = [s for s in elf.segments if s.type == lief.ELF.Segment.TYPE.LOAD]
    link_base = min(s.virtual_address for s in loads) // 4096 * 4096
    if elf.header.file_type == lief.ELF.Header.FILE_TYPE.EXEC:
        kind = "exec"
    else:
        flags1 = [d for d in elf.dynamic_entries if d.tag == lief.ELF.DynamicEntry.TAG.FLAGS_1]
        kind = "pie" if flags1 and flags1[0].value & 0x08000000 else "shared-lib"
    import capstone
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    code = bytes(elf.get_content_from_virtual_address(elf.entrypoint, 64))
    insns = list(md.disasm(code, elf.entrypoint))[:4]
    entries = [(insns[0].address, slot_first), (insns[2].address, slot_first + 1)]
    traps = [(insns[1].address, insns[1].mnemonic, "test: pretend unsupported")]
    return UnitRecord(blake3=blake3.blake3(data).digest(), paths=(str(path),), kind=kind,
                      pie=kind != "exec", entry=elf.entrypoint, link_base=link_base,
                      functions=(fn_first, 1), slots=(slot_first, 2), entries=entries,
                      trap_sites=traps, stats={"instructions": len(insns), "functions": 1})


@pytest.fixture(scope="module")
def real_index(busybox_bin: Path) -> Index:
    units = (elf_unit(busybox_bin, 0, 0), elf_unit(HOST_TRUE, 1, 2), elf_unit(HOST_LIBC, 2, 4))
    # busybox's unit also answers for its usual hard-link names
    bb = units[0]
    bb = UnitRecord(**{**bb.__dict__, "paths": ("/bin/busybox", "/bin/sh", "/usr/bin/env")})
    return Index(abi_version=abi.ABI_VERSION, functions=3, table_size=6,
                 units=(units[2], bb, units[1]))


@pytest.fixture(scope="module")
def real_module() -> bytes:
    return bytes(wasmtime.wat2wasm(WAT))


@pytest.fixture(scope="module")
def real_aot(real_module: bytes) -> dict[EngineFingerprint, bytes]:
    """Two real artifacts: Kiln's engine settings, and the same with opt level 'none'."""
    out = {}
    base = engine_settings()
    for settings in (base, tuple((k, "none" if k == "cranelift_opt_level" else v) for k, v in base)
                     + (() if any(k == "cranelift_opt_level" for k, _ in base)
                        else (("cranelift_opt_level", "none"),))):
        out[host_fingerprint(settings)] = bytes(
            wasmtime.Module(make_engine(settings), real_module).serialize())
    assert len(out) == 2
    return out


@pytest.fixture(scope="module")
def meta() -> Metadata:
    return Metadata("0.1.0", "sha256:" + "ab" * 32, {"opt": "speed", "jobs": 2, "skip": ["/bin/x"]})


@pytest.fixture(scope="module")
def written(tmp_path_factory, real_index, real_module, real_aot, meta) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("mb") / "image.kmb"
    digest = write_megabinary(path, index=real_index, module=real_module, aot=real_aot,
                              metadata=meta)
    return path, digest


# ---------------------------------------------------------------------------
# Round trip, determinism, empty file
# ---------------------------------------------------------------------------

def test_round_trip_runs_the_real_aot_artifact(written, real_index, real_module, real_aot, meta,
                                               busybox_bin):
    path, digest = written
    with read_megabinary(path) as mb:
        assert mb.version == (1, 0)
        assert mb.digest == digest
        assert mb.index == real_index
        assert mb.metadata == meta
        assert mb.module_bytes() == real_module
        assert set(mb.engines()) == set(real_aot)
        mb.validate()
        # vkernel's path: hash the real file, find its unit, load the AOT code, run it
        unit = mb.index.lookup(blake3.blake3(busybox_bin.read_bytes()).digest())
        assert unit is not None and unit.kind == "exec" and "/bin/sh" in unit.paths
        assert unit.slot_for(unit.entry) == unit.entries[0].slot
        fp = host_fingerprint(engine_settings())
        artifact = mb.aot_for(fp)
        offset, length = mb.aot_location(fp)
        assert offset % SECTION_ALIGN == 0 and length == len(artifact)
        assert mb.aot_for(str(fp)) == artifact == real_aot[fp]
        engine = make_engine(engine_settings())
        module = wasmtime.Module.deserialize(engine, artifact)
        store = wasmtime.Store(engine)
        inst = wasmtime.Instance(store, module, [])
        ctl = inst.exports(store)[abi.CONTROL_MEMORY]
        inst.exports(store)[getattr(abi, "EXPORT_RUN", "kiln_run")](store)
        rax = abi.CPU_STATE + abi.CPU_STATE_OFFSETS["rax"]
        assert bytes(ctl.read(store, rax, rax + 8)) == (0x6b696c6e).to_bytes(8, "little")
        other = EngineFingerprint.create("49.0.0", "x86_64-unknown-linux-gnu", engine_settings())
        assert mb.aot_for(other) is None and mb.aot_location(other) is None


def test_identical_input_gives_identical_bytes(tmp_path, real_index, real_module, real_aot, meta):
    a = write_megabinary(tmp_path / "a.kmb", index=real_index, module=real_module,
                         aot=real_aot, metadata=meta)
    # same contents handed over in other orders: units, AOT dict, parameter dict
    shuffled_index = Index(real_index.abi_version, real_index.functions, real_index.table_size,
                           tuple(reversed(real_index.units)))
    shuffled_aot = {str(k): v for k, v in reversed(list(real_aot.items()))}
    shuffled_meta = Metadata(meta.tool_version, meta.source_image,
                             dict(reversed(list(meta.parameters.items()))))
    b = write_megabinary(tmp_path / "b.kmb", index=shuffled_index, module=real_module,
                         aot=shuffled_aot, metadata=shuffled_meta)
    assert a == b
    assert (tmp_path / "a.kmb").read_bytes() == (tmp_path / "b.kmb").read_bytes()
    assert build_megabinary(index=real_index, module=real_module, aot=real_aot,
                            metadata=meta) == (tmp_path / "a.kmb").read_bytes()
    # and a different parameter changes the digest
    c = write_megabinary(tmp_path / "c.kmb", index=real_index, module=real_module, aot=real_aot,
                         metadata=Metadata(meta.tool_version, meta.source_image, {"opt": "size"}))
    assert c != a


def test_empty_megabinary_is_valid(tmp_path):
    path = tmp_path / "empty.kmb"
    digest = write_megabinary(path, index=Index(abi_version=abi.ABI_VERSION),
                              module=EMPTY_WASM_MODULE, metadata=Metadata("0.1.0"))
    with read_megabinary(path) as mb:
        assert mb.digest == digest
        assert mb.index.units == () and mb.engines() == ()
        assert mb.index.lookup(bytes(32)) is None
        wasmtime.Module(wasmtime.Engine(), mb.module_bytes())   # the engine accepts it
        mb.validate()
    assert path.stat().st_size % SECTION_ALIGN == len(EMPTY_WASM_MODULE)


def test_sections_are_4k_aligned_and_padding_is_zero(written):
    data = written[0].read_bytes()
    with read_megabinary(data) as mb:
        kinds = [e.kind for e in mb.sections]
        assert kinds == [SectionKind.INDEX, SectionKind.META, SectionKind.MODULE,
                         SectionKind.AOT, SectionKind.AOT]
        names = [e.name for e in mb.sections if e.kind == SectionKind.AOT]
        assert names == sorted(names, key=str.encode)
        pos = (HEADER_SIZE + SECTION_ENTRY_SIZE * len(mb.sections)
               + sum(len(n.encode()) for n in names))
        for e in mb.sections:
            assert e.offset % SECTION_ALIGN == 0
            assert data[pos:e.offset] == bytes(e.offset - pos)
            pos = e.end
        assert pos == len(data)


# ---------------------------------------------------------------------------
# Writer behaviour
# ---------------------------------------------------------------------------

def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, real_index, real_module, meta):
    path = tmp_path / "out.kmb"
    write_megabinary(path, index=real_index, module=real_module, metadata=meta)
    before = path.read_bytes()
    broken = Index(real_index.abi_version, 0, 0, real_index.units)  # ranges outside the module
    with pytest.raises(IndexSchemaError):
        write_megabinary(path, index=broken, module=real_module, metadata=meta)
    with pytest.raises(MegabinaryWriteError):
        write_megabinary(path, index=real_index, module=b"\x7fELF", metadata=meta)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.kmb"]
    with pytest.raises(MegabinaryWriteError) as err:
        write_megabinary(tmp_path / "missing" / "x.kmb", index=real_index, module=real_module,
                         metadata=meta)
    assert err.value.hint
    assert not (tmp_path / "missing").exists()


def test_write_failure_is_a_kiln_error_and_cleans_up(tmp_path, real_index, real_module, meta):
    target = tmp_path / "taken.kmb"
    target.mkdir()                      # the rename onto a directory fails, even as root
    with pytest.raises(MegabinaryWriteError) as err:
        write_megabinary(target, index=real_index, module=real_module, metadata=meta)
    assert str(target) in str(err.value) and err.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.kmb"]


def test_metadata_refuses_timestamps_and_floats():
    import datetime
    with pytest.raises(IndexSchemaError):
        build_megabinary(index=Index(1), module=EMPTY_WASM_MODULE,
                         metadata=Metadata("0.1", "", {"when": datetime.datetime(2024, 1, 1)}))
    with pytest.raises(IndexSchemaError):
        build_megabinary(index=Index(1), module=EMPTY_WASM_MODULE,
                         metadata=Metadata("0.1", "", {"ratio": 0.5}))


def test_engine_fingerprint_canonical_string_round_trips():
    fp = host_fingerprint(engine_settings())
    assert EngineFingerprint.parse(str(fp)) == fp
    assert " " not in str(fp) and str(fp).startswith("wasmtime/")
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
    struct.pack_into("<H", data, 8, 2)
    with pytest.raises(UnsupportedVersion) as err:
        read_megabinary(data)
    assert "2.0" in str(err.value) and err.value.offset == 8
    # a newer minor is fine when the rest is consistent
    struct.pack_into("<H", data, 8, 1)
    struct.pack_into("<H", data, 10, 7)
    assert read_megabinary(reseal(data)).version == (1, 7)


def test_truncation_at_every_boundary_and_random_offsets(written):
    data = written[0].read_bytes()
    with read_megabinary(data) as mb:
        cuts = {0, 1, 7, 8, 11, 12, 40, HEADER_SIZE - 1, HEADER_SIZE}
        for e in mb.sections:
            cuts |= {e.offset - 1, e.offset, e.offset + 1, e.end - 1}
            cuts |= {entry_at(e.number), entry_at(e.number) + 33}
    rng = random.Random(1)
    cuts |= {rng.randrange(len(data)) for _ in range(200)}
    for cut in sorted(c for c in cuts if 0 <= c < len(data)):
        with pytest.raises(Truncated) as err:
            read_megabinary(data[:cut])
        assert err.value.offset is not None and err.value.offset <= cut, cut


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
    data[entry_at(2) + 40] ^= 1        # inside the MODULE entry's blake3
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
    cases = [
        _patched(data, 4, "<Q", 8, len(data) + SECTION_ALIGN),     # starts past the end
        _patched(data, 4, "<Q", 16, len(data)),                    # length past the end
        _patched(data, 1, "<Q", 8, s[0].offset),                   # overlaps INDEX
        _patched(data, 0, "<Q", 8, 0),                             # overlaps the header
        _patched(data, 2, "<Q", 8, s[2].offset + 8),               # misaligned
        _patched(data, 3, "<I", 28, 5000),                         # name outside name area
        _patched(data, 1, "<I", 0, SectionKind.AOT),               # AOT without fingerprint
        _patched(data, 2, "<I", 0, SectionKind.META),              # two META, wrong order
        reseal(bytearray(data) + b"\0"),                           # trailing bytes
    ]
    grown = bytearray(data) + b"\0"
    struct.pack_into("<Q", grown, 32, len(grown))
    cases.append(reseal(grown))                                    # last section ends early
    for n, case in enumerate(cases):
        with pytest.raises(BadLayout) as err:
            read_megabinary(case)
        assert err.value.offset is not None, n


def test_reserved_fields_must_be_zero(written):
    data = bytearray(written[0].read_bytes())
    struct.pack_into("<I", data, 16, 1)
    with pytest.raises(CorruptHeader):
        read_megabinary(reseal(data))
    data = _patched(written[0].read_bytes(), 0, "<I", 4, 1)
    with pytest.raises(CorruptHeader):
        read_megabinary(data)


def test_flipped_byte_in_each_section_is_caught_when_read(written):
    data = written[0].read_bytes()
    with read_megabinary(data) as mb:
        sections = mb.sections
    fps = [e.name for e in sections if e.kind == SectionKind.AOT]
    for e in sections:
        bad = bytearray(data)
        bad[e.offset + e.length // 2] ^= 0x40
        if e.kind in (SectionKind.INDEX, SectionKind.META):
            with pytest.raises(CorruptSection) as err:
                read_megabinary(bad)
            assert err.value.offset == e.offset
            continue
        with read_megabinary(bad) as mb:              # opening does not read MODULE/AOT
            if e.kind == SectionKind.MODULE:
                for fp in fps:
                    mb.aot_for(fp)
                with pytest.raises(CorruptSection):
                    mb.module_bytes()
            else:
                mb.module_bytes()
                for fp in fps:
                    if fp != e.name:
                        assert mb.aot_for(fp) is not None   # other artifacts still load
                with pytest.raises(CorruptSection):
                    mb.aot_for(e.name)
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


def _with_index_payload(payload: bytes) -> bytes:
    return assemble([Section(SectionKind.INDEX, "", payload),
                     Section(SectionKind.META, "", canonical_cbor(Metadata("x").to_obj())),
                     Section(SectionKind.MODULE, "", EMPTY_WASM_MODULE)])


def test_index_cbor_errors(real_index):
    good = canonical_cbor(real_index.to_obj())
    read_megabinary(_with_index_payload(good))
    insertion_order = cbor2.dumps(real_index.to_obj())
    assert insertion_order != good
    for bad in (good[:-1], good + b"\0", b"\xff", insertion_order,
                b"\xd9\xd9\xf7" + good, b"\xa2\x61a\x01\x61a\x02"):
        with pytest.raises(CborError) as err:
            read_megabinary(_with_index_payload(bad))
        assert SECTION_ALIGN <= err.value.offset <= SECTION_ALIGN + len(bad)


def test_index_schema_errors(real_index):
    def mutate(fn) -> bytes:
        obj = real_index.to_obj()
        fn(obj)
        return _with_index_payload(canonical_cbor(obj))

    u = 1   # busybox's unit (units sorted by hash)
    cases = {
        "missing key": lambda o: o.pop("units"),
        "wrong type": lambda o: o.__setitem__("abi_version", "1"),
        "unsorted entries": lambda o: o["units"][u]["entries"].reverse(),
        "slot out of range": lambda o: o["units"][u]["entries"][0].__setitem__(1, 99),
        "functions outside module": lambda o: o.__setitem__("functions", 1),
        "bad digest": lambda o: o["units"][u].__setitem__("blake3", b"short"),
        "unsorted units": lambda o: o["units"].reverse(),
        "bad kind": lambda o: o["units"][u].__setitem__("kind", "core"),
    }
    for name, fn in cases.items():
        with pytest.raises(IndexSchemaError) as err:
            read_megabinary(mutate(fn))
        assert err.value.offset == SECTION_ALIGN, name
        assert err.value.hint and "recompile" in err.value.hint


def test_seeded_mutations_only_raise_format_errors(written):
    """Thousands of random corruptions: flips, cuts, inserts, patched table fields."""
    data = written[0].read_bytes()
    with read_megabinary(data) as mb:
        sections = mb.sections
    original = written[1]
    rng = random.Random(20240502)
    seen: dict[str, int] = {}
    for i in range(3000):
        bad = bytearray(data)
        op = i % 6
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
            value = rng.choice([0, 1, 4096, rng.randrange(1 << 20), len(data),
                                sections[rng.randrange(len(sections))].offset, (1 << 32) - 1])
            struct.pack_into(fmt, bad, entry_at(n) + off, value)
            reseal(bad)
        elif op == 4:       # flip inside a section and fix its hash: reaches CBOR/schema
            e = sections[rng.randrange(len(sections))]
            bad[e.offset + rng.randrange(max(e.length, 1))] ^= 1 << rng.randrange(8)
            struct.pack_into("32s", bad, entry_at(e.number) + 32,
                             blake3.blake3(bytes(bad[e.offset:e.end])).digest())
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
                mb.module_bytes()
                for fp in mb.engines():
                    mb.aot_for(fp)
                mb.validate()
                # a modified file that passes every check has a different digest
                assert (mb.digest == original) == (bytes(bad) == data), i
            outcome = "ok"
        except FormatError as exc:
            outcome = type(exc).__name__
            assert exc.message and exc.hint is not None
        seen[outcome] = seen.get(outcome, 0) + 1
    # the mutations reached every layer of checks
    for kind in ("Truncated", "CorruptHeader", "BadLayout", "CorruptSection", "CborError",
                 "IndexSchemaError", "BadMagic", "UnsupportedVersion", "ok"):
        assert seen.get(kind, 0) > 0, (kind, seen)
    print(seen)


# ---------------------------------------------------------------------------
# An independent reader, written from docs/formats.md alone
# ---------------------------------------------------------------------------

def spec_reader(data: bytes) -> dict:
    """Reads a megabinary using only struct, blake3 and cbor2, following docs/formats.md."""
    assert data[:8] == bytes.fromhex("4B494C4E4D420D0A")                      # §1.2 rule 1
    (magic, major, minor, header_size, flags, section_count, names_size, reserved,
     file_size, checksum) = struct.unpack("<8sHHIIIIIQ32s", data[:72])
    assert major == 1 and header_size >= 72 and flags == 0 and reserved == 0
    region_end = header_size + 64 * section_count + names_size
    region = bytearray(data[:region_end])
    region[40:72] = bytes(32)
    assert blake3.blake3(bytes(region)).digest() == checksum                  # rule 5
    assert file_size == len(data)                                              # rule 7
    names = data[header_size + 64 * section_count:region_end]
    sections = []
    prev_end = region_end
    for n in range(section_count):
        kind, sflags, offset, length, name_offset, name_length, digest = struct.unpack(
            "<IIQQII32s", data[header_size + 64 * n:header_size + 64 * (n + 1)])
        assert sflags == 0 and offset % 4096 == 0 and offset >= prev_end
        assert offset + length <= file_size
        contents = data[offset:offset + length]
        assert blake3.blake3(contents).digest() == digest
        name = names[name_offset:name_offset + name_length].decode("utf-8")
        sections.append((kind, name, contents))
        prev_end = offset + length
    assert prev_end == file_size
    by_kind: dict[int, list] = {}
    for kind, name, contents in sections:
        by_kind.setdefault(kind, []).append((name, contents))
    index = cbor2.loads(by_kind[1][0][1])
    meta = cbor2.loads(by_kind[2][0][1])
    assert cbor2.dumps(index, canonical=True) == by_kind[1][0][1]              # §2
    return {"version": (major, minor), "digest": "blake3:" + checksum.hex(),
            "index": index, "meta": meta, "module": by_kind[3][0][1],
            "aot": dict(by_kind.get(4, []))}


def test_independent_spec_reader_reads_what_the_writer_wrote(written, real_index, real_module,
                                                             real_aot, meta, busybox_bin):
    path, digest = written
    got = spec_reader(path.read_bytes())
    assert got["version"] == (1, 0) and got["digest"] == digest
    assert got["module"] == real_module
    assert got["aot"] == {str(k): v for k, v in real_aot.items()}
    assert got["meta"] == meta.to_obj()
    index = got["index"]
    assert index["abi_version"] == abi.ABI_VERSION
    # §3.1: find busybox by the BLAKE3 of the real file and read its unit like a runtime would
    want = blake3.blake3(busybox_bin.read_bytes()).digest()
    units = [u for u in index["units"] if u["blake3"] == want]
    assert len(units) == 1
    assert units[0]["kind"] == "exec" and units[0]["pie"] is False
    assert units[0]["entry"] == lief.parse(str(busybox_bin)).entrypoint
    assert [tuple(e) for e in units[0]["entries"]] == list(real_index.lookup(want).entries)
    assert [u["blake3"] for u in index["units"]] == sorted(u["blake3"] for u in index["units"])


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


def test_function_count_is_checked_against_the_real_module(real_index, real_module, meta):
    from formats.megabinary import wasm_function_count
    wat = f"""(module
      (import "{abi.IMPORT_MODULE}" "{abi.IMPORT_SYSCALL}" (func))
      (import "{abi.IMPORT_MODULE}" "{abi.GUEST_MEMORY}" (memory 1 65536))
      (import "{abi.IMPORT_MODULE}" "{abi.CONTROL_MEMORY}" (memory 1))
      (import "{abi.IMPORT_MODULE}" "tbl" (table 2 funcref))
      (import "{abi.IMPORT_MODULE}" "g" (global (mut i64)))
      (import "{abi.IMPORT_MODULE}" "{abi.IMPORT_FAULT}" (func (param i32)))
      (func) (func) (func (export "x")))"""
    module = bytes(wasmtime.wat2wasm(wat))
    compiled = wasmtime.Module(make_engine(engine_settings()), module)
    imported = sum(isinstance(i.type, wasmtime.FuncType) for i in compiled.imports)
    assert imported == 2
    assert wasm_function_count(module) == imported + 3
    assert wasm_function_count(real_module) == real_index.functions
    assert wasm_function_count(EMPTY_WASM_MODULE) == 0
    with pytest.raises(IndexSchemaError):        # the writer refuses a disagreeing index
        build_megabinary(index=real_index, module=module, metadata=meta)
    # a file whose index disagrees with its module (written by a broken tool) fails validate()
    data = assemble([Section(SectionKind.INDEX, "", canonical_cbor(real_index.to_obj())),
                     Section(SectionKind.META, "", canonical_cbor(meta.to_obj())),
                     Section(SectionKind.MODULE, "", module)])
    with read_megabinary(data) as mb:
        with pytest.raises(IndexSchemaError) as err:
            mb.validate()
        assert err.value.where == "index.functions"
    with pytest.raises(CorruptSection):
        wasm_function_count(module[:-3])


def test_missing_or_unreadable_input_is_a_kiln_error(tmp_path):
    with pytest.raises(KilnError) as err:
        read_megabinary(tmp_path / "nope.kmb")
    assert not isinstance(err.value, FormatError) and "nope.kmb" in str(err.value)
    with pytest.raises(KilnError):
        read_megabinary(tmp_path)               # a directory


def test_aot_keys_must_be_canonical_fingerprints(real_index, real_module, meta):
    with pytest.raises(InvalidFingerprint):
        build_megabinary(index=real_index, module=real_module, metadata=meta,
                         aot={"wasmtime/50/x86_64/b=1,a=2": b"x"})
    fp = host_fingerprint(engine_settings())
    with pytest.raises(MegabinaryWriteError):
        build_megabinary(index=real_index, module=real_module, metadata=meta,
                         aot={fp: b"x", str(fp): b"y"})


def test_deferred_index_check_still_hashes_at_open_and_checks_on_use(written, real_index):
    """``check_index=False`` (kiln run): a changed INDEX byte is still refused at open; a
    well-hashed INDEX that breaks the schema is refused when the index is first used."""
    data = written[0].read_bytes()
    with read_megabinary(data, check_index=False) as mb:
        assert mb.index == real_index
        assert mb.index_blake3 == blake3.blake3(canonical_cbor(real_index.to_obj())).digest()
        idx = next(e for e in mb.sections if e.kind == SectionKind.INDEX)
    bad = bytearray(data)
    bad[idx.offset + idx.length // 2] ^= 0x40
    with pytest.raises(CorruptSection) as err:
        read_megabinary(bad, check_index=False)
    assert err.value.offset == idx.offset
    obj = real_index.to_obj()
    obj["units"].reverse()
    with read_megabinary(_with_index_payload(canonical_cbor(obj)), check_index=False) as mb:
        with pytest.raises(IndexSchemaError) as err:
            mb.index
    assert "sorted by blake3" in err.value.message and err.value.offset == SECTION_ALIGN


def test_verify_section_checks_in_place(written):
    data = written[0].read_bytes()
    with read_megabinary(written[0]) as mb:
        assert mb.file_stat is not None and mb.file_stat.st_size == len(data)
        for fp in mb.engines():
            entry = mb.aot_section(fp)
            mb.verify_section(entry)
            assert entry.blake3 == blake3.blake3(data[entry.offset:entry.end]).digest()
    for fp_entry in [e for e in mb.sections if e.kind == SectionKind.AOT]:
        bad = bytearray(data)
        bad[fp_entry.offset + 7] ^= 1
        with read_megabinary(bad) as mb:
            assert mb.file_stat is None
            with pytest.raises(CorruptSection) as err:
                mb.verify_section(mb.aot_section(fp_entry.name))
            assert err.value.offset == fp_entry.offset
