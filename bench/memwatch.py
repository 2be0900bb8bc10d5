"""Run a command and report the peak of its process tree's memory.

``ru_maxrss`` (what ``/usr/bin/time -v`` prints) is the largest single process;
a recompile runs worker processes beside its own, so this samples the summed
PSS (proportional set size: shared pages split between their sharers) of the
command and all its descendants every second and prints the peak on stderr.

    python3 bench/memwatch.py .venv/bin/recompile ROOTFS -o OUT --json
"""
from __future__ import annotations

import os
import subprocess
import sys
import time


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue                      # gone, or not readable
            kids.setdefault(ppid, []).append(int(name))
    return kids


def tree_pss(root: int) -> int:
    """Bytes of PSS of ``root`` and its descendants now."""
    kids, todo, total = _children(), [root], 0
    while todo:
        pid = todo.pop()
        todo += kids.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += sum(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except OSError:
            continue
    return total


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    proc = subprocess.Popen(argv)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_pss(proc.pid))
        time.sleep(1)
    print(f"memwatch: peak summed PSS of the process tree {peak / 1e9:.2f} GB", file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
