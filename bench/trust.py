"""What the trust policy costs `kiln run` at start-up: `kiln run IMG -- /bin/true`, interleaved.

Recompiles the built-in busybox example image twice (unsigned, and signed
with a fresh key from `kiln keygen`), writes two policies, then times rounds
of `kiln run IMAGE -- /bin/true` under each configuration in turn (so machine
noise hits them alike) and prints the medians::

    .venv/bin/python bench/trust.py --rounds 20

Run it from the repository root. The "no policy" row needs
/etc/kiln/policy.json to be absent (it says so otherwise).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BIN = Path(sys.executable).parent


def _check(argv: list[str], **kw) -> subprocess.CompletedProcess:
    got = subprocess.run(argv, capture_output=True, text=True, **kw)
    if got.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{got.stderr}")
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed runs per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kiln-bench-trust-") as tmp:
        return _bench(Path(tmp), args.rounds, args.warmup)


def _bench(work: Path, rounds: int, warmup: int) -> int:
    from examples.busybox.build import build_busybox_image
    src = build_busybox_image(work / "busybox")
    _check([str(BIN / "kiln"), "keygen", "-o", str(work / "keys"), "--name", "bench"])
    _check([str(BIN / "recompile"), str(src), "-o", str(work / "unsigned")])
    _check([str(BIN / "recompile"), str(src), "-o", str(work / "signed"), "--sign",
            str(work / "keys" / "bench.key")])
    key = [{"name": "bench", "path": str(work / "keys" / "bench.pub")}]
    (work / "open.json").write_text(json.dumps({"version": 1, "trusted_keys": key}))
    (work / "required.json").write_text(json.dumps(
        {"version": 1, "require_signature": True, "trusted_keys": key}))
    env = {k: v for k, v in os.environ.items() if k != "KILN_POLICY"}
    configs = [
        ("no policy (today's default)", ["run", str(work / "unsigned")]),
        ("policy, unsigned image, no signature required",
         ["run", "--policy", str(work / "open.json"), str(work / "unsigned")]),
        ("policy requiring a signature, signed image",
         ["run", "--policy", str(work / "required.json"), str(work / "signed")]),
    ]
    _breakdown(work, rounds, env)
    if os.path.exists("/etc/kiln/policy.json"):
        print("note: /etc/kiln/policy.json exists, so the first row runs under it")
    times: dict[str, list[float]] = {label: [] for label, _ in configs}
    for r in range(warmup + rounds):
        for label, cmd in configs:
            t = time.perf_counter()
            _check([str(BIN / "kiln"), *cmd, "--", "/bin/true"], env=env)
            if r >= warmup:
                times[label].append(time.perf_counter() - t)
    base = statistics.median(times[configs[0][0]])
    print(f"| configuration ({rounds} interleaved runs each) | median ms | min ms | "
          "median vs no policy |")
    print("|---|---:|---:|---:|")
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"| {label} | {med * 1e3:.1f} | {min(ts) * 1e3:.1f} | "
              f"{(med - base) * 1e3:+.1f} ms |")
    return 0


_PROBE = """
import sys, time
import vkernel.cli
vkernel.cli.keep_bytecode()
import vkernel.runtime                     # what `kiln run` imports (the first two by the
import formats.megabinary                  # time it checks, the megabinary reader just after)
t = time.perf_counter()
from vkernel.audit import AuditLog
from vkernel.trust import check_megabinary, load_policy
policy = load_policy(sys.argv[2] or None)
check_megabinary(policy, sys.argv[1], AuditLog(None))
print((time.perf_counter() - t) * 1e3)
"""


def _breakdown(work: Path, rounds: int, env: dict[str, str]) -> None:
    """The check alone, in a process that has imported what `kiln run` imports by then."""
    from recompiler.bundle import prepare_bundle
    mb = {name: str(prepare_bundle(work / name) / "rootfs/.kiln/megabinary.kmb")
          for name in ("unsigned", "signed")}
    probes = [
        ("no policy", mb["unsigned"], "", None),
        ("policy, unsigned image, no signature required", mb["unsigned"],
         str(work / "open.json"), None),
        ("policy requiring a signature, signature verified before", mb["signed"],
         str(work / "required.json"), None),
        ("policy requiring a signature, signature not seen before", mb["signed"],
         str(work / "required.json"), "fresh"),
    ]
    times: dict[str, list[float]] = {p[0]: [] for p in probes}
    for r in range(rounds):
        for label, path, policy, cache in probes:
            penv = dict(env)
            if cache:                       # a cache of start-up checks of its own: empty
                from vkernel.verified import cache_root
                penv["KILN_CACHE"] = str(work / f"cache-{r}")      # but the byte code kept:
                penv["PYTHONPYCACHEPREFIX"] = str(cache_root() / "pycache")
            got = _check([sys.executable, "-c", _PROBE, path, policy], env=penv)
            times[label].append(float(got.stdout))
    print("| the check alone (load_policy + check_megabinary) | median ms | min ms |")
    print("|---|---:|---:|")
    for label, ts in times.items():
        print(f"| {label} | {statistics.median(ts):.2f} | {min(ts):.2f} |")
    print()


if __name__ == "__main__":
    sys.exit(main())
