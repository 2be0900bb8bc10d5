"""The shape of vkernel's core: guest-memory faults versus vkernel's own bugs, module layering."""
from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path

import pytest

from test_vkernel_support import SCRATCH, call, make_kernel, put_str
from vkernel.errors import VkernelError
from vkernel.syscalls.numbers import SYSCALL_NUMBERS as NR
from vkernel.syscalls.table import TABLE


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc/hostname").write_text("guest\n")
    return r


def test_bad_guest_addresses_are_efault(tmp_path: Path, root: Path) -> None:
    """What Linux answers for a pointer the process cannot access (the same calls natively)."""
    k = make_kernel(tmp_path, root)
    fd = os.open("/etc/hostname", os.O_RDONLY)
    try:
        # read into the null page
        assert os.pread(fd, 1, 0)
        h = call(k, NR["openat"], -100, put_str(k, SCRATCH, "/etc/hostname"), os.O_RDONLY, 0)
        assert h >= 0
        for addr, n in ((0x10, 4), (0, 1)):
            assert call(k, NR["read"], h, addr, n) == -errno.EFAULT
        assert call(k, NR["openat"], -100, 0x20, os.O_RDONLY, 0) == -errno.EFAULT
        assert call(k, NR["uname"], 0x1_0000_0000 - 100) == -errno.EFAULT
        # a path without a NUL within PATH_MAX is ENAMETOOLONG, as Linux says
        k.space.write(SCRATCH, b"a" * 5000)
        assert call(k, NR["openat"], -100, SCRATCH, os.O_RDONLY, 0) == -errno.ENAMETOOLONG
    finally:
        os.close(fd)
        k.fds.close_all()


def test_a_handler_bug_is_an_internal_error_not_an_errno(tmp_path: Path, root: Path) -> None:
    """A vkernel bug (here a handler raising IndexError) ends the run with an internal error
    naming the syscall; the guest never sees it as a plausible errno such as EFAULT."""
    def broken(k) -> int:
        """getpid(2): broken on purpose"""
        return [][0]

    table = dict(TABLE)
    table[NR["getpid"]] = dataclasses.replace(TABLE[NR["getpid"]], handler=broken)
    k = make_kernel(tmp_path, root, table=table)
    try:
        with pytest.raises(VkernelError) as e:
            call(k, NR["getpid"])
        assert "internal error in vkernel serving getpid" in e.value.message
        assert "IndexError" in e.value.message
        assert call(k, NR["getppid"]) == os.getppid()      # the table's other handlers still run
    finally:
        k.fds.close_all()


def _vkernel_imports() -> dict[str, set[str]]:
    """vkernel module -> the vkernel modules it imports (at run time: TYPE_CHECKING-only
    imports excluded, imports inside functions included)."""
    import ast
    pkg = Path(__file__).resolve().parent.parent / "vkernel"
    mods = {}
    for p in pkg.rglob("*.py"):
        name = ".".join(p.relative_to(pkg.parent).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        tree = ast.parse(p.read_text())
        for n in ast.walk(tree):
            if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.dump(n.test):
                n.body = []
        for n in ast.walk(tree):
            names: list[str] = []
            if isinstance(n, ast.ImportFrom) and n.module and not n.level:
                names = [f"{n.module}.{a.name}" for a in n.names] + [n.module]
            elif isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            for x in names:
                if x in mods:
                    graph[m].add(x)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_syscall_core_has_no_import_cycle() -> None:
    """The kernel, the syscall handlers, signals, the Vfs and ProcFs import each other in one
    direction only (the table and the tracer are given to the Kernel). The one cycle left is
    between ``run_guest`` and the supervisor that re-enters it for its child."""
    cycles = _cycles(_vkernel_imports())
    assert cycles in ([], [{"vkernel.launch", "vkernel.supervisor"}]), cycles   # run_guest's home


def test_process_and_thread_state_are_leaf_modules() -> None:
    """Process-wide and per-thread state depend on no behaviour: only on other leaves."""
    graph = _vkernel_imports()
    leaves = {"vkernel.cpustate", "vkernel.memory", "vkernel.fdtable", "vkernel.errors"}
    for m in ("vkernel.process", "vkernel.thread"):
        assert graph[m] <= leaves, (m, graph[m])
    for leaf in leaves:
        assert graph[leaf] <= leaves, (leaf, graph[leaf])
