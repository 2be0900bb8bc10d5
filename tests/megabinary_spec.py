"""An independent megabinary reader and a minimal runtime, written from docs/formats.md alone.

Nothing here imports Kiln's reader, writer or index code: the reader uses struct,
blake3, cbor2 and the numbers the document gives; the runtime places the core and
unit modules exactly as §3.3 and §7 describe (through their generated tables,
``formats.abi``) and serves the handful of syscalls a static musl program makes
before it exits. tests/test_megabinary.py checks both against the real writer
and reader: they must accept the same good files and refuse the same bad ones.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import cbor2
import lief
import wasmtime

from formats import abi


class Reject(Exception):
    """The file breaks a rule of docs/formats.md; the message names the rule."""


def need(ok: object, rule: str) -> None:
    if not ok:
        raise Reject(rule)


# §4: engine "/" version "/" target "/" [ setting *( "," setting ) ]
_ENGINE = re.compile(r"[a-z][a-z0-9_]*")
_VERSION = re.compile(r"[0-9A-Za-z._+-]+")
_TARGET = re.compile(r"[0-9A-Za-z._-]+")
_KEY = re.compile(r"[a-z][a-z0-9_]*")
_VALUE = re.compile(r"[0-9A-Za-z._+-]+")
_HEX_NAME = re.compile(r"[0-9a-f]{64}")


def is_fingerprint(text: str) -> bool:
    """§4: the canonical form, settings sorted by key, each key once, at most 1024 bytes."""
    parts = text.split("/")
    if len(parts) != 4 or len(text.encode()) > 1024:
        return False
    engine, version, target, settings = parts
    if not (_ENGINE.fullmatch(engine) and _VERSION.fullmatch(version)
            and _TARGET.fullmatch(target)):
        return False
    keys = []
    for item in settings.split(",") if settings else []:
        key, eq, value = item.partition("=")
        if not (eq and _KEY.fullmatch(key) and _VALUE.fullmatch(value)):
            return False
        keys.append(key.encode())
    return all(a < b for a, b in zip(keys, keys[1:]))


def _canonical_cbor(payload: bytes, what: str) -> object:
    """§2: one item, canonical (re-encoding gives the same bytes), nothing after it."""
    try:
        obj = cbor2.loads(payload)
    except Exception as exc:
        raise Reject(f"§2: {what} is not CBOR ({exc})") from None
    need(cbor2.dumps(obj, canonical=True) == payload, f"§2: {what} is not canonical CBOR")
    return obj


@dataclass
class SpecFile:
    version: tuple[int, int]
    digest: str
    index: dict
    meta: dict
    modules: dict[str, bytes]
    aot: dict[str, bytes]                                # "MODULE:FINGERPRINT" -> artifact
    order: list[tuple[int, str]] = field(default_factory=list)    # (kind, name) in table order


def spec_reader(data: bytes) -> SpecFile:
    """Read and check a whole megabinary as docs/formats.md §1, §2, §3 and §5 say."""
    need(len(data) >= 8 and data[:8] == bytes.fromhex("4B494C4E4D420D0A"), "§1.2 rule 1: magic")
    need(len(data) >= 12, "§1.2 rule 2: truncated before the version")
    major, minor = struct.unpack_from("<HH", data, 8)
    need(major == 2, f"§1.2 rule 2: major version {major}")
    need(len(data) >= 72, "§1.2: truncated header")
    (_, _, _, header_size, flags, count, names_size, reserved, file_size,
     checksum) = struct.unpack_from("<8sHHIIIIIQ32s", data, 0)
    need(header_size >= 72, "§1.2 rule 3: header_size")
    region_end = header_size + 64 * count + names_size
    need(region_end <= len(data), "§1.2 rule 4: metadata region past the end")
    region = bytearray(data[:region_end])
    region[40:72] = bytes(32)
    need(blake3.blake3(bytes(region)).digest() == checksum, "§1.2 rule 5: checksum")
    need(flags == 0 and reserved == 0, "§1.2 rule 6: flags and reserved")
    need(file_size == len(data), "§1.2 rule 7: file_size")
    names = data[header_size + 64 * count:region_end]
    table = []
    prev_end = region_end
    for n in range(count):
        kind, sflags, offset, length, name_offset, name_length, digest = struct.unpack_from(
            "<IIQQII32s", data, header_size + 64 * n)
        need(sflags == 0, "§1.2 rule 6: section flags")
        need(offset % 4096 == 0, "§1.3 rule 1: alignment")
        need(offset >= prev_end, "§1.3 rule 2: overlap")
        need(offset + length <= file_size, "§1.3 rule 3: past the end")
        need(name_length <= 1024 and name_offset + name_length <= names_size,
             "§1.3 rule 4: name outside the name area")
        try:
            name = names[name_offset:name_offset + name_length].decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("§1.3 rule 4: name not UTF-8") from None
        need(not any(data[prev_end:offset]), "§1.1: padding is zero")
        contents = data[offset:offset + length]
        need(blake3.blake3(contents).digest() == digest, "§1.3: contents hash")
        table.append((kind, name, contents))
        prev_end = offset + length
    if table:
        need(prev_end == file_size, "§1.3: the last section ends the file")
    singles: dict[int, bytes] = {}
    modules: dict[str, bytes] = {}
    aot: dict[str, bytes] = {}
    last_kind = 0
    order = []
    for kind, name, contents in table:
        if kind not in (1, 2, 3, 4):
            continue
        order.append((kind, name))
        need(kind >= last_kind, "§1.3 rule 5: kind order")
        last_kind = kind
        if kind in (1, 2):
            need(name == "" and kind not in singles, "§1.3 rule 6: one unnamed INDEX and META")
            singles[kind] = contents
        elif kind == 3:
            need(name == "core" or _HEX_NAME.fullmatch(name), "§1.3 rule 7: MODULE name")
            need(name not in modules, "§1.3 rule 7: MODULE names unique")
            modules[name] = contents
        else:
            module, colon, fingerprint = name.partition(":")
            need(colon and module in modules, "§1.3 rule 8: AOT of a MODULE listed before it")
            need(is_fingerprint(fingerprint), "§1.3 rule 8: canonical fingerprint")
            need(name not in aot, "§1.3 rule 8: AOT names unique")
            aot[name] = contents
    need(1 in singles and 2 in singles and "core" in modules, "§1.3 rule 9: INDEX, META, core")
    index = _canonical_cbor(singles[1], "INDEX")
    meta = _canonical_cbor(singles[2], "META")
    need(isinstance(index, dict) and isinstance(index.get("units"), list), "§3.1: index map")
    units = set()
    for u in index["units"]:
        need(isinstance(u, dict) and isinstance(u.get("blake3"), bytes), "§3.1: unit blake3")
        units.add(u["blake3"].hex())
    need(units <= set(modules), "§1.3 rule 10: a MODULE for every unit")
    need(set(modules) - {"core"} <= units, "§1.3 rule 11: every MODULE but core is a unit")
    return SpecFile((major, minor), "blake3:" + checksum.hex(), index, meta, modules, aot, order)


# ---------------------------------------------------------------------------
# A runtime written from §3.3 (placing units) and §7 (dispatch data, syscall frame)
# ---------------------------------------------------------------------------

class GuestExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class GuestFault(Exception):
    def __init__(self, code: int, rip: int) -> None:
        super().__init__(f"fault {code} at {rip:#x}")
        self.code = code
        self.rip = rip


_ARCH_SET_FS, _ENOTTY = 0x1002, 25


class SpecProcess:
    """One guest process: the core instance, then units placed one by one (§3.3)."""

    def __init__(self, engine: wasmtime.Engine, core_artifact: bytes) -> None:
        self.store = store = wasmtime.Store(engine)
        self.engine = engine
        self.stdout = bytearray()
        i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
        self.host = [wasmtime.Func(store, wasmtime.FuncType([], []), self._syscall),
                     wasmtime.Func(store, wasmtime.FuncType([i32], []), self._fault),
                     wasmtime.Func(store, wasmtime.FuncType([], [i64]), lambda: 0)]
        # the guest memory is the process's, shared by its threads' stores (ABI 4)
        from vkernel.instances import GuestMemory
        self.guest = GuestMemory(engine)
        core = wasmtime.Instance(store, wasmtime.Module.deserialize(engine, core_artifact),
                                 [*self.host, self.guest.shared])
        ex = core.exports(store)
        self.ctl, self.table = ex[abi.CONTROL_MEMORY], ex[abi.TABLE]
        self.depth, self.grow_table, self.kiln_run = ex[abi.DEPTH], ex[abi.GROW_TABLE], ex[abi.EXPORT_RUN]
        self._reserve(abi.ENTRIES_AREA)
        self.ctl.write(store, struct.pack("<I", 0), abi.UNIT_COUNT)
        self.next_entries = abi.ENTRIES_AREA
        self.rows = 0
        self.regions: list[tuple[int, int, int, int]] = []

    def _reserve(self, end: int) -> None:
        have = self.ctl.data_len(self.store)
        if end > have:
            self.ctl.grow(self.store, (end - have + abi.WASM_PAGE - 1) // abi.WASM_PAGE)

    def place(self, artifact: bytes, functions: int, entries: int,
              bias: int = 0) -> tuple[int, int, int]:
        """§3.3 steps 1-4 for one unit instance; its (table_base, entries_at, row)."""
        store = self.store
        table_base = self.grow_table(store, functions)
        entries_at = self.next_entries
        self._reserve(entries_at + abi.DISPATCH_ENTRY_SIZE * entries)
        i32 = wasmtime.GlobalType(wasmtime.ValType.i32(), False)
        i64 = wasmtime.GlobalType(wasmtime.ValType.i64(), False)
        wasmtime.Instance(store, wasmtime.Module.deserialize(self.engine, artifact),
                          [*self.host, self.guest.shared, self.ctl, self.table, self.depth,
                           wasmtime.Global(store, i32, wasmtime.Val.i32(table_base)),
                           wasmtime.Global(store, i32, wasmtime.Val.i32(entries_at)),
                           wasmtime.Global(store, i64, wasmtime.Val.i64(bias))])
        row = self.rows
        self.ctl.write(store, struct.pack("<4I", entries_at, entries, table_base, 0),
                       abi.DIRECTORY + abi.DIRECTORY_ENTRY_SIZE * row)
        self.rows += 1
        self.ctl.write(store, struct.pack("<I", self.rows), abi.UNIT_COUNT)
        self.next_entries = (entries_at + abi.DISPATCH_ENTRY_SIZE * entries + 15) & ~15
        return table_base, entries_at, row

    def map_exec(self, elf_path: Path, row: int) -> int:
        """Load an ET_EXEC's segments at their link addresses and add its code region for the
        instance in directory row ``row`` (§3.3 step 5, bias 0); its entry point."""
        elf = lief.parse(str(elf_path))
        loads = [s for s in elf.segments if s.type == lief.ELF.Segment.TYPE.LOAD]
        for s in loads:
            self.guest.write(self.store, bytes(s.content), s.virtual_address)
        start = min(s.virtual_address for s in loads) & ~(abi.GUEST_PAGE - 1)
        end = max(s.virtual_address + s.virtual_size for s in loads
                  if s.has(lief.ELF.Segment.FLAGS.X))
        self.regions.append((start, end, row, 0))
        rows = b"".join(struct.pack("<4I", *r) for r in self.regions)
        generation = struct.unpack("<I", self.ctl.read(self.store, abi.CODE_REGIONS_GENERATION,
                                                      abi.CODE_REGIONS_GENERATION + 4))[0]
        # a count, the generation, then the rows from CODE_REGIONS + 16 (§7)
        self.ctl.write(self.store, struct.pack("<II8x", len(self.regions), generation + 1) + rows,
                       abi.CODE_REGIONS)
        return elf.entrypoint

    def _state(self, name: str, value: int, fmt: str = "<Q") -> None:
        self.ctl.write(self.store, struct.pack(fmt, value),
                       abi.CPU_STATE + abi.CPU_STATE_OFFSETS[name])

    def run(self, rip: int, argv: list[bytes]) -> int:
        """Start at ``rip`` with a System V initial stack (argv, no environment, AT_PAGESZ,
        AT_RANDOM); the exit status. GuestFault when lifted code faults."""
        sp = abi.STACK_TOP - 0x4000
        strings, at = b"", sp + 0x1000
        pointers = []
        for arg in argv:
            pointers.append(at + len(strings))
            strings += arg + b"\0"
        random_at = at + len(strings)
        strings += bytes(range(16))
        words = [len(argv), *pointers, 0, 0, 6, abi.GUEST_PAGE, 25, random_at, 0, 0]
        self.guest.write(self.store, strings, at)
        self.guest.write(self.store, struct.pack(f"<{len(words)}Q", *words), sp)
        self._state("rsp", sp)
        self._state("rip", rip)
        self._state("mxcsr", 0x1F80, "<I")
        self._state("fpu_cw", 0x37F, "<H")
        try:
            self.kiln_run(self.store)
        except GuestExit as done:
            return done.status
        raise AssertionError("kiln_run returned")

    def _syscall(self) -> None:
        frame = abi.SYSCALL_FRAME
        nr, a1, a2, a3 = struct.unpack("<4Q", self.ctl.read(self.store, frame, frame + 32))
        if nr == 158 and a1 == _ARCH_SET_FS:                 # arch_prctl
            self._state("fs_base", a2)
            result = 0
        elif nr == 218:                                      # set_tid_address
            result = 1
        elif nr == 16:                                       # ioctl: not a terminal
            result = -_ENOTTY
        elif nr in (1, 20) and a1 == 1:                      # write, writev to stdout
            iov = [(a2, a3)] if nr == 1 else [
                struct.unpack("<QQ", self.guest.read(self.store, a2 + 16 * i, a2 + 16 * i + 16))
                for i in range(a3)]
            result = 0
            for base, length in iov:
                self.stdout += self.guest.read(self.store, base, base + length)
                result += length
        elif nr in (60, 231):                                # exit, exit_group
            raise GuestExit(a1 & 0xFF)
        else:
            raise AssertionError(f"syscall {nr} is not served by this test runtime")
        self.ctl.write(self.store, struct.pack("<q", result), frame)

    def _fault(self, code: int) -> None:
        at = abi.FAULT_RECORD + abi.FAULT_RECORD_OFFSETS["rip"]
        raise GuestFault(code, struct.unpack("<Q", self.ctl.read(self.store, at, at + 8))[0])
