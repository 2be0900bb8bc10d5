"""Syscall handlers against the host Linux: the same call on the same files must agree."""
from __future__ import annotations

import errno
import os
import struct
import time
from pathlib import Path

import pytest

from test_vkernel_support import SCRATCH, call, make_kernel, put_str
from vkernel.syscalls.numbers import SYSCALL_NUMBERS as NR

P = SCRATCH            # path string
B = SCRATCH + 0x1000   # result buffer
AT_FDCWD = -100


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "tmp").mkdir()
    (r / "usr/share").mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (r / "etc/hostname").write_text("guest\n")
    os.symlink("../../../../../../../../etc/passwd", r / "etc/escape")
    os.symlink("/etc/passwd", r / "etc/abs")
    os.symlink("/usr/share", r / "share")
    return r


@pytest.fixture
def k(tmp_path: Path, root: Path):
    import signal
    # The in-process kernel mirrors the guest's signal mask and dispositions onto this (pytest's)
    # process; give pytest its own back so later tests and the programs they start are unaffected.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    handlers = {s: signal.getsignal(s) for s in signal.valid_signals()
                if s not in (signal.SIGKILL, signal.SIGSTOP) and s < signal.SIGRTMIN}
    kern = make_kernel(tmp_path, root)
    yield kern
    kern.fds.close_all()
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    for s, h in handlers.items():
        if h is not None and signal.getsignal(s) != h:
            signal.signal(s, h)


def open_(k, path: str, flags: int = os.O_RDONLY, mode: int = 0) -> int:
    return call(k, NR["openat"], AT_FDCWD, put_str(k, P, path), flags, mode)


def read_all(k, fd: int) -> bytes:
    out = b""
    while True:
        n = call(k, NR["read"], fd, B, 4096)
        assert n >= 0
        if n == 0:
            return out
        out += k.space.read(B, n)


def guest_stat(k, nr: str, *args: int) -> tuple:
    assert call(k, NR[nr], *args) == 0
    return struct.unpack("<QQQIIIIQqqqQQQQQQ", k.space.read(B, 120))


@pytest.mark.parametrize("name,target", [("/etc/passwd", "etc/passwd"), ("/etc", "etc"),
                                         ("/etc/abs", "etc/passwd"), ("/share", "usr/share")])
def test_stat_family_matches_host(k, root: Path, name: str, target: str) -> None:
    # Absolute symlinks resolve inside the rootfs: compare with the host stat of their target there.
    host = os.stat(root / target)
    lhost = os.lstat(root / name.lstrip("/"))
    s = guest_stat(k, "stat", put_str(k, P, name), B)
    assert (s[0], s[1], s[2], s[3], s[4], s[5], s[8]) == (
        host.st_dev, host.st_ino, host.st_nlink, host.st_mode, host.st_uid, host.st_gid, host.st_size)
    assert s[13] * 10**9 + s[14] == host.st_mtime_ns
    ls = guest_stat(k, "lstat", put_str(k, P, name), B)
    assert (ls[1], ls[3], ls[8]) == (lhost.st_ino, lhost.st_mode, lhost.st_size)
    fd = open_(k, name, os.O_RDONLY)
    assert fd >= 3
    fs = guest_stat(k, "fstat", fd, B)
    assert fs[:9] == s[:9]
    at = guest_stat(k, "newfstatat", AT_FDCWD, put_str(k, P, name), B, 0x100)
    assert at[1] == lhost.st_ino


def test_stat_missing_gives_enoent(k) -> None:
    assert call(k, NR["stat"], put_str(k, P, "/nope"), B) == -errno.ENOENT
    assert call(k, NR["stat"], put_str(k, P, "/etc/passwd/x"), B) == -errno.ENOTDIR


def test_read_lseek_pread(k, root: Path) -> None:
    want = (root / "etc/passwd").read_bytes()
    fd = open_(k, "/etc/passwd")
    assert read_all(k, fd) == want
    assert call(k, NR["lseek"], fd, 5, os.SEEK_SET) == 5
    assert call(k, NR["read"], fd, B, 4) == 4 and k.space.read(B, 4) == want[5:9]
    assert call(k, NR["pread64"], fd, B, 3, 0) == 3 and k.space.read(B, 3) == want[:3]
    assert call(k, NR["lseek"], fd, 0, os.SEEK_END) == len(want)
    assert call(k, NR["close"], fd) == 0
    assert call(k, NR["close"], fd) == -errno.EBADF
    assert call(k, NR["read"], 77, B, 1) == -errno.EBADF


def test_symlinks_stay_inside_the_rootfs(k, root: Path) -> None:
    guest = (root / "etc/passwd").read_bytes()
    for link in ("/etc/escape", "/etc/abs", "/../../../etc/passwd", "/etc/../../../etc/passwd"):
        fd = open_(k, link)
        assert fd >= 0, link
        assert read_all(k, fd) == guest, link      # never the host's /etc/passwd
        call(k, NR["close"], fd)


def test_getdents64_matches_listdir(k, root: Path) -> None:
    fd = open_(k, "/etc", os.O_RDONLY | os.O_DIRECTORY)
    names = []
    while True:
        n = call(k, NR["getdents64"], fd, B, 64)       # small buffer: several calls
        assert n >= 0
        if n == 0:
            break
        buf, pos = k.space.read(B, n), 0
        while pos < n:
            ino, off, reclen, dtype = struct.unpack_from("<QqHB", buf, pos)
            names.append(buf[pos + 19:pos + reclen].split(b"\0")[0].decode())
            pos += reclen
    assert sorted(names) == sorted(os.listdir(root / "etc") + [".", ".."])
    assert call(k, NR["getdents64"], open_(k, "/etc/passwd"), B, 4096) == -errno.ENOTDIR


def test_writes_go_to_the_upper_layer(k, root: Path, tmp_path: Path) -> None:
    before = (root / "etc/passwd").read_bytes()
    fd = open_(k, "/etc/passwd", os.O_WRONLY | os.O_APPEND)
    assert fd >= 0
    k.space.write(B, b"kiln:x:1:1::/:/bin/sh\n")
    assert call(k, NR["write"], fd, B, 22) == 22
    call(k, NR["close"], fd)
    assert (root / "etc/passwd").read_bytes() == before             # the rootfs is untouched
    assert (tmp_path / "upper/etc/passwd").read_bytes() == before + b"kiln:x:1:1::/:/bin/sh\n"
    assert read_all(k, open_(k, "/etc/passwd")) == before + b"kiln:x:1:1::/:/bin/sh\n"
    # A new file appears in the upper layer and in directory listings.
    fd = open_(k, "/tmp/new.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    assert fd >= 0 and call(k, NR["write"], fd, B, 4) == 4
    assert not (root / "tmp/new.txt").exists() and (tmp_path / "upper/tmp/new.txt").exists()
    assert open_(k, "/nodir/x", os.O_WRONLY | os.O_CREAT, 0o644) == -errno.ENOENT


def test_readlink_and_proc_self(k, root: Path) -> None:
    n = call(k, NR["readlink"], put_str(k, P, "/etc/escape"), B, 256)
    assert k.space.read(B, n) == os.readlink(root / "etc/escape").encode()
    n = call(k, NR["readlink"], put_str(k, P, "/proc/self/exe"), B, 256)
    assert k.space.read(B, n) == b"/bin/test"
    assert call(k, NR["readlink"], put_str(k, P, "/etc/passwd"), B, 256) == -errno.EINVAL
    fd = open_(k, "/etc/hostname")
    n = call(k, NR["readlink"], put_str(k, P, f"/proc/self/fd/{fd}"), B, 256)
    assert k.space.read(B, n) == b"/etc/hostname"


def test_access(k) -> None:
    assert call(k, NR["access"], put_str(k, P, "/etc/passwd"), os.R_OK) == 0
    assert call(k, NR["access"], put_str(k, P, "/etc/none"), os.F_OK) == -errno.ENOENT
    assert call(k, NR["faccessat"], AT_FDCWD, put_str(k, P, "/etc"), os.X_OK) == 0


def test_cwd(k) -> None:
    assert call(k, NR["chdir"], put_str(k, P, "/share")) == 0
    n = call(k, NR["getcwd"], B, 256)
    assert k.space.read(B, n) == b"/usr/share\0"            # symlinks resolved, like Linux
    assert call(k, NR["getcwd"], B, 3) == -errno.ERANGE
    assert call(k, NR["chdir"], put_str(k, P, "/etc/passwd")) == -errno.ENOTDIR
    call(k, NR["chdir"], put_str(k, P, "/etc"))
    assert read_all(k, open_(k, "hostname")) == b"guest\n"
    dfd = open_(k, "/etc", os.O_RDONLY | os.O_DIRECTORY)
    call(k, NR["chdir"], put_str(k, P, "/"))
    fd = call(k, NR["openat"], dfd, put_str(k, P, "hostname"), os.O_RDONLY, 0)
    assert read_all(k, fd) == b"guest\n"


def test_pipe_dup_fcntl(k) -> None:
    assert call(k, NR["pipe2"], B, os.O_CLOEXEC) == 0
    r, w = struct.unpack("<ii", k.space.read(B, 8))
    assert (r, w) == (3, 4)
    assert call(k, NR["fcntl"], r, 1, 0) == 1                     # F_GETFD: FD_CLOEXEC
    w2 = call(k, NR["dup2"], w, 10)
    assert w2 == 10 and call(k, NR["fcntl"], w2, 1, 0) == 0
    k.space.write(B + 64, b"through the pipe")
    assert call(k, NR["write"], w2, B + 64, 16) == 16
    assert call(k, NR["read"], r, B + 128, 64) == 16 and k.space.read(B + 128, 16) == b"through the pipe"
    assert call(k, NR["dup"], r) == 5
    assert call(k, NR["dup3"], r, r, 0) == -errno.EINVAL
    assert call(k, NR["fcntl"], r, 1030, 20) == 20               # F_DUPFD_CLOEXEC
    assert call(k, NR["ioctl"], r, 0x5401, B) == -errno.ENOTTY    # TCGETS on a pipe


def test_time_calls_agree_with_host(k) -> None:
    assert call(k, NR["clock_gettime"], time.CLOCK_REALTIME, B) == 0
    sec, nsec = struct.unpack("<qq", k.space.read(B, 16))
    assert abs(sec + nsec / 1e9 - time.time()) < 1.0
    assert call(k, NR["clock_gettime"], 12345, B) == -errno.EINVAL
    assert abs(call(k, NR["time"], 0) - time.time()) < 2
    assert call(k, NR["gettimeofday"], B, 0) == 0
    assert abs(struct.unpack("<q", k.space.read(B, 8))[0] - time.time()) < 2
    t0 = time.monotonic()
    k.space.write(B, struct.pack("<qq", 0, 20_000_000))
    assert call(k, NR["nanosleep"], B, 0) == 0 and time.monotonic() - t0 >= 0.02


def test_setting_a_clock_is_refused_as_without_cap_sys_time(k) -> None:
    """Even a root guest may not set the host's clock: EPERM, as a container without
    CAP_SYS_TIME gets (CPython's test_time skips its settime tests on that); a clock that
    cannot be set at all is EINVAL, a bad pointer EFAULT, as Linux checks them."""
    before = time.time()
    k.space.write(B, struct.pack("<qq", 1, 0))
    assert call(k, NR["clock_settime"], time.CLOCK_REALTIME, B) == -errno.EPERM
    assert call(k, NR["clock_settime"], time.CLOCK_MONOTONIC, B) == -errno.EINVAL
    assert call(k, NR["clock_settime"], time.CLOCK_REALTIME, 8) == -errno.EFAULT
    assert call(k, NR["settimeofday"], B, 0) == -errno.EPERM
    assert time.time() >= before


def test_identity_calls(k) -> None:
    assert call(k, NR["getpid"]) == os.getpid()
    assert call(k, NR["getppid"]) == os.getppid()
    assert call(k, NR["getuid"]) == os.getuid()
    assert call(k, NR["uname"], B) == 0
    fields = [k.space.read(B + 65 * i, 65).split(b"\0")[0] for i in range(6)]
    assert fields[0] == b"Linux" and fields[4] == b"x86_64" and fields[2] == b"6.1.0-kiln"
    assert call(k, NR["getrandom"], B, 64, 0) == 64 and k.space.read(B, 64) != bytes(64)
    assert call(k, NR["sysinfo"], B) == 0
    totalram, = struct.unpack_from("<Q", k.space.read(B, 40), 32)
    unit, = struct.unpack_from("<I", k.space.read(B, 112), 104)
    meminfo = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    assert totalram * unit == meminfo
    n = call(k, NR["sched_getaffinity"], 0, 128, B)
    assert n > 0
    bits = int.from_bytes(k.space.read(B, n), "little")
    assert {i for i in range(n * 8) if bits >> i & 1} == os.sched_getaffinity(0)
    assert call(k, NR["prlimit64"], 0, 7, 0, B) == 0
    assert struct.unpack("<QQ", k.space.read(B, 16)) == (1024, 1024)
    assert call(k, NR["arch_prctl"], 0x1002, 0x12345000) == 0
    assert k.ctl.get("fs_base") == 0x12345000
    assert call(k, NR["arch_prctl"], 0x1003, B) == 0 and k.space.u64(B) == 0x12345000
    assert call(k, NR["rseq"], 0, 0, 0, 0) == -errno.ENOSYS


def test_unknown_syscall_is_enosys_and_audited_once_off_the_guests_stderr(k, tmp_path, capsys,
                                                                          monkeypatch) -> None:
    monkeypatch.delenv("KILN_WARN_UNSUPPORTED", raising=False)
    assert call(k, NR["io_uring_setup"], 1, 0) == -errno.ENOSYS
    assert call(k, NR["io_uring_setup"], 1, 0) == -errno.ENOSYS
    assert call(k, 999) == -errno.ENOSYS
    assert capsys.readouterr().err == ""               # the guest's stderr stays its own
    import json
    recs = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    unsupported = [(r["syscall"], r["name"]) for r in recs if r["decision"] == "unsupported"]
    assert unsupported == [(NR["io_uring_setup"], "io_uring_setup"), (999, "unknown")]


def test_unknown_syscall_on_stderr_when_asked(k, capsys, monkeypatch) -> None:
    monkeypatch.setenv("KILN_WARN_UNSUPPORTED", "1")
    assert call(k, NR["io_uring_setup"], 1, 0) == -errno.ENOSYS
    assert call(k, NR["io_uring_setup"], 1, 0) == -errno.ENOSYS
    err = capsys.readouterr().err
    assert err.count("syscall 425 (io_uring_setup) is not implemented; returning ENOSYS") == 1


def test_sigaction_roundtrip(k) -> None:
    k.space.write(B, struct.pack("<QQQQ", 0x401000, 0x04000000, 0x402000, 1 << 9))
    assert call(k, NR["rt_sigaction"], 10, B, 0, 8) == 0
    assert call(k, NR["rt_sigaction"], 10, 0, B + 64, 8) == 0
    assert struct.unpack("<QQQQ", k.space.read(B + 64, 32)) == (0x401000, 0x04000000, 0x402000, 1 << 9)
    assert call(k, NR["rt_sigaction"], 9, B, 0, 8) == -errno.EINVAL        # SIGKILL
    k.space.put_u64(B, 1 << 1)
    assert call(k, NR["rt_sigprocmask"], 0, B, B + 8, 8) == 0
    assert call(k, NR["rt_sigprocmask"], 2, 0, B + 8, 8) == 0 and k.space.u64(B + 8) == 2


def test_bad_pointers_are_efault(k) -> None:
    fd = open_(k, "/etc/passwd")
    assert call(k, NR["read"], fd, 0, 16) == -errno.EFAULT              # NULL buffer
    assert call(k, NR["pread64"], fd, 0xFFFF_FFF8, 16, 0) == -errno.EFAULT  # crosses 4 GiB
    assert call(k, NR["write"], 1, 0x100, 4) == -errno.EFAULT           # null guard page
    assert call(k, NR["open"], 0, 0, 0) == -errno.EFAULT
    assert call(k, NR["fstat"], fd, 0) == -errno.EFAULT
    assert call(k, NR["clock_gettime"], 0, 8) == -errno.EFAULT


def test_statx_matches_host(k, root: Path) -> None:
    host = os.stat(root / "etc/passwd")
    assert call(k, NR["statx"], AT_FDCWD, put_str(k, P, "/etc/passwd"), 0, 0x7FF, B) == 0
    raw = k.space.read(B, 256)
    mask, blksize, _, nlink, uid, gid, mode, _, ino, size, blocks = struct.unpack_from("<IIQIIIHHQQQ", raw)
    assert (nlink, uid, gid, mode, ino, size, blocks) == (
        host.st_nlink, host.st_uid, host.st_gid, host.st_mode, host.st_ino, host.st_size, host.st_blocks)
    m_sec, m_nsec = struct.unpack_from("<qI", raw, 64 + 48)
    assert m_sec * 10**9 + m_nsec == host.st_mtime_ns
    assert struct.unpack_from("<II", raw, 136) == (os.major(host.st_dev), os.minor(host.st_dev))


def test_statfs_matches_host(k, root: Path) -> None:
    assert call(k, NR["statfs"], put_str(k, P, "/etc"), B) == 0
    f_type, f_bsize, f_blocks = struct.unpack_from("<qqQ", k.space.read(B, 24))
    v = os.statvfs(root)
    assert (f_bsize, f_blocks) == (v.f_bsize, v.f_blocks)


def test_poll_and_select_on_a_pipe(k) -> None:
    assert call(k, NR["pipe2"], B, 0) == 0
    r, w = struct.unpack("<ii", k.space.read(B, 8))
    pfd = B + 64
    k.space.write(pfd, struct.pack("<ihh", r, 1, 0) + struct.pack("<ihh", 99, 1, 0))
    assert call(k, NR["poll"], pfd, 1, 0) == 0                      # nothing to read yet
    k.space.write(B + 200, b"x")
    assert call(k, NR["write"], w, B + 200, 1) == 1
    assert call(k, NR["poll"], pfd, 2, 1000) == 2                   # readable + POLLNVAL
    assert struct.unpack("<ihh", k.space.read(pfd, 8))[2] == 1
    assert struct.unpack("<ihh", k.space.read(pfd + 8, 8))[2] == 0x20
    k.space.write(B + 300, (1 << r).to_bytes(8, "little"))
    k.space.write(B + 320, struct.pack("<qq", 0, 0))
    assert call(k, NR["select"], r + 1, B + 300, 0, 0, B + 320) == 1
    assert int.from_bytes(k.space.read(B + 300, 8), "little") == 1 << r


def test_select_works_when_host_descriptors_pass_fd_setsize(k) -> None:
    """Guest fds stay small, but the host's may be past 1024 in a busy kiln process: select
    must still answer (the host's select(2) cannot take such descriptors)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("the hard RLIMIT_NOFILE is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        assert call(k, NR["pipe2"], B, 0) == 0
        r, w = struct.unpack("<ii", k.space.read(B, 8))
        assert k.fds.files[r].host_fd >= 1024 and r < 64
        k.space.write(B + 300, (1 << r).to_bytes(8, "little"))
        k.space.write(B + 320, struct.pack("<qq", 0, 0))
        assert call(k, NR["select"], r + 1, B + 300, 0, 0, B + 320) == 0    # nothing yet
        k.space.write(B + 200, b"x")
        assert call(k, NR["write"], w, B + 200, 1) == 1
        k.space.write(B + 300, (1 << r).to_bytes(8, "little"))
        k.space.write(B + 340, (1 << w).to_bytes(8, "little"))
        assert call(k, NR["select"], max(r, w) + 1, B + 300, B + 340, 0, B + 320) == 2
        assert int.from_bytes(k.space.read(B + 300, 8), "little") == 1 << r
        assert int.from_bytes(k.space.read(B + 340, 8), "little") == 1 << w
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_utimensat_and_chmod_copy_up(k, root: Path, tmp_path: Path) -> None:
    before = os.stat(root / "etc/hostname")
    k.space.write(B, struct.pack("<qqqq", 1_000_000_000, 5, 1_500_000_000, 7))
    assert call(k, NR["utimensat"], AT_FDCWD, put_str(k, P, "/etc/hostname"), B, 0) == 0
    up = os.stat(tmp_path / "upper/etc/hostname")
    assert (up.st_atime_ns, up.st_mtime_ns) == (1_000_000_000_000_000_005, 1_500_000_000_000_000_007)
    assert call(k, NR["chmod"], put_str(k, P, "/etc/hostname"), 0o600) == 0
    assert stat_mode(k, "/etc/hostname") == 0o100600
    after = os.stat(root / "etc/hostname")
    assert (after.st_mtime_ns, after.st_mode) == (before.st_mtime_ns, before.st_mode)


def stat_mode(k, path: str) -> int:
    assert call(k, NR["stat"], put_str(k, P, path), B) == 0
    return struct.unpack_from("<I", k.space.read(B, 32), 24)[0]


def test_credentials(k) -> None:
    n = call(k, NR["getgroups"], 64, B)
    assert sorted(struct.unpack(f"<{n}I", k.space.read(B, 4 * n))) == sorted(os.getgroups())
    assert call(k, NR["setuid"], os.getuid()) == 0
    assert call(k, NR["setuid"], os.getuid() + 1) == -errno.EPERM
    assert call(k, NR["getresuid"], B, B + 4, B + 8) == 0
    assert struct.unpack("<3I", k.space.read(B, 12)) == os.getresuid()
    assert call(k, NR["times"], B) > 0


def test_terminal_ioctls_pass_through_on_a_real_tty(k) -> None:
    import fcntl
    import termios
    from vkernel.fdtable import OpenFile
    master, slave = os.openpty()
    try:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("<HHHH", 40, 132, 0, 0))
        fd = k.fds.install(OpenFile(os.dup(slave), "/dev/pts/x", os.O_RDWR))
        assert call(k, NR["ioctl"], fd, termios.TIOCGWINSZ, B) == 0
        assert struct.unpack("<HHHH", k.space.read(B, 8)) == (40, 132, 0, 0)
        assert call(k, NR["ioctl"], fd, termios.TCGETS, B) == 0
        iflag, oflag, cflag, lflag = struct.unpack("<4I", k.space.read(B, 16))
        host = termios.tcgetattr(slave)
        assert [iflag, oflag, cflag, lflag] == host[:4]
        assert k.space.read(B + 17, 19) == bytes(c if isinstance(c, int) else c[0] for c in host[6][:19])
    finally:
        os.close(master)
        os.close(slave)


def test_hostile_requests_fail_cleanly(k, root: Path) -> None:
    os.symlink("loop2", root / "etc/loop1")
    os.symlink("loop1", root / "etc/loop2")
    assert open_(k, "/etc/loop1") == -errno.ELOOP
    assert call(k, NR["open"], put_str(k, P, "/" + "a" * 5000), 0, 0) == -errno.ENAMETOOLONG
    anon = 0x22
    assert call(k, NR["mmap"], 0, 1 << 32, 3, anon, -1, 0) == -errno.ENOMEM
    big = call(k, NR["mmap"], 0, 0xA000_0000, 3, anon, -1, 0)
    # the mmap area is 0x4000_0000-0xf000_0000: 0x1000_0000 bytes are left, not one page more
    assert big > 0 and call(k, NR["mmap"], 0, 0x1000_1000, 3, anon, -1, 0) == -errno.ENOMEM
    assert call(k, NR["mmap"], 0, 0x1000_0000, 3, anon, -1, 0) == 0xE000_0000
    brk = call(k, NR["brk"], 0)
    assert call(k, NR["brk"], 0xFFFF_F000) == brk
    fds = [open_(k, "/etc/passwd") for _ in range(1100)]
    assert fds[-1] == -errno.EMFILE and max(fds) == 1023
    assert call(k, NR["dup2"], 0, 5000) == -errno.EBADF


def test_record_locks_are_the_hosts(k) -> None:
    """fcntl record locks go to the host file: another process's lock makes F_SETLK fail with
    EAGAIN and F_GETLK name it (type, range, pid); once it is gone the guest takes the lock."""
    import subprocess
    import sys
    fd = call(k, NR["open"], put_str(k, SCRATCH, "/tmp/locked"), os.O_RDWR | os.O_CREAT, 0o644)
    assert fd >= 0
    host = k.fds.get(fd).host_fd
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fcntl.lockf(int(sys.argv[1]), fcntl.LOCK_EX, 10, 0);"
         " print('held', flush=True); time.sleep(30)", str(host)],
        pass_fds=(host,), stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        want = struct.pack("<hh4xqqi4x", 1, 0, 0, 10, 0)          # F_WRLCK over bytes 0..9
        k.space.write(B, want)
        assert call(k, NR["fcntl"], fd, 6, B) == -errno.EAGAIN   # F_SETLK
        assert call(k, NR["fcntl"], fd, 5, B) == 0               # F_GETLK
        typ, whence, start, length, pid = struct.unpack("<hh4xqqi4x", k.space.read(B, 32))
        assert (typ, start, length, pid) == (1, 0, 10, holder.pid)
    finally:
        holder.kill()
        holder.wait()
    k.space.write(B, want)
    assert call(k, NR["fcntl"], fd, 7, B) == 0                   # F_SETLKW: free now
