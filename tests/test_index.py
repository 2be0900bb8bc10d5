"""The CBOR index schema: real units round-trip, lookups, every schema rule, canonical
CBOR enforcement, and docs/formats.md kept in step with the code."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import blake3
import cbor2
import lief
import pytest
from hypothesis import given, settings, strategies as st

from formats import abi, gen_docs
from formats.index import (CborError, Index, IndexSchemaError, TrapSite, UnitKind, UnitRecord,
                           canonical_cbor, decode_index, encode_index)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def busybox_unit(busybox_bin: Path) -> UnitRecord:
    """busybox-static as the recompiler would record it: real hash, entry and load base."""
    elf = lief.parse(str(busybox_bin))
    base = min(s.virtual_address for s in elf.segments
               if s.type == lief.ELF.Segment.TYPE.LOAD) // 4096 * 4096
    # function starts taken from the real binary: its entry and its .init_array targets
    init = elf.get_section(".init_array")
    starts = sorted({elf.entrypoint, *(a for a in _cast_q(init.content) if a)})
    assert len(starts) > 1
    return UnitRecord(blake3=blake3.blake3(busybox_bin.read_bytes()).digest(),
                      paths=("/bin/busybox", "/bin/ls", "/bin/sh"), kind=UnitKind.EXEC, pie=False,
                      entry=elf.entrypoint, link_base=base, functions=len(starts),
                      entries=[(a, n) for n, a in enumerate(starts)],
                      trap_sites=[(starts[-1] + 1, "vpxor", "AVX is not advertised by cpuid")],
                      stats={"instructions": 0, "functions": len(starts)})


def _cast_q(content) -> list[int]:
    raw = bytes(content)
    return [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw) - 7, 8)]


@pytest.fixture(scope="module")
def index(busybox_unit) -> Index:
    return Index(abi_version=abi.ABI_VERSION, units=(busybox_unit,))


def test_real_unit_round_trips_and_looks_up(index, busybox_unit, busybox_bin):
    payload = encode_index(index)
    back = decode_index(payload)
    assert back == index
    assert encode_index(back) == payload
    digest = blake3.blake3(busybox_bin.read_bytes()).digest()
    assert back.lookup(digest) == busybox_unit
    assert back.unit_number(digest) == 0
    assert back.lookup(blake3.blake3(b"not busybox").digest()) is None
    assert back.by_path("/bin/sh") == busybox_unit and back.by_path("/bin/bash") is None
    unit = back.lookup(digest)
    assert unit.slot_for(unit.entry) == 0            # the entry point is the first start
    assert unit.slot_for(unit.entry + 1) is None
    assert {unit.slot_for(a) for a, _ in unit.entries} == set(range(unit.functions))
    site = unit.trap_sites[0]
    assert unit.trap_site_at(site.guest_addr) == site
    assert unit.trap_site_at(site.guest_addr + 1) is None and unit.trap_site_at(0) is None
    # the index is the CBOR map of docs/formats.md §3.1: two keys, a unit's functions a count
    obj = cbor2.loads(payload)
    assert sorted(obj) == ["abi_version", "units"]
    assert obj["units"][0]["functions"] == unit.functions and "slots" not in obj["units"][0]


def test_trap_sites_and_slots_belong_to_their_unit(busybox_unit):
    """Trap sites are found by address in their own unit; slots count within the unit, so two
    units may both use slot 0."""
    other = UnitRecord(blake3=b"\xff" * 32, paths=("/lib/libz.so.1",), kind="shared-lib", pie=True,
                       entry=0, link_base=0, functions=2, entries=[(0x1010, 1), (0x1800, 0)],
                       trap_sites=[(0x1000, "rdrand", "x"), (0x2000, "xgetbv", "y")],
                       stats={"instructions": 2, "functions": 2})
    idx = decode_index(encode_index(Index(abi.ABI_VERSION, (other, busybox_unit))))
    assert [u.blake3 for u in idx.units] == [busybox_unit.blake3, other.blake3]   # sorted
    lib = idx.units[1]
    assert lib.trap_site_at(0x2000) == TrapSite(0x2000, "xgetbv", "y")
    assert idx.units[0].trap_site_at(0x2000) is None
    assert lib.slot_for(0x1800) == 0 == idx.units[0].slot_for(busybox_unit.entry)
    assert idx.unit_number(other.blake3) == 1 and idx.by_path("/lib/libz.so.1") == lib


def _bad(index: Index, mutate) -> bytes:
    obj = index.to_obj()
    mutate(obj, obj["units"][0])
    return canonical_cbor(obj)


SCHEMA_CASES = {
    "units[0].paths": lambda o, u: u.__setitem__("paths", []),
    "units[0].paths[1]": lambda o, u: u["paths"].reverse(),
    "units[0].paths[0]": lambda o, u: u["paths"].__setitem__(0, "bin/busybox"),
    "units[0].pie": lambda o, u: u.__setitem__("pie", True),
    "units[0].kind": lambda o, u: u.__setitem__("kind", 3),
    "units[0].entry": lambda o, u: u.__setitem__("entry", -1),
    "units[0].link_base": lambda o, u: u.__setitem__("link_base", 0x400010),
    "units[0].functions": lambda o, u: u.__setitem__("functions", [0, u["functions"]]),  # 1.x
    "units[0].entries[2]": lambda o, u: u["entries"].insert(2, list(u["entries"][1])),
    "units[0].entries[0]": lambda o, u: u["entries"].__setitem__(0, [u["entries"][0][0], 10**6]),
    "units[0].entries[1]": lambda o, u: u["entries"][1].__setitem__(1, u["functions"]),
    "units[0].entries[0][1]": lambda o, u: u["entries"][0].__setitem__(1, -1),
    "units[0].trap_sites[0]": lambda o, u: u["trap_sites"].__setitem__(0, [1, "ud2"]),
    "units[0].stats": lambda o, u: u["stats"].pop("instructions"),
    "units[0].stats.functions": lambda o, u: u["stats"].__setitem__("functions", True),
    "units[0]": lambda o, u: u.pop("entries"),
    "units[0].blake3": lambda o, u: u.__setitem__("blake3", "0" * 64),
    "index": lambda o, u: o.pop("abi_version"),
    "index.units": lambda o, u: o.__setitem__("units", {}),
}


@pytest.mark.parametrize("where", sorted(SCHEMA_CASES))
def test_schema_violation_is_named(index, where):
    with pytest.raises(IndexSchemaError) as err:
        decode_index(_bad(index, SCHEMA_CASES[where]), offset=0x1000, path="x.kmb")
    assert err.value.where == where
    assert err.value.offset == 0x1000 and "x.kmb" in str(err.value) and err.value.hint


def test_shared_paths_and_duplicate_units_are_refused(busybox_unit):
    twin = UnitRecord(**{**busybox_unit.__dict__, "blake3": b"\x00" * 32, "paths": ("/bin/sh",)})
    with pytest.raises(IndexSchemaError, match="also a path") as err:
        encode_index(Index(abi.ABI_VERSION, (busybox_unit, twin)))
    assert err.value.where == "units[1].paths"
    # the same functions and slots in two units are fine: each unit counts its own
    fine = UnitRecord(**{**twin.__dict__, "paths": ("/bin/zz",)})
    assert len(decode_index(encode_index(Index(abi.ABI_VERSION, (busybox_unit, fine)))).units) == 2
    obj = Index(abi.ABI_VERSION, (busybox_unit,)).to_obj()
    obj["units"].append(dict(obj["units"][0], paths=["/bin/zz"]))
    with pytest.raises(IndexSchemaError, match="sorted by blake3") as err:
        decode_index(canonical_cbor(obj))
    assert err.value.where == "units[1].blake3"


def test_function_count_and_slot_bounds(busybox_unit):
    """``functions`` is below 2^32 (a dispatch table holds no more); a slot is below it."""
    def unit(functions: int, slot: int) -> dict:
        obj = Index(abi.ABI_VERSION, (busybox_unit,)).to_obj()
        obj["units"][0]["functions"] = functions
        obj["units"][0]["entries"] = [[busybox_unit.entry, slot]]
        return obj
    top = (1 << 32) - 1
    assert decode_index(canonical_cbor(unit(top, top - 1))).units[0].functions == top
    with pytest.raises(IndexSchemaError) as err:
        decode_index(canonical_cbor(unit(1 << 32, 0)))
    assert err.value.where == "units[0].functions"
    with pytest.raises(IndexSchemaError) as err:
        decode_index(canonical_cbor(unit(5, 5)))
    assert err.value.where == "units[0].entries[0]" and "5 functions" in err.value.message
    empty = unit(0, 0)
    empty["units"][0]["entries"] = []
    assert decode_index(canonical_cbor(empty)).units[0].functions == 0
    with pytest.raises(IndexSchemaError):                 # no function: no entry can exist
        decode_index(canonical_cbor(unit(0, 0)))


def test_unknown_keys_are_ignored_for_minor_versions(index):
    obj = index.to_obj()
    obj["future_top"] = [1, 2]
    obj["units"][0]["future_unit"] = {"x": 1}
    assert decode_index(canonical_cbor(obj)) == index
    # the index-level keys of 1.x are no longer read (a 1.x file is refused by its version)
    obj["functions"], obj["table_size"], obj["units"][0]["slots"] = 7, 9, [0, 1]
    assert decode_index(canonical_cbor(obj)) == index


def test_non_canonical_cbor_is_refused(index):
    good = encode_index(index)
    obj = index.to_obj()
    for bad in (cbor2.dumps(obj),                          # insertion-ordered keys
                good + b"\x00",                             # trailing byte
                b"\xd9\xd9\xf7" + good,                     # self-describe tag
                good[:-3],                                  # cut short
                b"\xbf\x61a\x01\xff",                       # indefinite-length map
                b"\xa2\x61a\x01\x61a\x02",                  # duplicate key
                cbor2.dumps({**obj, "abi_version": 1.0}, canonical=True)):   # float
        with pytest.raises((CborError, IndexSchemaError)):
            decode_index(bad)
    with pytest.raises(CborError):
        decode_index(b"\x81" * 100)                         # nested too deeply


# ---------------------------------------------------------------------------
# Property: any valid index round-trips, and its encoding does not depend on order
# ---------------------------------------------------------------------------

u64 = st.integers(0, (1 << 64) - 1)
names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e, blacklist_characters="/."),
                min_size=1, max_size=8)


@st.composite
def indexes(draw):
    n = draw(st.integers(0, 4))
    digests = sorted(draw(st.sets(st.binary(min_size=32, max_size=32), min_size=n, max_size=n)))
    all_paths = draw(st.lists(names, min_size=n * 2, max_size=n * 2, unique=True))
    units = []
    for i, d in enumerate(digests):
        kind = draw(st.sampled_from(list(UnitKind)))
        functions = draw(st.integers(0, 6) | st.just((1 << 32) - 1))
        count = draw(st.integers(0, 5)) if functions else 0
        addrs = sorted(draw(st.sets(u64, min_size=count, max_size=count)))
        slots = draw(st.lists(st.integers(0, functions - 1), min_size=count, max_size=count)
                     if functions else st.just([]))
        traps = sorted(draw(st.sets(u64, max_size=3)))
        units.append(UnitRecord(
            blake3=d, paths=tuple(sorted("/" + p for p in all_paths[2 * i:2 * i + 2])), kind=kind,
            pie=kind is not UnitKind.EXEC, entry=draw(u64), link_base=draw(u64) // 4096 * 4096,
            functions=functions, entries=list(zip(addrs, slots)),
            trap_sites=[TrapSite(a, draw(names), draw(st.text(max_size=10))) for a in traps],
            stats={"instructions": draw(u64), "functions": functions}))
    return Index(abi.ABI_VERSION, tuple(units))


@settings(max_examples=150, deadline=None)
@given(indexes(), st.randoms())
def test_any_valid_index_round_trips_deterministically(idx, rnd):
    payload = encode_index(idx)
    assert decode_index(payload) == idx
    shuffled = list(idx.units)
    rnd.shuffle(shuffled)
    assert encode_index(Index(idx.abi_version, tuple(shuffled))) == payload
    for u in idx.units:
        for e in u.entries:
            assert u.slot_for(e.guest_addr) == e.slot
        assert idx.lookup(u.blake3) == u


# ---------------------------------------------------------------------------
# docs/formats.md cannot go stale
# ---------------------------------------------------------------------------

def test_formats_doc_contains_the_current_tables():
    text = (REPO / "docs" / "formats.md").read_text()
    assert gen_docs.stale_blocks(text) == [], "run: python3 -m formats.gen_docs --write"
    for name, body in gen_docs.render_blocks().items():
        assert body in text, name
    # spot-check that the rendering really comes from the code
    assert f"| `rip` | `{abi.CPU_STATE_OFFSETS['rip']:#06x}` | 8 |" in text
    assert "| 40 | 32 | bytes[32] | `checksum` |" in text
    assert "Output image" in text


def test_stale_doc_is_detected_and_rewritten(tmp_path):
    text = (REPO / "docs" / "formats.md").read_text()
    rip = f"| `rip` | `{abi.CPU_STATE_OFFSETS['rip']:#06x}` |"
    stale = text.replace(rip, "| `rip` | `0x0999` |")
    assert stale != text and gen_docs.stale_blocks(stale) == ["abi"]
    assert gen_docs.update_document(stale) == text
    doc = tmp_path / "formats.md"
    doc.write_text(stale)
    check = subprocess.run([sys.executable, "-m", "formats.gen_docs", "--check", str(doc)],
                           cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 1 and "abi" in check.stderr
    subprocess.run([sys.executable, "-m", "formats.gen_docs", "--write", str(doc)], cwd=REPO,
                   check=True, capture_output=True)
    assert doc.read_text() == text


# ---------------------------------------------------------------------------
# Hostile payloads: whatever the bytes, only format errors come out
# ---------------------------------------------------------------------------

plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.text(max_size=6)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["abi_version", "units", "blake3", "paths", "kind", "pie",
                                       "entry", "link_base", "functions", "entries",
                                       "trap_sites", "stats", "instructions", "x"]),
                      inner, max_size=6),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(plain)
def test_arbitrary_cbor_data_gives_an_index_or_a_schema_error(obj):
    try:
        decode_index(canonical_cbor(obj))
    except IndexSchemaError as err:
        assert err.where and err.hint


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_only_format_errors(data):
    try:
        decode_index(data)
    except (CborError, IndexSchemaError):
        pass


def test_a_real_unit_with_fields_swapped_for_other_types(index):
    """Every unit field replaced by every other kind of CBOR value is refused cleanly."""
    values = [None, True, -1, 1 << 64, "x", b"x" * 32, [], [1, 2], {}, {"a": 1}, [[1, "a"]]]
    for key in index.to_obj()["units"][0]:
        for v in values:
            obj = index.to_obj()
            obj["units"][0][key] = v
            try:
                decode_index(canonical_cbor(obj))
            except IndexSchemaError as err:
                assert err.where.startswith("units[0]")
