"""Real Debian shared objects and dynamically linked programs lift whole: ld.so, libc, libm, libz, libcrypto, a CPython extension module, dash.

Each is this machine's own file (Debian packages libc6, zlib1g, libssl3,
libpython3.11-stdlib, dash), lifted position-independently once per session,
plus a non-PIE dynamically linked program gcc builds here (lifted at its link
addresses). For each:

* ``lift_elf`` completes, with no function lost to a lifter error;
* every trap site is an instruction of an extension the virtual CPU does not
  advertise (``formats.abi.cpuid``: AVX, SSSE3, SSE4, BMI, RTM, ...; glibc's
  IFUNC resolvers never select those paths under it), or one of the x87
  transcendentals, which are trap sites by design (tests/test_x87.py);
  the extension an instruction needs comes from its encoding (VEX: AVX, EVEX:
  AVX-512), Capstone's instruction groups and, where Capstone has none, the
  CPUID bit the Intel SDM names for it;
* every defined FUNC and IFUNC symbol of .dynsym (as ``readelf --dyn-syms``
  lists them) and every PLT stub (from ``readelf -S``'s .plt, .plt.sec and
  .plt.got) is a dispatch entry of the unit.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import blake3
import capstone
import pytest

from examples.debs import cache_dir
from formats.abi import cpuid
from liftrun import _FINGERPRINT
from recompiler.lift_api import LiftedUnit, lift_elf

LIB = Path("/usr/lib/x86_64-linux-gnu")
LIBRARIES = {
    "ld.so": LIB / "ld-linux-x86-64.so.2",
    "libc": LIB / "libc.so.6",
    "libm": LIB / "libm.so.6",
    "libz": LIB / "libz.so.1",
    "libcrypto": LIB / "libcrypto.so.3",
    "_json": Path("/usr/lib/python3.11/lib-dynload/_json.cpython-311-x86_64-linux-gnu.so"),
    "dash": Path("/usr/bin/dash"),
}

_ECX1, _EDX1, _EBX7, _ECX7, _ECX81 = (1, 0, 2), (1, 0, 3), (7, 0, 1), (7, 0, 2), (0x8000_0001, 0, 2)
FEATURE_BITS: dict[str, tuple[tuple[int, int, int], int]] = {
    # CPUID (leaf, subleaf, register index eax=0 ebx=1 ecx=2 edx=3), bit: Intel SDM vol. 2A, CPUID
    "sse1": (_EDX1, 25), "sse2": (_EDX1, 26), "mmx": (_EDX1, 23), "fpu": (_EDX1, 0), "cmov": (_EDX1, 15),
    "sse3": (_ECX1, 0), "pclmul": (_ECX1, 1), "ssse3": (_ECX1, 9), "fma": (_ECX1, 12), "cx16": (_ECX1, 13),
    "sse41": (_ECX1, 19), "sse42": (_ECX1, 20), "movbe": (_ECX1, 22), "popcnt": (_ECX1, 23), "aes": (_ECX1, 25),
    "xsave": (_ECX1, 26), "avx": (_ECX1, 28), "f16c": (_ECX1, 29), "rdrand": (_ECX1, 30),
    "bmi": (_EBX7, 3), "hle": (_EBX7, 4), "avx2": (_EBX7, 5), "bmi2": (_EBX7, 8), "rtm": (_EBX7, 11),
    "avx512": (_EBX7, 16), "dqi": (_EBX7, 17), "rdseed": (_EBX7, 18), "adx": (_EBX7, 19), "cdi": (_EBX7, 28),
    "sha": (_EBX7, 29), "bwi": (_EBX7, 30), "vlx": (_EBX7, 31), "pku": (_ECX7, 3), "cet_ss": (_ECX7, 7),
    "lzcnt": (_ECX81, 5),
}
"""The CPUID bit that says a CPU has each extension (Capstone's group names, plus a few)."""
NEEDS: dict[str, str] = {
    # instructions Capstone gives no extension group, and the CPUID feature the SDM says they need
    "palignr": "ssse3", "movbe": "movbe", "rdpkru": "pku", "wrpkru": "pku", "xtest": "rtm",
    "xgetbv": "xsave", "xsave": "xsave", "xsavec": "xsave", "xsaveopt": "xsave", "xrstor": "xsave",
    "xsave64": "xsave", "xrstor64": "xsave", "xsavec64": "xsave", "rdrand": "rdrand", "rdseed": "rdseed",
    "rdsspq": "cet_ss", "rdsspd": "cet_ss", "incsspq": "cet_ss", "incsspd": "cet_ss", "lzcnt": "lzcnt",
    "cmpxchg16b": "cx16", "popcnt": "popcnt",
}
BY_DESIGN = {"fsin", "fcos", "fsincos", "fptan", "fpatan", "f2xm1", "fyl2x", "fyl2xp1"}
"""x87 transcendentals: trap sites rather than approximations (recompiler/x86_64/sem/x87.py)."""


def advertised(feature: str) -> bool:
    (leaf, sub, reg), bit = FEATURE_BITS[feature]
    return bool(cpuid(leaf, sub)[reg] >> bit & 1)


@pytest.fixture(scope="session")
def units() -> dict[str, LiftedUnit]:
    """Each library lifted once (cached on disk by content and lifter, as the recompiler caches)."""
    out: dict[str, LiftedUnit] = {}
    d = cache_dir() / "lifttest"
    d.mkdir(parents=True, exist_ok=True)
    for name, path in LIBRARIES.items():
        if not path.is_file():
            continue
        cached = d / f"{blake3.blake3(path.read_bytes()).hexdigest()[:32]}-{_FINGERPRINT}.so.unit"
        if cached.is_file():
            out[name] = LiftedUnit.from_bytes(cached.read_bytes())
            continue
        unit = lift_elf(path, name=str(path), jobs=min(2, os.cpu_count() or 1))
        cached.write_bytes(unit.to_bytes())
        out[name] = unit
    return out


def _params() -> list:
    return [pytest.param(name, marks=[] if path.is_file() else [pytest.mark.skip(reason=f"{path} is not here")])
            for name, path in LIBRARIES.items()]


def test_the_core_libraries_are_here() -> None:
    for name in ("ld.so", "libc", "libm", "libz"):
        assert LIBRARIES[name].is_file(), LIBRARIES[name]


@pytest.mark.parametrize("name", _params())
def test_lifts_whole_and_position_independently(units: dict[str, LiftedUnit], name: str) -> None:
    unit = units[name]
    assert unit.position_independent and unit.bias == 0
    assert unit.stats["internal_errors"] == []
    assert unit.stats["functions"] > 50 and unit.stats["instructions"] > 5000


@pytest.mark.parametrize("name", _params())
def test_trap_sites_are_only_instructions_the_cpu_does_not_advertise(units: dict[str, LiftedUnit], name: str) -> None:
    _check_trap_sites(LIBRARIES[name], units[name])


@pytest.mark.parametrize("name", _params())
def test_every_exported_function_and_plt_stub_is_a_dispatch_entry(units: dict[str, LiftedUnit], name: str) -> None:
    _check_entries(LIBRARIES[name], units[name])


NON_PIE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int twice(int x) { return 2 * x; }
int main(int argc, char **argv) { printf("%d %zu\n", twice(atoi(argc > 1 ? argv[1] : "21")), strlen(argv[0])); return 0; }
"""


def test_non_pie_dynamic_program(tmp_path: Path) -> None:
    """A dynamically linked ET_EXEC program keeps its link addresses; its PLT stubs are entries."""
    src = tmp_path / "np.c"
    src.write_text(NON_PIE)
    exe = tmp_path / "np"
    subprocess.run(["gcc", "-O2", "-no-pie", "-rdynamic", "-o", str(exe), str(src)], check=True, capture_output=True)
    unit = lift_elf(exe, name="/usr/bin/np")
    assert not unit.position_independent and unit.bias == 0
    assert unit.stats["internal_errors"] == []
    _check_trap_sites(exe, unit)
    _check_entries(exe, unit)


def _check_trap_sites(path: Path, unit: LiftedUnit) -> None:
    data = path.read_bytes()
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    offsets = _file_offsets(path)
    wrong = []
    for addr, mnemonic, reason in unit.trap_sites:
        if mnemonic in BY_DESIGN:
            continue
        off = offsets(addr)
        insn = next(md.disasm(data[off:off + 15], addr, 1), None) if off is not None else None
        if insn is None:
            wrong.append((hex(addr), mnemonic, reason))
            continue
        features = {insn.group_name(g) for g in insn.groups} & set(FEATURE_BITS)
        if mnemonic in NEEDS:
            features.add(NEEDS[mnemonic])
        encoded = _vex_or_evex(bytes(insn.bytes))
        if encoded:
            features.add(encoded)
        if not features or all(advertised(f) for f in features):
            wrong.append((hex(addr), mnemonic, sorted(features), reason))
    assert wrong == [], f"{path}: trap sites at instructions the virtual CPU advertises: {wrong[:10]}"


def _check_entries(path: Path, unit: LiftedUnit) -> None:
    entries = {a for a, _, _ in unit.entries}
    syms = subprocess.run(["readelf", "--dyn-syms", "-W", str(path)], capture_output=True, text=True, check=True)
    funcs = set()
    for line in syms.stdout.splitlines():
        f = line.split()
        if len(f) >= 8 and f[3] in ("FUNC", "IFUNC") and f[6] != "UND" and int(f[1], 16):
            funcs.add(int(f[1], 16))
    assert funcs or path.name == "dash", f"{path}: readelf lists no defined function"   # a PIE exports none
    secs = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True, check=True)
    stubs = set()
    for m in re.finditer(r"\]\s+(\.plt(?:\.sec|\.got)?)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)",
                         secs.stdout):
        addr, size, ent = int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16) or 16
        stubs.update(range(addr, addr + size, ent))
    assert stubs, path
    missing = sorted(funcs - entries)
    assert missing == [], f"{path}: {len(missing)} exported functions are no dispatch entry: {list(map(hex, missing[:8]))}"
    missing = sorted(stubs - entries)
    assert missing == [], f"{path}: {len(missing)} PLT stubs are no dispatch entry: {list(map(hex, missing[:8]))}"


def _vex_or_evex(code: bytes) -> str | None:
    """"avx" for a VEX-encoded instruction, "avx512" for an EVEX one (in 64-bit mode C4/C5 and 62
    after the segment and address-size prefixes can only be those encodings), else None."""
    i = 0
    while i < len(code) and code[i] in (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x67):
        i += 1
    if i < len(code) and code[i] in (0xC4, 0xC5):
        return "avx"
    if i < len(code) and code[i] == 0x62:
        return "avx512"
    return None


def _file_offsets(path: Path):
    """Link-time address -> file offset, from ``readelf -l``'s LOAD segments."""
    out = subprocess.run(["readelf", "-l", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    loads = [(int(m.group(2), 16), int(m.group(1), 16), int(m.group(3), 16))
             for m in re.finditer(r"LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)", out)]

    def off(addr: int) -> int | None:
        for vaddr, offset, filesz in loads:
            if vaddr <= addr < vaddr + filesz:
                return offset + addr - vaddr
        return None
    return off
