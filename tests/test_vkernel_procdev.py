"""Synthesized /proc, /dev and /tmp, seen by a recompiled busybox under `kiln run`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vkernel.cli import DEFAULT_MEMORY, _parse_bytes

from examples.busybox.build import build_busybox_image
from formats import abi
from vkernel.proctext import KERNEL_RELEASE
from vkernel.vfs import Vfs

KILN = [sys.executable, "-m", "vkernel.cli"]
RECOMPILE = [sys.executable, "-m", "recompiler.cli"]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("procdev")
    src = build_busybox_image(base / "busybox")
    out = base / "recompiled"
    proc = subprocess.run([*RECOMPILE, str(src), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


def _run(image: Path, script: str, *opts: str, stdin: bytes = b"", **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*KILN, "run", *opts, str(image), "--", "/bin/sh", "-c", script],
                          input=stdin, capture_output=True, timeout=120, **kw)


def _native(busybox: Path, *args: str, stdin: bytes = b"") -> bytes:
    got = subprocess.run([str(busybox), *args], input=stdin, capture_output=True, timeout=30)
    assert got.returncode == 0, got.stderr
    return got.stdout


def test_proc_and_dev_list_their_entries(image: Path) -> None:
    got = _run(image, "ls /proc; echo --; ls /dev; echo --; ls /proc/self")
    assert got.returncode == 0, got.stderr
    proc, dev, self_ = (part.split() for part in got.stdout.decode().split("--\n"))
    assert {"cpuinfo", "meminfo", "mounts", "self", "thread-self"} <= set(proc)
    assert any(p.isdigit() for p in proc)
    assert {"null", "zero", "full", "random", "urandom", "tty", "stdin", "stdout", "stderr", "fd"} <= set(dev)
    assert {"exe", "cwd", "fd", "maps"} <= set(self_)


def test_proc_self_is_the_guest_pid(image: Path) -> None:
    got = _run(image, "echo $$; exec readlink /proc/self")
    assert got.returncode == 0, got.stderr
    pid, link = got.stdout.decode().split()
    assert pid == link and pid.isdigit()


def test_dev_links_read_as_on_linux(image: Path, busybox_bin: Path) -> None:
    names = ["/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/fd"]
    got = _run(image, "for n in " + " ".join(names) + "; do readlink $n; done")
    assert got.returncode == 0, got.stderr
    native = b"".join(_native(busybox_bin, "readlink", n) for n in names)
    assert got.stdout == native == b"/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\n/proc/self/fd\n"
    ls = _run(image, "ls -l /dev/stdin")
    assert ls.returncode == 0, ls.stderr
    assert ls.stdout.startswith(b"l") and ls.stdout.rstrip().endswith(b"/dev/stdin -> /proc/self/fd/0")


def test_proc_self_fd_lists_and_reopens(image: Path, busybox_bin: Path) -> None:
    got = _run(image, "exec 5</etc/passwd; ls /proc/self/fd; readlink /proc/self/fd/5; readlink /proc/self/fd/0",
               stdin=b"")
    assert got.returncode == 0, got.stderr
    lines = got.stdout.decode().split("\n")
    assert {"0", "1", "2", "5"} <= set(lines)
    assert "/etc/passwd" in lines
    assert lines[-2].startswith("pipe:[")        # stdin is the pipe subprocess made
    # Reopening /dev/stdin (a pipe) and a regular fd through /proc/self/fd reads them again.
    cat = _run(image, "cat /dev/stdin; exec 7</etc/group; cat /proc/self/fd/7 /dev/fd/7", stdin=b"piped\n")
    assert cat.returncode == 0, cat.stderr
    group = _run(image, "cat /etc/group").stdout
    assert cat.stdout == b"piped\n" + group * 2


def test_cpuinfo_describes_the_virtual_cpu(image: Path) -> None:
    got = _run(image, "cat /proc/cpuinfo")
    assert got.returncode == 0, got.stderr
    blocks = [b for b in got.stdout.decode().split("\n\n") if b.strip()]
    assert len(blocks) == len(os.sched_getaffinity(0))
    for i, block in enumerate(blocks):
        fields = {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in block.splitlines())}
        assert fields["processor"] == str(i)
        assert fields["vendor_id"] == abi.CPU_VENDOR
        assert fields["model name"] == abi.CPU_BRAND
        # The leaf-1 / 0x8000_0001 bits abi.cpuid sets, by Linux's names and in Linux's order.
        assert fields["flags"] == "fpu tsc cx8 cmov mmx fxsr sse sse2 syscall lm lahf_lm"
    host = Path("/proc/cpuinfo").read_text()
    host_flags = set(next(l for l in host.splitlines() if l.startswith("flags")).split(":")[1].split())
    assert set(fields["flags"].split()) <= host_flags     # the names Linux uses for the same bits


def test_meminfo_follows_the_memory_limit(image: Path) -> None:
    got = _run(image, "cat /proc/meminfo", "--memory", "256m")
    assert got.returncode == 0, got.stderr
    info = {l.split(":")[0]: l.split()[1:] for l in got.stdout.decode().splitlines()}
    assert info["MemTotal"] == ["262144", "kB"]
    assert 0 < int(info["MemAvailable"][0]) <= 262144 and int(info["MemFree"][0]) <= 262144
    # Without --memory a run gets kiln's default, and says so.
    default = _run(image, "cat /proc/meminfo")
    want = str(_parse_bytes(DEFAULT_MEMORY) // 1024)
    assert default.stdout.decode().splitlines()[0].split() == ["MemTotal:", want, "kB"]


def test_mounts_lists_root_proc_dev_shm_tmp_and_volumes(image: Path, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    got = _run(image, "cat /proc/mounts", "--volume", f"{tmp_path / 'data'}:/data:ro")
    assert got.returncode == 0, got.stderr
    points = [l.split()[1] for l in got.stdout.decode().splitlines()]
    assert points == ["/", "/proc", "/dev", "/dev/shm", "/tmp", "/data"]
    data = got.stdout.decode().splitlines()[-1].split()
    assert data[3].split(",")[0] == "ro"


def test_proc_and_dev_are_read_only_but_devices_work(image: Path) -> None:
    got = _run(image, "echo x > /dev/null && head -c 4 /dev/zero | od -An -tx1 && head -c 16 /dev/urandom | wc -c;"
               " echo y > /proc/cpuinfo; echo rc=$?")
    assert got.stdout.split(b"\n")[:2] == [b" 00 00 00 00", b"16"], got.stderr
    assert got.stdout.endswith(b"rc=1\n")
    shm = _run(image, "echo kept > /dev/shm/x && cat /dev/shm/x && ls /dev | grep -x shm")
    assert shm.stdout == b"kept\nshm\n", shm.stderr       # /dev/shm is the one writable place
    full = _run(image, "echo x > /dev/full; echo rc=$?")
    assert full.stdout == b"rc=1\n" and b"No space left on device" in full.stderr


def test_dev_tty_without_a_controlling_terminal_is_enxio(image: Path) -> None:
    got = _run(image, "cat /dev/tty; echo rc=$?", start_new_session=True)
    assert got.stdout == b"rc=1\n"
    assert b"No such device or address" in got.stderr
    ls = _run(image, "ls -l /dev/tty /dev/null")
    assert [l[:1] for l in ls.stdout.splitlines()] == [b"c", b"c"], ls.stderr


def test_tmp_is_writable(image: Path) -> None:
    got = _run(image, "ls -ld /tmp && echo hi > /tmp/f && cat /tmp/f")
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith(b"drwxrwxrwt") and got.stdout.endswith(b"hi\n")


def test_tmp_is_made_in_the_upper_layer_when_the_image_lacks_it(tmp_path: Path) -> None:
    rootfs, upper = tmp_path / "rootfs", tmp_path / "upper"
    (rootfs / "etc").mkdir(parents=True)
    upper.mkdir()
    vfs = Vfs(rootfs, upper, system=True)
    try:
        assert vfs.stat("/tmp").st_mode == 0o41777
        assert (upper / "tmp").is_dir() and not (rootfs / "tmp").exists()
        assert {"proc", "dev", "tmp", "etc"} <= {n for n, *_ in vfs.list_dir("/")}
    finally:
        vfs.close()
    assert vfs.skeleton is not None and not os.path.exists(vfs.skeleton.root)
    (tmp_path / "upper2").mkdir()
    plain = Vfs(rootfs, tmp_path / "upper2")           # without system=True: the image's tree alone
    try:
        assert {n for n, *_ in plain.list_dir("/")} == {"etc"}
    finally:
        plain.close()


def test_magic_links_cwd_and_root(image: Path) -> None:
    got = _run(image, "cd /etc && readlink /proc/self/cwd && readlink /proc/self/root && "
                      "cat /proc/self/cwd/../etc/group && cat /proc/self/root/etc/group && "
                      "cat /proc/self/mounts | head -1")
    assert got.returncode == 0, got.stderr
    group = _run(image, "cat /etc/group").stdout
    first_mount = _run(image, "head -1 /proc/mounts").stdout
    assert got.stdout == b"/etc\n/\n" + group * 2 + first_mount



def test_image_symlinks_into_proc_and_dev_reach_the_synthesized_files(image: Path) -> None:
    # As Debian's /etc/mtab -> ../proc/self/mounts: a symlink of the tree that leads into
    # /proc or /dev is served by vkernel, not by the empty directories of the rootfs.
    got = _run(image, "ln -s ../proc/self/mounts /etc/mtab && cat /etc/mtab && "
                      "test -f /etc/mtab && echo regular && "
                      "ln -s /proc/self/root/etc /tmp/etc && cat /tmp/etc/group && "
                      "ln -s ../dev/null /tmp/null && echo lost > /tmp/null && cat /tmp/null && "
                      "ln -s /proc/self /tmp/me && readlink /tmp/me/cwd")
    assert got.returncode == 0, got.stderr
    mounts = _run(image, "cat /proc/mounts").stdout
    group = _run(image, "cat /etc/group").stdout
    assert got.stdout == mounts + b"regular\n" + group + b"/\n"


PROC_SYS_AS_HOST = ("fs/file-max", "fs/nr_open", "kernel/threads-max",
                    "kernel/ngroups_max", "kernel/ostype", "kernel/cap_last_cap",
                    "kernel/random/boot_id", "kernel/random/poolsize", "vm/overcommit_memory",
                    "vm/max_map_count")
"""/proc/sys files a container reads as the host has them (the host's kernel: same values;
kernel/pid_max is left out: on newer kernels it is each pid namespace's own)."""


def test_proc_sys_reads_as_a_containers(image: Path) -> None:
    """What programs read under /proc/sys: the host's values (as a container's read-only
    /proc/sys gives them), the guest's hostname and kernel release, a fresh UUID per read;
    writing is refused as on a read-only mount (EROFS, as Docker's is)."""
    paths = " ".join(f"/proc/sys/{n}" for n in PROC_SYS_AS_HOST)
    got = _run(image, f"cat {paths}; cat /proc/sys/kernel/hostname /proc/sys/kernel/osrelease; "
                      "cat /proc/sys/kernel/random/uuid /proc/sys/kernel/random/uuid; "
                      "echo 1 > /proc/sys/vm/overcommit_memory && echo wrote")
    lines = got.stdout.decode().splitlines()
    want = [Path(f"/proc/sys/{n}").read_text().strip() for n in PROC_SYS_AS_HOST]
    assert lines[:len(want)] == want, got.stderr
    assert lines[len(want):len(want) + 2] == ["kiln", KERNEL_RELEASE]
    first, second = lines[len(want) + 2:len(want) + 4]
    assert first != second and len(first) == 36 and first[14] == "4", (first, second)
    assert "wrote" not in lines and got.returncode != 0
    assert b"Read-only file system" in got.stderr, got.stderr
