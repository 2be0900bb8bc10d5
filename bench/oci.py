"""`ctr run --rm` of busybox `true` end to end: kiln-oci against runc, in one run, interleaved.

Builds the built-in busybox example image, recompiles it (`--format
oci-archive`), starts a private containerd 1.6 (config, root, state and socket
in a temporary directory), imports the recompiled image and times rounds of

    ctr run --rm --runtime io.containerd.runc.v2 [--runc-binary kiln-oci] IMAGE ID /bin/true

alternating the two runtimes (so machine noise hits them alike); prints the
median and p90 of each. Both run the same image: runc runs busybox natively,
kiln-oci runs its recompiled megabinary. As root, from the repository root::

    .venv/bin/python bench/oci.py --rounds 20
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed runs per runtime")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kiln-bench-oci-") as tmp:
        return _bench(Path(tmp), args.rounds, args.warmup)


def _bench(work: Path, rounds: int, warmup: int) -> int:
    from examples.busybox.build import build_busybox_image
    from tests.ocirig import Containerd, recompile
    src = build_busybox_image(work / "busybox.tar", fmt="oci-archive")
    image = recompile(src, work / "busybox-kiln.tar")
    (work / "containerd").mkdir()
    ctd = Containerd(work / "containerd")
    try:
        ctd.start()
        ctd.ctr("image", "import", "--platform", "linux/amd64", "--index-name",
                "kiln.bench/busybox:kiln", str(image))
        times: dict[str, list[float]] = {"runc": [], "kiln": []}
        for i in range(warmup + rounds):
            for runtime in ("runc", "kiln"):
                t0 = time.perf_counter()
                got = ctd.ctr("run", "--rm", *ctd.run_args(runtime), "kiln.bench/busybox:kiln",
                              f"bench-{runtime}-{i}", "/bin/true", check=False)
                elapsed = time.perf_counter() - t0
                if got.returncode != 0:
                    sys.exit(f"{runtime}: ctr run failed: {got.stderr.decode()}")
                if i >= warmup:
                    times[runtime].append(elapsed)
    finally:
        ctd.stop()
    print(f"ctr run --rm busybox /bin/true, {rounds} rounds each (after {warmup} warm-up)")
    print(f"{'runtime':<10} {'median ms':>10} {'p90 ms':>10}")
    for runtime, values in times.items():
        print(f"{runtime:<10} {statistics.median(values) * 1e3:>10.0f} {_p90(values) * 1e3:>10.0f}")
    ratio = statistics.median(times["kiln"]) / statistics.median(times["runc"])
    print(f"kiln-oci / runc (median): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
