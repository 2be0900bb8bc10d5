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
