"""Debian's dockerd (docker.io 20.10) runs recompiled images with `docker run --runtime kiln`.

The daemon gets its own data root, exec root, socket and the runtime from
docs/integration/docker-daemon.json; it starts its own containerd. The same
command under `--runtime runc` gives the expected output (issue 10).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.ocirig import KILN_OCI, PROBE_PATH, kill_processes_under, recompile, unmount_under

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dockerd runs as root"),
    pytest.mark.skipif(shutil.which("dockerd") is None and not Path("/usr/sbin/dockerd").exists(),
                       reason="Debian's docker.io is not installed"),
    pytest.mark.timeout(300),
]

DOCS = Path(__file__).resolve().parent.parent / "docs" / "integration"
DOCKER = "/usr/bin/docker"              # Debian's client (not another one earlier on PATH)


class Dockerd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.socket = base / "docker.sock"
        daemon = json.loads((DOCS / "docker-daemon.json").read_text())
        daemon["runtimes"]["kiln"]["path"] = KILN_OCI
        self.config = base / "daemon.json"
        self.config.write_text(json.dumps(daemon))
        self.proc: subprocess.Popen | None = None
        # What dockerd makes outside its roots whatever the flags: removed after if it was new.
        self.outside = [p for p in (Path("/run/docker"), Path("/etc/docker/key.json"))
                        if not p.exists()]

    def start(self) -> "Dockerd":
        with open(self.base / "dockerd.log", "wb") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--config-file", str(self.config), "--data-root",
                 str(self.base / "data"), "--exec-root", str(self.base / "exec"), "--pidfile",
                 str(self.base / "docker.pid"), "-H", f"unix://{self.socket}", "--bridge",
                 "none", "--iptables=false", "--ip-masq=false", "--storage-driver", "overlay2"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.skip("dockerd does not run on this machine: "
                            + (self.base / "dockerd.log").read_text()[-500:])
            if self.docker("version", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError("dockerd did not start in 60 s")

    def docker(self, *args: str, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([DOCKER, "-H", f"unix://{self.socket}", *args],
                              capture_output=True, timeout=timeout)
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-aq", check=False).stdout.decode().split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_processes_under(self.base)
        unmount_under(self.base)
        shutil.rmtree(self.base / "data", ignore_errors=True)
        shutil.rmtree(self.base / "exec", ignore_errors=True)
        for p in self.outside:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()


@pytest.fixture(scope="module")
def dockerd(oci_probe_images, tmp_path_factory):
    base = tmp_path_factory.mktemp("dockerd")
    image = recompile(oci_probe_images["plain"], base / "probe-docker.tar", fmt="docker-archive")
    d = Dockerd(base)
    try:
        d.start()
        loaded = d.docker("load", "-i", str(image)).stdout.decode()
        d.image = loaded.split("Loaded image:")[-1].strip()  # type: ignore[attr-defined]
        yield d
    finally:
        d.stop()


def test_docker_run_as_under_runc(dockerd: Dockerd) -> None:
    common = ["run", "--rm", "--network", "none", "--hostname", "probe-host", "-e",
              "PROBE_VAR=from docker", "-e", "PROBE_EXIT=6", "-w", "/etc"]
    cmd = [dockerd.image, PROBE_PATH, "a", "b c"]  # type: ignore[attr-defined]
    native = dockerd.docker(*common, "--runtime", "runc", *cmd, check=False)
    kiln = dockerd.docker(*common, "--runtime", "kiln", *cmd, check=False)
    assert native.returncode == 6 and b"hostname=probe-host" in native.stdout, native.stderr
    assert kiln.returncode == native.returncode, kiln.stderr
    assert kiln.stdout.decode().splitlines() == native.stdout.decode().splitlines()


def test_docker_exec(dockerd: Dockerd) -> None:
    cid = dockerd.docker("run", "-d", "--runtime", "kiln", "--network", "none",
                         dockerd.image, "/bin/sh", "-c",  # type: ignore[attr-defined]
                         "echo from-init > /tmp/m; sleep 60").stdout.decode().strip()
    try:
        got = dockerd.docker("exec", cid, "/bin/sh", "-c",
                             "until [ -s /tmp/m ]; do sleep 0.1; done; cat /tmp/m /etc/hostname; "
                             "exit 3", check=False)
        assert got.returncode == 3, got.stderr
        assert got.stdout == f"from-init\n{cid[:12]}\n".encode()
    finally:
        dockerd.docker("rm", "-f", cid, check=False)
