"""Debian's bash-static, zsh-static and sash, recompiled and run with `kiln run`, against the same binaries run natively.

The three packages are fetched as the busybox example is (``apt-get download``
into Kiln's cache, examples/debs.py), put into one root filesystem with the
scripts of tests/shells/ under /scripts, and recompiled once per session.
Every script then runs twice over that root filesystem: natively (a fresh
overlay with the /dev a container gets, its own pid namespace:
tests/native_overlay.py; root is required, as in CI) and recompiled under
vkernel (``kiln run IMAGE -- ...``). stdout, stderr and the exit status must
be identical byte for byte.

The scripts exercise what these shells are for: arrays and associative
arrays, parameter expansion, arithmetic (zsh's in floating point), functions
and recursion, subshells, pipes, here-documents, redirections to files and
descriptors, a child shell through fork and exec, background jobs with wait
and kill (a busy child killed by SIGTERM), traps (USR1 to itself, ERR/ZERR,
RETURN, EXIT), and sash's built-in file commands. Nothing they print may
follow a directory's own (readdir) order, which is the filesystem's: Kiln's
writable layer is a tmpfs, the native side's upper layer is on disk as
Docker's is (``tar cf`` names its members).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from examples.debs import unpacked_deb
from native_overlay import run_native
from sessionrun import run_in_session

KILN = [sys.executable, "-m", "vkernel.cli"]
RECOMPILE = [sys.executable, "-m", "recompiler.cli"]
SCRIPTS = Path(__file__).parent / "shells"
TIMEOUT = 120

PACKAGES = {"bash-static": "bin/bash-static", "zsh-static": "bin/zsh-static", "sash": "bin/sash"}
"""Debian package -> the program it ships (all statically linked against glibc)."""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the native side needs root (overlay mount, unshare)")


@pytest.fixture(scope="session")
def shells_root(tmp_path_factory) -> Path:
    """A root filesystem with the three shells in /bin and tests/shells/ in /scripts."""
    root = tmp_path_factory.mktemp("shells") / "rootfs"
    (root / "bin").mkdir(parents=True)
    for package, rel in PACKAGES.items():
        shutil.copy2(unpacked_deb(package) / rel, root / rel)
    shutil.copytree(SCRIPTS, root / "scripts")
    for d in ("tmp", "proc", "dev"):
        (root / d).mkdir()
    (root / "tmp").chmod(0o1777)
    return root


@pytest.fixture(scope="session")
def shells_image(shells_root: Path) -> tuple[Path, dict]:
    """(the recompiled image, recompile's --json report), made once per session."""
    out = shells_root.parent / "recompiled"
    proc = subprocess.run([*RECOMPILE, str(shells_root), "-o", str(out), "--json"], capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def _kiln(image: Path, argv: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    """``kiln run IMAGE -- argv`` in its own session; whatever it leaves behind is killed."""
    return run_in_session([*KILN, "run", str(image), "--", *argv], stdin, TIMEOUT)


CASES: list[tuple[str, list[str], bytes]] = [
    ("bash-arrays", ["/bin/bash-static", "/scripts/arrays.bash"], b""),
    ("bash-functions", ["/bin/bash-static", "/scripts/functions.bash"], b""),
    ("bash-jobs-traps", ["/bin/bash-static", "/scripts/jobs_traps.bash"], b""),
    ("bash-stdin", ["/bin/bash-static", "-s", "x", "y"], b'echo "args: $*"; for i in 3 2 1; do echo $i; done\n'),
    ("zsh-arrays", ["/bin/zsh-static", "-f", "/scripts/arrays.zsh"], b""),
    ("zsh-functions", ["/bin/zsh-static", "-f", "/scripts/functions.zsh"], b""),
    ("zsh-jobs-traps", ["/bin/zsh-static", "-f", "/scripts/jobs_traps.zsh"], b""),
    ("sash-session", ["/bin/sash"], (SCRIPTS / "session.sash").read_bytes()),
    ("sash-c", ["/bin/sash", "-c", "-echo one two; -ls /scripts"], b""),
]


@pytest.mark.parametrize("name,argv,stdin", CASES, ids=[c[0] for c in CASES])
def test_shell_matches_native(shells_root: Path, shells_image: tuple[Path, dict], name: str, argv: list[str],
                              stdin: bytes) -> None:
    want = run_native(shells_root, argv, stdin=stdin, timeout=TIMEOUT)
    got = _kiln(shells_image[0], argv, stdin)
    assert (got.stdout.decode(errors="replace"), got.stderr.decode(errors="replace"), got.returncode) == \
        (want.stdout.decode(errors="replace"), want.stderr.decode(errors="replace"), want.returncode)


def test_zsh_background_job_under_bg_nice(shells_root: Path, shells_image: tuple[Path, dict]) -> None:
    """zsh lowers a background job's priority (BG_NICE: nice(5), setpriority); it printed
    'nice(5) failed: function not implemented' while vkernel had no setpriority."""
    argv = ["/bin/zsh-static", "-fc", "{ print in-background } & wait $!; print done"]
    want = run_native(shells_root, argv, timeout=TIMEOUT)
    got = _kiln(shells_image[0], argv, b"")
    assert (got.stdout, got.stderr, got.returncode) == (want.stdout, want.stderr, want.returncode)


def test_every_shell_is_recompiled_whole(shells_image: tuple[Path, dict]) -> None:
    """No shell is skipped, no function became a trap site because of a lifter error, and the
    report gives each file's functions, instructions and trap sites by mnemonic."""
    report = shells_image[1]
    units = {u["path"]: u for u in report["units"]}
    assert set(units) == {"/" + rel for rel in PACKAGES.values()}
    for path, u in units.items():
        assert u["status"] in ("recompiled", "cached"), (path, u["reason"])
        assert u["functions"] > 1000 and u["instructions"] > 100_000, (path, u)
        assert u["internal_errors"] == [], (path, u["internal_errors"][:3])
        assert sum(u["trap_sites"].values()) == u["trap_site_count"]
    assert report["elves_skipped"] == 0
