"""One static musl C program, compiled and recompiled into an image of its own: what the thread
benchmarks (bench/thread_scaling.py, bench/futex_latency.py) run natively, under qemu and Kiln."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def build(work: Path, name: str, source: str) -> Path:
    """``source`` compiled (musl, static, -O2 -pthread) to ``work/rootfs/bin/NAME`` and that
    tree recompiled: the recompiled OCI image's path."""
    root = work / "rootfs"
    (root / "bin").mkdir(parents=True)
    src = work / f"{name}.c"
    src.write_text(source)
    cc = shutil.which("musl-gcc")
    if cc is None:
        sys.exit("musl-gcc is not installed (scripts/setup.sh installs it)")
    subprocess.run([cc, "-static", "-O2", "-pthread", "-o", str(root / "bin" / name), str(src)],
                   check=True)
    image = work / "image"
    subprocess.run([sys.executable, "-m", "recompiler.cli", str(root), "-o", str(image)],
                   check=True, capture_output=True)
    return image
