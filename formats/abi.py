"""The guest machine contract: memories, CPU-state layout, syscall frame, CPU identity.

This is the one declared table both sides use. The recompiler emits
WebAssembly that reads and writes these offsets; vkernel creates the
memories, fills the state before entry and serves the syscall frame.
Change a number here and both sides follow; bump ``ABI_VERSION`` when a
change is not backward compatible (the megabinary records it).

Modules (ABI 4): the megabinary holds one small *core* module and one *unit*
module per recompiled ELF. Each guest *thread* has its own Wasmtime store; in
it vkernel instantiates the core first, then a unit whenever its ELF is mapped
executable (the program, its interpreter, every library ld.so maps, dlopen):

* the core imports the guest memory (one WebAssembly *shared* memory per guest
  process, which vkernel creates and every thread's store imports: ABI 4),
  defines and exports the control memory (one per thread), the dispatch table
  (:data:`TABLE`, funcref of the guest-function type, grown by vkernel) and
  the shared call-depth counter (:data:`DEPTH`), and exports ``kiln_run``;
* a unit imports all of them, plus three immutable globals vkernel gives it
  at instantiation: :data:`TABLE_BASE` (its first slot in the dispatch table,
  where its element segment puts its functions), :data:`ENTRIES_AT` (where
  in the control memory its data segment puts its sorted dispatch entries)
  and :data:`BIAS` (where the ELF was mapped: the translation of a PIE or
  shared object is position-independent). vkernel then writes the instance's
  row of the directory (:data:`DIRECTORY`). The same ELF mapped at two
  addresses in one process is two instances, two rows.

Memories:

* memory 0, ``"guest"``: the guest's 32-bit address space, 65536 pages
  (4 GiB) reserved up front, declared ``shared`` (minimum = maximum) in every
  module so that all threads of a guest process run over the same bytes
  (``Config.wasm_threads``). Locked x86 instructions are WebAssembly atomics
  on it; plain loads and stores are plain accesses (docs/architecture.md,
  "Memory ordering"). Guest address ``a`` is byte ``a & 0xffffffff``
  of this memory. vkernel chooses every mapping inside it.
* memory 1, ``"ctl"``: the control memory. Lifted code reaches it only
  through code the recompiler emits (state, frame, dispatch), never through
  a guest load or store, so a guest cannot forge dispatch entries. It grows
  (vkernel grows it) as units are instantiated; it never moves.

Imports of every module (``"kiln"``), all cheap because they take no or one
parameter:

* ``syscall: [] -> []``: the lifted ``syscall`` stores rax, rdi, rsi, rdx,
  r10, r8, r9 into :data:`SYSCALL_FRAME` and calls this; vkernel writes the
  result to the frame's ``rax`` slot and may set ``resume``.
* ``fault: [i32] -> []``: the guest hit something that has no translation or
  an unsupported instruction; details are in :data:`FAULT_RECORD`. Never
  returns normally (vkernel raises).
* ``rdtsc: [] -> [i64]``: time-stamp counter.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

ABI_VERSION = 4

IMPORT_MODULE = "kiln"
GUEST_MEMORY = "guest"      # memory 0
CONTROL_MEMORY = "ctl"      # memory 1
IMPORT_SYSCALL = "syscall"
IMPORT_FAULT = "fault"
IMPORT_RDTSC = "rdtsc"
TABLE = "table"             # the dispatch table: (ref null (func (param i32))), core's, grows
DEPTH = "depth"             # (mut i32): nested direct guest calls (MAX_CALL_DEPTH), core's
TABLE_BASE = "table_base"   # i32: a unit's first dispatch-table slot (given by vkernel)
ENTRIES_AT = "entries_at"   # i32: where a unit's dispatch entries go in the control memory
GROW_TABLE = "grow_table"   # core export [i32 n] -> [i32 old size]: add n null slots to TABLE
BIAS = "bias"               # i64: the unit's load bias (runtime minus link-time address); the
                            # code of a position-independent ELF adds it to every address
CORE_MODULE = "core"
"""The name of the core module (MODULE and AOT sections of the megabinary)."""

WASM_PAGE = 65536
GUEST_MEMORY_PAGES = 65536          # 4 GiB, min == max: reserved, never grows
GUEST_PAGE = 4096                   # the guest's page size (AT_PAGESZ)


# ---------------------------------------------------------------------------
# Guest memory map (memory 0). vkernel places everything; these are its rules.
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class GuestRegion:
    """A range of the guest address space with a declared purpose."""
    name: str
    start: int
    end: int          # exclusive
    purpose: str


GUEST_MEMORY_MAP: tuple[GuestRegion, ...] = (
    GuestRegion("null-guard", 0x0000_0000, 0x0001_0000,
                "never mapped: null pointer accesses land here"),
    GuestRegion("exec", 0x0040_0000, 0x4000_0000,
                "non-PIE executables at their link address; static-pie at PIE_LOAD_BASE"),
    GuestRegion("mmap", 0x4000_0000, 0xF000_0000,
                "mmap, shared objects, brk grows upward from the end of the executable"),
    GuestRegion("stack", 0xF000_0000, 0xFFFF_0000,
                "main thread stack, growing down from STACK_TOP"),
    GuestRegion("top-guard", 0xFFFF_0000, 0x1_0000_0000,
                "never mapped"),
)

PIE_LOAD_BASE = 0x1000_0000
"""Where vkernel loads a static-pie (ET_DYN) executable."""
MMAP_BASE = 0x4000_0000
MMAP_END = 0xF000_0000
STACK_TOP = 0xFFFF_0000
STACK_SIZE_DEFAULT = 8 * 1024 * 1024


# ---------------------------------------------------------------------------
# CPU state (memory 1, at CPU_STATE). One table, generated offsets.
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StateField:
    """One field of the CPU state record in the control memory."""
    name: str
    offset: int
    size: int
    doc: str


GPR_NAMES: tuple[str, ...] = (
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
)
"""General registers in x86 encoding order (ModRM/REX number = index)."""

SUBREGISTERS: dict[str, tuple[tuple[str, int, int], ...]] = {}
"""For each 64-bit register: (name, byte offset, size) of its sub-registers."""
_legacy8 = {"rax": "al", "rcx": "cl", "rdx": "dl", "rbx": "bl"}
_legacy16 = {"rax": "ax", "rcx": "cx", "rdx": "dx", "rbx": "bx",
             "rsp": "sp", "rbp": "bp", "rsi": "si", "rdi": "di"}
_low8 = {"rsp": "spl", "rbp": "bpl", "rsi": "sil", "rdi": "dil"}
for _r in GPR_NAMES:
    if _r.startswith("r") and _r[1:].isdigit():
        SUBREGISTERS[_r] = ((_r + "d", 0, 4), (_r + "w", 0, 2), (_r + "b", 0, 1))
    else:
        _subs = [("e" + _r[1:], 0, 4), (_legacy16[_r], 0, 2)]
        if _r in _legacy8:
            _subs.append((_legacy8[_r], 0, 1))
            _subs.append((_legacy8[_r][0] + "h", 1, 1))
        else:
            _subs.append((_low8[_r], 0, 1))
        SUBREGISTERS[_r] = tuple(_subs)


def _build_state() -> tuple[StateField, ...]:
    fields: list[StateField] = []
    off = 0

    def add(name: str, size: int, doc: str, align: int | None = None) -> None:
        nonlocal off
        a = align or size
        off = (off + a - 1) // a * a
        fields.append(StateField(name, off, size, doc))
        off += size

    for r in GPR_NAMES:
        add(r, 8, f"general register {r}")
    add("rip", 8, "address of the next guest instruction when not in lifted code")
    add("rflags", 8, "materialised flags (CF PF AF ZF SF DF OF); valid at exits")
    add("fs_base", 8, "FS segment base (TLS), set by arch_prctl")
    add("gs_base", 8, "GS segment base")
    add("mxcsr", 4, "SSE control/status")
    add("fpu_cw", 2, "x87 control word")
    add("fpu_sw", 2, "x87 status word (TOP in bits 11-13)")
    add("fpu_tag", 2, "x87 abridged tag word (bit i set: st(i) physical slot valid)")
    add("fpu_top", 2, "x87 stack top, 0..7")
    add("_pad0", 4, "reserved")
    for i in range(16):
        add(f"xmm{i}", 16, f"SSE register xmm{i}", align=16)
    for i in range(8):
        add(f"st{i}", 16, f"x87 physical register {i}: 80-bit value in the low 10 bytes", align=16)
    return tuple(fields)


CPU_STATE_FIELDS: tuple[StateField, ...] = _build_state()
CPU_STATE_OFFSETS: dict[str, int] = {f.name: f.offset for f in CPU_STATE_FIELDS}
CPU_STATE_SIZE: int = (CPU_STATE_FIELDS[-1].offset + CPU_STATE_FIELDS[-1].size + 63) // 64 * 64

# Control memory (memory 1) layout.
CPU_STATE = 0x0000
"""Offset of the CPU state record in the control memory."""
SYSCALL_FRAME = 0x0800
"""Offset of the syscall frame in the control memory."""
FAULT_RECORD = 0x0900
"""Offset of the fault record in the control memory."""
INTERRUPT_FLAG = 0x0A00
"""u32 in the control memory. vkernel sets it non-zero (from any thread) when a
signal is pending for a guest that may be running without making syscalls.
Lifted code reads it at the top of every loop header, before every jump
through a function's ``$hub`` (large jump tables, long back edges) and before
every jump out of a function, so every cycle of guest code passes a read; when
non-zero it stores every cached register into the CPU state with rip = where
it stopped (the loop header or the jump's target, each a dispatch entry) and
calls ``fault(INTERRUPT)``. vkernel clears the flag, delivers the signal and
re-enters ``kiln_run`` at the CPU state's rip."""
CODE_REGIONS = 0x1000
"""Offset of the mapped-code region table (see :data:`CODE_REGION_FIELDS`)."""
CODE_REGION_MAX = 256
CODE_REGIONS_GENERATION = CODE_REGIONS + 4
"""u32 in the control memory: vkernel adds one each time it rewrites the region table. Lifted
code keys its cache of dispatch lookups on it, so a lookup made before the table changed is never
used after (vkernel refuses a change that would wrap it)."""
CONTROL_DYNAMIC = 0x4000
"""From here on the control memory holds the dispatch data (cache, directory, entries)."""
CONTROL_MEMORY_MIN_PAGES = 1

LOOKUP_CACHE = CONTROL_DYNAMIC
"""A direct-mapped cache of dispatch lookups (runtime address -> table slot, block), at a fixed
offset so each indirect call or jump site can test it inline before it calls its lookup."""
LOOKUP_CACHE_ENTRIES = 4096
LOOKUP_CACHE_ENTRY = 16
"""Cache entry: runtime address u32, table slot u32, block u32, and the code-region table's
generation (:data:`CODE_REGIONS_GENERATION`) when it was filled: a hit is used only while the
table is unchanged since, so vkernel remapping code never runs a stale translation."""
UNIT_COUNT = LOOKUP_CACHE + LOOKUP_CACHE_ENTRIES * LOOKUP_CACHE_ENTRY
"""u32: rows in use in the directory (instances in this store); vkernel writes it."""
DIRECTORY = UNIT_COUNT + 16
"""One row per unit instance of this store (see :data:`DIRECTORY_FIELDS`), at most
:data:`DIRECTORY_ROWS`; the code-region table's ``unit`` field is a row number."""
DIRECTORY_ROWS = 4096
DIRECTORY_ENTRY_SIZE = 16
DISPATCH_ENTRY_SIZE = 12
"""A unit's dispatch entry: link-time address u32, function number in the unit u32, block u32;
sorted by address."""


@dataclass(frozen=True)
class FrameField:
    name: str
    offset: int      # relative to SYSCALL_FRAME
    size: int
    doc: str


SYSCALL_FRAME_FIELDS: tuple[FrameField, ...] = (
    FrameField("rax", 0x00, 8, "in: syscall number; out: result (negative errno on error)"),
    FrameField("rdi", 0x08, 8, "argument 1"),
    FrameField("rsi", 0x10, 8, "argument 2"),
    FrameField("rdx", 0x18, 8, "argument 3"),
    FrameField("r10", 0x20, 8, "argument 4"),
    FrameField("r8", 0x28, 8, "argument 5"),
    FrameField("r9", 0x30, 8, "argument 6"),
    FrameField("rip", 0x38, 8, "in: address of the instruction after `syscall`"),
    FrameField("resume", 0x40, 4,
               "out: 0 continue after the syscall; 1 leave lifted code and restart "
               "at CPU state rip with every register reloaded from the CPU state "
               "(signal delivery, sigreturn)"),
)
SYSCALL_FRAME_OFFSETS: dict[str, int] = {f.name: f.offset for f in SYSCALL_FRAME_FIELDS}


class Resume(enum.IntEnum):
    """Values of the syscall frame's ``resume`` field."""
    CONTINUE = 0      #: return to the lifted code right after the syscall
    RELOAD = 1        #: state was rewritten by vkernel; re-enter at state.rip


class FaultCode(enum.IntEnum):
    """The ``fault`` import's parameter: why lifted code stopped."""
    NO_TRANSLATION = 1    #: control reached an address with no translation
    UNSUPPORTED = 2       #: an instruction the lifter does not implement
    DIVIDE_ERROR = 3      #: #DE: division by zero or quotient overflow (SIGFPE)
    INVALID_OPCODE = 4    #: ud2 or an undefined encoding (SIGILL)
    BREAKPOINT = 5        #: int3 (SIGTRAP)
    HALT = 6              #: hlt in user mode (SIGSEGV, as Linux)
    INTERRUPT = 7         #: INTERRUPT_FLAG was set: state is complete, rip = where to resume


FAULT_RECORD_FIELDS: tuple[FrameField, ...] = (
    FrameField("code", 0x00, 4, "a FaultCode"),
    FrameField("detail", 0x04, 4, "for UNSUPPORTED: the lifter's number for the site (diagnostics); "
               "the site itself is found by rip in the unit's sorted trap_sites"),
    FrameField("rip", 0x08, 8, "guest address of the faulting instruction or target"),
)
FAULT_RECORD_OFFSETS: dict[str, int] = {f.name: f.offset for f in FAULT_RECORD_FIELDS}

CODE_REGION_FIELDS: tuple[FrameField, ...] = (
    FrameField("start", 0x00, 4, "guest address where the ELF's image begins (load base)"),
    FrameField("end", 0x04, 4, "exclusive end of its executable range"),
    FrameField("unit", 0x08, 4, "the directory row of the unit instance serving the range"),
    FrameField("bias", 0x0C, 4, "load bias: runtime address minus link-time address"),
)
CODE_REGION_SIZE = 0x10
"""The region table is a count (u32 at CODE_REGIONS) then entries at CODE_REGIONS+16."""

DIRECTORY_FIELDS: tuple[FrameField, ...] = (
    FrameField("entries", 0x00, 4, "control-memory offset of the unit's sorted dispatch entries"),
    FrameField("count", 0x04, 4, "number of entries (0: the unit is not instantiated)"),
    FrameField("table_base", 0x08, 4, "the unit's first dispatch-table slot"),
    FrameField("reserved", 0x0C, 4, "0"),
)


ENTRIES_AREA = DIRECTORY + DIRECTORY_ENTRY_SIZE * DIRECTORY_ROWS
"""Where the control memory's unit entry tables start."""


# ---------------------------------------------------------------------------
# The CPU Kiln presents (cpuid). The lifter answers cpuid from this table.
# ---------------------------------------------------------------------------

CPU_VENDOR = "GenuineIntel"
CPU_BRAND = "Kiln virtual x86-64 (baseline + SSE2)"

# (leaf, subleaf) -> (eax, ebx, ecx, edx). Advertised: x86-64 baseline:
# FPU, TSC, CX8, CMOV, MMX, FXSR, SSE, SSE2; no SSE3+, no AVX, no XSAVE.
# Features beyond these are added only when the lifter implements them.
CPUID_LEAF1_EDX = (1 << 0) | (1 << 4) | (1 << 8) | (1 << 15) | (1 << 23) | (1 << 24) | (1 << 25) | (1 << 26)
CPUID_LEAF1_ECX = 0
CPUID_TABLE: dict[tuple[int, int], tuple[int, int, int, int]] = {
    (0, 0): (0x0000_0007, 0x756E_6547, 0x6C65_746E, 0x4965_6E69),   # "GenuineIntel"
    (1, 0): (0x0000_0663, 0x0000_0800, CPUID_LEAF1_ECX, CPUID_LEAF1_EDX),
    (7, 0): (0, 0, 0, 0),
    (0x8000_0000, 0): (0x8000_0008, 0, 0, 0),
    (0x8000_0001, 0): (0, 0, (1 << 0), (1 << 29) | (1 << 11)),      # LAHF-LM, LM, SYSCALL
    (0x8000_0008, 0): (0x0000_3030, 0, 0, 0),                        # 48-bit phys/virt
}
"""cpuid answers; any leaf not listed returns all zeros."""

HWCAP = CPUID_LEAF1_EDX
"""AT_HWCAP given to guests: leaf-1 edx, as Linux does on x86-64."""


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """The (eax, ebx, ecx, edx) Kiln's virtual CPU returns."""
    if (leaf, subleaf) in CPUID_TABLE:
        return CPUID_TABLE[(leaf, subleaf)]
    if (leaf, 0) in CPUID_TABLE and leaf not in (4, 7, 0xB, 0xD):
        return CPUID_TABLE[(leaf, 0)]
    return (0, 0, 0, 0)





# ---------------------------------------------------------------------------
# Wasmtime engine settings. AOT artifacts only load into an engine configured
# the same way, so both sides build their wasmtime.Config from this table.
# ---------------------------------------------------------------------------

ENGINE_SETTINGS: tuple[tuple[str, object], ...] = (
    ("wasm_multi_memory", True),      # memory 0 guest, memory 1 control
    ("wasm_tail_call", True),
    ("wasm_simd", True),
    ("wasm_bulk_memory", True),
    ("wasm_multi_value", True),
    ("wasm_reference_types", True),
    ("wasm_function_references", True),   # a typed dispatch table: call_indirect skips the type check
    ("wasm_threads", True),           # the shared guest memory and atomics (ABI 4)
    ("shared_memory", True),          # vkernel creates that memory (wasmtime.SharedMemory)
    ("wasm_wide_arithmetic", True),   # i64.mul_wide_s/u: mul and imul's high halves, one host multiply
    ("cranelift_opt_level", "speed"),
    # no .eh_frame for lifted code: Wasmtime walks wasm frames by their frame pointers and nothing
    # unwinds through them natively; registering every function's unwind info made deserializing
    # a module take twice as long (start-up deserializes every module of the image)
    ("native_unwind_info", False),
    ("max_wasm_stack", 2 * 1024 * 1024),   # wasmtime-py caps it at its async stack size (2 MiB)
)
"""(wasmtime.Config attribute, value), applied in this order by both sides.

The WebAssembly stack is at most 2 MiB (wasmtime-py's limit), far less than a
guest's 8 MiB stack: lifted code must not need one wasm frame per live guest
frame. Past ``MAX_CALL_DEPTH`` nested guest calls it returns to the
``kiln_run`` dispatch loop instead (return addresses are dispatch entries).
"""

MAX_CALL_DEPTH = 2000
"""Nested direct wasm calls lifted code makes before falling back to dispatch."""

EXPORT_RUN = "kiln_run"
"""The module's entry export: ``[] -> []``, runs from the CPU state's rip."""


def engine_fingerprint_fields() -> dict[str, object]:
    """The settings that decide whether an AOT artifact is loadable, as data."""
    return {name: value for name, value in ENGINE_SETTINGS}
__all__ = [name for name in dir() if not name.startswith("_")]
