"""containerd 1.6 (Debian) runs recompiled images through kiln-oci, with its own runc shim.

A private containerd (config, root, state and socket in a temporary
directory) imports the probe image, plain and recompiled (`recompile --format
oci-archive`), and runs it with `ctr run --runtime io.containerd.runc.v2
--runc-binary kiln-oci`; the same command under Debian's runc, through the
same containerd, gives the expected output. Then the configurations of
docs/integration/ are loaded by containerd and checked (issue 10).
"""
from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.ocirig import KILN_OCI, PROBE_PATH, Containerd, documented_config

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containerd and kiln-oci run as root"),
    pytest.mark.skipif(shutil.which("containerd") is None or shutil.which("runc") is None,
                       reason="Debian's containerd and runc are not installed"),
    pytest.mark.timeout(300),
]

DOCS = Path(__file__).resolve().parent.parent / "docs" / "integration"
KILN_IMAGE, PLAIN_IMAGE = "kiln.test/probe:kiln", "kiln.test/probe:plain"


@pytest.fixture(scope="module")
def ctd(oci_probe_images, tmp_path_factory):
    c = Containerd(tmp_path_factory.mktemp("containerd"))
    try:
        c.start()
        for name, key in ((KILN_IMAGE, "recompiled"), (PLAIN_IMAGE, "plain")):
            c.ctr("image", "import", "--platform", "linux/amd64", "--index-name", name,
                  str(oci_probe_images[key]))
        yield c
    finally:
        c.stop()


def _run(ctd: Containerd, runtime: str, image: str, cid: str, *command: str,
         opts: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return ctd.ctr("run", "--rm", *ctd.run_args(runtime), *opts, image, cid, *command,
                   check=False)


def test_output_and_exit_status_as_under_runc(ctd: Containerd) -> None:
    cmd = (PROBE_PATH, "one", "two words")
    native = _run(ctd, "runc", KILN_IMAGE, "native-1", *cmd, opts=("--env", "PROBE_EXIT=3"))
    kiln = _run(ctd, "kiln", KILN_IMAGE, "kiln-1", *cmd, opts=("--env", "PROBE_EXIT=3"))
    assert native.returncode == 3 and b"argv[2]=two words" in native.stdout, native.stderr
    assert (kiln.stdout, kiln.returncode) == (native.stdout, native.returncode), kiln.stderr


def test_env_reaches_the_guest(ctd: Containerd) -> None:
    opts = ("--env", "PROBE_VAR=from ctr", "--cwd", "/etc")
    native = _run(ctd, "runc", KILN_IMAGE, "native-2", PROBE_PATH, opts=opts)
    kiln = _run(ctd, "kiln", KILN_IMAGE, "kiln-2", PROBE_PATH, opts=opts)
    assert b"PROBE_VAR=from ctr\n" in native.stdout and b"cwd=/etc\n" in native.stdout
    assert (kiln.stdout, kiln.returncode) == (native.stdout, native.returncode), kiln.stderr


def test_tty(ctd: Containerd) -> None:
    """`ctr run -t`: the shim gets the terminal through --console-socket and relays it."""
    pid, fd = pty.fork()
    if pid == 0:                                       # ctr needs a terminal of its own
        os.execvp("ctr", ["ctr", "--address", str(ctd.socket), "run", "--rm", "-t",
                          *ctd.run_args("kiln"), KILN_IMAGE, "kiln-tty", "/bin/sh", "-c",
                          "[ -t 0 ] && [ -t 1 ] && echo is-a-tty; exit 4"])
    out = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert b"is-a-tty" in out, out
    assert os.waitstatus_to_exitcode(status) == 4


def test_task_exec_ps_and_kill(ctd: Containerd) -> None:
    script = "echo from-init > /tmp/marker; trap 'echo got-term; exit 7' TERM; " \
             "while :; do sleep 0.1; done"
    runner = subprocess.Popen(["ctr", "--address", str(ctd.socket), "run", "--rm",
                               *ctd.run_args("kiln"), KILN_IMAGE, "kiln-exec", "/bin/sh", "-c",
                               script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while b"RUNNING" not in ctd.ctr("task", "ls", check=False).stdout:
            assert time.monotonic() < deadline and runner.poll() is None
            time.sleep(0.1)
        got = ctd.ctr("task", "exec", "--exec-id", "e1", "kiln-exec", "/bin/sh", "-c",
                      "until [ -s /tmp/marker ]; do sleep 0.1; done; cat /tmp/marker; exit 5",
                      check=False)
        assert (got.stdout, got.returncode) == (b"from-init\n", 5), got.stderr
        ctd.ctr("task", "exec", "--detach", "--exec-id", "e2", "kiln-exec", "/bin/sleep", "30")
        ps = ctd.ctr("task", "ps", "kiln-exec").stdout.decode()
        assert "e2" in ps and len(ps.strip().splitlines()) >= 3, ps   # header, init, e2
        ctd.ctr("task", "kill", "kiln-exec")                          # SIGTERM
        out, err = runner.communicate(timeout=60)
        assert (out, runner.returncode) == (b"got-term\n", 7), err
    finally:
        if runner.poll() is None:
            ctd.ctr("task", "kill", "-s", "KILL", "kiln-exec", check=False)
            runner.wait(30)


def _task_status(ctd: Containerd, tid: str) -> str:
    for line in ctd.ctr("task", "ls").stdout.decode().splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == tid:
            return fields[-1]
    return ""


def test_task_pause_resume_and_kill_all(ctd: Containerd) -> None:
    ctd.ctr("run", "-d", *ctd.run_args("kiln"), KILN_IMAGE, "kiln-pause", "/bin/sleep", "60")
    try:
        ctd.ctr("task", "pause", "kiln-pause")
        assert _task_status(ctd, "kiln-pause") == "PAUSED"
        ctd.ctr("task", "resume", "kiln-pause")
        assert _task_status(ctd, "kiln-pause") == "RUNNING"
        ctd.ctr("task", "kill", "--all", "-s", "KILL", "kiln-pause")
        deadline = time.monotonic() + 30
        while _task_status(ctd, "kiln-pause") != "STOPPED" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _task_status(ctd, "kiln-pause") == "STOPPED"
    finally:
        ctd.ctr("task", "rm", "-f", "kiln-pause", check=False)
        ctd.ctr("containers", "rm", "kiln-pause", check=False)


def test_plain_image_refused(ctd: Containerd) -> None:
    got = _run(ctd, "kiln", PLAIN_IMAGE, "plain-1", "/bin/echo", "native")
    assert got.returncode != 0 and b"native" not in got.stdout
    assert b"this image was not recompiled by Kiln" in got.stderr, got.stderr
    assert b"recompile" in got.stderr


def test_nothing_left_behind(ctd: Containerd) -> None:
    """After the runs above (and the refusal) no container, state, process or cgroup is left."""
    assert ctd.ctr("containers", "ls", "-q").stdout == b""
    root = ctd.kiln_root / "default"
    assert not root.exists() or os.listdir(root) == []
    procs = [p for p in os.listdir("/proc") if p.isdigit()]
    for p in procs:
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        assert str(ctd.kiln_root).encode() not in cmd, cmd


def test_cri_runtime_config_loads(tmp_path: Path) -> None:
    """docs/integration/containerd-kiln.toml: containerd with its CRI plugin loads the
    `kiln` runtime (its dump of the effective config has it, the CRI plugin is up)."""
    c = Containerd(tmp_path, cri=True, extra=documented_config(tmp_path))
    try:
        c.start()
        plugins = c.ctr("plugins", "ls").stdout.decode()
        assert any("io.containerd.grpc.v1" in line and "cri" in line and " ok" in line
                   for line in plugins.splitlines()), plugins
        dump = subprocess.run(["containerd", "--config", str(c.config), "config", "dump"],
                              capture_output=True, text=True, timeout=60)
        runtimes = tomllib.loads(dump.stdout)["plugins"]["io.containerd.grpc.v1.cri"][
            "containerd"]["runtimes"]
        assert runtimes["kiln"]["runtime_type"] == "io.containerd.runc.v2"
        assert runtimes["kiln"]["options"]["BinaryName"] == KILN_OCI
    finally:
        c.stop()


def test_runtimeclass_names_the_cri_handler() -> None:
    """docs/integration/runtimeclass-kiln.yaml against the RuntimeClass schema (node.k8s.io/v1:
    metadata.name a DNS-1123 subdomain, handler a DNS-1123 label, no other top-level fields),
    its handler the runtime containerd-kiln.toml defines, and a pod that uses it."""
    docs = list(yaml.safe_load_all((DOCS / "runtimeclass-kiln.yaml").read_text()))
    rc = next(d for d in docs if d["kind"] == "RuntimeClass")
    assert rc["apiVersion"] == "node.k8s.io/v1"
    assert set(rc) <= {"apiVersion", "kind", "metadata", "handler", "overhead", "scheduling"}
    import re
    label = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    assert label.match(rc["handler"]) and len(rc["handler"]) <= 63
    assert label.match(rc["metadata"]["name"])
    runtimes = tomllib.loads((DOCS / "containerd-kiln.toml").read_text())["plugins"][
        "io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert rc["handler"] in runtimes
    pod = next(d for d in docs if d["kind"] == "Pod")
    assert pod["spec"]["runtimeClassName"] == rc["metadata"]["name"]
    assert json.loads((DOCS / "docker-daemon.json").read_text())["runtimes"]["kiln"]["path"] \
        == "/usr/local/bin/kiln-oci"
