"""End to end: `kiln run` over a real static ELF and a contract-following module."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from formats import abi
from test_vkernel_support import build_elf, c, make_rootfs, poke, sys as S, unit_for, wat_module, write_mb

KILN = [sys.executable, "-m", "vkernel.cli"]


def kiln_run(root: Path, mb: Path, *cmd: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*KILN, "run", "--rootfs", str(root), "--megabinary", str(mb), *extra,
                           "--", *cmd], capture_output=True, timeout=60)


def hello_wat(msg_addr: int, msg_len: int, status: int = 3) -> str:
    # What the lifted hello program does: write(1, msg, len); exit_group(status).
    return wat_module(f"(drop {S(1, c(1), c(msg_addr), c(msg_len))})"
                      f"(drop {S(231, c(status))})")


@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
def test_hello_matches_native(tmp_path: Path, pie: bool) -> None:
    elf = build_elf(tmp_path, "hello", pie=pie)
    native = subprocess.run([str(elf.path)], capture_output=True)
    bias = abi.PIE_LOAD_BASE if pie else 0      # the test ELFs link at 0 (pie) or 0x400000
    root = make_rootfs(tmp_path, {"/bin/hello": elf.path})
    mb = write_mb(tmp_path / "mb.kiln", hello_wat(elf.msg_addr + bias, elf.msg_len),
                  [unit_for(elf.path.read_bytes(), "/bin/hello", pie=pie)])
    got = kiln_run(root, mb, "/bin/hello")
    assert got.stdout == native.stdout == b"hello from a real ELF\n"
    assert got.returncode == native.returncode == 3
    assert got.stderr == b""


def test_command_found_on_path(tmp_path: Path) -> None:
    elf = build_elf(tmp_path, "hello")
    root = make_rootfs(tmp_path, {"/usr/bin/hello": elf.path})
    mb = write_mb(tmp_path / "mb.kiln", hello_wat(elf.msg_addr, elf.msg_len, 0),
                  [unit_for(elf.path.read_bytes(), "/usr/bin/hello")])
    got = kiln_run(root, mb, "hello")
    assert (got.returncode, got.stdout) == (0, b"hello from a real ELF\n")


def test_tampered_elf_is_refused_with_audit_record(tmp_path: Path) -> None:
    elf = build_elf(tmp_path, "hello")
    good = elf.path.read_bytes()
    root = make_rootfs(tmp_path, {"/bin/hello": elf.path})
    mb = write_mb(tmp_path / "mb.kiln", hello_wat(elf.msg_addr, elf.msg_len),
                  [unit_for(good, "/bin/hello")])
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x01                   # one byte changed after indexing
    (root / "bin/hello").write_bytes(bytes(bad))
    audit = tmp_path / "audit.jsonl"
    got = kiln_run(root, mb, "/bin/hello", extra=("--audit-log", str(audit)))
    import blake3
    want, have = blake3.blake3(good).hexdigest(), blake3.blake3(bytes(bad)).hexdigest()
    err = got.stderr.decode()
    assert got.returncode == 2 and got.stdout == b""
    assert "Traceback" not in err
    assert f"expected one of the indexed hashes for /bin/hello ({want}), file has {have}" in err
    assert "hint:" in err
    recs = [json.loads(line) for line in audit.read_text().splitlines()]
    assert len(recs) == 1
    assert recs[0]["decision"] == "refused" and recs[0]["path"] == "/bin/hello"
    assert recs[0]["blake3"] == have and recs[0]["expected"] == [want]


def test_dynamic_program_without_its_interpreter_is_refused_clearly(tmp_path: Path) -> None:
    """A dynamic program whose PT_INTERP is not in the image: the error names the interpreter
    (Linux's execve gives ENOENT and leaves the user to guess)."""
    src = tmp_path / "dyn.c"
    src.write_text("int main(void){return 0;}\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "dyn"), str(src)], check=True)
    data = (tmp_path / "dyn").read_bytes()
    interp = subprocess.run(["readelf", "-p", ".interp", str(tmp_path / "dyn")],
                            capture_output=True, text=True).stdout.split()[-1]
    root = make_rootfs(tmp_path, {"/bin/dyn": tmp_path / "dyn"})
    mb = write_mb(tmp_path / "mb.kiln", wat_module(""), [unit_for(data, "/bin/dyn", pie=True)])
    got = kiln_run(root, mb, "/bin/dyn")
    assert got.returncode == 2
    err = got.stderr.decode()
    assert f"cannot run /bin/dyn: its interpreter {interp}: No such file or directory" in err
    assert "Traceback" not in err


def test_missing_aot_artifact_asks_for_recompile(tmp_path: Path) -> None:
    elf = build_elf(tmp_path, "hello")
    root = make_rootfs(tmp_path, {"/bin/hello": elf.path})
    mb = write_mb(tmp_path / "mb.kiln", hello_wat(elf.msg_addr, elf.msg_len),
                  [unit_for(elf.path.read_bytes(), "/bin/hello")], with_aot=False)
    got = kiln_run(root, mb, "/bin/hello")
    err = got.stderr.decode()
    assert got.returncode == 2 and "no ahead-of-time code for this engine" in err
    assert "re-run `recompile`" in err and "Traceback" not in err


def test_argv_env_and_auxv_reach_the_guest(tmp_path: Path) -> None:
    """The lifted program walks its initial stack (SysV layout) and echoes argv[1:] and envp."""
    elf = build_elf(tmp_path, "hello")
    # p = rsp; argc = [p]; argv[i] = [p + 8 + 8i]; print each argv[i>=1] + "\n", then envp.
    body = f"""
      (local.set $p (i32.wrap_i64 (call $reg (i32.const {abi.CPU_STATE_OFFSETS['rsp']}))))
      (local.set $n (i32.wrap_i64 (i64.load $g (local.get $p))))
      (local.set $i (i32.const 1))
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $t (i64.load $g (i32.add (local.get $p) (i32.mul (i32.add (local.get $i) (i32.const 1)) (i32.const 8)))))
        (drop {S(1, c(1), '(local.get $t)', '(i64.extend_i32_u (call $strlen (i32.wrap_i64 (local.get $t))))')})
        (drop {S(1, c(1), c(0xFF800000), c(1))})
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      ;; envp starts after argv's NULL
      (local.set $i (i32.add (local.get $n) (i32.const 2)))
      (block $done2 (loop $l2
        (local.set $t (i64.load $g (i32.add (local.get $p) (i32.mul (local.get $i) (i32.const 8)))))
        (br_if $done2 (i64.eqz (local.get $t)))
        (drop {S(1, c(1), '(local.get $t)', '(i64.extend_i32_u (call $strlen (i32.wrap_i64 (local.get $t))))')})
        (drop {S(1, c(1), c(0xFF800000), c(1))})
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l2)))
      (drop {S(231, '(i64.extend_i32_u (local.get $n))')})
    """
    extra = ""
    body = poke(0xFF800000, b"\n") + body
    root = make_rootfs(tmp_path, {"/bin/echoargs": elf.path})
    mb = write_mb(tmp_path / "mb.kiln", wat_module(body, extra),
                  [unit_for(elf.path.read_bytes(), "/bin/echoargs")])
    got = kiln_run(root, mb, "/bin/echoargs", "one", "two words", "",
                   extra=("--env", "A=1", "--env", "PATH=/bin"))
    assert got.returncode == 4
    # HOME comes from the user's passwd entry, "/" without one (as docker sets it).
    assert got.stdout == b"one\ntwo words\n\nA=1\nPATH=/bin\nHOME=/\n"


def test_fault_no_translation_ends_like_sigsegv(tmp_path: Path) -> None:
    elf = build_elf(tmp_path, "hello")
    fr = abi.FAULT_RECORD
    body = f"""
      (i32.store $c (i32.const {fr}) (i32.const {int(abi.FaultCode.NO_TRANSLATION)}))
      (i64.store $c (i32.const {fr + 8}) (i64.const 0x401234))
      (call $fault (i32.const {int(abi.FaultCode.NO_TRANSLATION)}))
    """
    root = make_rootfs(tmp_path, {"/bin/hello": elf.path})
    mb = write_mb(tmp_path / "mb.kiln", wat_module(body),
                  [unit_for(elf.path.read_bytes(), "/bin/hello")])
    got = kiln_run(root, mb, "/bin/hello")
    err = got.stderr.decode()
    assert got.returncode == 128 + 11
    assert "no translation for 0x401234 in /bin/hello" in err and "Segmentation fault" in err


def test_unsupported_instruction_names_mnemonic_address_and_file(tmp_path: Path) -> None:
    elf = build_elf(tmp_path, "hello")
    fr = abi.FAULT_RECORD
    code = int(abi.FaultCode.UNSUPPORTED)
    body = f"""
      (i32.store $c (i32.const {fr}) (i32.const {code}))
      (i32.store $c (i32.const {fr + 4}) (i32.const 0))
      (i64.store $c (i32.const {fr + 8}) (i64.const 0x401005))
      (call $fault (i32.const {code}))
    """
    root = make_rootfs(tmp_path, {"/bin/hello": elf.path})
    unit = unit_for(elf.path.read_bytes(), "/bin/hello",
                    trap_sites=((0x401005, "vfmadd231ps", "AVX is not implemented"),))
    mb = write_mb(tmp_path / "mb.kiln", wat_module(body), [unit])
    got = kiln_run(root, mb, "/bin/hello")
    assert got.returncode == 128 + 4
    assert "unsupported instruction 'vfmadd231ps' at 0x401005 in /bin/hello" in got.stderr.decode()


def test_write_to_a_closed_pipe_kills_with_sigpipe(tmp_path: Path) -> None:
    elf = build_elf(tmp_path, "hello")
    scr = 0xFF800000
    body = (f"(drop {S(293, c(scr), c(0))})"                                  # pipe2
            f"(drop {S(3, '(i64.load32_u $g (i32.const ' + str(scr) + '))')})"  # close(read end)
            f"(drop {S(1, '(i64.load32_u $g (i32.const ' + str(scr + 4) + '))', c(elf.msg_addr), c(4))})"
            f"(drop {S(231, c(0))})")
    root = make_rootfs(tmp_path, {"/bin/hello": elf.path})
    mb = write_mb(tmp_path / "mb.kiln", wat_module(body), [unit_for(elf.path.read_bytes(), "/bin/hello")])
    got = kiln_run(root, mb, "/bin/hello")
    assert got.returncode == 128 + 13 and b"Broken pipe" in got.stderr


@pytest.mark.parametrize("args,needle", [
    (("--env", "NOVALUE"), "is not of the form KEY=VALUE"),
    (("--workdir", "/missing"), "working directory /missing does not exist"),
])
def test_cli_errors_are_reported_without_traceback(tmp_path: Path, args, needle: str) -> None:
    elf = build_elf(tmp_path, "hello")
    root = make_rootfs(tmp_path, {"/bin/hello": elf.path})
    mb = write_mb(tmp_path / "mb.kiln", hello_wat(elf.msg_addr, elf.msg_len),
                  [unit_for(elf.path.read_bytes(), "/bin/hello")])
    got = kiln_run(root, mb, "/bin/hello", extra=args)
    err = got.stderr.decode()
    assert got.returncode == 2 and needle in err and "Traceback" not in err
    got = kiln_run(root, mb, "nosuchcmd")
    assert got.returncode == 2 and "nosuchcmd: command not found" in got.stderr.decode()


def test_upper_directory_keeps_the_runs_writes(tmp_path: Path) -> None:
    elf = build_elf(tmp_path, "hello")
    # openat("/tmp/out", O_WRONLY|O_CREAT, 0644); write(fd=3, msg, len); exit_group(0)
    body = (f"(drop {S(257, c(-100 & (2**64 - 1)), c(0xFF800100), c(0o101), c(0o644))})"
            f"(drop {S(1, c(3), c(elf.msg_addr), c(elf.msg_len))})")
    extra = ""
    body = poke(0xFF800100, b"/tmp/out\0") + body
    root = make_rootfs(tmp_path, {"/bin/hello": elf.path})
    mb = write_mb(tmp_path / "mb.kiln", wat_module(body, extra), [unit_for(elf.path.read_bytes(), "/bin/hello")])
    upper = tmp_path / "changes"
    got = kiln_run(root, mb, "/bin/hello", extra=("--upper", str(upper)))
    assert got.returncode == 0, got.stderr
    assert (upper / "tmp/out").read_bytes() == b"hello from a real ELF\n"
    assert not (root / "tmp/out").exists()
    bad = kiln_run(root, mb, "/bin/hello", extra=("--upper", str(root / "tmp/x")))
    assert bad.returncode == 2 and "lies inside the rootfs" in bad.stderr.decode()
    assert not (root / "tmp/x").exists()


def test_entry_state_follows_the_contract(tmp_path: Path) -> None:
    """The lifted side's view at kiln_run: registers, FPU/SSE control words, region table."""
    elf = build_elf(tmp_path, "hello")
    import subprocess as sp
    hdr = sp.run(["readelf", "-lW", str(elf.path)], capture_output=True, text=True).stdout
    load = next(line.split() for line in hdr.splitlines()
                if line.strip().startswith("LOAD") and line.split()[-2] == "E")
    text_start, text_size = int(load[2], 16), int(load[5], 16)
    entry = int(sp.run(["readelf", "-h", str(elf.path)], capture_output=True, text=True)
                .stdout.split("Entry point address:")[1].split()[0], 16)
    off = abi.CPU_STATE_OFFSETS
    checks = []                       # (wat i64 expression, expected) -> exit code = failing check + 1
    for r in abi.GPR_NAMES:
        if r != "rsp":
            checks.append((f"(i64.load $c (i32.const {off[r]}))", 0))
    checks += [
        (f"(i64.load $c (i32.const {off['rip']}))", entry),
        (f"(i64.load $c (i32.const {off['rflags']}))", 0x202),
        (f"(i64.load32_u $c (i32.const {off['mxcsr']}))", 0x1F80),
        (f"(i64.load16_u $c (i32.const {off['fpu_cw']}))", 0x37F),
        (f"(i64.load16_u $c (i32.const {off['fpu_top']}))", 0),
        (f"(i64.load16_u $c (i32.const {off['fpu_tag']}))", 0),
        (f"(i64.and (i64.load $c (i32.const {off['rsp']})) (i64.const 15))", 0),
        (f"(i64.load32_u $c (i32.const {abi.CODE_REGIONS}))", 1),
        (f"(i64.load32_u $c (i32.const {abi.CODE_REGIONS + 16}))", text_start),
        (f"(i64.load32_u $c (i32.const {abi.CODE_REGIONS + 20}))", text_start + text_size),
        (f"(i64.load32_u $c (i32.const {abi.CODE_REGIONS + 24}))", 0),
        (f"(i64.load32_u $c (i32.const {abi.CODE_REGIONS + 28}))", 0),
    ]
    body = "".join(f"(if (i64.ne {expr} (i64.const {want})) (then (drop {S(231, c(i + 1))})))"
                   for i, (expr, want) in enumerate(checks))
    root = make_rootfs(tmp_path, {"/bin/hello": elf.path})
    mb = write_mb(tmp_path / "mb.kiln", wat_module(body), [unit_for(elf.path.read_bytes(), "/bin/hello")])
    got = kiln_run(root, mb, "/bin/hello")
    assert got.returncode == 0, f"check {got.returncode - 1} failed: {checks[got.returncode - 1]}"
