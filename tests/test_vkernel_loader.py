"""The loader against Linux's own: Debian's busybox mapped by vkernel and by the host kernel."""
from __future__ import annotations

import os
import struct
import subprocess
import time
from pathlib import Path

import pytest

from formats import abi
from test_vkernel_support import build_elf, make_kernel
from vkernel import loader
from vkernel.elf import parse_elf
from vkernel.errors import BadElf


@pytest.fixture
def native_busybox(busybox_bin: Path):
    """busybox running natively (sleeping), for /proc/PID/{maps,mem,auxv}."""
    proc = subprocess.Popen([str(busybox_bin), "sleep", "30"])
    time.sleep(0.3)
    yield proc
    proc.kill()
    proc.wait()


def load_busybox(tmp_path: Path, busybox_bin: Path):
    k = make_kernel(tmp_path, tmp_path)
    data = busybox_bin.read_bytes()
    image = loader.load_elf(k.space, data, "/bin/busybox", 0)
    return k, data, image


def test_segments_match_linux_mapping(tmp_path: Path, busybox_bin: Path, native_busybox) -> None:
    k, data, image = load_busybox(tmp_path, busybox_bin)
    elf = parse_elf(data, "/bin/busybox")
    pid = native_busybox.pid
    with open(f"/proc/{pid}/mem", "rb") as mem:
        for p in elf.loads:
            if p.flags & 2:          # writable: glibc's startup already relocated it natively
                continue
            lo, hi = p.vaddr & ~0xFFF, (p.vaddr + p.memsz + 0xFFF) & ~0xFFF
            mem.seek(lo)
            assert k.space.read(lo, hi - lo) == mem.read(hi - lo), hex(p.vaddr)
    # Protections recorded like /proc/PID/maps shows them.
    native = {}
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        rng, perms = line.split()[:2]
        a, b = (int(x, 16) for x in rng.split("-"))
        native[a] = perms[:3]
    for m in k.space.maps:
        if m.start in native and m.kind == "elf" and not m.prot & 2:
            assert native[m.start] == m.prot_text()
    # One code region: the R+X segment, unit 0, no bias for ET_EXEC.
    (text,) = [p for p in elf.loads if p.flags & 1]
    assert [(r.start, r.end, r.unit, r.bias) for r in image.regions] == \
        [(text.vaddr, text.vaddr + text.memsz, 0, 0)]
    assert image.entry == elf.entry


def test_initial_stack_matches_linux_auxv(tmp_path: Path, busybox_bin: Path, native_busybox) -> None:
    k, data, image = load_busybox(tmp_path, busybox_bin)
    argv, envp = [b"busybox", b"sleep", b"30"], [b"PATH=/bin", b"HOME=/"]
    rsp = loader.build_stack(k.space, image, argv, envp, "/bin/busybox",
                             (os.getuid(), os.geteuid(), os.getgid(), os.getegid()))
    assert rsp % 16 == 0
    words = struct.unpack("<64Q", k.space.read(rsp, 512))
    assert words[0] == 3
    assert [k.space.cstring(w) for w in words[1:4]] == argv and words[4] == 0
    assert [k.space.cstring(w) for w in words[5:7]] == envp and words[7] == 0
    aux = {}
    i = 8
    while words[i] != 0:
        aux[words[i]] = words[i + 1]
        i += 2
    raw = Path(f"/proc/{native_busybox.pid}/auxv").read_bytes()
    native = dict(struct.iter_unpack("<QQ", raw))
    for key in (loader.AT_PHDR, loader.AT_PHENT, loader.AT_PHNUM, loader.AT_PAGESZ, loader.AT_BASE,
                loader.AT_FLAGS, loader.AT_ENTRY, loader.AT_UID, loader.AT_EUID, loader.AT_GID,
                loader.AT_EGID, loader.AT_SECURE, loader.AT_CLKTCK):
        assert aux[key] == native[key], key
    assert aux[loader.AT_HWCAP] == abi.HWCAP
    assert k.space.cstring(aux[loader.AT_PLATFORM]) == b"x86_64"
    assert k.space.cstring(aux[loader.AT_EXECFN]) == b"/bin/busybox"
    assert aux[loader.AT_RANDOM] % 16 == 0 and len(k.space.read(aux[loader.AT_RANDOM], 16)) == 16
    # AT_PHDR points at the program headers, as in the file.
    assert k.space.read(aux[loader.AT_PHDR], 56 * aux[loader.AT_PHNUM]) == data[64:64 + 56 * 10]


def test_static_pie_is_loaded_at_pie_base(tmp_path: Path) -> None:
    elf = build_elf(tmp_path, "pie", pie=True)
    k = make_kernel(tmp_path, tmp_path)
    data = elf.path.read_bytes()
    image = loader.load_elf(k.space, data, "/bin/pie", 4)
    lowest = min(p.vaddr for p in parse_elf(data, "x").loads) & ~0xFFF
    assert image.bias == abi.PIE_LOAD_BASE - lowest
    assert all(r.bias == image.bias and r.unit == 4 for r in image.regions)
    assert k.space.read(elf.msg_addr + image.bias, elf.msg_len) == b"hello from a real ELF\n"


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: b"#!/bin/sh\n" + d, "not an ELF file"),
    (lambda d: d[:4] + b"\x01" + d[5:], "not a 64-bit little-endian ELF"),
    (lambda d: d[:18] + b"\x28\x00" + d[20:], "machine 40 is not x86-64"),
    (lambda d: d[:200], "outside the file"),
])
def test_malformed_elves_are_named_errors(tmp_path: Path, mutate, needle: str) -> None:
    elf = build_elf(tmp_path, "x")
    with pytest.raises(BadElf) as info:
        parse_elf(mutate(elf.path.read_bytes()), "/bin/x")
    assert needle in info.value.message and "/bin/x" in info.value.message
