"""Debian's busybox-static, recompiled and run with `kiln run`, against the same binary run natively.

The image is the built-in example (busybox + applet links) plus a layer of
input files. Each applet runs twice over the same root filesystem: natively
with `chroot` (root is required, as in CI) and recompiled under vkernel with
`kiln run IMAGE -- CMD`. stdout, stderr and the exit status must be
identical byte for byte.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from examples.busybox.build import build_busybox_image
from recompiler.image import open_image

KILN = [sys.executable, "-m", "vkernel.cli"]
RECOMPILE = [sys.executable, "-m", "recompiler.cli"]
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the native side runs busybox in a chroot (root)")


def _words(rng: random.Random, n: int) -> str:
    syll = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "zu"]
    return "\n".join("".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(n)) + "\n"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, Path]:
    """(rootfs used by both sides, recompiled image)."""
    base = tmp_path_factory.mktemp("bb")
    example = build_busybox_image(base / "example")
    root = base / "rootfs"
    with open_image(example) as img:
        img.unpack(root)
    for mount_point in ("proc", "dev", "tmp"):     # where a container runtime mounts them
        (root / mount_point).mkdir(exist_ok=True)
    rng = random.Random(1234)
    data = root / "data"
    (data / "tree/a/b").mkdir(parents=True)
    (data / "words.txt").write_text(_words(rng, 2000))
    (data / "nums.txt").write_text("".join(f"{rng.randint(-10**6, 10**6)}\n" for _ in range(500)))
    (data / "table.csv").write_text("".join(f"{i},{rng.choice('xyz')},{i * i}\n" for i in range(200)))
    (data / "tree/one.txt").write_text("one\n")
    (data / "tree/a/two.txt").write_text("two\ntwo\n")
    (data / "tree/a/b/three.txt").write_text("three\n" * 3)
    (data / "bin.dat").write_bytes(bytes(rng.randrange(256) for _ in range(3000)))
    for p in [data, *data.rglob("*")]:
        os.utime(p, (1_600_000_000, 1_600_000_000), follow_symlinks=False)
    out = base / "recompiled"
    proc = subprocess.run([*RECOMPILE, str(root), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return root, out


CASES: list[tuple[str, list[str], bytes]] = [
    ("echo", ["/bin/echo", "hello", "world"], b""),
    ("cat", ["/bin/cat", "/data/tree/a/two.txt", "/data/tree/one.txt"], b""),
    ("cat-stdin", ["/bin/cat"], b"from stdin\n"),
    ("ls", ["/bin/ls", "-l", "--full-time", "/data/tree"], b""),
    ("ls-root", ["/bin/ls", "/"], b""),
    ("wc", ["/usr/bin/wc", "/data/words.txt", "/data/nums.txt"], b""),
    ("sort", ["/usr/bin/sort", "/data/words.txt"], b""),
    ("sort-n", ["/usr/bin/sort", "-n", "/data/nums.txt"], b""),
    ("uniq", ["/bin/sh", "-c", "sort /data/words.txt | uniq -c | sort -rn | head -n 20"], b""),
    ("head", ["/usr/bin/head", "-n", "7", "/data/words.txt"], b""),
    ("tail", ["/usr/bin/tail", "-n", "5", "/data/nums.txt"], b""),
    ("cut", ["/usr/bin/cut", "-d,", "-f1,3", "/data/table.csv"], b""),
    ("tr", ["/usr/bin/tr", "a-z", "A-Z"], b"shout this\n"),
    ("sed", ["/bin/sed", "-e", "s/ka/KA/g", "-e", "/^zu/d", "/data/words.txt"], b""),
    ("grep", ["/bin/grep", "-n", "^mi.*ne$", "/data/words.txt"], b""),
    ("grep-miss", ["/bin/grep", "nothing-matches-this", "/data/words.txt"], b""),
    ("awk", ["/usr/bin/awk", "-F,", "{s += $3} END {print s, NR}", "/data/table.csv"], b""),
    ("expr", ["/usr/bin/expr", "6", "*", "7"], b""),
    ("seq", ["/usr/bin/seq", "-s", ",", "1", "3", "40"], b""),
    ("printf", ["/usr/bin/printf", "%05d|%-6s|%x|%s\\n", "42", "ab", "255", "end"], b""),
    ("od", ["/usr/bin/od", "-A", "x", "-t", "x1z", "/data/tree/one.txt"], b""),
    ("base64", ["/bin/base64", "/data/bin.dat"], b""),
    ("md5sum", ["/usr/bin/md5sum", "/data/words.txt", "/data/bin.dat"], b""),
    ("sha1sum", ["/usr/bin/sha1sum", "/data/words.txt"], b""),
    ("sha256sum", ["/usr/bin/sha256sum", "/data/words.txt", "/data/bin.dat"], b""),
    ("sha512sum", ["/usr/bin/sha512sum", "/data/bin.dat"], b""),
    ("gzip", ["/bin/sh", "-c", "gzip -c /data/words.txt | gunzip -c | md5sum"], b""),
    ("gzip-bytes", ["/bin/gzip", "-c", "-9", "/data/nums.txt"], b""),
    ("tar", ["/bin/sh", "-c", "tar -cf - -C /data tree | tar -tvf -"], b""),
    ("find", ["/usr/bin/find", "/data/tree", "-name", "*.txt"], b""),
    ("test-true", ["/usr/bin/test", "-d", "/data/tree"], b""),
    ("test-false", ["/usr/bin/test", "-f", "/data/missing"], b""),
    ("sh-pipeline", ["/bin/sh", "-c", "seq 1 100 | grep 7 | wc -l; echo status=$?"], b""),
    ("sh-exit", ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], b""),
]


def _native(root: Path, argv: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(["chroot", str(root), *argv], input=stdin, capture_output=True,
                          env=ENV, cwd="/", timeout=120)


def _kiln(image: Path, argv: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([*KILN, "run", str(image), "--", *argv], input=stdin,
                          capture_output=True, timeout=300)


@pytest.mark.parametrize("name,argv,stdin", CASES, ids=[c[0] for c in CASES])
def test_applet_matches_native(images: tuple[Path, Path], name: str, argv: list[str], stdin: bytes) -> None:
    root, image = images
    want = _native(root, argv, stdin)
    got = _kiln(image, argv, stdin)
    assert (got.stdout, got.stderr.decode(errors="replace"), got.returncode) == \
        (want.stdout, want.stderr.decode(errors="replace"), want.returncode)


def test_native_side_is_really_busybox(images: tuple[Path, Path]) -> None:
    root, _ = images
    proc = _native(root, ["/bin/busybox"], b"")
    assert b"BusyBox v1.35.0" in proc.stdout + proc.stderr
    assert shutil.which("chroot")
