"""What `kiln run` does at start-up: which code it loads, and how it checks the AOT code.

The timing targets themselves are measured by ``bench/run.py`` (``true`` and
``fork-exec``), not here.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from formats.megabinary import read_megabinary
from test_vkernel_support import build_elf, make_rootfs, unit_for, wat_module, write_mb
from test_vkernel_run import hello_wat
from vkernel.engine import engine_fingerprint

KILN = [sys.executable, "-m", "vkernel.cli"]


def _hello(tmp: Path) -> tuple[Path, Path]:
    elf = build_elf(tmp, "hello")
    root = make_rootfs(tmp, {"/bin/hello": elf.path})
    mb = write_mb(tmp / "mb.kiln", hello_wat(elf.msg_addr, elf.msg_len, 0),
                  [unit_for(elf.path.read_bytes(), "/bin/hello")])
    return root, mb


def _imports_of_a_plain_run(tmp_path: Path) -> set[str]:
    """The modules a ``kiln run --rootfs --megabinary`` of /bin/hello imports (-X importtime)."""
    root, mb = _hello(tmp_path)
    got = subprocess.run([sys.executable, "-X", "importtime", *KILN[1:], "run", "--rootfs",
                          str(root), "--megabinary", str(mb), "--", "/bin/hello"],
                         capture_output=True, timeout=60)
    assert got.returncode == 0 and got.stdout == b"hello from a real ELF\n", got.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in got.stderr.decode().splitlines()
            if line.startswith("import time:")}


def test_kiln_run_loads_no_recompiler_code(tmp_path: Path) -> None:
    imported = _imports_of_a_plain_run(tmp_path)
    assert "vkernel.runtime" in imported and "wasmtime" in imported
    heavy = {m for m in imported if m.split(".")[0] in ("lief", "capstone", "recompiler")}
    assert not heavy


def test_damaged_aot_code_is_refused_before_it_runs(tmp_path: Path) -> None:
    root, mb = _hello(tmp_path)
    offset, length = read_megabinary(mb).aot_location(engine_fingerprint())
    raw = bytearray(mb.read_bytes())
    raw[offset + length // 2] ^= 0x40              # one bit of the machine code
    mb.write_bytes(bytes(raw))
    got = subprocess.run([*KILN, "run", "--rootfs", str(root), "--megabinary", str(mb), "--",
                          "/bin/hello"], capture_output=True, timeout=60)
    err = got.stderr.decode()
    assert got.returncode != 0 and got.stdout == b""
    assert "BLAKE3" in err and "recompile" in err and "Traceback" not in err


def test_many_runs_in_one_process_share_nothing_stale(tmp_path: Path) -> None:
    """Runs one after another in the same host process (an agent host) each start clean."""
    root, mb = _hello(tmp_path)
    code = ("import sys\nfrom pathlib import Path\nfrom vkernel.launch import run_guest\nfrom vkernel.runtime import RunSpec\n"
            f"spec = RunSpec(rootfs=Path({str(root)!r}), megabinary=Path({str(mb)!r}), "
            "argv=('/bin/hello',))\n"
            "print([run_guest(spec) for _ in range(3)], file=sys.stderr)\n")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                         cwd=Path(__file__).parent)
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"hello from a real ELF\n" * 3
    assert got.stderr.decode().strip().endswith("[0, 0, 0]")


# -- checks kept between runs (vkernel/verified.py) ---------------------------------------------
def _kiln(root: Path, mb: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KILN_CACHE=str(cache))
    return subprocess.run([*KILN, "run", *extra, "--rootfs", str(root), "--megabinary", str(mb),
                           "--", "/bin/hello"], capture_output=True, timeout=60, env=env)


def test_a_plain_run_imports_neither_click_nor_importlib_metadata(tmp_path: Path) -> None:
    imported = _imports_of_a_plain_run(tmp_path)
    assert "vkernel.runtime" in imported
    assert not {m for m in imported if m.split(".")[0] == "click"}
    assert "importlib.metadata" not in imported and "email" not in imported


def test_second_run_reuses_the_checked_artifact_and_unit_table(tmp_path: Path) -> None:
    root, mb = _hello(tmp_path)
    cache = tmp_path / "cache"
    first = _kiln(root, mb, cache)
    assert first.returncode == 0 and first.stdout == b"hello from a real ELF\n", first.stderr
    kept = cache / "verified"
    assert kept.stat().st_mode & 0o777 == 0o700
    names = sorted(p.name for p in kept.iterdir())
    entry = read_megabinary(mb).aot_section(engine_fingerprint())
    artifact = kept / f"aot-{entry.blake3.hex()}.cwasm"
    # The kept artifact is byte for byte the megabinary's AOT section.
    assert artifact.read_bytes() == mb.read_bytes()[entry.offset:entry.end]
    assert any(n.startswith("units-") for n in names) and any(n.startswith("file-") for n in names)
    before = artifact.stat()
    again = _kiln(root, mb, cache)
    assert again.returncode == 0 and again.stdout == b"hello from a real ELF\n", again.stderr
    after = artifact.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten
    assert sorted(p.name for p in kept.iterdir()) == names


def test_a_changed_kept_artifact_is_not_used(tmp_path: Path) -> None:
    root, mb = _hello(tmp_path)
    cache = tmp_path / "cache"
    assert _kiln(root, mb, cache).returncode == 0
    entry = read_megabinary(mb).aot_section(engine_fingerprint())
    artifact = cache / "verified" / f"aot-{entry.blake3.hex()}.cwasm"
    raw = bytearray(artifact.read_bytes())
    raw[len(raw) // 2] ^= 0x40                      # one bit of the kept machine code
    with open(artifact, "r+b") as f:                # in place: same inode, same size
        f.write(raw)
    got = _kiln(root, mb, cache)
    assert got.returncode == 0 and got.stdout == b"hello from a real ELF\n", got.stderr
    # Its record no longer matched, so the section was copied and checked again.
    assert artifact.read_bytes() == mb.read_bytes()[entry.offset:entry.end]


def test_damaged_aot_code_is_refused_after_a_good_run(tmp_path: Path) -> None:
    """The damaged section hashes differently from the table's record: refused, although the
    kept artifact for that record is intact."""
    root, mb = _hello(tmp_path)
    cache = tmp_path / "cache"
    assert _kiln(root, mb, cache).returncode == 0
    offset, length = read_megabinary(mb).aot_location(engine_fingerprint())
    raw = bytearray(mb.read_bytes())
    raw[offset + length // 2] ^= 0x40
    with open(mb, "r+b") as f:
        f.write(raw)
    got = _kiln(root, mb, cache)
    err = got.stderr.decode()
    assert got.returncode != 0 and got.stdout == b""
    assert "BLAKE3" in err and "recompile" in err and "Traceback" not in err


def _with_index(good_mb: Path, edit, out: Path) -> Path:
    """``good_mb`` rewritten to ``out`` with its INDEX map changed by ``edit(obj)``: the same
    module, metadata and AOT code, every hash correct."""
    from formats.index import canonical_cbor
    from formats.megabinary import Section, SectionKind, aot_name, assemble
    good = read_megabinary(good_mb)
    obj = good.index.to_obj()
    edit(obj)
    sections = [Section(SectionKind.INDEX, "", canonical_cbor(obj)),
                Section(SectionKind.META, "", canonical_cbor(good.metadata.to_obj()))]
    names = sorted(good.module_names(), key=str.encode)
    sections += [Section(SectionKind.MODULE, n, good.module_bytes(n)) for n in names]
    sections += sorted((Section(SectionKind.AOT, aot_name(n, fp), good.aot_for(fp, n))
                        for fp in good.engines() for n in names), key=lambda s: s.name.encode())
    out.write_bytes(assemble(sections))
    return out


def test_an_index_breaking_the_schema_is_reported_after_a_good_run(tmp_path: Path) -> None:
    """Same module and AOT code, an INDEX with a relative guest path (hashes all correct)."""
    root, mb = _hello(tmp_path)
    cache = tmp_path / "cache"
    assert _kiln(root, mb, cache).returncode == 0
    bad = _with_index(mb, lambda obj: obj["units"][0].__setitem__("paths", ["bin/hello"]),
                      tmp_path / "bad.kiln")
    got = _kiln(root, bad, cache)
    err = got.stderr.decode()
    assert got.returncode == 2 and got.stdout == b""
    assert "units[0].paths[0]" in err and "'bin/hello'" in err and "Traceback" not in err


def test_a_damaged_or_foreign_unit_table_is_rebuilt(tmp_path: Path) -> None:
    root, mb = _hello(tmp_path)
    cache = tmp_path / "cache"
    assert _kiln(root, mb, cache).returncode == 0
    [record] = (cache / "verified").glob("units-*")
    good = record.read_bytes()
    damaged = bytearray(good)
    damaged[-3] ^= 0x01
    record.write_bytes(bytes(damaged))
    got = _kiln(root, mb, cache)
    assert got.returncode == 0 and got.stdout == b"hello from a real ELF\n", got.stderr
    assert record.read_bytes() == good                      # decoded afresh and kept again
    if os.geteuid() != 0:
        return
    os.chown(record, 65534, 65534)                          # someone else's file: not trusted
    got = _kiln(root, mb, cache)
    assert got.returncode == 0 and got.stdout == b"hello from a real ELF\n", got.stderr
    assert record.stat().st_uid == os.geteuid() and record.read_bytes() == good


def test_a_cache_open_to_others_keeps_nothing(tmp_path: Path) -> None:
    root, mb = _hello(tmp_path)
    cache = tmp_path / "cache"
    (cache / "verified").mkdir(parents=True)
    os.chmod(cache / "verified", 0o777)
    got = _kiln(root, mb, cache)
    assert got.returncode == 0 and got.stdout == b"hello from a real ELF\n", got.stderr
    assert list((cache / "verified").iterdir()) == []


# -- `kiln run` parsed without click (vkernel/cli.py fast_run_params) ----------------------------
FAST_ARGVS = [
    ["run", "--rootfs", "/", "--megabinary", "/dev/null", "--", "/bin/sh", "-c", "echo hi"],
    ["run", "IMAGE", "--", "ls", "-l", "--trace"],
    ["run", "IMAGE", "ls", "/"],
    ["run", "--trace", "IMAGE", "-e", "A=1", "--env", "B=2", "--env=C=3", "-w", "/tmp"],
    ["run", "IMAGE", "--timeout", "2.5", "--pids-limit", "7", "--memory", "64m", "-u", "1:2"],
    ["run", "--upper", "/nonexistent/up", "--keep-upper", "/nonexistent/up2", "IMAGE"],
    ["run", "--policy", "/nonexistent/policy.json", "IMAGE", "--", "/bin/true"],
    ["run", "-v", "/tmp:/data:ro", "--volume=/srv:/srv", "--audit-log", "/nonexistent/a.log",
     "--entrypoint", "/bin/true", "IMAGE", "--", "--help"],
    ["run", "IMAGE", "--trace", "arg", "--", "--", "-x"],
    ["run", "--timeout", "inf", "IMAGE"],
    ["run"],
]
CLICK_ONLY_ARGVS = [
    ["run", "--help"], ["run", "-h"], ["--version"], ["inspect", "x"], ["run", "--tracex"],
    ["run", "--pids-limit", "0", "IMAGE"], ["run", "--timeout", "soon", "IMAGE"],
    ["run", "--megabinary", "/tmp", "IMAGE"], ["run", "--rootfs", "/etc/passwd", "IMAGE"],
    ["run", "-eA=1", "IMAGE"], ["run", "--trace=1", "IMAGE"], ["run", "IMAGE", "-l"],
    ["run", "--workdir"], ["run", "--workdir", "", "IMAGE"], ["run", "-", "IMAGE"],
]


def _click_params(argv: list[str]) -> dict:
    """What click itself passes to the ``run`` command for ``kiln ARGV`` (ARGV[0] == "run")."""
    import click
    from vkernel.cli import command_group
    group = command_group()
    parent = click.Context(group, info_name="kiln")
    run = group.get_command(parent, argv[0])
    return run.make_context(argv[0], list(argv[1:]), parent=parent).params


def test_fast_run_parse_agrees_with_click() -> None:
    from vkernel.cli import fast_run_params
    for argv in FAST_ARGVS:
        fast = fast_run_params(argv)
        assert fast is not None, argv
        assert fast == _click_params(argv), argv


def test_unusual_run_arguments_are_left_to_click() -> None:
    from vkernel.cli import fast_run_params
    for argv in CLICK_ONLY_ARGVS:
        assert fast_run_params(argv) is None, argv


def test_run_errors_read_the_same_with_and_without_click(tmp_path: Path) -> None:
    """`--rootfs` without `--megabinary`: the fast path's report is click's report."""
    root, _ = _hello(tmp_path)
    fast = subprocess.run([*KILN, "run", "--rootfs", str(root), "--", "/bin/hello"],
                          capture_output=True, timeout=60)
    slow = subprocess.run([*KILN, "run", "--rootfs", str(root), "-", "--", "/bin/hello"],
                          capture_output=True, timeout=60)   # "-": parsed by click
    assert fast.returncode == slow.returncode == 2
    assert fast.stderr == slow.stderr and b"--megabinary go together" in fast.stderr


def test_byte_code_is_kept_in_the_cache_when_python_may_not_write_it(tmp_path: Path) -> None:
    """With PYTHONDONTWRITEBYTECODE (set on some machines) kiln still keeps vkernel's byte
    code, in its cache, and a second run compiles nothing again."""
    import vkernel.runtime
    root, mb = _hello(tmp_path)
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    env.update(PYTHONDONTWRITEBYTECODE="1", KILN_CACHE=str(cache))
    cmd = [*KILN, "run", "--rootfs", str(root), "--megabinary", str(mb), "--", "/bin/hello"]
    first = subprocess.run(cmd, capture_output=True, timeout=60, env=env)
    assert first.returncode == 0 and first.stdout == b"hello from a real ELF\n", first.stderr
    source = Path(vkernel.runtime.__file__).resolve()
    pyc = cache / "pycache" / source.parent.relative_to("/") / "runtime.cpython-311.pyc"
    pyc = pyc.with_name(f"runtime.{sys.implementation.cache_tag}.pyc")
    assert pyc.is_file()
    before = pyc.stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, timeout=60, env=env)
    assert again.returncode == 0 and again.stdout == b"hello from a real ELF\n", again.stderr
    assert pyc.stat().st_mtime_ns == before


def test_kept_artifacts_are_bounded_least_recently_used_first(tmp_path: Path) -> None:
    from vkernel.verified import TrustDir
    trust = TrustDir.open(tmp_path)
    assert trust is not None
    kept = tmp_path / "verified"
    for n in range(6):
        (kept / f"aot-{n}.cwasm").write_bytes(bytes(1000))
        (kept / f"aot-{n}.ok").write_text("stamp")
        os.utime(kept / f"aot-{n}.ok", ns=(n * 10**9, n * 10**9))     # 5 is the most recent
    (kept / "aot-orphan.cwasm").write_bytes(b"x")                      # no record, old
    os.utime(kept / "aot-orphan.cwasm", ns=(0, 0))
    trust.prune("aot-", 4)
    assert sorted(p.name for p in kept.iterdir()) == [
        f"aot-{n}.{ext}" for n in (2, 3, 4, 5) for ext in ("cwasm", "ok")]
    trust.prune("aot-", 4, keep_bytes=2500)                          # two artifacts' worth
    assert sorted(p.name for p in kept.iterdir()) == [
        f"aot-{n}.{ext}" for n in (4, 5) for ext in ("cwasm", "ok")]
    trust.close()


def test_engine_fingerprint_names_the_installed_wasmtime() -> None:
    """The version read from wasmtime's .dist-info (no importlib.metadata at start-up) is the
    one importlib.metadata reports, and the target is the host's."""
    import importlib.metadata
    import platform
    from formats.engine import current_fingerprint
    fp = current_fingerprint()
    assert fp.version == importlib.metadata.version("wasmtime")
    assert fp.target == f"{platform.machine()}-unknown-linux-gnu"


def test_a_megabinary_of_another_guest_abi_is_refused(tmp_path: Path) -> None:
    """Lifted code follows one guest ABI version (formats/abi.py): a megabinary recorded with
    another is refused with what to do, also after a good run kept the first one's checks."""
    from formats import abi
    root, mb = _hello(tmp_path)
    cache = tmp_path / "cache"
    assert _kiln(root, mb, cache).returncode == 0
    old = _with_index(mb, lambda obj: obj.__setitem__("abi_version", abi.ABI_VERSION - 1),
                      tmp_path / "old.kiln")
    for _ in range(2):
        got = _kiln(root, old, cache)
        err = got.stderr.decode()
        assert got.returncode == 2 and got.stdout == b"", err
        assert f"guest ABI version {abi.ABI_VERSION - 1}" in err and "recompile" in err
        assert "Traceback" not in err
