"""Servers from Debian's packages, recompiled, serving clients: nginx, redis, python3 -m http.server and Flask.

Each case is one shell script run in the Debian example image, natively
(tests/native_overlay.py, on the host's network) and under ``kiln run`` (the
run's own network): it starts the server in the background, waits until it
accepts connections, drives it with a client from the image (python3's
http.client, redis-cli) and stops it. Everything the client prints must be
identical on both sides, and so must the exit status. The last tests reach
the recompiled servers from the host, through ``kiln run --publish``: nginx
from Python's http.client, redis from the image's own redis-cli and
redis-benchmark (run on the host, in a chroot of the image's tree) with the
same replies as a native redis-server.
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from native_overlay import inside, overlay, run_native
from sessionrun import run_in_session

KILN = str(Path(sys.executable).with_name("kiln"))
TIMEOUT = 240
ENV = ["env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root",
       "LC_ALL=C.UTF-8"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0,
                                 reason="the native side needs root (overlay, unshare)")]

WAIT_FOR_PORT = r"""
wait_port() {
  python3 - "$1" <<'PY'
import socket, sys, time
for _ in range(600):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit("the server never accepted a connection")
PY
}
"""

HTTP_CLIENT = r"""
cat > /tmp/client.py <<'PY'
import hashlib, http.client, json, socket, sys
port = int(sys.argv[1])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
def show(method, path, body=None, headers={}):
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    print(method, path, r.status, r.reason, r.getheader("Content-Type"),
          r.getheader("Content-Length"), len(data), hashlib.sha256(data).hexdigest()[:16])
    return data
for path in sys.argv[2:]:
    method, _, path = path.partition(" ")
    if method == "POST":
        show(method, path, json.dumps({"k": [1, 2, 3]}), {"Content-Type": "application/json"})
    else:
        print(show(method, path)[:60])
# Eight connections open at once, answered in turn (HTTP/1.0: the server closes each).
socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(8)]
for n, s in enumerate(socks):
    s.sendall(f"GET /?n={n} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
for s in socks:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    print(data.split(b"\r\n", 1)[0].decode(), len(data.partition(b"\r\n\r\n")[2]))
PY
"""

NGINX = WAIT_FOR_PORT + HTTP_CLIENT + r"""
mkdir -p /srv/www
printf 'hello from nginx\n' > /srv/www/index.html
head -c 300000 /usr/bin/python3 > /srv/www/big.bin
cat > /tmp/nginx.conf <<EOF
user www-data;
worker_processes 2;
pid /tmp/nginx.pid;
error_log /tmp/nginx-error.log;
events { worker_connections 64; use epoll; }
http {
  access_log /tmp/nginx-access.log;
  server_tokens off;
  sendfile on;
  include /etc/nginx/mime.types;
  server {
    listen 127.0.0.1:$PORT;
    root /srv/www;
    location /api/ { default_type text/plain; return 200 "api \$request_method \$arg_q\n"; }
  }
}
EOF
nginx -e /tmp/nginx-error.log -t -c /tmp/nginx.conf 2>&1 | sed 's/^nginx: //'
nginx -e /tmp/nginx-error.log -c /tmp/nginx.conf -g 'daemon off;' & srv=$!
wait_port $PORT
python3 /tmp/client.py $PORT "GET /" "GET /big.bin" "GET /missing" "GET /api/x?q=42" "HEAD /" \
    "POST /index.html"
kill -QUIT $srv; wait $srv; echo "nginx exited: $?"
echo "access log lines: $(wc -l < /tmp/nginx-access.log)"
echo "nginx processes left: $(cat /proc/[0-9]*/comm 2>/dev/null | grep -c nginx)"
"""

FLASK = WAIT_FOR_PORT + HTTP_CLIENT + r"""
cat > /tmp/app.py <<'PY'
import sys
from flask import Flask, jsonify, request
app = Flask("kiln_app")
@app.get("/")
def index():
    return f"hello from flask, n={request.args.get('n', '-')}\n"
@app.post("/echo")
def echo():
    return jsonify(got=request.get_json(), size=len(request.data))
@app.get("/square/<int:n>")
def square(n):
    return jsonify(n=n, square=n * n)
app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=False)
PY
python3 /tmp/app.py $PORT > /tmp/flask.log 2>&1 & srv=$!
wait_port $PORT
python3 /tmp/client.py $PORT "GET /" "GET /square/12" "POST /echo" "GET /nowhere"
kill $srv; wait $srv; echo "flask exited: $?"
echo "logged requests: $(grep -c 'GET /' /tmp/flask.log)"
"""

REDIS = WAIT_FOR_PORT + r"""
redis-server --port $PORT --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --logfile /tmp/redis.log & srv=$!
wait_port $PORT
cli() { redis-cli -p $PORT "$@"; }
cli set greeting hello; cli get greeting; cli incrby counter 5; cli incrby counter 37
cli rpush list a b c; cli lrange list 0 -1; cli hset h field value; cli hgetall h
cli sadd s x y z x; cli scard s; cli dbsize
printf 'SET piped 1\r\nINCR piped\r\nGET piped\r\n' | cli --pipe 2>&1 | tail -1
cli shutdown nosave; wait $srv; echo "redis exited: $?"
"""

HTTP_SERVER = WAIT_FOR_PORT + HTTP_CLIENT + r"""
mkdir -p /srv/files/sub && printf 'plain text\n' > /srv/files/a.txt
printf '{"k": 1}\n' > /srv/files/sub/b.json && head -c 100000 /bin/bash > /srv/files/c.bin
python3 -m http.server $PORT --bind 127.0.0.1 --directory /srv/files > /tmp/http.log 2>&1 & srv=$!
wait_port $PORT
python3 /tmp/client.py $PORT "GET /" "GET /a.txt" "GET /sub/" "GET /sub/b.json" "GET /c.bin" \
    "GET /missing" "HEAD /a.txt"
kill $srv; wait $srv; echo "http.server exited: $?"
echo "logged requests: $(grep -c '"GET /' /tmp/http.log)"
"""

CASES = {"nginx": NGINX, "flask": FLASK, "redis": REDIS, "http.server": HTTP_SERVER}
"""redis-server starts its background threads (bio, lazy free) at start-up: guest threads."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("script", CASES.values(), ids=CASES.keys())
def test_server_serves_as_native(script: str, debian_tree: Path,
                                 debian_recompiled: tuple[Path, dict]) -> None:
    argv = [*ENV, f"PORT={_free_port()}", "bash", "-c", script]
    want = run_native(debian_tree, argv, timeout=TIMEOUT)
    assert want.returncode == 0, want.stderr.decode(errors="replace")
    got = run_in_session([KILN, "run", str(debian_recompiled[0]), "--", *argv], b"", TIMEOUT)
    assert got.stdout.decode(errors="replace") == want.stdout.decode(errors="replace"), \
        got.stderr.decode(errors="replace")
    assert (got.returncode, got.stderr) == (want.returncode, want.stderr)


NGINX_PUBLISHED = r"""
mkdir -p /srv/www && printf 'hello, host\n' > /srv/www/index.html
cat > /tmp/nginx.conf <<'EOF'
user www-data;
pid /tmp/nginx.pid;
events {}
http { access_log off; server { listen 8080; root /srv/www; } }
EOF
exec nginx -e /tmp/nginx-error.log -c /tmp/nginx.conf -g 'daemon off;'
"""


def test_nginx_reached_from_the_host_through_publish(debian_recompiled) -> None:
    port = _free_port()
    proc = subprocess.Popen([KILN, "run", "--publish", f"127.0.0.1:{port}:8080",
                             str(debian_recompiled[0]), "--", *ENV, "bash", "-c",
                             NGINX_PUBLISHED], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/")
                r = conn.getresponse()
                break
            except (ConnectionError, http.client.RemoteDisconnected, socket.timeout):
                assert time.monotonic() < deadline, "nginx never answered through --publish"
                time.sleep(0.2)
        assert (r.status, r.read()) == (200, b"hello, host\n")
        assert r.getheader("Server", "").startswith("nginx"), r.getheaders()
        os.kill(proc.pid, signal.SIGTERM)            # kiln passes it on: nginx's fast shutdown
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


REDIS_SESSION = (b"SET greeting hello\r\nGET greeting\r\nINCRBY counter 5\r\nINCRBY counter 37\r\n"
                 b"RPUSH list a b c\r\nLRANGE list 0 -1\r\nHSET h f v\r\nHGETALL h\r\n"
                 b"SADD s x y z x\r\nSCARD s\r\nDBSIZE\r\nGET nothing\r\nBOGUS 1\r\n")
REDIS_ARGS = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no",
              "--logfile", ""]


def _redis_cli(tree: Path, port: int, *args: str, stdin: bytes = b"") -> bytes:
    """The image's own redis-cli, run natively on the host (a chroot of the image's tree)."""
    p = subprocess.run(["chroot", str(tree), "/usr/bin/redis-cli", "-p", str(port), *args],
                       input=stdin, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _serve_redis(argv: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stderr.read().decode(errors="replace")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16) == b"+PONG\r\n":
                    return proc
        except OSError:
            pass
        assert time.monotonic() < deadline, "redis never answered"
        time.sleep(0.2)


def _drive_redis(tree: Path, port: int) -> bytes:
    """A session of redis-cli commands, then redis-benchmark's SET and GET (checked for
    completing; its rates differ run to run), then the keys the benchmark left."""
    out = _redis_cli(tree, port, stdin=REDIS_SESSION)
    bench = subprocess.run(["chroot", str(tree), "/usr/bin/redis-benchmark", "-p", str(port),
                            "-t", "set,get", "-n", "3000", "-c", "20", "-q", "--csv"],
                           capture_output=True, timeout=300)
    tests = [line.split(b",")[0] for line in bench.stdout.splitlines()[1:]]
    return out + b"benchmark: %d %r\n" % (bench.returncode, tests) + \
        _redis_cli(tree, port, "DBSIZE") + _redis_cli(tree, port, "SHUTDOWN", "NOSAVE")


def test_redis_driven_from_the_host_through_publish(debian_tree: Path,
                                                    debian_recompiled: tuple[Path, dict]) -> None:
    """redis-server under kiln run --publish, driven by the image's redis-cli and
    redis-benchmark on the host: the same replies as a native redis-server."""
    port = _free_port()
    with overlay(debian_tree) as merged:
        native = _serve_redis(inside(merged, ["/usr/bin/redis-server", "--port", str(port),
                                              *REDIS_ARGS]), port)
        try:
            want = _drive_redis(debian_tree, port)
            assert native.wait(timeout=60) == 0
        finally:
            if native.poll() is None:
                os.killpg(native.pid, signal.SIGKILL)
                native.wait()
    assert b"benchmark: 0 [b'\"SET\"', b'\"GET\"']" in want, want
    port = _free_port()
    kiln = _serve_redis([KILN, "run", "--publish", f"127.0.0.1:{port}:6379",
                         str(debian_recompiled[0]), "--", "/usr/bin/redis-server", *REDIS_ARGS],
                        port)
    try:
        got = _drive_redis(debian_tree, port)
        assert kiln.wait(timeout=60) == 0, kiln.stderr.read().decode(errors="replace")
    finally:
        if kiln.poll() is None:
            os.killpg(kiln.pid, signal.SIGKILL)
            kiln.wait()
    assert got == want
