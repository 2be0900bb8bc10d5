"""Processes under vkernel: fork/wait4, execve with the hash check, fatal signals, --trace, run_guest."""
from __future__ import annotations

import json
import time
from pathlib import Path

from formats import abi
from test_vkernel_support import build_elf, c, make_rootfs, poke, sys as S, unit_for, wat_module, write_mb
from test_vkernel_run import kiln_run
from vkernel.launch import run_guest
from vkernel.runtime import RunSpec

SCR = 0xFF80_0000          # inside the main stack mapping, far below the initial rsp
RIP = abi.CPU_STATE_OFFSETS["rip"]


def test_fork_and_wait4(tmp_path: Path) -> None:
    elf = build_elf(tmp_path, "forker")
    body = f"""
      (local.set $t {S(57)})
      (if (i64.eqz (local.get $t)) (then (drop {S(231, c(7))})))
      (drop {S(61, '(local.get $t)', c(SCR), c(0), c(0))})
      ;; exit with WEXITSTATUS(status) + 1
      (drop {S(231, '(i64.add (i64.and (i64.shr_u (i64.load32_u $g (i32.const ' + str(SCR) + ')) (i64.const 8)) (i64.const 255)) (i64.const 1))')})
    """
    root = make_rootfs(tmp_path, {"/bin/forker": elf.path})
    mb = write_mb(tmp_path / "mb.kiln", wat_module(body), [unit_for(elf.path.read_bytes(), "/bin/forker")])
    got = kiln_run(root, mb, "/bin/forker")
    assert got.returncode == 8, got.stderr


def test_child_killed_by_signal_is_seen_by_wait4(tmp_path: Path) -> None:
    elf = build_elf(tmp_path, "forker")
    body = f"""
      (local.set $t {S(57)})
      (if (i64.eqz (local.get $t)) (then (drop {S(62, S(39), c(6))})))
      (drop {S(61, '(local.get $t)', c(SCR), c(0), c(0))})
      ;; exit with WTERMSIG(status)
      (drop {S(231, '(i64.and (i64.load32_u $g (i32.const ' + str(SCR) + ')) (i64.const 127))')})
    """
    root = make_rootfs(tmp_path, {"/bin/forker": elf.path})
    mb = write_mb(tmp_path / "mb.kiln", wat_module(body), [unit_for(elf.path.read_bytes(), "/bin/forker")])
    got = kiln_run(root, mb, "/bin/forker")
    assert got.returncode == 6, got.stderr


def test_kill_self_ends_like_a_shell_shows(tmp_path: Path) -> None:
    elf = build_elf(tmp_path, "abort")
    root = make_rootfs(tmp_path, {"/bin/abort": elf.path})
    mb = write_mb(tmp_path / "mb.kiln", wat_module(f"(drop {S(62, S(39), c(6))})"),
                  [unit_for(elf.path.read_bytes(), "/bin/abort")])
    got = kiln_run(root, mb, "/bin/abort")
    assert got.returncode == 134 and got.stderr.decode().strip() == "Aborted"


def _two_programs(tmp_path: Path, tamper_second: bool = False) -> tuple[Path, Path, Path]:
    """/bin/first (static) execs /bin/second (static-pie), which prints and exits 5.

    One module serves both units: like lifted code, it starts at the CPU state's rip.
    """
    first = build_elf(tmp_path, "first")
    second = build_elf(tmp_path, "second", pie=True)
    import subprocess as sp
    entry2 = int(sp.run(["readelf", "-h", str(second.path)], capture_output=True, text=True)
                 .stdout.split("Entry point address:")[1].split()[0], 16)
    strings = ""
    # argv array at 0xFF800200: ["second", "x", NULL]
    body = f"""
      (if (i64.eq (call $reg (i32.const {RIP})) (i64.const {abi.PIE_LOAD_BASE + entry2}))
        (then
          (drop {S(1, c(1), c(second.msg_addr + abi.PIE_LOAD_BASE), c(second.msg_len))})
          (drop {S(231, c(5))})))
      (i64.store $g (i32.const 0xFF800200) (i64.const 0xFF80010C))
      (i64.store $g (i32.const 0xFF800208) (i64.const 0xFF800113))
      (i64.store $g (i32.const 0xFF800210) (i64.const 0))
      (local.set $t {S(59, c(0xFF800100), c(0xFF800200), c(0xFF800210))})
      ;; execve returned: exit with -errno
      (drop {S(231, '(i64.sub (i64.const 0) (local.get $t))')})
    """
    body = poke(0xFF800100, b"/bin/second\0second\0x\0") + body
    data2 = second.path.read_bytes()
    root = make_rootfs(tmp_path, {"/bin/first": first.path, "/bin/second": second.path})
    if tamper_second:
        (root / "bin/second").write_bytes(data2 + b"\0")
    mb = write_mb(tmp_path / "mb.kiln", wat_module(body, strings),
                  [unit_for(first.path.read_bytes(), "/bin/first"),
                   unit_for(data2, "/bin/second", pie=True)])
    return root, mb, tmp_path / "audit.jsonl"


def test_execve_replaces_the_program(tmp_path: Path) -> None:
    root, mb, _ = _two_programs(tmp_path)
    got = kiln_run(root, mb, "/bin/first")
    assert (got.returncode, got.stdout) == (5, b"hello from a real ELF\n"), got.stderr


def test_execve_of_unindexed_file_fails_with_eacces(tmp_path: Path) -> None:
    root, mb, log = _two_programs(tmp_path, tamper_second=True)
    got = kiln_run(root, mb, "/bin/first", extra=("--audit-log", str(log)))
    assert got.returncode == 13 and got.stdout == b""              # EACCES returned to the guest
    assert "refusing to run /bin/second" in got.stderr.decode()
    (rec,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert rec["event"] == "exec" and rec["path"] == "/bin/second" and rec["decision"] == "refused"


def test_trace_prints_strace_lines(tmp_path: Path) -> None:
    elf = build_elf(tmp_path, "hello")
    body = (f"(drop {S(257, c(-100 & (2**64 - 1)), c(0xFF800100), c(0o2000000), c(0))})"
            f"(drop {S(1, c(1), c(elf.msg_addr), c(elf.msg_len))})(drop {S(231, c(0))})")
    extra = ""
    body = poke(0xFF800100, b"/etc/passwd\0") + body
    root = make_rootfs(tmp_path, {"/bin/hello": elf.path, "/etc/passwd": b"root:x:0:0::/:/bin/sh\n"})
    mb = write_mb(tmp_path / "mb.kiln", wat_module(body, extra),
                  [unit_for(elf.path.read_bytes(), "/bin/hello")])
    got = kiln_run(root, mb, "/bin/hello", extra=("--trace",))
    lines = got.stderr.decode().splitlines()
    assert lines == ['openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC, 0o0) = 3',
                     'write(1, "hello from a real ELF\\n", 22) = 22',
                     'exit_group(0) = ?']


def test_getpid_round_trip_cost(tmp_path: Path) -> None:
    """The syscall hot path: measured through run_guest, the difference of two loop lengths."""
    elf = build_elf(tmp_path, "loop")
    root = make_rootfs(tmp_path, {"/bin/loop": elf.path})

    def timed(n: int) -> float:
        body = f"""
          (block $d (loop $l
            (br_if $d (i32.ge_u (local.get $i) (i32.const {n})))
            (drop {S(39)})
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $l)))"""
        mb = write_mb(tmp_path / f"mb{n}.kiln", wat_module(body), [unit_for(elf.path.read_bytes(), "/bin/loop")])
        spec = RunSpec(rootfs=root, megabinary=mb, argv=("/bin/loop",))
        best = float("inf")
        for _ in range(3):          # CPU time, best of three: the machine is shared
            t = time.process_time()
            assert run_guest(spec) == 0
            best = min(best, time.process_time() - t)
        return best

    small, big = timed(100), timed(40100)
    per_call_us = (big - small) / 40000 * 1e6
    print(f"getpid round trip: {per_call_us:.2f} us")
    assert per_call_us < 10.0
