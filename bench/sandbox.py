"""``kiln serve`` sandboxes: acquire (warm pool and zygote fork), exec round trip, run_code
round trip, idle sandboxes counted by PSS, and snapshot and restore times.

Usage (from the repository root, as root: sandboxes get namespaces and cgroups)::

    python3 bench/sandbox.py                      # Markdown on stdout
    python3 bench/sandbox.py --json --runs 500 --idle 200
    python3 bench/sandbox.py --image RECOMPILED   # another recompiled busybox-like image
    python3 bench/sandbox.py --python-image DEBIAN_RECOMPILED   # also run_code in python3

Without ``--image`` the busybox example image is built and recompiled (cached
lifting makes that a few seconds). One server serves it twice: ``pooled``
with ``--pool pooled=N`` and ``cold`` without a pool, so an acquire from the
pool and one forked from the zygote on demand are measured in the same run.
Every figure is measured by an HTTP client (httpx, one kept-alive
connection) against the running server, as an agent framework would see it;
acquire is also given as the server's own ``acquire_ms`` (from the request
arriving to the sandbox being ready, without HTTP).

Idle memory: ``--idle`` sandboxes are created and left idle; each one's host
processes (its first process, the agent, and anything it runs) are summed by
PSS (``/proc/PID/smaps_rollup``), which shares the zygote's copy-on-write
pages fairly between the sandboxes forked from it. The zygote's own PSS is
counted once, apart. The count that fits in 24 GiB is 24 GiB / mean PSS.
The cgroup's own figure (``memory_used_bytes``, which also counts page cache
and kernel memory of the sandbox) is given next to it.

Snapshots (``--snapshots N``): a sandbox with one run_code interpreter (busybox
sh; python3 too with ``--python-image``) is saved N times, and each snapshot
restored into a new sandbox (the busybox one into a pooled sandbox); every
restore must print what the original prints for the same cell.
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

REPO = Path(__file__).resolve().parent.parent
for _p in (REPO, REPO / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from run import _host  # noqa: E402

from formats.errors import EXIT_BAD_INPUT, KilnError, user_report  # noqa: E402
from tests.serverig import Server, descendants, start_server  # noqa: E402

GIB24 = 24 << 30


def recompiled_busybox(work: Path) -> Path:
    from examples.busybox.build import build_busybox_image
    src = build_busybox_image(work / "busybox")
    out = work / "recompiled"
    p = subprocess.run([sys.executable, "-m", "recompiler.cli", str(src), "-o", str(out)],
                       capture_output=True, text=True, timeout=1200)
    if p.returncode != 0:
        raise KilnError(f"recompiling the busybox example failed: {p.stderr[-2000:]}")
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]


def summary(xs: list[float]) -> dict:
    return {"n": len(xs), "p50": round(statistics.median(xs), 3), "p99": round(pct(xs, 99), 3),
            "min": round(min(xs), 3), "max": round(max(xs), 3)}


def wait_pool(srv: Server, name: str, size: int, timeout: float = 30) -> None:
    c = srv.client(None)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if c.get("/healthz").json()["images"][name]["pool"]["ready"] >= size:
            return
        time.sleep(0.01)
    raise KilnError(f"the pool of {name} did not refill to {size} in {timeout:g} s")


def bench_acquire(srv: Server, image: str, runs: int, pool: int) -> dict:
    api = srv.client("alice")
    client_ms, server_ms, sources = [], [], set()
    for i in range(runs):
        if pool:
            wait_pool(srv, image, pool)           # an acquire from a ready pool, as in use
        t0 = time.perf_counter()
        r = api.post("/v1/sandboxes", json={"image": image})
        client_ms.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        info = r.json()
        server_ms.append(info["acquire_ms"])
        sources.add(info["acquired_from"])
        api.delete(f"/v1/sandboxes/{info['id']}").raise_for_status()
    return {"http": summary(client_ms), "server": summary(server_ms), "from": sorted(sources)}


def bench_exec(srv: Server, runs: int) -> dict:
    api = srv.client("alice")
    sid = api.post("/v1/sandboxes", json={"image": "pooled"}).json()["id"]
    out: dict[str, dict] = {}
    agent = int(json.loads((srv.state / "sandboxes" / f"{sid}.json").read_text())["pid"])
    for name, body in (("exec true", {"argv": ["true"]}),
                       ("exec sh -c 'echo hi'", {"cmd": "echo hi"})):
        api.post(f"/v1/sandboxes/{sid}/exec", json=body).raise_for_status()   # warm up
        ms = []
        cpu0 = cpu_ms(agent), cpu_ms(srv.proc.pid)
        for _ in range(runs):
            t0 = time.perf_counter()
            r = api.post(f"/v1/sandboxes/{sid}/exec", json=body)
            ms.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200 or r.json()["exit_code"] != 0:
                raise KilnError(f"{name} failed: {r.text}")
        out[name] = summary(ms)
        # CPU per exec, which CPU contention does not inflate as it does wall-clock time
        out[name]["cpu_sandbox_ms"] = round((cpu_ms(agent) - cpu0[0]) / runs, 2)
        out[name]["cpu_server_ms"] = round((cpu_ms(srv.proc.pid) - cpu0[1]) / runs, 2)
    code = {"language": "bash", "code": "n=$((n + 1)); echo $n"}
    api.post(f"/v1/sandboxes/{sid}/code", json=code).raise_for_status()
    ms, last = [], 1
    for _ in range(runs):
        t0 = time.perf_counter()
        r = api.post(f"/v1/sandboxes/{sid}/code", json=code)
        ms.append((time.perf_counter() - t0) * 1000)
        last += 1
        if r.status_code != 200 or r.json()["stdout"] != f"{last}\n":
            raise KilnError(f"run_code gave {r.text}, expected {last}")
    out["run_code (bash, state kept)"] = summary(ms)
    api.delete(f"/v1/sandboxes/{sid}")
    return out


def bench_snapshot(srv: Server, image: str, runs: int, language: str, setup: str, check: str,
                   pool: int = 0) -> dict:
    """Snapshot of a sandbox holding one ``language`` interpreter (after ``setup``), and its
    restore into a new sandbox (from the pool when ``pool``), each ``runs`` times; ``check``
    is a cell whose output must be the same after every restore as in the original."""
    api = srv.client("alice", timeout=300)
    sid = api.post("/v1/sandboxes", json={"image": image}).json()["id"]
    snap_ms, snap_server, restore_ms, restore_server, sizes = [], [], [], [], []
    try:
        r = api.post(f"/v1/sandboxes/{sid}/code", json={"language": language, "code": setup})
        if r.status_code != 200 or r.json()["exit_code"] != 0:
            raise KilnError(f"run_code failed: {r.text}")
        snaps = []
        for _ in range(runs):
            t0 = time.perf_counter()
            r = api.post(f"/v1/sandboxes/{sid}/snapshot")
            snap_ms.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 201:
                raise KilnError(f"snapshot failed: {r.text}")
            snap_server.append(r.json()["took_ms"])
            sizes.append(r.json()["size_bytes"])
            snaps.append(r.json()["snapshot_id"])
        # what the original prints for ``check`` after the snapshots: each restore must too
        want = api.post(f"/v1/sandboxes/{sid}/code", json={"language": language,
                                                            "code": check}).json()["stdout"]
        for snap in snaps:
            if pool:
                wait_pool(srv, image, pool)
            t0 = time.perf_counter()
            r = api.post("/v1/sandboxes", json={"image": image, "from_snapshot": snap})
            restore_ms.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 201:
                raise KilnError(f"restore failed: {r.text}")
            restore_server.append(r.json()["acquire_ms"])
            new = r.json()["id"]
            got = api.post(f"/v1/sandboxes/{new}/code", json={"language": language,
                                                               "code": check}).json()
            if got.get("stdout") != want:
                raise KilnError(f"a restore printed {got!r}, the original {want!r}")
            api.delete(f"/v1/sandboxes/{new}")
            api.delete(f"/v1/snapshots/{snap}")
    finally:
        api.delete(f"/v1/sandboxes/{sid}")
    return {"snapshot": {"http": summary(snap_ms), "server": summary(snap_server)},
            "restore": {"http": summary(restore_ms), "server": summary(restore_server)},
            "size_bytes": round(statistics.median(sizes)), "from_pool": bool(pool)}


PY_SNAP_SETUP = "import json, hashlib\nrows = [{'n': i} for i in range(1000)]\nn = 0"
PY_SNAP_CHECK = "n += 1\nprint(n, hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:8])"


def bench_python(image: Path, work: Path, runs: int, snapshots: int = 0) -> dict:
    """run_code in Python on an image with python3 (the Debian example): the first cell
    (the interpreter starts) and the round trip of a small cell after it."""
    srv = start_server(image, work / "serve-python", name="python")
    try:
        api = srv.client("alice", timeout=300)
        sid = api.post("/v1/sandboxes", json={}).json()["id"]
        t0 = time.perf_counter()
        r = api.post(f"/v1/sandboxes/{sid}/code", json={"language": "python", "code": "n = 0"})
        first = (time.perf_counter() - t0) * 1000
        if r.status_code != 200 or r.json()["exit_code"] != 0:
            raise KilnError(f"python run_code failed: {r.text}")
        code = {"language": "python", "code": "n += 1\nprint(n)"}
        ms = []
        for i in range(runs):
            t0 = time.perf_counter()
            r = api.post(f"/v1/sandboxes/{sid}/code", json=code)
            ms.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200 or r.json()["stdout"] != f"{i + 1}\n":
                raise KilnError(f"python run_code gave {r.text}, expected {i + 1}")
        out = {"first_cell_ms": round(first, 1), "cell": summary(ms)}
        if snapshots:
            out["snapshot"] = bench_snapshot(srv, "python", snapshots, "python", PY_SNAP_SETUP,
                                             PY_SNAP_CHECK)
        return out
    finally:
        srv.stop()


def cpu_ms(pid: int) -> float:
    """CPU time of ``pid`` and its reaped children (user + system), in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) * 1000 / os.sysconf("SC_CLK_TCK")


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def bench_idle(srv: Server, count: int) -> dict:
    api = srv.client("alice")
    ids = []
    try:
        for _ in range(count):
            r = api.post("/v1/sandboxes", json={"image": "cold", "timeout_s": 3600})
            r.raise_for_status()
            ids.append(r.json()["id"])
        time.sleep(1.0)
        per, cg = [], []
        agents = set()
        for sid in ids:
            rec = json.loads((srv.state / "sandboxes" / f"{sid}.json").read_text())
            pid = int(rec["pid"])
            agents.add(pid)
            per.append(sum(pss_kib(p) for p in [pid, *descendants(pid)]) * 1024)
            used = api.get(f"/v1/sandboxes/{sid}").json().get("memory_used_bytes")
            if used:
                cg.append(used)
        mine = set(agents)
        for pid in agents:
            mine.update(descendants(pid))
        zygote_pss = sum(pss_kib(p) for p in descendants(srv.proc.pid) if p not in mine) * 1024
        server_pss = pss_kib(srv.proc.pid) * 1024
        mean = statistics.mean(per)
        return {"sandboxes": count, "pss_mean_bytes": round(mean),
                "pss_p99_bytes": round(pct(per, 99)),
                "cgroup_mean_bytes": round(statistics.mean(cg)) if cg else None,
                "server_pss_bytes": server_pss, "zygote_pss_bytes": zygote_pss,
                "fits_in_24GiB_by_pss": int(GIB24 // mean),
                "fits_in_24GiB_by_cgroup": int(GIB24 // statistics.mean(cg)) if cg else None}
    finally:
        for sid in ids:
            api.delete(f"/v1/sandboxes/{sid}")


def markdown(res: dict) -> str:
    rows = ["| measure | p50 ms | p99 ms | goal (issue #11) |", "|---|---:|---:|---|"]
    goals = {"acquire, warm pool": "p50 ≤ 5 ms", "exec true": "p50 ≤ 10 ms",
             "run_code (bash, state kept)": "p50 ≤ 20 ms"}
    for name, key in (("acquire, warm pool", "pooled"), ("acquire, zygote fork", "cold")):
        a = res["acquire"][key]
        rows.append(f"| {name}: HTTP round trip | {a['http']['p50']:.2f} | "
                    f"{a['http']['p99']:.2f} | {goals.get(name, '')} |")
        rows.append(f"| {name}: server's acquire_ms | {a['server']['p50']:.2f} | "
                    f"{a['server']['p99']:.2f} | |")
    for name, s in res["exec"].items():
        rows.append(f"| {name}: HTTP round trip | {s['p50']:.2f} | {s['p99']:.2f} | "
                    f"{goals.get(name, '')} |")
    if res.get("python"):
        py = res["python"]
        rows.append(f"| run_code (python3 of the Debian image, state kept): HTTP round trip | "
                    f"{py['cell']['p50']:.2f} | {py['cell']['p99']:.2f} | p50 ≤ 20 ms |")
        rows.append(f"| run_code python3: the first cell (the interpreter starts) | "
                    f"{py['first_cell_ms']:.0f} | | |")
    rows += ["", "| CPU per exec (all runs) | sandbox: agent and guest process, ms | server, ms |",
             "|---|---:|---:|"]
    for name, s in res["exec"].items():
        if "cpu_sandbox_ms" in s:
            rows.append(f"| {name} | {s['cpu_sandbox_ms']:.2f} | {s['cpu_server_ms']:.2f} |")
    i = res["idle"]
    rows += ["", "| idle sandboxes | value |", "|---|---:|",
             f"| sandboxes measured | {i['sandboxes']} |",
             f"| PSS per sandbox, mean (p99) | {i['pss_mean_bytes'] / 1048576:.2f} MiB "
             f"({i['pss_p99_bytes'] / 1048576:.2f} MiB) |",
             f"| fit in 24 GiB by PSS (goal ≥ 1,000) | {i['fits_in_24GiB_by_pss']:,} |"]
    if i["cgroup_mean_bytes"]:
        rows += [f"| cgroup memory per sandbox, mean | {i['cgroup_mean_bytes'] / 1048576:.2f} MiB |",
                 f"| fit in 24 GiB by cgroup memory | {i['fits_in_24GiB_by_cgroup']:,} |"]
    rows += [f"| the server process's own PSS | {i['server_pss_bytes'] / 1048576:.1f} MiB |",
             f"| the zygotes' PSS (counted once) | {i['zygote_pss_bytes'] / 1048576:.1f} MiB |", "",
             f"{res['runs']} runs per latency; host: {res['host']['cpu']}, "
             f"{res['host']['cpus']} CPUs; load average at the end {res['load']}."]
    snaps = [("busybox sh, one variable", res.get("snapshot"))]
    if res.get("python"):
        snaps.append(("python3 of the Debian image, json and hashlib imported",
                      res["python"].get("snapshot")))
    if any(x for _, x in snaps):
        rows += ["", "| snapshot of a sandbox with one run_code interpreter | size | "
                 "snapshot p50 (p99) ms | restore p50 (p99) ms | restore, server's acquire_ms "
                 "p50 |", "|---|---:|---:|---:|---:|"]
        for name, x in snaps:
            if not x:
                continue
            sn, rs = x["snapshot"]["http"], x["restore"]["http"]
            rows.append(f"| {name} ({'restored into a pooled sandbox' if x['from_pool'] else 'restored into a zygote fork'}) | "
                        f"{x['size_bytes'] / 1048576:.1f} MiB | {sn['p50']:.1f} ({sn['p99']:.1f}) | "
                        f"{rs['p50']:.1f} ({rs['p99']:.1f}) | "
                        f"{x['restore']['server']['p50']:.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", type=Path, help="a recompiled image (default: busybox example)")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--pool", type=int, default=8)
    ap.add_argument("--idle", type=int, default=200, help="idle sandboxes to measure")
    ap.add_argument("--python-image", type=Path, help="a recompiled image with python3 (e.g. "
                    "the Debian example) for run_code in Python")
    ap.add_argument("--snapshots", type=int, default=20, help="snapshots taken and restored "
                    "per interpreter (0: none)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        if os.geteuid() != 0:
            raise KilnError("bench/sandbox.py runs kiln serve, which needs root")
        with tempfile.TemporaryDirectory(prefix="kiln-bench-sandbox-") as tmp:
            work = Path(tmp)
            image = a.image or recompiled_busybox(work)
            srv = start_server(image, work / "serve", "--image", f"cold={image}",
                               "--pool", f"pooled={a.pool}", name="pooled")
            try:
                res = {"runs": a.runs, "host": _host(),
                       "acquire": {"pooled": bench_acquire(srv, "pooled", a.runs, a.pool),
                                   "cold": bench_acquire(srv, "cold", a.runs, 0)},
                       "exec": bench_exec(srv, a.runs), "idle": bench_idle(srv, a.idle)}
                if a.snapshots:
                    res["snapshot"] = bench_snapshot(srv, "pooled", a.snapshots, "bash", "n=41",
                                                     "n=$((n + 1)); echo $n", pool=a.pool)
            finally:
                srv.stop()
            if a.python_image:
                res["python"] = bench_python(a.python_image, work, a.runs, a.snapshots)
        res["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except KilnError as e:
        print(user_report(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(res, indent=1) if a.json else markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
