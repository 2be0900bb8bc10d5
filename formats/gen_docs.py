"""Render the declared tables of formats/ as Markdown, and keep docs/formats.md in step.

docs/formats.md holds blocks between ``<!-- BEGIN GENERATED name -->`` and
``<!-- END GENERATED name -->``; their contents are produced here from the
code (``formats.abi``, ``formats.megabinary``) and must not be edited by hand::

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
from formats import abi, megabinary            # that name is the __future__ feature there

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


def _member_docs(cls: type[enum.Enum]) -> dict[str, str]:
    """``#:`` comments on enum members, read from the defining source file."""
    import inspect
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2).strip()
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
    """The guest-ABI tables: memory map, control memory, CPU state, frames, enums."""
    docs = _attribute_docs(abi)
    out: list[str] = [f"ABI version **{abi.ABI_VERSION}** (`formats.abi.ABI_VERSION`).", ""]
    out += ["#### Memories and imports (module `" + abi.IMPORT_MODULE + "`)", ""]
    out.append(_table(("import", "kind", "value"), (
        (f"`{abi.GUEST_MEMORY}`", "memory 0", "guest address space, "
         f"{abi.GUEST_MEMORY_PAGES} pages of {abi.WASM_PAGE} bytes (min = max)"),
        (f"`{abi.CONTROL_MEMORY}`", "memory 1", f"control memory, at least "
         f"{abi.CONTROL_MEMORY_MIN_PAGES} page(s); never reachable by guest loads/stores"),
        (f"`{abi.IMPORT_SYSCALL}`", "func `[] -> []`", "serve the syscall frame"),
        (f"`{abi.IMPORT_FAULT}`", "func `[i32] -> []`", "a FaultCode; details in the fault record"),
        (f"`{abi.IMPORT_RDTSC}`", "func `[] -> [i64]`", "time-stamp counter"),
    )))
    if hasattr(abi, "EXPORT_RUN"):
        out += ["", f"The module exports `{abi.EXPORT_RUN}` (`[] -> []`): "
                "run from the CPU state's `rip`."]
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
                 "CODE_REGIONS_GENERATION", "CONTROL_DYNAMIC"):
        rows.append((f"`{name}`", _hex(getattr(abi, name)), docs.get(name, "")))
    out.append(_table(("record", "offset", "meaning"), rows))
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
    out += ["", "Python `struct` formats, for reference: header "
            f"`{_struct_format(mb.HEADER_FIELDS)}`, section table entry "
            f"`{_struct_format(mb.SECTION_FIELDS)}`."]
    return "\n".join(out)


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
