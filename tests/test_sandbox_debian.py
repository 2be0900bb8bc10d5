"""``kiln serve`` on the real Debian example image: run_code in Python and bash keeps its state
between cells, and what the cells print is what the same code prints natively over the same tree
(tests/native_overlay.py); an exec of python3 too."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from native_overlay import run_native
from tests.serverig import Server, start_server

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="kiln serve and the native side need root")]

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LC_ALL": "C.UTF-8"}

PY_CELLS = [
    "import hashlib, json, sys, zlib\nrows = [{'n': i, 'sq': i * i} for i in range(50)]",
    "text = json.dumps(rows, sort_keys=True)\nprint(len(text), hashlib.sha256(text.encode()).hexdigest())",
    "print(sys.version_info[:2], zlib.crc32(text.encode()), sum(r['sq'] for r in rows))",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nprint([fib(i) for i in range(15)])",
]
BASH_CELLS = [
    "declare -A m=([a]=1 [b]=2); n=0; cd /etc",
    "for k in $(printf '%s\\n' \"${!m[@]}\" | sort); do n=$((n + m[$k])); done; echo $n $(pwd)",
    "f() { echo \"f:$1:${#m[@]}\"; }; f x; echo ${BASH_VERSINFO[0]}",
]


@pytest.fixture(scope="module")
def deb_server(debian_recompiled, tmp_path_factory) -> Server:
    image, _ = debian_recompiled
    srv = start_server(image, tmp_path_factory.mktemp("serve-debian"), name="debian")
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM), srv.log.read_text()


def _cells(api, sid: str, language: str, cells: list[str]) -> str:
    out = []
    for code in cells:
        r = api.post(f"/v1/sandboxes/{sid}/code", json={"language": language, "code": code,
                                                          "timeout_s": 120})
        assert r.status_code == 200, r.text
        res = r.json()
        assert (res["exit_code"], res["stderr"], res["restarted"]) == (0, "", False), res
        out.append(res["stdout"])
    return "".join(out)


def test_run_code_python_and_bash_match_native(deb_server: Server, debian_tree: Path):
    api = deb_server.client("alice", timeout=300)
    r = api.post("/v1/sandboxes", json={"env": ENV})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    try:
        # the last cell is an expression: its repr is printed, as in a REPL
        got = _cells(api, sid, "python", [*PY_CELLS, "rows[3]"])
        want = run_native(debian_tree, ["python3", "-c", "\n".join([*PY_CELLS, "print(repr(rows[3]))"])],
                          env=ENV, timeout=120)
        assert want.returncode == 0, want.stderr
        assert got == want.stdout.decode()
        got = _cells(api, sid, "bash", BASH_CELLS)
        want = run_native(debian_tree, ["bash", "-c", "\n".join(BASH_CELLS)], env=ENV,
                          timeout=120)
        assert got == want.stdout.decode()
        script = "import sqlite3; c = sqlite3.connect(':memory:'); print(c.execute('select 6*7').fetchone())"
        r = api.post(f"/v1/sandboxes/{sid}/exec", json={"argv": ["python3", "-c", script],
                                                        "timeout_s": 120}).json()
        want = run_native(debian_tree, ["python3", "-c", script], env=ENV, timeout=120)
        assert (r["exit_code"], r["stdout"], r["stderr"]) == \
            (want.returncode, want.stdout.decode(), want.stderr.decode())
    finally:
        api.delete(f"/v1/sandboxes/{sid}")


PY_SNAP_SETUP = [
    "import hashlib, os, random\nrandom.seed(11)\nstate = {'n': 41, 'log': []}\n"
    "def bump(k):\n    state['n'] += k\n    state['log'].append(k)\n    return state['n']",
    "f = open('/tmp/py.log', 'w'); f.write('one\\n'); f.flush(); pid = os.getpid()",
]
PY_SNAP_AFTER = ("print(bump(1), state['log'], random.random(), os.getpid() == pid, "
                 "hashlib.sha256(repr(state).encode()).hexdigest()[:12])\n"
                 "f.write('two\\n'); f.flush(); print(open('/tmp/py.log').read(), end='')")
BASH_SNAP_SETUP = ["declare -A m=([a]=1 [b]=2); n=5; cd /etc; f() { echo \"f:$1:$((n + ${#m[@]}))\"; }"]
BASH_SNAP_AFTER = "f x; echo $n $$ $(pwd) ${m[b]}"


def test_snapshot_keeps_python_and_bash_state(deb_server: Server):
    """A snapshot of a sandbox with a Python and a bash interpreter: every restore prints what
    the original prints after the snapshot (variables, functions, random state, an open file
    and its offset, pids, cwd), and restores are independent of each other."""
    api = deb_server.client("alice", timeout=300)
    r = api.post("/v1/sandboxes", json={"env": ENV})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    made = [sid]
    try:
        _cells(api, sid, "python", PY_SNAP_SETUP)
        _cells(api, sid, "bash", BASH_SNAP_SETUP)
        r = api.post(f"/v1/sandboxes/{sid}/snapshot")
        assert r.status_code == 201, r.text
        snap = r.json()
        assert sorted(snap["sessions"]) == ["bash", "python"]
        restored = []
        for _ in range(2):
            r = api.post("/v1/sandboxes", json={"from_snapshot": snap["snapshot_id"]})
            assert r.status_code == 201, r.text
            restored.append(r.json()["id"])
        made += restored
        want_py = _cells(api, sid, "python", [PY_SNAP_AFTER])
        want_sh = _cells(api, sid, "bash", [BASH_SNAP_AFTER])
        assert want_py.startswith("42 [1] ") and "True" in want_py and want_py.endswith("one\ntwo\n")
        assert want_sh.startswith("f:x:7\n5 ")
        for other in restored:
            assert _cells(api, other, "python", [PY_SNAP_AFTER]) == want_py
            assert _cells(api, other, "bash", [BASH_SNAP_AFTER]) == want_sh
        a, b = restored
        # a changes its state and files; b and the original (which ran the same cells) do not
        _cells(api, a, "python", ["bump(100); f.write('only a\\n'); f.flush()"])
        _cells(api, a, "bash", ["n=99"])
        look_py = "print(state, open('/tmp/py.log').read())"
        original = _cells(api, sid, "python", [look_py])
        assert _cells(api, b, "python", [look_py]) == original
        assert _cells(api, a, "python", [look_py]) != original
        assert "only a" in _cells(api, a, "python", [look_py])
        assert _cells(api, b, "bash", ["echo $n"]) == _cells(api, sid, "bash", ["echo $n"])
        assert _cells(api, a, "bash", ["echo $n"]) == "99\n"
        # what cannot be saved honestly is refused, named, and the sandbox goes on
        _cells(api, a, "python", ["import socket; s = socket.socket(socket.AF_UNIX)"])
        r = api.post(f"/v1/sandboxes/{a}/snapshot")
        assert r.status_code == 409 and "is a socket" in r.json()["error"], r.text
        assert "(/usr/bin/python3)" in r.json()["error"]
        assert "only a" in _cells(api, a, "python", [look_py])
    finally:
        for x in made:
            api.delete(f"/v1/sandboxes/{x}")
