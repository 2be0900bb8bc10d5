"""``kiln inspect``: the table, --json, errors and the progress bar, as a user sees them."""
from __future__ import annotations

import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import recompiler.cli
from recompiler.inspect_cmd import inspect_command
from recompiler.inventory import take_inventory

# Runs the command object in a real process (no CliRunner), as the kiln entry point will.
RUN_INSPECT = [sys.executable, "-c",
               "from recompiler.inspect_cmd import inspect_command; "
               "inspect_command(prog_name='kiln inspect')"]


def _irelative_count(path: Path) -> int:
    out = subprocess.run(["readelf", "-rW", str(path)], capture_output=True, text=True,
                         check=True, env={**os.environ, "LC_ALL": "C"}).stdout
    return len(re.findall(r"\sR_X86_64_IRELATIVE\s", out))


@pytest.fixture
def rootfs(tmp_path, busybox_bin) -> Path:
    """busybox with an alias, an aarch64 ELF, a corrupt ELF and a text file."""
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy2(busybox_bin, root / "bin/busybox")
    os.symlink("busybox", root / "bin/sh")
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    (root / "bin/arm").write_bytes(
        ident + struct.pack("<HHIQQQIHHHHHH", 2, 183, 1, 0x400000, 0, 0, 0, 64, 56, 0, 64, 0, 0))
    (root / "bin/broken").write_bytes(busybox_bin.read_bytes()[:1000])
    (root / "etc/hostname").write_text("kiln\n")
    return root


def test_table_lists_busybox_with_its_facts(rootfs, busybox_bin):
    result = CliRunner().invoke(inspect_command, [str(rootfs)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = lines[0]
    assert header.split() == ["PATH", "KIND", "LINK", "SIZE", "STRIPPED", "NOTES"]
    row = next(line for line in lines if line.startswith("/bin/busybox"))
    assert row.index("EXEC") == header.index("KIND")          # columns are aligned
    assert row.index("static") == header.index("LINK")
    assert f"IRELATIVE×{_irelative_count(busybox_bin)}" in row
    assert "TLS" in row and "eh_frame" in row and "+1 alias" in row
    assert row.split()[5] == "yes"                            # stripped
    assert "skipped:" in lines
    arm = next(line for line in lines if line.strip().startswith("/bin/arm"))
    assert arm.endswith("machine aarch64: not x86-64, will not be recompiled")
    broken = next(line for line in lines if line.strip().startswith("/bin/broken"))
    assert "beyond file size 0x3e8" in broken
    assert lines[-1] == ("1 x86-64 ELF file (1 EXEC), 1.9 MiB; 2 skipped; "
                         "4 files scanned")


def test_json_is_the_inventory(rootfs):
    result = CliRunner().invoke(inspect_command, ["--json", str(rootfs)])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == take_inventory(rootfs).to_dict()


def test_real_process_non_tty_has_no_progress_bar(rootfs):
    proc = subprocess.run([*RUN_INSPECT, "--json", str(rootfs)], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stderr == ""
    doc = json.loads(proc.stdout)
    assert [e["path"] for e in doc["elves"]] == ["/bin/busybox"]
    assert doc["elves"][0]["aliases"] == ["/bin/sh"]


def test_progress_bar_on_a_terminal(rootfs):
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([*RUN_INSPECT, str(rootfs)], stdout=subprocess.PIPE,
                              stderr=slave, text=True, timeout=60)
    finally:
        os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.returncode == 0
    assert b"inventory" in b"".join(chunks)
    assert "inventory" not in proc.stdout          # the bar never pollutes stdout
    assert proc.stdout.splitlines()[0].split()[0] == "PATH"


def test_rootfs_tarball_is_refused_with_a_hint(tmp_path, rootfs):
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    proc = subprocess.run([*RUN_INSPECT, str(archive)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    first, hint = proc.stderr.splitlines()[:2]
    assert first.startswith(f"error: {archive}: a tar archive with neither")
    assert hint.startswith("hint: ") and "unpack it into a directory" in hint
    assert "Traceback" not in proc.stderr


def test_oci_image_is_inspected_like_its_rootfs(tmp_path, rootfs):
    from recompiler.image import open_image, write_image
    out = tmp_path / "oci"
    with open_image(rootfs) as src:
        write_image(src, out)
    from_dir = subprocess.run([*RUN_INSPECT, "--json", str(rootfs)], capture_output=True, text=True)
    from_oci = subprocess.run([*RUN_INSPECT, "--json", str(out)], capture_output=True, text=True)
    assert from_dir.returncode == 0 and from_oci.returncode == 0, from_oci.stderr
    strip = lambda d: {k: v for k, v in d.items() if k != "root"}  # noqa: E731
    assert strip(json.loads(from_oci.stdout)) == strip(json.loads(from_dir.stdout))


def test_missing_image_is_a_json_error_with_json(tmp_path):
    missing = tmp_path / "nope"
    proc = subprocess.run([*RUN_INSPECT, "--json", str(missing)], capture_output=True, text=True)
    assert proc.returncode == 2
    err = json.loads(proc.stderr)
    assert err["error"] == f"{missing}: no such file or directory"
    assert err["kind"] == "NotAnImageError" and err["hint"]


def test_help_explains_every_option():
    result = CliRunner().invoke(inspect_command, ["--help"])
    assert result.exit_code == 0
    assert "IMAGE" in result.stdout
    for option in ("--json", "--help"):
        line = next(line for line in result.stdout.splitlines() if option in line)
        assert len(line.split(option, 1)[1].strip()) > 10      # has an explanation


def test_empty_directory_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(inspect_command, [str(tmp_path)])
    assert result.exit_code == 2
    assert "the directory is empty" in result.output and "hint:" in result.output


@pytest.mark.skipif(not hasattr(recompiler.cli, "inspect_command"),
                    reason="recompiler.cli does not export inspect_command yet (lead wires it)")
def test_kiln_inspect_entry_point(rootfs):
    # The console script of the environment running the tests, never another kiln on PATH.
    kiln = Path(sys.executable).parent / "kiln"
    assert kiln.is_file(), "the kiln console script is not installed (pip install -e .)"
    proc = subprocess.run([str(kiln), "inspect", "--json", str(rootfs)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == take_inventory(rootfs).to_dict()


def test_file_names_that_are_not_utf8(tmp_path, busybox_bin):
    root = tmp_path / "rootfs"
    root.mkdir()
    shutil.copy2(busybox_bin, os.path.join(os.fsencode(root), b"bb-\xff"))
    proc = subprocess.run([*RUN_INSPECT, str(root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith("/bb-\\xff ")
    proc = subprocess.run([*RUN_INSPECT, "--json", str(root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    path = json.loads(proc.stdout)["elves"][0]["path"]
    assert os.fsencode(path) == b"/bb-\xff"
