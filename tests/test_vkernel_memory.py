"""Guest memory: brk, mmap, munmap, mprotect, mremap, madvise, and the no-JIT rule."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import blake3
import pytest

from formats import abi
from test_vkernel_support import SCRATCH, build_elf, call, make_kernel, put_str, unit_for
from vkernel.syscalls.numbers import SYSCALL_NUMBERS as NR

PROT_R, PROT_W, PROT_X = 1, 2, 4
MAP_PRIVATE, MAP_FIXED, MAP_ANON, MAP_NOREPLACE = 0x02, 0x10, 0x20, 0x100000


@pytest.fixture
def setup(tmp_path: Path):
    elf = build_elf(tmp_path, "lib")
    root = tmp_path / "rootfs"
    (root / "lib").mkdir(parents=True)
    (root / "lib/indexed.so").write_bytes(elf.path.read_bytes())
    (root / "lib/other.so").write_bytes(elf.path.read_bytes() + b"\0")
    unit = unit_for(elf.path.read_bytes(), "/lib/indexed.so")
    k = make_kernel(tmp_path, root, [unit], audit_path=tmp_path / "audit.jsonl")
    yield k, tmp_path / "audit.jsonl", elf.path.read_bytes()
    k.fds.close_all()


def audit(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def mmap(k, addr, length, prot, flags, fd=-1, off=0) -> int:
    return call(k, NR["mmap"], addr, length, prot, flags, fd, off)


def test_brk_grows_and_shrinks(setup) -> None:
    k, _, _ = setup
    start = call(k, NR["brk"], 0)
    assert start == 0x500000
    assert call(k, NR["brk"], start + 10000) == start + 10000
    k.space.write(start + 9000, b"heap!")
    assert k.space.at(start + 9000).kind == "brk"
    assert call(k, NR["brk"], start) == start
    assert k.space.read(start + 9000, 5) == bytes(5)          # released pages read as zero
    assert call(k, NR["brk"], start - 0x1000) == start       # below the start: unchanged


def test_anonymous_mmap_munmap(setup) -> None:
    k, _, _ = setup
    a = mmap(k, 0, 3 * 4096 + 1, PROT_R | PROT_W, MAP_PRIVATE | MAP_ANON)
    assert abi.MMAP_BASE <= a < abi.MMAP_END and a % 4096 == 0
    assert k.space.read(a, 4 * 4096) == bytes(4 * 4096)
    k.space.write(a + 100, b"data")
    b = mmap(k, 0, 4096, PROT_R, MAP_PRIVATE | MAP_ANON)
    assert b >= a + 4 * 4096                                  # no overlap
    assert call(k, NR["munmap"], a, 4 * 4096) == 0
    assert k.space.read(a + 100, 4) == bytes(4)
    assert call(k, NR["munmap"], a + 1, 4096) == -errno.EINVAL
    assert mmap(k, 0, 0, PROT_R, MAP_PRIVATE | MAP_ANON) == -errno.EINVAL
    # MAP_FIXED replaces, MAP_FIXED_NOREPLACE refuses
    assert mmap(k, b, 4096, PROT_R, MAP_PRIVATE | MAP_ANON | MAP_NOREPLACE) == -errno.EEXIST
    assert mmap(k, b, 4096, PROT_R | PROT_W, MAP_PRIVATE | MAP_ANON | MAP_FIXED) == b


def test_file_mmap_copies_bytes(setup) -> None:
    k, _, data = setup
    fd = call(k, NR["open"], put_str(k, SCRATCH, "/lib/indexed.so"), os.O_RDONLY, 0)
    a = mmap(k, 0, 8192, PROT_R, MAP_PRIVATE, fd, 0)
    assert a > 0
    n = min(8192, len(data))
    assert k.space.read(a, n) == data[:n]
    assert k.space.read(a + n, 8192 - n) == bytes(8192 - n)


def test_mprotect_and_mremap(setup) -> None:
    k, _, _ = setup
    a = mmap(k, 0, 4 * 4096, PROT_R | PROT_W, MAP_PRIVATE | MAP_ANON)
    assert call(k, NR["mprotect"], a + 4096, 4096, PROT_R) == 0
    assert [m.prot for m in k.space.covering(a, a + 4 * 4096)] == [3, 1, 3]
    assert call(k, NR["mprotect"], 0x3000_0000, 4096, PROT_R) == -errno.ENOMEM
    k.space.write(a, b"keep me")
    b = call(k, NR["mremap"], a, 4 * 4096, 64 * 4096, 1, 0)
    assert b > 0 and k.space.read(b, 7) == b"keep me"
    assert call(k, NR["madvise"], b, 4096, 4) == 0 and k.space.read(b, 7) == bytes(7)


def test_no_jit_anonymous_exec_refused(setup) -> None:
    k, log, _ = setup
    assert mmap(k, 0, 4096, PROT_R | PROT_W | PROT_X, MAP_PRIVATE | MAP_ANON) == -errno.EACCES
    a = mmap(k, 0, 4096, PROT_R | PROT_W, MAP_PRIVATE | MAP_ANON)
    assert call(k, NR["mprotect"], a, 4096, PROT_R | PROT_X) == -errno.EACCES
    recs = audit(log)
    assert [r["event"] for r in recs] == ["mmap", "mprotect"]
    assert all(r["decision"] == "refused" and "no-JIT" in r["reason"] for r in recs)
    assert k.regions == []


def test_exec_mapping_of_files(setup) -> None:
    k, log, data = setup
    fd = call(k, NR["open"], put_str(k, SCRATCH, "/lib/other.so"), os.O_RDONLY, 0)
    assert mmap(k, 0, 4096, PROT_R | PROT_X, MAP_PRIVATE, fd, 0) == -errno.EACCES
    rec = audit(log)[-1]
    assert rec["path"] == "/lib/other.so"
    assert rec["blake3"] == blake3.blake3(data + b"\0").hexdigest()
    fd = call(k, NR["open"], put_str(k, SCRATCH, "/lib/indexed.so"), os.O_RDONLY, 0)
    a = mmap(k, 0, 8192, PROT_R | PROT_X, MAP_PRIVATE, fd, 0)
    assert a > 0
    # The mapping became a code region in the control memory, for dispatch.
    (region,) = k.ctl.read_regions()
    assert (region.start, region.end, region.unit) == (a, a + 8192, 0)
    assert region.bias == a - 0x400000                          # first PT_LOAD: offset 0 at 0x400000
    assert call(k, NR["munmap"], a, 8192) == 0 and k.ctl.read_regions() == []


def test_large_unmap_returns_zero_pages(setup) -> None:
    k, _, _ = setup
    a = mmap(k, 0, 1 << 20, PROT_R | PROT_W, MAP_PRIVATE | MAP_ANON)
    k.space.write(a + 5, b"start")
    k.space.write(a + (1 << 20) - 5, b"end!!")
    assert call(k, NR["munmap"], a, 1 << 20) == 0          # the madvise(DONTNEED) path
    assert k.space.read(a, 1 << 20) == bytes(1 << 20)
