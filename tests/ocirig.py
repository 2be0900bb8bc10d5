"""Test rig for kiln-oci: the probe image, a private containerd, and runc bundles.

Everything runs as root in a temporary directory of the test's: containerd
gets its own config, root, state and socket there; :meth:`Containerd.stop`
removes every container, task, mount, process and cgroup a test left, even
after a failure.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import blake3

from examples.busybox.build import busybox_entries
from examples.debs import cache_dir, unpacked_deb
from formats.trees import remove_tree

KILN_OCI = str(Path(sys.executable).with_name("kiln-oci"))
RECOMPILE = [sys.executable, "-m", "recompiler.cli"]
PROBE_SRC = Path(__file__).resolve().parent / "oci" / "probe.c"
PROBE_PATH = "/usr/local/bin/oci-probe"
PAUSE_SRC = PROBE_SRC.with_name("pause.c")


def static_binary(src: Path) -> Path:
    """A C file of tests/oci, compiled static (glibc) into the cache, keyed by its source."""
    key = blake3.blake3(src.read_bytes()).hexdigest()[:16]
    out = cache_dir() / "oci" / f"{src.stem}-{key}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        subprocess.run(["gcc", "-static", "-O1", "-o", str(tmp), str(src)], check=True)
        tmp.rename(out)
    return out


def probe_binary() -> Path:
    """tests/oci/probe.c, compiled static (glibc)."""
    return static_binary(PROBE_SRC)


def build_pause_image(out: Path) -> Path:
    """A pod sandbox image as Kubernetes' pause image is made: one static program, /pause,
    its entry point (tests/oci/pause.c), as an oci-archive."""
    from recompiler.image import ExtraLayer, file_entry, scratch_image, write_image
    config = {"created": "1970-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
              "config": {"Entrypoint": ["/pause"], "WorkingDir": "/"}}
    write_image(scratch_image(config, "pause"), out,
                extra_layers=[ExtraLayer((file_entry("/pause", static_binary(PAUSE_SRC), 0o755),),
                                         created_by="tests/ocirig.py")],
                fmt="oci-archive")
    return out


def build_probe_image(out: Path) -> Path:
    """The busybox example image plus the probe program, as an oci-archive."""
    from recompiler.image import ExtraLayer, file_entry, scratch_image, write_image
    from recompiler.image.source import DEFAULT_ENV_PATH
    entries = [*busybox_entries(unpacked_deb("busybox-static")),
               file_entry(PROBE_PATH, probe_binary(), 0o755)]
    config = {"created": "1970-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
              "config": {"Cmd": ["/bin/sh"], "Env": [DEFAULT_ENV_PATH], "WorkingDir": "/"}}
    write_image(scratch_image(config, "oci-probe"), out,
                extra_layers=[ExtraLayer(tuple(entries), created_by="tests/ocirig.py")],
                fmt="oci-archive")
    return out


def recompile(src: Path, out: Path, fmt: str = "oci-archive") -> Path:
    proc = subprocess.run([*RECOMPILE, str(src), "-o", str(out), "--format", fmt],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    return out


def _pids_mentioning(text: str) -> list[int]:
    """Host processes whose command line names ``text`` (the rig's own directory)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    out.append(int(name))
        except OSError:
            continue
    return out


def kill_processes_under(base: Path) -> None:
    for _ in range(50):
        pids = _pids_mentioning(str(base))
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def unmount_under(base: Path) -> None:
    prefix = str(base) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as f:
        points = [line.split()[1] for line in f]
    for p in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True)


def remove_kiln_cgroups(runtime_root: Path) -> None:
    """The cgroups of containers whose supervisor a cleanup had to kill."""
    for state in runtime_root.glob("**/state.json"):
        try:
            dirs = json.loads(state.read_text()).get("cgroup", {})
        except (OSError, ValueError):
            continue
        for d in [*(dirs.get("dirs") or []), dirs.get("freezer")]:
            if d:
                try:
                    os.rmdir(d)
                except OSError:
                    pass


class Containerd:
    """containerd 1.6 with everything of its own under ``base``."""

    def __init__(self, base: Path, cri: bool = False, extra: str = "") -> None:
        self.base = base
        self.socket = base / "containerd.sock"
        self.kiln_root = base / "kiln-oci"
        self.runc_root = base / "runc"
        self.log = base / "containerd.log"
        disabled = "[]" if cri else '["io.containerd.grpc.v1.cri"]'
        self.config = base / "config.toml"
        self.config.write_text(
            f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
            f'disabled_plugins = {disabled}\n[grpc]\n  address = "{self.socket}"\n'
            f'[debug]\n  level = "info"\n{extra}')
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Containerd":
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["containerd", "--config", str(self.config)],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd ended: {self.log.read_text()[-2000:]}")
            if self.socket.exists() and self.ctr("version", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError("containerd did not start in 30 s")

    def ctr(self, *args: str, check: bool = True, timeout: float = 120,
            input: bytes | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(["ctr", "--address", str(self.socket), *args], input=input,
                              capture_output=True, timeout=timeout)
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def run_args(self, runtime: str) -> list[str]:
        """`ctr run` options selecting kiln-oci or runc through containerd's runc shim."""
        if runtime == "kiln":
            return ["--runtime", "io.containerd.runc.v2", "--runc-binary", KILN_OCI,
                    "--runc-root", str(self.kiln_root)]
        return ["--runtime", "io.containerd.runc.v2", "--runc-root", str(self.runc_root)]

    def stop(self) -> None:
        """Remove every task and container, then containerd and all it left."""
        if self.proc is not None and self.proc.poll() is None:
            for tid in self.ctr("task", "ls", "-q", check=False).stdout.decode().split():
                self.ctr("task", "kill", "-s", "KILL", tid, check=False, timeout=30)
            time.sleep(0.3)
            for tid in self.ctr("task", "ls", "-q", check=False).stdout.decode().split():
                self.ctr("task", "rm", "-f", tid, check=False, timeout=30)
            for cid in self.ctr("containers", "ls", "-q", check=False).stdout.decode().split():
                self.ctr("containers", "rm", cid, check=False, timeout=30)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_processes_under(self.base)
        remove_kiln_cgroups(self.kiln_root)
        unmount_under(self.base)
        for d in ("root", "state", "kiln-oci", "runc"):
            if (self.base / d).exists():
                remove_tree(self.base / d)


DOCUMENTED_CONFIG = Path(__file__).resolve().parent.parent / "docs" / "integration" / \
    "containerd-kiln.toml"


def documented_config(base: Path) -> str:
    """docs/integration/containerd-kiln.toml as a section of a test's containerd config: this
    venv's kiln-oci, a runtime root under ``base``, no ``version`` line (the rig writes one)."""
    text = DOCUMENTED_CONFIG.read_text().replace("/usr/local/bin/kiln-oci", KILN_OCI) \
        .replace("/run/containerd/kiln-oci", str(base / "kiln-oci"))
    return "\n".join(line for line in text.splitlines() if not line.startswith("version"))


def make_bundle(base: Path, rootfs: Path, process: dict, **config: object) -> Path:
    """An OCI bundle at ``base``: ``rootfs`` copied in, config.json from `runc spec` (with a
    writable root) with ``process`` merged into its process and ``config`` into the rest."""
    base.mkdir(parents=True)
    shutil.copytree(rootfs, base / "rootfs", symlinks=True)
    subprocess.run(["runc", "spec", "--bundle", str(base)], check=True)
    spec = json.loads((base / "config.json").read_text())
    spec["process"].update(process)
    spec["process"]["terminal"] = False
    spec["root"]["readonly"] = False                  # `runc spec` says true
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key].update(value)
        else:
            spec[key] = value
    (base / "config.json").write_text(json.dumps(spec, indent=1))
    return base


def accept_line(server: socket.socket, seconds: float = 60) -> bytes:
    """One connection to listening ``server``: what it sends up to a newline (or its end);
    TimeoutError when nobody connects within ``seconds``."""
    server.settimeout(seconds)
    conn, _ = server.accept()
    with conn:
        conn.settimeout(seconds)
        got = b""
        while not got.endswith(b"\n"):
            chunk = conn.recv(256)
            if not chunk:
                break
            got += chunk
        return got
