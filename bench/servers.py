"""Servers from the Debian example image under load: redis-benchmark and ab, natively, under qemu-x86_64 and under Kiln.

Usage (from the repository root, as root: the native column runs in an
overlay of the image's tree, Kiln's with ``--publish``)::

    python3 bench/servers.py                         # Markdown table on stdout
    python3 bench/servers.py --runs 3 --json
    python3 bench/servers.py --only redis --redis-requests 200000

Each server is the image's own dynamically linked program, started three ways
and driven by the same client on the host's loopback:

- **native**: in a fresh overlay of the image's tree, in its own pid
  namespace (tests/native_overlay.py), on the host's network;
- **qemu-x86_64**: ``qemu-x86_64 -L TREE TREE/usr/bin/SERVER`` over the same
  kind of overlay (qemu-user finds ld.so, libraries and the servers' files
  under ``-L``);
- **kiln**: ``kiln run --publish 127.0.0.1:PORT:PORT IMAGE -- SERVER`` on the
  recompiled image; the host client's connections reach the guest's listening
  socket directly (no relay, vkernel/netns.py); with ``--gate-off-column`` also
  **kiln-no-gate**, the same with ``KILN_SYSCALL_GATE=0`` (every syscall served
  in Python, as before vkernel/_gate.c).

The clients: ``redis-benchmark -t get,set`` (the image's own, run natively
in a chroot of the tree) and Apache's ``ab -c 32`` (the host's
apache2-utils) fetching a static file from nginx (2 workers, epoll,
sendfile). A run counts only if the client saw no error (ab: no failed or
non-2xx response; redis-benchmark: both tests reported). The columns run
interleaved, ``--runs`` times each; the table gives each column's median and
Kiln's ratio to native and to qemu-x86_64. Without ``--rootfs``/``--image``
the Debian example image is built and recompiled (cached), as bench/debian.py
does.
"""
from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
for _p in (REPO, REPO / "bench", REPO / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from debian import _example, _kiln  # noqa: E402
from native_overlay import inside, overlay  # noqa: E402
from run import _host, kiln_env  # noqa: E402

from formats.errors import EXIT_BAD_INPUT, KilnError, user_report  # noqa: E402

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INDEX = b"".join(b"line %04d of a static page served by nginx under load\n" % i for i in range(80))
"""The page ab fetches: 4,400 bytes."""
NGINX_CONF = """\
worker_processes 2;
pid /tmp/kiln-bench-nginx.pid;
error_log /tmp/kiln-bench-nginx-error.log;
events {{ worker_connections 1024; use epoll; }}
http {{
  access_log off;
  {temps}
  sendfile on;
  include /etc/nginx/mime.types;
  server {{ listen 127.0.0.1:{port}; root /srv/www; }}
}}
"""


@dataclass(frozen=True)
class Server:
    name: str
    argv: Callable[[int, str], list[str]]       #: (port, prefix for qemu's host paths) -> argv
    files: Callable[[int], dict[str, bytes]]    #: files (and dirs: "/path/") it needs, in the image
    ready: Callable[[int], bool]                #: does it answer on the port yet?
    load: Callable[[int, Path, argparse.Namespace], dict[str, float]]   #: the client's figures


def _answers(port: int, request: bytes, want: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(request)
            return s.recv(64).startswith(want)
    except OSError:
        return False


def _redis_load(port: int, tree: Path, a: argparse.Namespace) -> dict[str, float]:
    p = subprocess.run(["chroot", str(tree), "/usr/bin/redis-benchmark", "-h", "127.0.0.1",
                        "-p", str(port), "-t", "get,set", "-n", str(a.redis_requests), "-c", "50",
                        "-q", "--csv"], capture_output=True, timeout=600)
    rows = {r[0]: r[1] for r in csv.reader(io.StringIO(p.stdout.decode())) if len(r) > 1}
    if p.returncode != 0 or not {"SET", "GET"} <= rows.keys():
        raise KilnError(f"redis-benchmark failed ({p.returncode}): "
                        f"{(p.stdout + p.stderr).decode(errors='replace')[-400:]}")
    return {"SET ops/s": float(rows["SET"]), "GET ops/s": float(rows["GET"])}


def _ab_load(port: int, tree: Path, a: argparse.Namespace) -> dict[str, float]:
    p = subprocess.run(["ab", "-q", "-c", "32", "-n", str(a.ab_requests),
                        f"http://127.0.0.1:{port}/index.html"], capture_output=True, timeout=600)
    out = p.stdout.decode(errors="replace")
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    if p.returncode != 0 or rps is None or failed is None or failed.group(1) != "0" \
            or "Non-2xx" in out or f"Document Length:        {len(INDEX)} bytes" not in out:
        raise KilnError(f"ab failed ({p.returncode}): {(out + p.stderr.decode())[-600:]}")
    return {"requests/s": float(rps.group(1))}


TEMPS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
"""nginx's temporary directories, under /tmp: qemu-user's ``-L`` applies to opening files, not
to mkdir, so under qemu nginx makes them on the host (:func:`_stop` removes them)."""

SERVERS = (
    Server("redis",
           lambda port, pre: ["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--daemonize", "no",
                              "--logfile", ""],
           lambda port: {},
           lambda port: _answers(port, b"PING\r\n", b"+PONG"),
           _redis_load),
    Server("nginx",
           lambda port, pre: ["/usr/sbin/nginx", "-e", "/tmp/kiln-bench-nginx-error.log",
                              "-c", f"{pre}/tmp/kiln-bench-nginx.conf", "-g", "daemon off;"],
           lambda port: {"/srv/www/index.html": INDEX,
                         "/tmp/kiln-bench-nginx.conf": NGINX_CONF.format(
                             port=port, temps=" ".join(f"{t}_temp_path /tmp/kiln-bench-nginx-{t};"
                                                       for t in TEMPS)).encode()},
           lambda port: _answers(port, b"GET /index.html HTTP/1.0\r\n\r\n", b"HTTP/1.1 200"),
           _ab_load),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(root: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        dst = root / path.lstrip("/")
        if path.endswith("/"):
            dst.mkdir(parents=True, exist_ok=True)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for t in TEMPS:                     # what qemu-user's nginx made on the host
        shutil.rmtree(f"/tmp/kiln-bench-nginx-{t}", ignore_errors=True)


def _start(col: str, srv: Server, port: int, tree: Path, image: Path, stack: ExitStack) -> subprocess.Popen:
    """The server of column ``col`` started on ``port``; stopped when ``stack`` closes."""
    if col in ("kiln", "kiln-no-gate"):
        setup = "".join(f"mkdir -p {p}\n" if p.endswith("/") else
                        f"mkdir -p {Path(p).parent} && echo {base64.b64encode(d).decode()} "
                        f"| base64 -d > {p}\n" for p, d in srv.files(port).items())
        argv = [*_kiln(), "run", "--publish", f"127.0.0.1:{port}:{port}", str(image), "--",
                "env", "-i", PATH, "bash", "-c", setup + "exec " + shlex.join(srv.argv(port, ""))]
        env = kiln_env()
        env["KILN_SYSCALL_GATE"] = "0" if col == "kiln-no-gate" else "1"
    else:
        merged = stack.enter_context(overlay(tree))
        _write(merged, srv.files(port))
        if col == "native":
            argv = inside(merged, srv.argv(port, ""))
            argv.insert(1, "--kill-child")     # the server dies with unshare
        else:       # nginx's workers (user nobody) look up paths under -L themselves
            os.chmod(merged.parent, 0o755)
            argv = [shutil.which("qemu-x86_64") or "qemu-x86_64", "-L", str(merged),
                    str(merged) + srv.argv(port, "")[0], *srv.argv(port, str(merged))[1:]]
        env = {"PATH": PATH[5:]}
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    stack.callback(_stop, proc)
    deadline = time.monotonic() + 120
    while not srv.ready(port):
        if proc.poll() is not None:
            raise KilnError(f"{srv.name} ({col}) exited {proc.returncode} before serving: "
                            f"{proc.stderr.read().decode(errors='replace')[-400:]}")
        if time.monotonic() > deadline:
            raise KilnError(f"{srv.name} ({col}) did not answer within 120 s")
        time.sleep(0.1)
    return proc


def measure(servers: list[Server], tree: Path, image: Path, runs: int, columns: list[str],
            opts: argparse.Namespace, log) -> dict:
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in range(runs):
        for srv in servers:
            for col in columns:
                log(f"run {r + 1}/{runs}: {srv.name} ({col})")
                port = _free_port()
                with ExitStack() as stack:
                    _start(col, srv, port, tree, image, stack)
                    figures = srv.load(port, tree, opts)
                for what, v in figures.items():
                    results.setdefault(srv.name, {}).setdefault(what, {}).setdefault(col, []).append(v)
    return results


def markdown(results: dict, columns: list[str]) -> str:
    head = "| server | figure | " + " | ".join(columns) + " | kiln / native |" + \
        (" kiln / qemu |" if "qemu" in columns else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, figs in results.items():
        for what, cols in figs.items():
            med = {c: statistics.median(v) for c, v in cols.items()}
            row = f"| {name} | {what} | " + " | ".join(f"{med[c]:,.0f}" for c in columns)
            row += f" | **{med['kiln'] / med['native']:.0%}** |"
            if "qemu" in columns:
                row += f" {med['kiln'] / med['qemu']:.2f}x |"
            lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="Needs root, ab (apache2-utils) and qemu-x86_64 "
                                        "(scripts/setup.sh installs them).")
    ap.add_argument("--rootfs", type=Path, help="the image's root tree (default: the Debian example's)")
    ap.add_argument("--image", type=Path, help="that tree recompiled (default: the Debian example's)")
    ap.add_argument("--runs", type=int, default=3, help="runs per column (median reported)")
    ap.add_argument("--only", default="", help="comma-separated servers: redis,nginx")
    ap.add_argument("--redis-requests", type=int, default=100_000)
    ap.add_argument("--ab-requests", type=int, default=20_000)
    ap.add_argument("--no-qemu", action="store_true", help="leave out the qemu-x86_64 column")
    ap.add_argument("--gate-off-column", action="store_true",
                    help="add a column of Kiln with its native syscall gate off "
                         "(KILN_SYSCALL_GATE=0: every syscall through Python)")
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args(argv)
    log = (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        if os.geteuid() != 0:
            raise KilnError("bench/servers.py needs root", hint="run it with sudo: the native "
                            "column mounts an overlay and kiln's uses --publish")
        for tool in ("ab",) + (() if opts.no_qemu else ("qemu-x86_64",)):
            if shutil.which(tool) is None:
                raise KilnError(f"{tool} is not installed", hint="run scripts/setup.sh")
        if (opts.rootfs is None) != (opts.image is None):
            raise KilnError("--rootfs and --image go together", hint="give both, or neither")
        tree, image = (opts.rootfs, opts.image) if opts.rootfs else _example(log)
        wanted = [s for s in opts.only.split(",") if s]
        unknown = set(wanted) - {s.name for s in SERVERS}
        if unknown:
            raise KilnError(f"unknown server {sorted(unknown)[0]!r}", hint="choose from redis, nginx")
        servers = [s for s in SERVERS if not wanted or s.name in wanted]
        columns = ["native"] + ([] if opts.no_qemu else ["qemu"]) + \
            (["kiln-no-gate"] if opts.gate_off_column else []) + ["kiln"]
        load0 = os.getloadavg()[0]
        results = measure(servers, tree, image, opts.runs, columns, opts, log)
    except KilnError as e:
        print(user_report(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    meta = {"host": _host(), "load_before": load0, "load_after": os.getloadavg()[0],
            "runs": opts.runs, "redis_requests": opts.redis_requests, "ab_requests": opts.ab_requests}
    if opts.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
    else:
        print(f"{meta['host']['cpu']}, {meta['host']['cpus']} CPUs; load average "
              f"{load0:.2f} before, {meta['load_after']:.2f} after; median of {opts.runs} runs")
        print(markdown(results, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
