"""The syscall table: consistent with Linux's numbering, handlers, and the generated docs page."""
from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

from vkernel.syscalls import gendoc
from vkernel.syscalls.numbers import SYSCALL_NAMES
from vkernel.syscalls.table import ENTRIES, TABLE, UNSUPPORTED


def test_numbers_match_the_host_headers() -> None:
    header = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").read_text()
    host = {int(n): name for name, n in re.findall(r"#define __NR_(\w+)\s+(\d+)", header)}
    for e in ENTRIES:
        assert host[e.number] == e.name


def test_entries_are_consistent() -> None:
    assert len(TABLE) == len(ENTRIES), "a syscall is listed twice"
    for e in ENTRIES:
        assert SYSCALL_NAMES[e.number] == e.name
        if e.level == UNSUPPORTED:
            assert e.handler is None and e.errno > 0 and e.note
            continue
        params = list(inspect.signature(e.handler).parameters)
        assert params[0] == "k" and len(params) <= 7, e.name
        doc = (e.handler.__doc__ or "").strip().splitlines()
        assert doc and doc[0].startswith(e.name + "("), e.name
        if e.args:
            assert len(e.args.split(",")) <= len(params) - 1, e.name
        if e.level == "partial":
            assert e.note, e.name


def test_docs_page_is_current() -> None:
    proc = subprocess.run([sys.executable, "-m", "vkernel.syscalls.gendoc", "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert gendoc.DOC_PATH.read_text() == gendoc.render()
