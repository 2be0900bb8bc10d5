"""``kiln serve`` over real HTTP (httpx) against a running server of the recompiled busybox
image: life cycle, exec (plain, streamed, background), run_code, files, bad input, quotas,
fault isolation, 200 sandboxes at once, the SDK and ``kiln sandbox``, and a restart."""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serverig import TOKENS, Server, descendants, kiln_script, start_server
from vkernel.containers import _start_time


def still_running(pids: dict[int, int | None]) -> list[int]:
    """Those of ``pids`` (pid -> start time) still running: the same pid and start time, not a
    zombie (a pid may be reused by then on a busy machine)."""
    return [p for p, start in pids.items() if start is not None and _start_time(p) == start]


def processes_below(pid: int) -> dict[int, int | None]:
    return {p: _start_time(p) for p in descendants(pid)}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="kiln serve needs root")


@pytest.fixture(scope="module")
def server(busybox_image: Path, tmp_path_factory) -> Server:
    """One server for the module: a pool of 4, 32 MiB disks, 1 MiB uploads."""
    srv = start_server(busybox_image, tmp_path_factory.mktemp("serve"), "--pool", "bb=4",
                       "--disk-mb", "32", "--max-body-mb", "1", "--memory-mb", "256")
    yield srv
    pids = processes_below(srv.proc.pid)
    # uvicorn shuts down gracefully on SIGTERM, then ends by the signal it caught
    assert srv.stop() in (0, -signal.SIGTERM), srv.log.read_text()
    deadline = time.monotonic() + 10
    while still_running(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert still_running(pids) == [], "processes of the server left running"


@pytest.fixture()
def api(server: Server):
    return server.client("alice")


def create(api, **body) -> str:
    r = api.post("/v1/sandboxes", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def run(api, sid: str, **body) -> dict:
    r = api.post(f"/v1/sandboxes/{sid}/exec", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def native(busybox_bin: Path, script: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(busybox_bin), "sh", "-c", script], capture_output=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin"})


# -- life cycle and exec ----------------------------------------------------------------------
def test_life_cycle(api, server: Server):
    r = api.post("/v1/sandboxes", json={"timeout_s": 60, "metadata": {"who": "test"}})
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["image"] == "bb" and info["acquired_from"] == "pool"
    sid = info["id"]
    assert api.get(f"/v1/sandboxes/{sid}").json()["metadata"] == {"who": "test"}
    assert sid in [s["id"] for s in api.get("/v1/sandboxes").json()["sandboxes"]]
    r = api.post(f"/v1/sandboxes/{sid}/timeout", json={"timeout_s": 120})
    assert r.status_code == 200 and r.json()["expires_in_s"] > 100
    assert api.delete(f"/v1/sandboxes/{sid}").status_code == 200
    r = api.get(f"/v1/sandboxes/{sid}")
    assert r.status_code == 404 and "ended" in r.json()["error"]
    assert api.post(f"/v1/sandboxes/{sid}/exec", json={"argv": ["true"]}).status_code == 404


def test_exec_matches_native(api, busybox_bin: Path):
    sid = create(api)
    script = "echo out; echo err >&2; printf '%s,' a b c; expr 6 \\* 7; sleep 0.1; exit 3"
    want = native(busybox_bin, script)
    got = run(api, sid, cmd=script)
    assert (got["exit_code"], got["stdout"], got["stderr"]) == \
        (want.returncode, want.stdout.decode(), want.stderr.decode())
    got = run(api, sid, argv=["sh", "-c", "cat; echo $FOO; pwd"], stdin="in\n",
              env={"FOO": "bar"}, cwd="/tmp")
    want = subprocess.run([str(busybox_bin), "sh", "-c", "cat; echo $FOO; pwd"], input=b"in\n",
                          capture_output=True, env={"FOO": "bar"}, cwd="/tmp")
    assert got["stdout"] == want.stdout.decode()
    got = run(api, sid, argv=["head", "-c", "256", "/bin/busybox"], encoding="base64")
    import base64
    assert base64.b64decode(got["stdout"]) == busybox_bin.read_bytes()[:256]


def test_exec_streams_events(api):
    sid = create(api)
    with api.stream("POST", f"/v1/sandboxes/{sid}/exec",
                    json={"cmd": "echo a; sleep 1; echo b >&2; exit 4"},
                    headers={"Accept": "text/event-stream"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events, stamps, event = [], [], None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[6:])))
                stamps.append(time.monotonic())
    assert [(e, d.get("data")) for e, d in events[:2]] == [("stdout", "a\n"), ("stderr", "b\n")]
    assert events[-1][0] == "exit" and events[-1][1]["exit_code"] == 4
    assert stamps[1] - stamps[0] > 0.5        # "a" came before the sleep, not at the end


def test_background_process(api):
    sid = create(api)
    r = api.post(f"/v1/sandboxes/{sid}/exec",
                 json={"argv": ["sh", "-c", "while read l; do echo got:$l; done"],
                       "background": True})
    assert r.status_code == 202, r.text
    pid = r.json()["pid"]
    base = f"/v1/sandboxes/{sid}/processes/{pid}"
    assert api.post(base + "/stdin", json={"data": "one\n"}).status_code == 200
    deadline = time.monotonic() + 10
    while "got:one" not in api.get(base).json()["stdout"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.get(base).json()["stdout"] == "got:one\n"
    listed = api.get(f"/v1/sandboxes/{sid}/processes").json()["processes"]
    assert pid in [p["pid"] for p in listed]
    assert api.post(base + "/signal", json={"signal": "TERM"}).status_code == 200
    while api.get(base).json()["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    info = api.get(base).json()
    assert not info["running"] and info["signal"] == signal.SIGTERM
    assert api.get(f"/v1/sandboxes/{sid}/processes/99999").status_code == 404


def test_run_code_keeps_state(api):
    sid = create(api)
    r = api.post(f"/v1/sandboxes/{sid}/code", json={"language": "bash", "code": "x=41; cd /tmp"})
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
    r = api.post(f"/v1/sandboxes/{sid}/code",
                 json={"language": "bash", "code": "echo $((x + 1)) $(pwd)"}).json()
    assert (r["stdout"], r["restarted"]) == ("42 /tmp\n", False)


# -- files --------------------------------------------------------------------------------
def test_files_round_trip(api, busybox_bin: Path):
    sid = create(api)
    blob = secrets.token_bytes(300_000)
    base = f"/v1/sandboxes/{sid}/files"
    assert api.put(base, params={"path": "/tmp/d/blob"}, content=blob).status_code == 200
    assert api.get(base, params={"path": "/tmp/d/blob"}).content == blob
    # the guest sees the same bytes the API wrote
    assert run(api, sid, argv=["md5sum", "/tmp/d/blob"])["stdout"].split()[0] == \
        __import__("hashlib").md5(blob).hexdigest()
    entries = api.get(base, params={"path": "/tmp/d", "list": 1}).json()["entries"]
    assert [(e["name"], e["size"]) for e in entries] == [("blob", len(blob))]
    assert api.delete(base, params={"path": "/tmp/d/blob"}).status_code == 200
    assert api.get(base, params={"path": "/tmp/d/blob"}).status_code == 404
    # the image's files are there, and removing one leaves the image untouched
    assert api.get(base, params={"path": "/bin/busybox"}).content == busybox_bin.read_bytes()
    other = create(api)
    assert api.delete(base, params={"path": "/bin/busybox"}).status_code == 200
    assert run(api, sid, cmd="ls /bin/busybox")["exit_code"] != 0
    assert run(api, other, argv=["/bin/busybox", "true"])["exit_code"] == 0


def test_paths_stay_inside(api, tmp_path: Path):
    sid = create(api)
    marker = Path("/tmp") / f"kiln-escape-{secrets.token_hex(6)}"
    marker.write_text("host secret")
    try:
        base = f"/v1/sandboxes/{sid}/files"
        r = api.get(base, params={"path": f"../../..{marker}"})
        assert r.status_code == 400 and "absolute" in r.json()["error"]
        for path in (f"/../../../..{marker}", f"/tmp/../../..{marker}"):
            assert api.get(base, params={"path": path}).status_code == 404
        assert run(api, sid, cmd="ln -s /../../../.. /tmp/up")["exit_code"] == 0
        assert api.get(base, params={"path": f"/tmp/up{marker}"}).status_code == 404
        r = api.put(base, params={"path": f"/tmp/up/../..{marker}-w"}, content=b"x")
        assert not Path(f"{marker}-w").exists()
        assert api.get(base, params={"path": "/tmp/a\0b"}).status_code == 400
    finally:
        marker.unlink()


# -- bad input ------------------------------------------------------------------------------
def test_auth(server: Server):
    anon = server.client(None)
    for method, path in (("GET", "/v1/sandboxes"), ("POST", "/v1/sandboxes"),
                         ("DELETE", "/v1/sandboxes/sb-0"), ("POST", "/v1/admin/kill-all")):
        r = anon.request(method, path)
        assert r.status_code == 401 and "Bearer" in r.json()["hint"], (method, path, r.text)
    for header in ("Bearer wrong-token-000000000000", "Basic YWxpY2U6eA==", "Bearer",
                   f"Bearer {TOKENS['alice']}x"):
        r = anon.get("/v1/sandboxes", headers={"Authorization": header})
        assert r.status_code == 401, header
    # another token's sandbox does not exist for bob; an admin token sees it
    sid = create(server.client("alice"))
    assert server.client("bob").get(f"/v1/sandboxes/{sid}").status_code == 404
    assert server.client("bob").delete(f"/v1/sandboxes/{sid}").status_code == 404
    assert server.client("root").get(f"/v1/sandboxes/{sid}").status_code == 200
    assert server.client("alice").post("/v1/admin/kill-all").status_code == 403
    assert anon.get("/healthz").status_code == 200


def test_bad_input_gets_clear_4xx(api, server: Server):
    sid = create(api)
    cases = [
        ("POST", "/v1/sandboxes", {"content": b"{bad json"}, 400),
        ("POST", "/v1/sandboxes", {"content": b"[1, 2]"}, 422),
        ("POST", "/v1/sandboxes", {"json": {"image": "nope"}}, 400),
        ("POST", "/v1/sandboxes", {"json": {"memory_mb": "lots"}}, 422),
        ("POST", "/v1/sandboxes", {"json": {"memory_mb": 10 ** 9}}, 400),
        ("POST", "/v1/sandboxes", {"json": {"timeout_s": -1}}, 422),
        ("POST", "/v1/sandboxes", {"json": {"allow_net": True}}, 400),
        ("POST", f"/v1/sandboxes/{sid}/exec", {"json": {}}, 400),
        ("POST", f"/v1/sandboxes/{sid}/exec", {"json": {"argv": []}}, 422),
        ("POST", f"/v1/sandboxes/{sid}/exec", {"json": {"argv": "ls"}}, 422),
        ("POST", f"/v1/sandboxes/{sid}/exec", {"content": b"\xff\xfe"}, 400),
        ("POST", f"/v1/sandboxes/{sid}/code", {"json": {"language": "cobol", "code": "x"}},
         422),
        ("POST", f"/v1/sandboxes/{sid}/processes/1/signal", {"json": {"signal": "NOPE"}}, 404),
        ("GET", "/v1/sandboxes/sb-0000000000000000", {}, 404),
        ("GET", "/v1/sandboxes/..%2f..%2fetc", {}, 404),
        ("DELETE", "/v1/sandboxes/sb-0000000000000000", {}, 404),
        ("GET", "/v1/nowhere", {}, 404),
        ("PATCH", "/v1/sandboxes", {}, 405),
        ("GET", f"/v1/sandboxes/{sid}/files", {}, 422),
        ("GET", "/v1/snapshots/snap-0000000000000000", {}, 404),
        ("DELETE", "/v1/snapshots/snap-0000000000000000", {}, 404),
        ("POST", "/v1/sandboxes", {"json": {"from_snapshot": "snap-0000000000000000"}}, 404),
    ]
    for method, path, kw, want in cases:
        r = api.request(method, path, **kw)
        body = r.json()
        assert r.status_code == want, (method, path, r.text)
        assert body["error"] and "Traceback" not in r.text, (method, path, r.text)
    # huge bodies: a file over --max-body-mb and a JSON body over 8 MiB, sent and streamed
    r = api.put(f"/v1/sandboxes/{sid}/files", params={"path": "/tmp/big"},
                content=b"x" * (2 << 20))
    assert r.status_code == 413 and "bytes" in r.json()["error"]

    def chunks():
        for _ in range(20):
            yield b"y" * (1 << 19)
    r = api.put(f"/v1/sandboxes/{sid}/files", params={"path": "/tmp/big"}, content=chunks())
    assert r.status_code == 413
    r = api.post(f"/v1/sandboxes/{sid}/exec",
                 content=json.dumps({"argv": ["true"], "stdin": "z" * (9 << 20)}))
    assert r.status_code == 413
    # and the server and the sandbox are fine
    assert run(api, sid, argv=["true"])["exit_code"] == 0
    assert server.client(None).get("/healthz").json()["status"] == "ok"


def test_quota_and_openapi(server: Server):
    bob = server.client("bob")
    ids = [create(bob), create(bob)]
    r = bob.post("/v1/sandboxes", json={})
    assert r.status_code == 429 and "quota" in r.json()["error"]
    for sid in ids:
        bob.delete(f"/v1/sandboxes/{sid}")
    r = bob.post("/v1/sandboxes", json={})
    assert r.status_code == 201
    bob.delete(f"/v1/sandboxes/{r.json()['id']}")
    spec = server.client(None).get("/openapi.json").json()
    assert "/v1/sandboxes/{sid}/exec" in spec["paths"]
    metrics = server.client(None).get("/metrics").text
    assert "kiln_http_requests_total" in metrics


# -- faults stay inside ---------------------------------------------------------------------
def test_fault_isolation(api, server: Server):
    bystander = create(api)
    bomb = create(api, pids=16)
    loop = create(api)
    hog = create(api, memory_mb=64)
    disk = create(api)
    t0 = time.monotonic()
    # a fork bomb meets the sandbox's 16 processes: fork fails in it, nowhere else
    r = run(api, bomb, cmd="b() { b | b & }; b; sleep 2; echo survived", timeout_s=4)
    assert "can't fork" in r["stderr"], r
    assert run(api, bomb, cmd="echo alive", timeout_s=10)["stdout"] == "alive\n"
    assert run(api, bystander, cmd="echo ok")["stdout"] == "ok\n"
    r = run(api, loop, cmd="while :; do :; done", timeout_s=1)
    assert r["timed_out"] and r["duration_ms"] < 5000
    assert run(api, loop, cmd="echo after")["stdout"] == "after\n"
    # a memory bomb: a string doubled until the sandbox's 64 MiB cgroup ends it
    r = api.post(f"/v1/sandboxes/{hog}/exec",
                 json={"cmd": "x=0123456789; while :; do x=$x$x; done", "timeout_s": 20})
    assert r.status_code == 200, r.text
    assert r.json()["exit_code"] != 0 and "out of memory" in r.json()["stderr"], r.text
    r = run(api, disk, cmd="dd if=/dev/zero of=/tmp/fill bs=1M count=64")
    assert r["exit_code"] != 0 and "space" in r["stderr"], r
    assert run(api, disk, cmd="rm /tmp/fill; echo x > /tmp/y; cat /tmp/y")["stdout"] == "x\n"
    assert run(api, bystander, cmd="echo still ok")["stdout"] == "still ok\n"
    health = server.client(None).get("/healthz").json()
    assert health["status"] == "ok", health
    assert time.monotonic() - t0 < 60


def test_two_hundred_sandboxes(api):
    ids = []
    try:
        for _ in range(200):
            ids.append(create(api, timeout_s=300))
        listed = {s["id"] for s in api.get("/v1/sandboxes").json()["sandboxes"]}
        assert set(ids) <= listed
        for sid in ids[::20]:
            assert run(api, sid, argv=["true"])["exit_code"] == 0
        # each has its own files
        api.put(f"/v1/sandboxes/{ids[0]}/files", params={"path": "/tmp/mine"}, content=b"0")
        assert api.get(f"/v1/sandboxes/{ids[-1]}/files",
                       params={"path": "/tmp/mine"}).status_code == 404
    finally:
        for sid in ids:
            api.delete(f"/v1/sandboxes/{sid}")


# -- SDK and CLI ----------------------------------------------------------------------------
def test_sdk(server: Server):
    from shim.sandbox.sdk import Client, NotFound, QuotaExceeded, Sandbox
    streamed = []
    with Sandbox.create(timeout=60, url=server.url, token=TOKENS["alice"]) as sb:
        r = sb.exec(["sh", "-c", "echo hi; echo oops >&2; exit 3"])
        assert (r.exit_code, r.stdout, r.stderr) == (3, "hi\n", "oops\n")
        r = sb.exec("echo one; echo two", on_stdout=streamed.append)
        assert "".join(streamed) == r.stdout == "one\ntwo\n"
        sb.run_code("n=20", language="bash")
        assert sb.run_code("echo $((n + 1))", language="bash").stdout == "21\n"
        sb.files.write("/tmp/s.txt", b"sdk")
        assert sb.files.read("/tmp/s.txt") == b"sdk"
        assert "s.txt" in [e["name"] for e in sb.files.list("/tmp")]
        sb.files.remove("/tmp/s.txt")
        with pytest.raises(NotFound):
            sb.files.read("/tmp/s.txt")
        snap = sb.snapshot()
        assert snap.sessions == ("bash",) and snap.size_bytes > 0
        sid = sb.id
    with Sandbox.create(snapshot=snap, url=server.url, token=TOKENS["alice"]) as again:
        assert again.run_code("echo $((n + 2))", language="bash").stdout == "22\n"
    client = Client(server.url, TOKENS["alice"])
    assert snap.id in [s.id for s in client.snapshots()]
    client.delete_snapshot(snap)
    with pytest.raises(NotFound):
        Sandbox.create(snapshot=snap, url=server.url, token=TOKENS["alice"])
    with pytest.raises(NotFound):
        Sandbox.connect(sid, url=server.url, token=TOKENS["alice"])
    bob = [Sandbox.create(url=server.url, token=TOKENS["bob"]) for _ in range(2)]
    try:
        with pytest.raises(QuotaExceeded):
            Sandbox.create(url=server.url, token=TOKENS["bob"])
    finally:
        for sb in bob:
            sb.close()


def test_cli(server: Server):
    env = {**os.environ, "KILN_URL": server.url, "KILN_TOKEN": TOKENS["alice"]}
    kiln = kiln_script()
    sid = subprocess.run([kiln, "sandbox", "create", "--timeout", "60"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    p = subprocess.run([kiln, "sandbox", "exec", sid, "sh", "-c", "echo cli; exit 6"],
                       env=env, capture_output=True, text=True)
    assert (p.returncode, p.stdout) == (6, "cli\n")
    p = subprocess.run([kiln, "sandbox", "ls", "--json"], env=env, capture_output=True,
                       text=True, check=True)
    assert sid in [s["id"] for s in json.loads(p.stdout)]
    assert subprocess.run([kiln, "sandbox", "exec", sid, "sh", "-c", "echo kept > /tmp/k"],
                          env=env).returncode == 0
    snap = subprocess.run([kiln, "sandbox", "snapshot", sid], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()
    again = subprocess.run([kiln, "sandbox", "create", "--snapshot", snap], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    p = subprocess.run([kiln, "sandbox", "exec", again, "cat", "/tmp/k"], env=env,
                       capture_output=True, text=True)
    assert (p.returncode, p.stdout) == (0, "kept\n")
    subprocess.run([kiln, "sandbox", "rm", again], env=env, capture_output=True)
    assert subprocess.run([kiln, "sandbox", "rm", sid], env=env,
                          capture_output=True).returncode == 0
    p = subprocess.run([kiln, "sandbox", "exec", sid, "true"], env=env, capture_output=True,
                       text=True)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr
    p = subprocess.run([kiln, "sandbox", "ls"], env={**env, "KILN_TOKEN": "bad-token-00000000"},
                       capture_output=True, text=True)
    assert p.returncode == 2 and "hint:" in p.stderr


def test_kill_switch(server: Server):
    """Last on the shared server: kill-all ends every sandbox and refuses new ones."""
    api, admin = server.client("alice"), server.client("root")
    sid = create(api)
    r = admin.post("/v1/admin/kill-all", json={"refuse_new": True})
    assert r.status_code == 200, r.text
    assert api.get(f"/v1/sandboxes/{sid}").status_code == 404
    r = api.post("/v1/sandboxes", json={})
    assert r.status_code == 503 and "kill switch" in r.json()["error"]
    assert admin.post("/v1/admin/accept").status_code == 200
    assert api.post("/v1/sandboxes", json={}).status_code == 201


def test_network_closed_by_default(api, server: Server):
    """A sandbox has no network unless asked: a guest cannot reach the host, not even kiln
    serve's own API on the host's loopback, which the test itself reaches; allow_net must
    name where to."""
    from urllib.parse import urlsplit
    port = urlsplit(server.url).port
    assert server.client(None).get("/healthz").status_code == 200
    sid = create(api)
    for argv in (["wget", "-q", "-T", "3", "-O", "-", f"http://127.0.0.1:{port}/healthz"],
                 ["nc", "-w", "3", "127.0.0.1", str(port)]):
        r = run(api, sid, argv=argv, stdin="GET /healthz HTTP/1.0\r\n\r\n")
        assert r["exit_code"] != 0 and r["stdout"] == "", (argv, r)
        assert "socket" in r["stderr"], r                # refused at socket(), not elsewhere
    for allow in (True, ["no such host!"], ["10.0.0.1:99999"]):
        r = api.post("/v1/sandboxes", json={"allow_net": allow})
        assert r.status_code == 400 and "allow_net" in r.json()["error"], r.text
    assert api.post("/v1/sandboxes", json={"allow_net": False}).status_code == 201
    api.delete(f"/v1/sandboxes/{sid}")


def _host_address() -> str:
    """The host's address on its default route (no packet is sent)."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
        except OSError:
            pytest.skip("the host has no IPv4 route outside its loopback")
        ip = s.getsockname()[0]
    if ip.startswith("127."):
        pytest.skip("the host has no IPv4 address outside its loopback")
    return ip


def test_allow_net_opens_exactly_its_destinations(api):
    """allow_net [IP:PORT] lets the sandbox's guests reach that host service (through the
    zygote, as kiln run --allow-net goes through its supervisor); another port of the same
    host stays closed (ENETUNREACH) and sees no connection; other sandboxes stay closed."""
    import http.server
    import threading
    ip = _host_address()
    seen: dict[int, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen[self.server.server_address[1]] = seen.get(self.server.server_address[1], 0) + 1
            body = b"host service\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass
    servers = [http.server.HTTPServer((ip, 0), Handler) for _ in range(2)]
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    allowed, other = (srv.server_address[1] for srv in servers)
    try:
        sid = create(api, allow_net=[f"{ip}:{allowed}"])
        request = "GET / HTTP/1.0\r\n\r\n"
        got = run(api, sid, argv=["nc", ip, str(allowed)], stdin=request)
        assert got["exit_code"] == 0 and got["stdout"].endswith("\r\n\r\nhost service\n"), got
        # busybox wget reads the response with a blocking read: the socket vkernel got from
        # the broker must be blocking again (it was left non-blocking: EAGAIN, now and then)
        for _ in range(3):
            got = run(api, sid, argv=["wget", "-q", "-O", "-", f"http://{ip}:{allowed}/"])
            assert (got["exit_code"], got["stdout"]) == (0, "host service\n"), got
        denied = run(api, sid, argv=["nc", ip, str(other)], stdin=request)
        assert denied["exit_code"] != 0 and "unreachable" in denied["stderr"], denied
        closed = run(api, create(api), argv=["nc", ip, str(allowed)], stdin=request)
        assert closed["exit_code"] != 0 and "socket" in closed["stderr"], closed
        assert seen == {allowed: 4}
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()


# -- snapshots ------------------------------------------------------------------------------
SH_SETUP = ["y=7; cd /etc; exec 5</etc/passwd; read first <&5; echo $first",
            "add() { y=$((y + $1)); }; add 5; echo $y $$"]
SH_AFTER = "read next <&5; echo $y $$ $(pwd) $next; cat /data/note; ls /data"


def cell(api, sid: str, code: str, language: str = "bash") -> str:
    r = api.post(f"/v1/sandboxes/{sid}/code", json={"language": language, "code": code})
    assert r.status_code == 200, r.text
    res = r.json()
    assert (res["exit_code"], res["stderr"], res["restarted"]) == (0, "", False), res
    return res["stdout"]


def snapshot(api, sid: str) -> dict:
    r = api.post(f"/v1/sandboxes/{sid}/snapshot")
    assert r.status_code == 201, r.text
    return r.json()


def restore(api, snap: dict) -> str:
    r = api.post("/v1/sandboxes", json={"from_snapshot": snap["snapshot_id"]})
    assert r.status_code == 201, r.text
    assert r.json()["from_snapshot"] == snap["snapshot_id"]
    return r.json()["id"]


def test_snapshot_restores_files_and_shell_state(api):
    sid = create(api)
    assert api.put(f"/v1/sandboxes/{sid}/files", params={"path": "/data/note"},
                   content=b"saved\n").status_code == 200
    for code in SH_SETUP:
        cell(api, sid, code)
    snap = snapshot(api, sid)
    assert snap["sessions"] == ["bash"] and snap["size_bytes"] > 0
    a, b = restore(api, snap), restore(api, snap)
    # the original goes on as it would have: each restore must print exactly what it prints
    want = cell(api, sid, SH_AFTER)
    assert want.split()[:2] == ["12", want.split()[1]] and "saved" in want
    assert cell(api, a, SH_AFTER) == want
    assert cell(api, b, SH_AFTER) == want
    # two restores of one snapshot are two sandboxes: what one does, the other does not see
    cell(api, a, "add 100; echo changed > /data/note; touch /data/only-a")
    assert cell(api, a, "echo $y; cat /data/note") == "112\nchanged\n"
    assert cell(api, b, "echo $y; cat /data/note; ls /data") == "12\nsaved\nnote\n"
    assert api.get(f"/v1/sandboxes/{sid}/files", params={"path": "/data/note"}).content == \
        b"saved\n"
    # and the snapshot itself is unchanged: a third restore starts where it was taken
    c = restore(api, snap)
    assert cell(api, c, SH_AFTER) == want
    # a restored sandbox is saved again like any other (here with an exec's spare waiting)
    assert run(api, c, argv=["true"])["exit_code"] == 0
    again = snapshot(api, c)
    d = restore(api, again)
    look = "add 1; echo $y $$ $(pwd); cat /data/note"
    assert cell(api, d, look) == cell(api, c, look)
    for x in (sid, a, b, c, d):
        api.delete(f"/v1/sandboxes/{x}")
    assert api.delete(f"/v1/snapshots/{again['snapshot_id']}").status_code == 200
    assert api.delete(f"/v1/snapshots/{snap['snapshot_id']}").status_code == 200
    assert api.get(f"/v1/snapshots/{snap['snapshot_id']}").status_code == 404


def test_snapshot_refusals_and_damage(api, server: Server):
    sid = create(api)
    cell(api, sid, "v=1")
    r = api.post(f"/v1/sandboxes/{sid}/exec", json={"argv": ["sleep", "60"], "background": True})
    assert r.status_code == 202, r.text
    pid = r.json()["pid"]
    r = api.post(f"/v1/sandboxes/{sid}/snapshot")
    assert r.status_code == 409 and f"process {pid} (sleep 60)" in r.json()["error"], r.text
    api.post(f"/v1/sandboxes/{sid}/processes/{pid}/signal", json={"signal": "KILL"})
    deadline = time.monotonic() + 10
    while api.post(f"/v1/sandboxes/{sid}/snapshot").status_code != 201:
        assert time.monotonic() < deadline, "the sandbox never became snapshottable"
        time.sleep(0.1)
    snaps = api.get("/v1/snapshots").json()["snapshots"]
    snap = next(s for s in snaps if s["sandbox_id"] == sid)
    # an interpreter in the middle of a cell is not saved either
    import threading
    slow = threading.Thread(target=lambda: server.client("alice").post(
        f"/v1/sandboxes/{sid}/code", json={"language": "bash", "code": "sleep 2"}))
    slow.start()
    deadline = time.monotonic() + 10
    while not any(p["argv"][:1] == ["sleep"] for p in
                  api.get(f"/v1/sandboxes/{sid}/processes").json()["processes"]):
        assert time.monotonic() < deadline, "the cell never started its sleep"
        time.sleep(0.02)
    r = api.post(f"/v1/sandboxes/{sid}/snapshot")
    slow.join()
    assert r.status_code == 409 and "running bash code" in r.json()["error"], r.text
    snap_id = snap["snapshot_id"]
    # another token's snapshot does not exist for bob
    bob = server.client("bob")
    assert bob.get(f"/v1/snapshots/{snap_id}").status_code == 404
    assert bob.delete(f"/v1/snapshots/{snap_id}").status_code == 404
    assert bob.post("/v1/sandboxes", json={"from_snapshot": snap_id}).status_code == 404
    assert snap_id not in [s["snapshot_id"] for s in bob.get("/v1/snapshots").json()["snapshots"]]
    # a damaged snapshot is refused, clearly, and leaves no sandbox behind
    d = server.state / "snapshots" / snap_id
    image = next(d.glob("proc-*.img"))
    data = image.read_bytes()
    before = len(api.get("/v1/sandboxes").json()["sandboxes"])
    for broken in (data[:len(data) // 2], data[:100] + bytes([data[100] ^ 1]) + data[101:]):
        image.write_bytes(broken)
        r = api.post("/v1/sandboxes", json={"from_snapshot": snap_id})
        assert r.status_code == 409 and "damaged" in r.json()["error"], r.text
        assert image.name in r.json()["error"] and "Traceback" not in r.text
    image.write_bytes(data)
    (d / "upper.tar").write_bytes((d / "upper.tar").read_bytes()[:-512])
    r = api.post("/v1/sandboxes", json={"from_snapshot": snap_id})
    assert r.status_code == 409 and "upper.tar" in r.json()["error"], r.text
    assert len(api.get("/v1/sandboxes").json()["sandboxes"]) == before
    assert server.client(None).get("/healthz").json()["status"] == "ok"
    assert run(api, sid, argv=["true"])["exit_code"] == 0
    api.delete(f"/v1/snapshots/{snap_id}")
    api.delete(f"/v1/sandboxes/{sid}")


def test_process_image_checks_itself(api, server: Server, tmp_path: Path):
    """vkernel refuses a damaged process image on its own (without the server's manifest)."""
    from vkernel.checkpoint import CheckpointError, read_image
    sid = create(api)
    cell(api, sid, "w=3")
    snap = snapshot(api, sid)
    image = next((server.state / "snapshots" / snap["snapshot_id"]).glob("proc-*.img"))
    data = image.read_bytes()
    with open(image, "rb") as f:
        meta, _ = read_image(f.fileno())
    assert meta["exe"] == "/bin/busybox" and meta["frame"][0] == 0      # waiting in read(0)
    for broken, why in ((data[:-1], "BLAKE3"), (data[:20], "truncated"),
                        (data[:40] + b"X" + data[41:], "BLAKE3")):
        bad = tmp_path / "bad.img"
        bad.write_bytes(broken)
        with open(bad, "rb") as f, pytest.raises(CheckpointError) as e:
            read_image(f.fileno())
        assert why in e.value.message
    api.delete(f"/v1/snapshots/{snap['snapshot_id']}")
    api.delete(f"/v1/sandboxes/{sid}")


# -- restart --------------------------------------------------------------------------------
def test_restart_reports_lost_sandboxes(busybox_image: Path, tmp_path: Path):
    first = start_server(busybox_image, tmp_path)
    try:
        api = first.client("alice")
        ids = [create(api), create(api)]
        cell(api, ids[0], "kept=yes")
        snap = snapshot(api, ids[0])
        records = {sid: json.loads((first.state / "sandboxes" / f"{sid}.json").read_text())
                   for sid in ids}
        pids = processes_below(first.proc.pid)
    finally:
        first.stop(signal.SIGKILL)                    # a crash: no clean shutdown
    second = start_server(busybox_image, tmp_path, state=first.state)
    try:
        health = second.client(None).get("/healthz").json()
        assert sorted(x["id"] for x in health["lost"]) == sorted(ids)
        api = second.client("alice")
        for sid in ids:
            r = api.get(f"/v1/sandboxes/{sid}")
            assert r.status_code == 404 and "restarted" in r.json()["error"]
        for rec in records.values():
            assert _start_time(rec["pid"]) != rec["start"]
            for d in rec["cgroup"]:
                assert not os.path.exists(d)
            assert not (second.state / "runs" / rec["run"]).exists()      # its files too
        deadline = time.monotonic() + 10
        while still_running(pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert still_running(pids) == []
        audit = (second.state / "audit.jsonl").read_text()
        assert all(sid in audit for sid in ids)
        assert run(api, create(api), argv=["true"])["exit_code"] == 0
        # snapshots are on disk: they outlive the server
        assert cell(api, restore(api, snap), "echo $kept") == "yes\n"
    finally:
        assert second.stop() in (0, -signal.SIGTERM)


# -- the status page, in a real headless browser ---------------------------------------------
def _page_dom(url: str, tmp: Path) -> str:
    import shutil
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    p = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        f"--user-data-dir={tmp}", "--virtual-time-budget=4000", "--dump-dom",
                        url], capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def test_status_page_in_browser(server: Server, tmp_path: Path):
    import html.parser
    api = server.client("alice")
    evil = "<img src=x onerror=alert(1)>"
    ids = [create(api), create(api, metadata={"note": evil})]
    run(api, ids[0], cmd="x=$(head -c 3000000 /dev/zero | tr '\\0' a); sleep 10 &")

    class Rows(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: dict[str, list[str]] = {}
            self.row: list[str] | None = None
            self.tags: list[str] = []
            self.status = ""
            self._in_status = False

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            a = dict(attrs)
            if tag == "tr" and "data-id" in a:
                self.row = self.rows.setdefault(a["data-id"], [])
            self._in_status = a.get("id") == "status"

        def handle_endtag(self, tag):
            if tag == "tr":
                self.row = None
            self._in_status = False

        def handle_data(self, data):
            if self.row is not None and data.strip():
                self.row.append(data)
            if self._in_status:
                self.status += data

    dom = Rows()
    dom.feed(_page_dom(f"{server.url}/#token={TOKENS['alice']}", tmp_path / "a"))
    assert set(ids) <= set(dom.rows), dom.rows
    for sid in ids:
        sid_, image, age, memory, _expires, owner, _meta = dom.rows[sid]
        assert (sid_, image, owner) == (sid, "bb", "alice")
        assert age.endswith(" s") and memory.endswith(" MiB") and float(memory.split()[0]) > 0
    assert json.loads(dom.rows[ids[1]][6]) == {"note": evil}    # shown as text
    assert "img" not in dom.tags                                # never as HTML
    assert dom.status.startswith(f"{len(dom.rows)} sandboxes")
    bad = Rows()
    bad.feed(_page_dom(f"{server.url}/#token=not-a-token-0000000000", tmp_path / "b"))
    assert bad.rows == {} and bad.status == "the token was refused"
    for sid in ids:
        api.delete(f"/v1/sandboxes/{sid}")


def test_policy_kill_switch(busybox_image: Path, tmp_path: Path):
    """The trust policy's kill_switch, read at each create, refuses new sandboxes (403 with the
    policy's message) and leaves running ones alone."""
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "kill_switch": False}))
    srv = start_server(busybox_image, tmp_path / "srv", "--policy", str(policy))
    try:
        api = srv.client("alice")
        sid = create(api)
        policy.write_text(json.dumps({"version": 1, "kill_switch": True}))
        r = api.post("/v1/sandboxes", json={})
        assert r.status_code == 403 and "kill" in r.json()["error"], r.text
        assert run(api, sid, cmd="echo still here")["stdout"] == "still here\n"
        policy.write_text(json.dumps({"version": 1, "kill_switch": False}))
        assert api.post("/v1/sandboxes", json={}).status_code == 201
    finally:
        assert srv.stop() in (0, -signal.SIGTERM)
