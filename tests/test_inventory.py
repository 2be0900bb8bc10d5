"""The ELF inventory against binutils readelf, on real binaries and real rootfs trees."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import blake3
import pytest

from recompiler.elf import CorruptElf, ElfError
from recompiler.inventory import (
    ElfKind, ElfRecord, InventoryError, Linkage, UnsupportedElf, inspect_elf, resolve_in_root, take_inventory,
)

HOST_LIBDIR = Path("/usr/lib/x86_64-linux-gnu")

# readelf's "Machine:" text -> the inventory's machine name.
READELF_MACHINES = {
    "Advanced Micro Devices X86-64": "x86-64",
    "AArch64": "aarch64",
    "Intel 80386": "i386",
}

HELLO = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
TLS = ('#include <stdio.h>\n__thread int counter = 3;\n'
       'int main(void) { counter++; printf("%d\\n", counter); return 0; }\n')
LIB = '#include <stdio.h>\nint kiln_answer(void) { puts("42"); return 42; }\n'


# ---------------------------------------------------------------------------
# readelf, the reference
# ---------------------------------------------------------------------------

def readelf_facts(path: Path) -> dict:
    """What binutils readelf says about ``path`` (header, segments, sections, dynamic, relocs)."""
    out = subprocess.run(["readelf", "-W", "-h", "-l", "-S", "-d", "-r", str(path)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "LC_ALL": "C"}).stdout
    field = lambda name: re.search(rf"^\s*{name}:\s+(.*?)\s*$", out, re.M).group(1)  # noqa: E731
    seg_types = re.findall(r"^\s{2}([A-Z_]+)\s+0x[0-9a-f]+\s+0x", out, re.M)
    sections = re.findall(r"^\s*\[\s*\d+\]\s+(\S*)\s+([A-Z_]+)\s+[0-9a-f]{8}", out, re.M)
    interp = re.search(r"\[Requesting program interpreter: (.*)\]", out)
    soname = re.search(r"\(SONAME\)\s+Library soname: \[(.*)\]", out)
    return {
        "class": field("Class"),
        "type": field("Type"),
        "machine": READELF_MACHINES.get(field("Machine"), field("Machine")),
        "entry": int(field("Entry point address"), 16),
        "segments": set(seg_types),
        "section_names": {name for name, _ in sections},
        "section_types": {typ for _, typ in sections},
        "interpreter": interp.group(1) if interp else None,
        "needed": re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", out),
        "soname": soname.group(1) if soname else None,
        "irelative": len(re.findall(r"\sR_X86_64_IRELATIVE\s", out)),
    }


def assert_matches_readelf(rec: ElfRecord, path: Path) -> dict:
    """Every field of ``rec`` agrees with readelf's view of ``path``; returns that view."""
    ref = readelf_facts(path)
    assert rec.elf_class == ref["class"]
    assert rec.machine == ref["machine"]
    assert rec.entry == ref["entry"]
    assert rec.interpreter == ref["interpreter"]
    assert list(rec.needed) == ref["needed"]
    assert rec.soname == ref["soname"]
    assert rec.stripped == ("SYMTAB" not in ref["section_types"])
    assert rec.has_eh_frame == (".eh_frame" in ref["section_names"]
                                or "GNU_EH_FRAME" in ref["segments"])
    assert rec.has_tls == ("TLS" in ref["segments"])
    assert rec.irelative_count == ref["irelative"]
    rtype = ref["type"]
    if rtype.startswith("EXEC"):
        kind = ElfKind.EXEC
    elif rtype.startswith("DYN"):
        is_pie = "Position-Independent" in rtype or (ref["interpreter"] and ref["entry"])
        kind = ElfKind.PIE if is_pie else ElfKind.SHARED
    elif rtype.startswith("REL"):
        kind = ElfKind.REL
    else:
        kind = ElfKind.CORE
    assert rec.kind == kind
    if kind in (ElfKind.REL, ElfKind.CORE):
        assert rec.linkage == Linkage.NONE
    elif "INTERP" in ref["segments"]:
        assert rec.linkage == Linkage.DYNAMIC
    elif kind == ElfKind.PIE:
        assert rec.linkage == Linkage.STATIC
    else:
        want = Linkage.DYNAMIC if "DYNAMIC" in ref["segments"] else Linkage.STATIC
        assert rec.linkage == want
    assert rec.size == path.stat().st_size
    assert rec.blake3 == blake3.blake3(path.read_bytes()).hexdigest()
    return ref


# ---------------------------------------------------------------------------
# Programs built here with the real toolchains
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, Path]:
    """Small programs built with gcc and musl-gcc, by name."""
    d = tmp_path_factory.mktemp("built")
    (d / "hello.c").write_text(HELLO)
    (d / "tls.c").write_text(TLS)
    (d / "lib.c").write_text(LIB)
    recipes = {
        "dynamic_pie": ["gcc", "-O1", "-o", "dynamic_pie", "hello.c"],
        "dynamic_exec": ["gcc", "-O1", "-no-pie", "-o", "dynamic_exec", "hello.c"],
        "static": ["gcc", "-O1", "-static", "-o", "static", "hello.c"],
        "static_pie": ["gcc", "-O1", "-static-pie", "-o", "static_pie", "hello.c"],
        "musl_static": ["musl-gcc", "-O1", "-static", "-o", "musl_static", "hello.c"],
        "libkilntest.so.1": ["gcc", "-O1", "-shared", "-fPIC", "-Wl,-soname,libkilntest.so.1",
                             "-o", "libkilntest.so.1", "lib.c"],
        "tls": ["gcc", "-O1", "-o", "tls", "tls.c"],
        "object.o": ["gcc", "-O1", "-c", "-o", "object.o", "hello.c"],
        "stripped": ["gcc", "-O1", "-s", "-o", "stripped", "hello.c"],
    }
    for name, cmd in recipes.items():
        subprocess.run(cmd, cwd=d, check=True, capture_output=True)
    return {name: d / name for name in recipes}


def test_busybox_static_matches_readelf(busybox_bin):
    rec = inspect_elf(busybox_bin)
    ref = assert_matches_readelf(rec, busybox_bin)
    # Debian's busybox-static: glibc static, stripped, IFUNCs resolved through IRELATIVE.
    assert rec.linkage == Linkage.STATIC
    assert rec.stripped
    assert rec.has_eh_frame
    assert rec.irelative_count == ref["irelative"] > 0


@pytest.mark.parametrize("name, kind, linkage", [
    ("dynamic_pie", ElfKind.PIE, Linkage.DYNAMIC),
    ("dynamic_exec", ElfKind.EXEC, Linkage.DYNAMIC),
    ("static", ElfKind.EXEC, Linkage.STATIC),
    ("static_pie", ElfKind.PIE, Linkage.STATIC),
    ("musl_static", ElfKind.EXEC, Linkage.STATIC),
    ("libkilntest.so.1", ElfKind.SHARED, Linkage.DYNAMIC),
    ("tls", ElfKind.PIE, Linkage.DYNAMIC),
    ("object.o", ElfKind.REL, Linkage.NONE),
    ("stripped", ElfKind.PIE, Linkage.DYNAMIC),
])
def test_built_programs_match_readelf(built, name, kind, linkage):
    rec = inspect_elf(built[name])
    assert_matches_readelf(rec, built[name])
    assert (rec.kind, rec.linkage) == (kind, linkage)


def test_dynamic_pie_names_its_interpreter_and_libc(built):
    rec = inspect_elf(built["dynamic_pie"])
    assert rec.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert "libc.so.6" in rec.needed
    assert not rec.stripped
    assert inspect_elf(built["stripped"]).stripped


def test_static_pie_has_no_interpreter(built):
    rec = inspect_elf(built["static_pie"])
    assert rec.interpreter is None and rec.needed == ()


def test_shared_library_soname_and_tls(built):
    lib = inspect_elf(built["libkilntest.so.1"])
    assert lib.soname == "libkilntest.so.1"
    assert "libc.so.6" in lib.needed
    assert inspect_elf(built["tls"]).has_tls
    assert not inspect_elf(built["dynamic_pie"]).has_tls


def _host_libraries(count: int) -> list[Path]:
    """``count`` real (non-symlink) shared libraries spread over the host's libdir."""
    def is_elf(p: Path) -> bool:
        with open(p, "rb") as f:
            return f.read(4) == b"\x7fELF"
    libs = sorted(p for p in HOST_LIBDIR.glob("*.so*")
                  if p.is_file() and not p.is_symlink() and is_elf(p))
    step = max(1, len(libs) // count)
    return libs[::step][:count]


@pytest.mark.parametrize("lib", _host_libraries(30), ids=lambda p: p.name)
def test_host_shared_libraries_match_readelf(lib):
    assert_matches_readelf(inspect_elf(lib), lib)


def test_host_libc_is_dynamic_with_irelative():
    libc = HOST_LIBDIR / "libc.so.6"
    rec = inspect_elf(libc)
    ref = assert_matches_readelf(rec, libc.resolve())
    assert rec.soname == "libc.so.6"
    assert rec.irelative_count == ref["irelative"] > 0


# ---------------------------------------------------------------------------
# A rootfs
# ---------------------------------------------------------------------------

def _aarch64_elf() -> bytes:
    """A minimal, well-formed ELF64 header for aarch64 (EXEC, no tables)."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHIQQQIHHHHHH", 2, 183, 1, 0x400000, 0, 0, 0, 64, 56, 0,
                               64, 0, 0)


def _i386_elf() -> bytes:
    """A minimal ELF32 header for i386 (EXEC, no tables)."""
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0x8048000, 0, 0, 0, 52, 32, 0,
                               40, 0, 0)


@pytest.fixture
def rootfs(tmp_path, busybox_bin, built) -> Path:
    """A small rootfs: busybox with links, built programs, odd files and hostile links."""
    root = tmp_path / "rootfs"
    for d in ("bin", "sbin", "usr/bin", "usr/lib", "opt", "etc", "dev"):
        (root / d).mkdir(parents=True)
    shutil.copy2(busybox_bin, root / "bin/busybox")
    os.link(root / "bin/busybox", root / "sbin/init")            # hard link
    shutil.copy2(busybox_bin, root / "opt/busybox.copy")          # same content, other inode
    os.symlink("busybox", root / "bin/sh")                        # relative symlink
    os.symlink("/bin/busybox", root / "usr/bin/ls")               # absolute: inside root
    os.symlink("../../../../../../../../usr/bin/ls", root / "bin/ls-escape")  # .. clamps at root
    os.symlink(str(HOST_LIBDIR / "libc.so.6"), root / "bin/host-libc")  # dangling in root
    os.symlink("loop-b", root / "bin/loop-a")
    os.symlink("loop-a", root / "bin/loop-b")
    os.symlink("/usr/lib", root / "lib")                          # directory symlink
    shutil.copy2(built["dynamic_pie"], root / "usr/bin/hello")
    shutil.copy2(built["libkilntest.so.1"], root / "usr/lib/libkilntest.so.1")
    os.symlink("libkilntest.so.1", root / "usr/lib/libkilntest.so")
    (root / "usr/bin/arm-tool").write_bytes(_aarch64_elf())
    (root / "usr/bin/i386-tool").write_bytes(_i386_elf())
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/empty").write_bytes(b"")
    (root / "etc/tiny").write_bytes(b"\x7fELF\x02")           # magic, then nothing
    os.mkfifo(root / "dev/fifo")                                  # must not block the walk
    return root


def test_rootfs_aliases_and_confinement(rootfs, busybox_bin):
    inv = take_inventory(rootfs)
    by_path = {r.path: r for r in inv.elves}
    assert set(by_path) == {"/bin/busybox", "/usr/bin/hello", "/usr/lib/libkilntest.so.1"}
    bb = by_path["/bin/busybox"]
    assert bb.aliases == ("/bin/ls-escape", "/bin/sh", "/opt/busybox.copy", "/sbin/init",
                          "/usr/bin/ls")
    assert bb.blake3 == blake3.blake3(busybox_bin.read_bytes()).hexdigest()
    assert by_path["/usr/lib/libkilntest.so.1"].aliases == ("/usr/lib/libkilntest.so",)
    assert inv.record_for("/bin/sh") is bb and inv.record_for("/bin/nope") is None
    # a path through the directory symlink /lib -> /usr/lib maps with resolve_in_root
    assert resolve_in_root(rootfs, "/lib/libkilntest.so") == "usr/lib/libkilntest.so.1"
    assert resolve_in_root(rootfs, "/bin/host-libc") is None
    assert resolve_in_root(rootfs, "/bin/loop-a") is None
    every_path = {p for r in inv.elves for p in r.paths} | {s.path for s in inv.skipped}
    assert "/bin/host-libc" not in every_path            # never followed out of the root
    host_libc = blake3.blake3((HOST_LIBDIR / "libc.so.6").read_bytes()).hexdigest()
    assert host_libc not in {r.blake3 for r in inv.elves}


def test_rootfs_skips_other_machines_with_reasons(rootfs):
    inv = take_inventory(rootfs)
    reasons = {s.path: s.reason for s in inv.skipped}
    assert reasons == {
        "/usr/bin/arm-tool": "machine aarch64: not x86-64, will not be recompiled",
        "/usr/bin/i386-tool": "machine i386: not x86-64, will not be recompiled",
        "/etc/tiny": "file size 0x5 is smaller than the ELF identification (0x10 bytes)",
    }
    arm = next(s for s in inv.skipped if s.path == "/usr/bin/arm-tool")
    assert arm.blake3 == blake3.blake3(_aarch64_elf()).hexdigest()
    with pytest.raises(UnsupportedElf, match="machine aarch64"):
        inspect_elf(rootfs / "usr/bin/arm-tool")


def test_readelf_agrees_the_handmade_aarch64_header_is_aarch64(rootfs):
    assert readelf_facts(rootfs / "usr/bin/arm-tool")["machine"] == "aarch64"


def test_corrupt_elves_are_skipped_with_the_offending_field(tmp_path, built):
    root = tmp_path / "root"
    root.mkdir()
    good = built["dynamic_pie"].read_bytes()
    size = len(good)
    bad_phoff = bytearray(good)
    struct.pack_into("<Q", bad_phoff, 0x20, 0x7FFF0000)
    (root / "bad-phoff").write_bytes(bad_phoff)
    (root / "truncated").write_bytes(good[: size // 2])
    (root / "header-only").write_bytes(good[:40])
    inv = take_inventory(root)
    assert inv.elves == ()
    reasons = {s.path: s.reason for s in inv.skipped}
    assert reasons["/bad-phoff"] == f"e_phoff 0x7fff0000 beyond file size {size:#x}"
    assert "beyond file size" in reasons["/truncated"]
    assert reasons["/header-only"] == "file size 0x28 is smaller than the ELF64 header (0x40 bytes)"
    with pytest.raises(CorruptElf) as info:
        inspect_elf(root / "bad-phoff", name="bad-phoff")
    assert str(info.value) == f"bad-phoff: offset 0x20: e_phoff 0x7fff0000 beyond file size {size:#x}"
    assert info.value.hint
    # readelf also finds the program headers unreadable
    proc = subprocess.run(["readelf", "-lW", str(root / "bad-phoff")], capture_output=True,
                          text=True, env={**os.environ, "LC_ALL": "C"})
    assert "program headers" in proc.stderr.lower()


def test_inventory_of_corrupt_files_prints_nothing(tmp_path, built, capfd):
    root = tmp_path / "root"
    root.mkdir()
    data = bytearray(built["dynamic_pie"].read_bytes())
    segments = subprocess.run(["readelf", "-lW", str(built["dynamic_pie"])], capture_output=True,
                              text=True, check=True, env={**os.environ, "LC_ALL": "C"}).stdout
    dynamic = int(re.search(r"^\s+DYNAMIC\s+(0x[0-9a-f]+)", segments, re.M).group(1), 16)
    for i in range(0, 400, 8):              # scramble the dynamic section, entry by entry
        mutated = bytearray(data)
        mutated[dynamic + i: dynamic + i + 8] = b"\xff" * 8
        (root / f"m{i}").write_bytes(mutated)
    take_inventory(root)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_json_is_stable_and_sorted(rootfs):
    first = take_inventory(rootfs).to_json()
    second = take_inventory(rootfs).to_json()
    assert first == second
    doc = json.loads(first)
    assert doc["schema"] == "kiln.inventory/1"
    paths = [e["path"] for e in doc["elves"]]
    assert paths == sorted(paths)
    bb = next(e for e in doc["elves"] if e["path"] == "/bin/busybox")
    assert bb["kind"] == "EXEC" and bb["linkage"] == "static" and bb["class"] == "ELF64"
    assert "/sbin/init" in bb["aliases"]


def test_progress_reports_every_file(rootfs):
    calls = []
    inv = take_inventory(rootfs, progress=lambda done, total: calls.append((done, total)))
    total = inv.files_scanned
    assert calls == [(i, total) for i in range(1, total + 1)]
    # regular files with distinct inodes: the hard link counts once
    regular = {(p.lstat().st_dev, p.lstat().st_ino) for p in rootfs.rglob("*")
               if p.is_file() and not p.is_symlink()}
    assert total == len(regular)


def test_busybox_deb_root(busybox_deb_root, busybox_bin):
    inv = take_inventory(busybox_deb_root)
    assert [r.path for r in inv.elves] == ["/bin/busybox"]
    assert inv.elves[0].blake3 == blake3.blake3(busybox_bin.read_bytes()).hexdigest()
    assert inv.skipped == ()


def test_root_must_be_a_directory(tmp_path, busybox_bin):
    with pytest.raises(InventoryError, match="No such file"):
        take_inventory(tmp_path / "missing")
    with pytest.raises(InventoryError, match="not a directory"):
        take_inventory(busybox_bin)


def test_errors_of_a_single_file_are_kiln_errors(tmp_path):
    (tmp_path / "text").write_text("hello")
    with pytest.raises(ElfError, match="no ELF magic"):
        inspect_elf(tmp_path / "text")
    with pytest.raises(InventoryError, match="cannot open"):
        inspect_elf(tmp_path / "missing")


def test_big_trees_and_big_non_elf_files_are_fast(tmp_path, built):
    root = tmp_path / "big"
    for i in range(50):
        d = root / f"d{i}"
        d.mkdir(parents=True)
        for j in range(80):                       # 4000 small non-ELF files
            (d / f"f{j}").write_bytes(b"#!/bin/sh\n")
    with open(root / "huge.img", "wb") as f:      # 64 GiB sparse non-ELF: never read whole
        f.truncate(64 << 30)
    for i in range(20):
        shutil.copy2(built["dynamic_pie"], root / f"d{i}/prog")
        (root / f"d{i}/prog").write_bytes((root / f"d{i}/prog").read_bytes() + bytes([i]))
    start = time.monotonic()
    inv = take_inventory(root)
    elapsed = time.monotonic() - start
    assert len(inv.elves) == 20
    assert inv.files_scanned == 4000 + 1 + 20
    assert elapsed < 10, f"inventory of 4021 files took {elapsed:.1f} s"
