"""Render the declared tables of formats/ as Markdown, and keep docs/formats.md in step.

docs/formats.md holds blocks between ``<!-- BEGIN GENERATED name -->`` and
``<!-- END GENERATED name -->``; their contents are produced here from the
code (``formats.abi``, ``formats.container``, ``formats.fingerprint``) and must not be edited
by hand::

    python3 -m formats.gen_docs --write    # regenerate the blocks in place
    python3 -m formats.gen_docs --check    # exit 1 if any block is stale

tests/test_index.py fails when the document and the code disagree.
"""
from __future__ import annotations

import ast
import enum
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import formats.annotations as kiln_annotations  # not `from formats import annotations`:
from formats import abi, container, megabinary  # that name is the __future__ feature there
from formats.fingerprint import EngineFingerprint, aot_name

__all__ = ["render_blocks", "render_abi", "render_container", "render_annotations",
           "update_document",
           "stale_blocks", "DOC_PATH"]

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "formats.md"
_BEGIN = "<!-- BEGIN GENERATED {name} (python3 -m formats.gen_docs --write; do not edit) -->"
_END = "<!-- END GENERATED {name} -->"


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def _hex(n: int) -> str:
    return f"`{n:#06x}`"


def _addr(n: int) -> str:
    return f"`{n:#011_x}`"


def _attribute_docs(module: object) -> dict[str, str]:
    """Docstrings written under module-level assignments (``X = 1`` then ``\"\"\"doc\"\"\"``)."""
    source = Path(module.__file__).read_text()  # type: ignore[attr-defined]
    tree = ast.parse(source)
    docs: dict[str, str] = {}
    body = tree.body
    for stmt, nxt in zip(body, body[1:]):
        targets = []
        if isinstance(stmt, ast.Assign):
            targets = [t.id for t in stmt.targets if isinstance(t, ast.Name)]
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            targets = [stmt.target.id]
        if (targets and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            text = " ".join(nxt.value.value.split()).replace("``", "`")
            for t in targets:
                docs[t] = re.sub(r":\w+:`", "`", text)
    return docs


def _comment_docs(module: object) -> dict[str, str]:
    """Trailing ``# comment`` of module-level ``NAME = value`` lines (short names' meanings)."""
    source = Path(module.__file__).read_text()  # type: ignore[attr-defined]
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^([A-Z][A-Z0-9_]*)\s*=\s*[^#\n]+#\s*(.*)$", source, re.M)}


def _member_docs(cls: type[enum.Enum]) -> dict[str, str]:
    """``#:`` comments on enum members, read from the defining source file."""
    import inspect
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2).strip().replace("``", "`")
            for m in re.finditer(r"^\s+(\w+)\s*=\s*[^#\n]+#:\s*(.*)$", source, re.M)}


def _enum_table(cls: type[enum.Enum]) -> str:
    docs = _member_docs(cls)
    return _table(("value", "name", "meaning"),
                  ((int(m.value), f"`{m.name}`", docs.get(m.name, "")) for m in cls))


def _fields_table(fields: Iterable[Any], base: int | None = None) -> str:
    rows = []
    for f in fields:
        where = f"`{f.offset:#06x}`"
        if base is not None:
            where += f" (`{base + f.offset:#06x}`)"
        rows.append((f"`{f.name}`", where, f.size, f.doc))
    offset_title = "offset" if base is None else "offset (absolute)"
    return _table(("field", offset_title, "bytes", "meaning"), rows)


def render_abi() -> str:
    """The guest-ABI tables: modules, memory map, control memory, CPU state, frames, directory."""
    docs = {**_comment_docs(abi), **_attribute_docs(abi)}
    out: list[str] = [f"ABI version **{abi.ABI_VERSION}** (`formats.abi.ABI_VERSION`).", ""]
    out += [f"#### What the core and the unit modules import and export (module `{abi.IMPORT_MODULE}`)",
            "", "Every import is from module "
            f"`{abi.IMPORT_MODULE}`, in the order of the rows; exports use the same names.", ""]
    guestfn = "(ref null (func (param i32)))"
    out.append(_table(("name", "kind", f"core (`{abi.CORE_MODULE}`)", "unit", "meaning"), (
        (f"`{abi.IMPORT_SYSCALL}`", "func `[] -> []`", "import", "import",
         "serve the syscall frame"),
        (f"`{abi.IMPORT_FAULT}`", "func `[i32] -> []`", "import", "import",
         "a FaultCode; details in the fault record; never returns normally"),
        (f"`{abi.IMPORT_RDTSC}`", "func `[] -> [i64]`", "import", "import", "time-stamp counter"),
        (f"`{abi.GUEST_MEMORY}`", "memory 0, `shared`", "import", "import",
         f"guest address space, {abi.GUEST_MEMORY_PAGES} pages of {abi.WASM_PAGE} bytes "
         "(min = max); one per guest process, created by vkernel, imported by every "
         "thread's core and units"),
        (f"`{abi.CONTROL_MEMORY}`", "memory 1", "defines, exports", "import",
         f"control memory, at least {abi.CONTROL_MEMORY_MIN_PAGES} page(s), grown by vkernel; "
         "never reachable by guest loads/stores"),
        (f"`{abi.TABLE}`", f"table `{guestfn}`", "defines (0 slots), exports", "import",
         docs.get("TABLE", "")),
        (f"`{abi.DEPTH}`", "global `(mut i32)`", "defines (0), exports", "import",
         docs.get("DEPTH", "")),
        (f"`{abi.TABLE_BASE}`", "global `i32`", "", "import", docs.get("TABLE_BASE", "")),
        (f"`{abi.ENTRIES_AT}`", "global `i32`", "", "import", docs.get("ENTRIES_AT", "")),
        (f"`{abi.BIAS}`", "global `i64`", "", "import", docs.get("BIAS", "")),
        (f"`{abi.GROW_TABLE}`", "func `[i32] -> [i32]`", "exports", "", docs.get("GROW_TABLE", "")),
        (f"`{abi.EXPORT_RUN}`", "func `[] -> []`", "exports", "",
         "run from the CPU state's `rip` (dispatch loop)"),
    )))
    out += ["", f"A guest function (a dispatch-table entry) has type `(func (param i32))`: the "
            "parameter is the block of the function to enter. Nested direct calls between guest "
            f"functions stop at `MAX_CALL_DEPTH` = {abi.MAX_CALL_DEPTH} (counted in `{abi.DEPTH}`); "
            "deeper calls return to the dispatch loop."]
    out += ["", "#### Guest memory map (memory 0)", ""]
    out.append(_table(("region", "start", "end (exclusive)", "purpose"),
                      ((f"`{r.name}`", _addr(r.start), _addr(r.end), r.purpose)
                       for r in abi.GUEST_MEMORY_MAP)))
    rows = []
    for name in ("PIE_LOAD_BASE", "MMAP_BASE", "MMAP_END", "STACK_TOP", "STACK_SIZE_DEFAULT",
                 "GUEST_PAGE"):
        rows.append((f"`{name}`", _addr(getattr(abi, name)), docs.get(name, "")))
    out += ["", _table(("constant", "value", "meaning"), rows)]
    out += ["", "#### Control memory (memory 1)", ""]
    rows = []
    for name in ("CPU_STATE", "SYSCALL_FRAME", "FAULT_RECORD", "INTERRUPT_FLAG", "CODE_REGIONS",
                 "CODE_REGIONS_GENERATION", "CONTROL_DYNAMIC", "LOOKUP_CACHE", "UNIT_COUNT",
                 "DIRECTORY", "ENTRIES_AREA"):
        rows.append((f"`{name}`", _hex(getattr(abi, name)), docs.get(name, "")))
    out.append(_table(("record", "offset", "meaning"), rows))
    sizes = {"LOOKUP_CACHE_ENTRIES": "entries in the lookup cache, at `LOOKUP_CACHE`",
             "DIRECTORY_ENTRY_SIZE": "bytes in a row of the unit directory (`DIRECTORY_FIELDS`)",
             "DIRECTORY_ROWS": "rows of the unit directory: unit instances one process may hold"}
    out += ["", _table(("size", "value", "meaning"), (
        (f"`{name}`", getattr(abi, name), docs.get(name) or sizes.get(name, ""))
        for name in ("LOOKUP_CACHE_ENTRIES", "LOOKUP_CACHE_ENTRY", "DIRECTORY_ENTRY_SIZE",
                     "DIRECTORY_ROWS", "DISPATCH_ENTRY_SIZE")))]
    # the formula below is text: make sure it is still the code's
    assert abi.ENTRIES_AREA == abi.DIRECTORY + abi.DIRECTORY_ENTRY_SIZE * abi.DIRECTORY_ROWS, \
        "ENTRIES_AREA changed: update its formula in gen_docs"
    out += ["", f"`ENTRIES_AREA` = `DIRECTORY + DIRECTORY_ENTRY_SIZE * DIRECTORY_ROWS` = "
            f"{_hex(abi.ENTRIES_AREA)}: where the unit instances' dispatch entries start."]
    out += ["", f"#### CPU state (at `CPU_STATE`, {abi.CPU_STATE_SIZE} bytes, little-endian)", ""]
    out.append(_fields_table(abi.CPU_STATE_FIELDS))
    out += ["", "Sub-registers (name, byte offset within the register, size):", ""]
    out.append(_table(("register", "sub-registers"),
                      ((f"`{r}`", ", ".join(f"`{n}` +{o}/{s}" for n, o, s in subs))
                       for r, subs in abi.SUBREGISTERS.items())))
    out += ["", "#### Syscall frame (at `SYSCALL_FRAME`)", ""]
    out.append(_fields_table(abi.SYSCALL_FRAME_FIELDS, abi.SYSCALL_FRAME))
    out += ["", "`resume` values (`Resume`):", "", _enum_table(abi.Resume)]
    out += ["", "#### Fault record (at `FAULT_RECORD`)", ""]
    out.append(_fields_table(abi.FAULT_RECORD_FIELDS, abi.FAULT_RECORD))
    out += ["", "`code` values (`FaultCode`):", "", _enum_table(abi.FaultCode)]
    out += ["", "#### Code-region table (at `CODE_REGIONS`: a u32 count, the u32 generation, then up to "
            f"{abi.CODE_REGION_MAX} entries of {abi.CODE_REGION_SIZE} bytes "
            "from `CODE_REGIONS + 16`)", ""]
    out.append(_fields_table(abi.CODE_REGION_FIELDS))
    out += ["", f"#### Unit directory (at `DIRECTORY`: `UNIT_COUNT` rows of "
            f"{abi.DIRECTORY_ENTRY_SIZE} bytes, one per unit instance of the process)", ""]
    out.append(_fields_table(abi.DIRECTORY_FIELDS))
    out += ["", f"#### CPU identity (`cpuid`): vendor `{abi.CPU_VENDOR}`, "
            f"brand `{abi.CPU_BRAND}`", ""]
    out.append(_table(("leaf", "subleaf", "eax", "ebx", "ecx", "edx"),
                      ((f"`{leaf:#x}`", sub, *(f"`{v:#010x}`" for v in regs))
                       for (leaf, sub), regs in abi.CPUID_TABLE.items())))
    out += ["", "Leaves not listed return zeros."]
    if hasattr(abi, "ENGINE_SETTINGS"):
        out += ["", "#### Wasmtime engine settings (`ENGINE_SETTINGS`, applied in this order)", ""]
        out.append(_table(("setting", "value"),
                          ((f"`{k}`", f"`{v!r}`") for k, v in abi.ENGINE_SETTINGS)))
    return "\n".join(out)


def render_container() -> str:
    """The container tables: header, section table entry, section kinds."""
    mb = megabinary
    out = [f"#### Header ({mb.HEADER_SIZE} bytes at offset 0)", "", _struct_table(mb.HEADER_FIELDS)]
    out += ["", f"#### Section table entry ({mb.SECTION_ENTRY_SIZE} bytes each)", "",
            _struct_table(mb.SECTION_FIELDS)]
    out += ["", "#### Section kinds", "", _enum_table(mb.SectionKind)]
    out += ["", f"Section names: at most {mb.MAX_NAME_LENGTH} bytes of UTF-8. A MODULE section's "
            f"name matches `{container._RE_MODULE_NAME.pattern}` (`{mb.CORE}`, or a unit's BLAKE3 in "
            "lowercase hexadecimal). An AOT section's name is a MODULE section's name, `:`, and "
            f"a canonical engine fingerprint (§4), e.g. `{aot_name(mb.CORE, _EXAMPLE_FP)}`. "
            "INDEX and META have no name."]
    out += ["", "Python `struct` formats, for reference: header "
            f"`{_struct_format(mb.HEADER_FIELDS)}`, section table entry "
            f"`{_struct_format(mb.SECTION_FIELDS)}`."]
    return "\n".join(out)


_EXAMPLE_FP = EngineFingerprint("wasmtime", "50.0.1", "x86_64-unknown-linux-gnu",
                                (("wasm_simd", "true"), ("wasm_tail_call", "true")))
_CODES = {"H": "u16", "I": "u32", "Q": "u64"}


def _struct_format(fields: Iterable[megabinary.Field]) -> str:
    return "<" + "".join(f.code for f in fields)


def _struct_table(fields: Iterable[megabinary.Field]) -> str:
    return _table(("offset", "size", "type", "field", "meaning"),
                  ((f.offset, f.size, _CODES.get(f.code, f"bytes[{f.size}]"), f"`{f.name}`", f.doc)
                   for f in fields))


def render_annotations() -> str:
    """Every name ``formats.annotations`` fixes, with its value and meaning."""
    docs = _attribute_docs(kiln_annotations)
    rows = [(f"`{name}`", f"`{getattr(kiln_annotations, name)}`", docs.get(name, ""))
            for name in kiln_annotations.__all__
            if isinstance(getattr(kiln_annotations, name), str)]
    return _table(("name (`formats.annotations`)", "value", "meaning"), rows)


_RENDERERS: dict[str, Callable[[], str]] = {"container": render_container, "abi": render_abi,
                                            "annotations": render_annotations}


def render_blocks() -> dict[str, str]:
    """Every generated block's current contents, by block name."""
    return {name: fn() for name, fn in _RENDERERS.items()}


def _block_re(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(_BEGIN.format(name=name)) + r"\n(.*?)\n?" +
                      re.escape(_END.format(name=name)), re.S)


def stale_blocks(text: str) -> list[str]:
    """Names of blocks missing from ``text`` or differing from the current rendering."""
    stale = []
    for name, body in render_blocks().items():
        m = _block_re(name).search(text)
        if m is None or m.group(1).strip("\n") != body.strip("\n"):
            stale.append(name)
    return stale


def update_document(text: str) -> str:
    """``text`` with every generated block replaced by its current rendering."""
    for name, body in render_blocks().items():
        rx = _block_re(name)
        block = f"{_BEGIN.format(name=name)}\n{body}\n{_END.format(name=name)}"
        if rx.search(text) is None:
            raise SystemExit(f"docs/formats.md has no block {name!r}; add the BEGIN/END markers")
        text = rx.sub(lambda _m: block, text, count=1)
    return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[1]) if len(args) > 1 else DOC_PATH
    text = path.read_text() if args[:1] in (["--write"], ["--check"]) else ""
    if args[:1] == ["--write"]:
        new = update_document(text)
        if new != text:
            path.write_text(new)
        print(f"{path}: {'updated' if new != text else 'up to date'}")
        return 0
    if args[:1] == ["--check"]:
        stale = stale_blocks(text)
        if stale:
            print(f"{path}: stale generated blocks: {', '.join(stale)}; "
                  "run python3 -m formats.gen_docs --write", file=sys.stderr)
            return 1
        return 0
    for name, body in render_blocks().items():
        print(f"{_BEGIN.format(name=name)}\n{body}\n{_END.format(name=name)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
