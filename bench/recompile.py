"""Recompile speed and memory: cold and cached ``recompile`` of the busybox example image.

Usage (from the repository root)::

    python3 bench/recompile.py                   # Markdown table on stdout
    python3 bench/recompile.py --json            # the same numbers as JSON
    python3 bench/recompile.py --cached-runs 5 --single-core

Each measured run is a fresh ``python3 -m recompiler.cli IMAGE -o OUT --json``
process. **cold** uses an empty private cache directory (every ELF is lifted,
linked and compiled ahead of time); **cached** runs again with the cache the cold
run filled (the median of ``--cached-runs``). Wall time, CPU time (user + system,
the process and its workers) and peak RSS (the largest single process) come from
``wait4``; the per-stage times and instruction counts from the recompile report.
``--single-core`` adds a cold run with ``--jobs 1``, which gives the lifter's
instructions per second on one core. The machine's load average is printed
before and after: on a shared machine compare runs made at the same load.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.debs import cache_dir  # noqa: E402
from formats.cache import after_write, publish_dir, scratch, use  # noqa: E402
from formats.errors import KilnError, user_report  # noqa: E402


@dataclass
class Run:
    """One recompile process."""
    label: str
    jobs: int
    wall: float
    cpu: float
    max_rss_mib: float
    stages: dict[str, float] = field(default_factory=dict)
    instructions: int = 0
    from_cache: int = 0


def _image() -> Path:
    """The busybox example image, built once into the cache and leased until this run ends
    (eviction leaves it alone; runs at the same time share it)."""
    out = cache_dir() / "bench" / "recompile-busybox-image"
    for _ in range(3):
        lease = use(out)
        if lease is not None:
            return lease.keep()
        from examples.busybox.build import build_busybox_image
        with scratch(out.parent, "image-") as tmp:
            build_busybox_image(tmp / "image")
            lease = publish_dir(tmp / "image", out)
        if lease is not None:
            after_write()
            return lease.keep()
    raise KilnError(f"{out} was evicted from the cache as soon as it was built",
                    hint="raise the cache budget (KILN_CACHE_MAX)")


def _recompile(label: str, image: Path, cache: Path, jobs: int, work: Path) -> Run:
    out = work / f"out-{label}-{time.monotonic_ns()}"
    argv = [sys.executable, "-m", "recompiler.cli", str(image), "-o", str(out), "--json",
            "--cache-dir", str(cache), "--jobs", str(jobs)]
    t = time.monotonic()
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t
        stdout.seek(0)
        stderr.seek(0)
        if proc.returncode != 0:
            raise KilnError(f"recompile ({label}) failed with status {proc.returncode}: "
                            f"{stderr.read().decode(errors='replace')[-2000:]}",
                            hint="run the command by hand: " + " ".join(argv))
        report = json.loads(stdout.read())
    shutil.rmtree(out, ignore_errors=True)
    return Run(label, jobs, round(wall, 2), round(usage.ru_utime + usage.ru_stime, 2),
               round(usage.ru_maxrss / 1024, 1), report["stage_seconds"], report["instructions"],
               report["elves_from_cache"])


def measure(cached_runs: int, jobs: int, single_core: bool) -> dict:
    image = _image()
    load_before = os.getloadavg()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="kiln-bench-recompile-") as tmp:
        work = Path(tmp)
        cache = work / "cache"
        runs.append(_recompile("cold", image, cache, jobs, work))
        for _ in range(cached_runs):
            runs.append(_recompile("cached", image, cache, jobs, work))
        if single_core:
            runs.append(_recompile("cold-1-job", image, work / "cache-1", 1, work))
    cached = [r for r in runs if r.label == "cached"]
    summary: dict = {"cpus": os.cpu_count(), "jobs": jobs, "load_before": [round(x, 2) for x in load_before],
                     "load_after": [round(x, 2) for x in os.getloadavg()], "runs": [asdict(r) for r in runs]}
    if cached:
        summary["cached_median_wall"] = statistics.median(r.wall for r in cached)
    for r in runs:
        if r.label.startswith("cold") and r.stages.get("lift"):
            summary[f"{r.label}_lift_instructions_per_s"] = round(r.instructions / r.stages["lift"])
    return summary


def render(s: dict) -> str:
    lines = [f"busybox example image, {s['cpus']} CPUs, --jobs {s['jobs']}; "
             f"load average before {s['load_before']}, after {s['load_after']}", "",
             "| run | jobs | wall s | CPU s | peak RSS MiB | unpack | inventory | lift | link | aot | write |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in s["runs"]:
        st = r["stages"]
        lines.append(f"| {r['label']} | {r['jobs']} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['max_rss_mib']:.0f} | "
                     + " | ".join(f"{st.get(k, 0):.2f}" for k in ("unpack", "inventory", "lift", "link", "aot",
                                                                    "write")) + " |")
    lines.append("")
    if "cached_median_wall" in s:
        lines.append(f"cached (median): {s['cached_median_wall']:.2f} s")
    for k, v in s.items():
        if k.endswith("_lift_instructions_per_s"):
            lines.append(f"{k.removesuffix('_lift_instructions_per_s')}: lift {v:,} instructions/s (wall)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cached-runs", type=int, default=3, help="cached runs (median reported)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="recompile --jobs (default: CPUs)")
    ap.add_argument("--single-core", action="store_true", help="also a cold run with --jobs 1")
    ap.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = ap.parse_args(argv)
    try:
        s = measure(args.cached_runs, args.jobs, args.single_core)
    except KilnError as err:
        print(user_report(err), file=sys.stderr)
        return 1
    print(json.dumps(s, indent=2) if args.json else render(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
