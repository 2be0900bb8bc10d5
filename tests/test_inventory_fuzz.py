"""Mutation fuzzing of the inventory: damaged ELFs give Kiln errors or skipped entries, never crashes."""
from __future__ import annotations

import os
import random
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recompiler.elf import ElfError, read_layout
from recompiler.inventory import ElfRecord, take_inventory, inspect_elf

HELLO = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
TLS = '__thread int t = 1;\nint main(void) { return t; }\n'

# Values that tend to break offset and count arithmetic.
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 63, (1 << 64) - 1)


@pytest.fixture(scope="session")
def seeds(tmp_path_factory) -> list[bytes]:
    """Small real binaries: dynamic PIE, TLS program, musl static, shared library, object."""
    d = tmp_path_factory.mktemp("seeds")
    (d / "hello.c").write_text(HELLO)
    (d / "tls.c").write_text(TLS)
    cmds = [
        ["gcc", "-O1", "-o", "pie", "hello.c"],
        ["gcc", "-O1", "-o", "tls", "tls.c"],
        ["musl-gcc", "-O1", "-static", "-o", "musl", "hello.c"],
        ["gcc", "-O1", "-shared", "-fPIC", "-Wl,-soname,libseed.so", "-o", "lib.so", "hello.c"],
        ["gcc", "-O1", "-c", "-o", "obj.o", "hello.c"],
    ]
    for cmd in cmds:
        subprocess.run(cmd, cwd=d, check=True, capture_output=True)
    return [(d / name).read_bytes() for name in ("pie", "tls", "musl", "lib.so", "obj.o")]


def _tables(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of the ELF64 header and both header tables, as the seed has them."""
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phnum, shnum = struct.unpack_from("<H", data, 0x38)[0], struct.unpack_from("<H", data, 0x3C)[0]
    return [(0, 64), (phoff, max(1, phnum * 56)), (shoff, max(1, shnum * 64))]


def mutate(rng: random.Random, seed: bytes) -> bytes:
    """One mutant of ``seed``: bytes flipped or overwritten in the headers, the tables or
    anywhere, or the file truncated."""
    data = bytearray(seed)
    regions = _tables(seed)
    for _ in range(rng.randint(1, 6)):
        if not data:
            break
        op = rng.random()
        if op < 0.15:                                   # truncate
            del data[rng.randrange(len(data)):]
            continue
        if op < 0.75:                                   # inside a header or a header table
            start, length = rng.choice(regions)
            pos = start + rng.randrange(length)
        else:                                           # anywhere (dynamic, strings, relocs)
            pos = rng.randrange(len(data))
        if pos >= len(data):
            continue
        kind = rng.random()
        if kind < 0.4:
            data[pos] ^= 1 << rng.randrange(8)
        elif kind < 0.7:
            data[pos] = rng.randrange(256)
        else:
            width = rng.choice((2, 4, 8))
            value = rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)
            data[pos:pos + width] = value.to_bytes(width, "little")
    return bytes(data)


def test_mutated_elves_raise_only_elf_errors(seeds, tmp_path):
    rng = random.Random(20261123)
    target = tmp_path / "mutant"
    outcomes = {"record": 0, "error": 0}
    for _ in range(5000):
        data = mutate(rng, rng.choice(seeds))
        target.write_bytes(data)
        try:
            rec = inspect_elf(target)
        except ElfError as err:
            assert err.reason and str(err).startswith(str(target))
            outcomes["error"] += 1
        else:
            assert isinstance(rec, ElfRecord)
            assert rec.size == len(data) and rec.machine == "x86-64"
            assert all(isinstance(n, str) for n in rec.needed)
            outcomes["record"] += 1
    # the fuzzer reaches both sides: damage that is caught and damage LIEF parses around
    assert outcomes["record"] > 200 and outcomes["error"] > 2000, outcomes


def test_directory_of_mutants_never_raises(seeds, tmp_path):
    rng = random.Random(7)
    root = tmp_path / "root"
    root.mkdir()
    elf_names = set()
    for i in range(400):
        data = mutate(rng, rng.choice(seeds))
        (root / f"m{i:03d}").write_bytes(data)
        if data[:4] == b"\x7fELF":
            elf_names.add(f"/m{i:03d}")
    inv = take_inventory(root)
    listed = [p for r in inv.elves for p in r.paths] + \
             [p for s in inv.skipped for p in (s.path, *s.aliases)]
    assert sorted(listed) == sorted(elf_names)          # every ELF-looking file, exactly once
    assert inv.files_scanned == 400
    assert all(s.reason for s in inv.skipped)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.binary(min_size=0, max_size=200), tail=st.integers(0, 4096))
def test_arbitrary_headers_raise_only_elf_errors(tmp_path_factory, header, tail):
    path = tmp_path_factory.getbasetemp() / "hyp-header"
    data = b"\x7fELF" + header + bytes(tail)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        layout = read_layout(fd, len(data), "hyp-header")
    except ElfError:
        pass
    else:
        for seg in layout.segments:
            assert seg.p_filesz == 0 or seg.p_offset + seg.p_filesz <= len(data)
    finally:
        os.close(fd)
    try:
        inspect_elf(path)
    except ElfError:
        pass
