"""kiln-oci driven directly as runc is: differential runs against Debian's runc on one bundle,
the container life cycle, exec into a container, and refusals (issue 10)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.ocirig import KILN_OCI, PROBE_PATH, accept_line, kill_processes_under, \
    make_bundle, remove_kiln_cgroups

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="kiln-oci runs containers as root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="Debian's runc is not installed"),
    pytest.mark.timeout(300),
]


@pytest.fixture
def oci(tmp_path: Path):
    """A kiln-oci --root of the test's; whatever a test leaves is killed and removed. (The
    container's stdio are create's, as with runc: a create whose output is a pipe the test
    reads to its end would wait for the container.)"""
    root = tmp_path / "kiln-root"

    def call(*args: str, check: bool = True, timeout: float = 120,
             **kw) -> subprocess.CompletedProcess:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.run([KILN_OCI, "--root", str(root), "--log", str(tmp_path / "log.json"),
                               "--log-format", "json", *args], timeout=timeout, **kw)
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc
    call.root = root  # type: ignore[attr-defined]
    call.log = tmp_path / "log.json"  # type: ignore[attr-defined]
    yield call
    kill_processes_under(root)
    remove_kiln_cgroups(root)
    kill_processes_under(tmp_path)


def _probe_bundle(base: Path, rootfs: Path, data: Path, **process: object) -> Path:
    proc = {"args": [PROBE_PATH, "x", "y z"], "cwd": "/tmp",
            "env": ["PATH=/usr/bin:/bin", "PROBE_VAR=v1", "PROBE_EXIT=5"]}
    proc.update(process)
    bundle = make_bundle(base, rootfs, proc, hostname="probe-host")
    spec = json.loads((bundle / "config.json").read_text())
    spec["mounts"] += [
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "mode=755", "size=65536k"]},
        {"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "ro"]}]
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


CAPABILITIES = {"bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_CHOWN", "CAP_KILL"],
                "permitted": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL"],
                "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]}
"""Sets of a container whose process.capabilities are not the default (ambient within both
permitted and inheritable, as runc requires)."""


@pytest.mark.parametrize("variant", ["root-readonly", "user-1000", "capabilities"])
def test_same_bundle_same_output_as_runc(oci, oci_probe_images, tmp_path: Path,
                                         variant: str) -> None:
    """One bundle of a static program: natively under runc, recompiled under kiln-oci. The
    probe prints its arguments, environment, working directory, ids, hostname, RLIMIT_NOFILE,
    its capability sets and no_new_privs (`runc spec`'s, or ``CAPABILITIES`` without
    noNewPrivileges), whether / and a tmpfs /run are writable and what a read-only bind
    mount holds."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello.txt").write_text("hi from the host\n")
    process: dict[str, object] = {}
    if variant == "user-1000":
        process = {"user": {"uid": 1000, "gid": 1000}}
    elif variant == "capabilities":
        process = {"capabilities": CAPABILITIES, "noNewPrivileges": False}
    bundle = _probe_bundle(tmp_path / "bundle", oci_probe_images["rootfs"], data, **process)
    if variant == "root-readonly":
        spec = json.loads((bundle / "config.json").read_text())
        spec["root"]["readonly"] = True
        (bundle / "config.json").write_text(json.dumps(spec))
    native = subprocess.run(["runc", "--root", str(tmp_path / "runc-root"), "run", "--bundle",
                             str(bundle), "probe"], capture_output=True, timeout=120)
    kiln = oci("run", "--bundle", str(bundle), "probe", check=False)
    assert native.returncode == 5, native.stderr
    assert b"hostname=probe-host" in native.stdout and b"/data/hello.txt: hi" in native.stdout
    assert (kiln.stdout, kiln.returncode) == (native.stdout, native.returncode), (native.stdout, kiln.stderr)
    assert os.listdir(oci.root) == []                      # run deletes the container


def _wait_status(oci, cid: str, want: str, seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        st = json.loads(oci("state", cid).stdout)
        if st["status"] == want or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def test_life_cycle_state_kill_delete(oci, oci_probe_images, tmp_path: Path) -> None:
    """create → created (pid file = state pid), start → running, a signal reaches the guest's
    trap, stopped, delete leaves nothing: no state, no cgroup, no process."""
    script = "trap 'echo got-usr1; exit 9' USR1; echo up; while :; do sleep 0.1; done"
    bundle = make_bundle(tmp_path / "bundle", oci_probe_images["rootfs"],
                         {"args": ["/bin/sh", "-c", script]},
                         annotations={"org.example/who": "test"})
    out = tmp_path / "out.txt"
    with open(out, "wb") as f:
        oci("create", "--bundle", str(bundle), "--pid-file", str(tmp_path / "pid"), "c1",
            stdout=f, stderr=subprocess.STDOUT)
    st = json.loads(oci("state", "c1").stdout)
    assert st["status"] == "created" and st["id"] == "c1"
    assert st["pid"] == int((tmp_path / "pid").read_text()) and st["pid"] > 0
    assert st["bundle"] == str(bundle) and st["annotations"] == {"org.example/who": "test"}
    assert out.read_bytes() == b""                        # nothing ran before start
    oci("start", "c1")
    assert _wait_status(oci, "c1", "running")["status"] == "running"
    deadline = time.monotonic() + 30
    while b"up" not in out.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    cg = json.loads((oci.root / "c1" / "state.json").read_text())["cgroup"]["dirs"]
    assert json.loads(oci("ps", "--format", "json", "c1").stdout)   # the guest's processes
    oci("kill", "c1", "USR1")
    assert _wait_status(oci, "c1", "stopped")["status"] == "stopped"
    assert out.read_bytes() == b"up\ngot-usr1\n"
    assert b"not running" in oci("kill", "c1", "TERM", check=False).stderr
    oci("delete", "c1")
    assert os.listdir(oci.root) == [] and not any(Path(d).exists() for d in cg)
    assert b"does not exist" in oci("state", "c1", check=False).stderr


def test_exec_joins_the_container(oci, oci_probe_images, tmp_path: Path) -> None:
    """An exec'd process sees the first process's files, is in its pid, mount and user
    namespaces and cgroup, and is locked down as it is (seccomp, no_new_privs)."""
    bundle = make_bundle(tmp_path / "bundle", oci_probe_images["rootfs"],
                         {"args": ["/bin/sh", "-c", "echo made-by-init > /tmp/f; sleep 60"]})
    oci("create", "--bundle", str(bundle), "c2", stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    oci("start", "c2")
    rec = json.loads((oci.root / "c2" / "state.json").read_text())
    got = oci("exec", "c2", "/bin/sh", "-c", "until [ -s /tmp/f ]; do sleep 0.1; done; cat /tmp/f; exit 6", check=False)
    assert (got.stdout, got.returncode) == (b"made-by-init\n", 6), got.stderr
    ps = oci("exec", "c2", "/bin/ps").stdout.decode()
    assert "sleep 60" in ps and "/bin/ps" in ps, ps      # the run's processes, not the exec's
    oci("exec", "--detach", "--pid-file", str(tmp_path / "epid"), "c2", "/bin/sleep", "30",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)     # (it keeps them open)
    epid = int((tmp_path / "epid").read_text())
    first = rec["first_pid"]
    for ns in ("pid", "mnt", "user"):
        assert os.readlink(f"/proc/{epid}/ns/{ns}") == os.readlink(f"/proc/{first}/ns/{ns}")
    assert os.readlink(f"/proc/{epid}/ns/user") != os.readlink("/proc/self/ns/user")
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{epid}/status").read_text().splitlines())
    assert status["Seccomp"].strip() == "2" and status["NoNewPrivs"].strip() == "1"
    assert int(status["Uid"].split()[1]) != 0              # guest root is not host root
    assert epid in json.loads(oci("ps", "--format", "json", "c2").stdout)
    assert b"not stopped" in oci("delete", "c2", check=False).stderr
    oci("delete", "--force", "c2")
    assert os.listdir(oci.root) == []
    assert not Path(f"/proc/{epid}").exists() or \
        Path(f"/proc/{epid}/stat").read_text().split(") ")[1][0] == "Z"


def test_pause_resume_update(oci, oci_probe_images, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", oci_probe_images["rootfs"],
                         {"args": ["/bin/sleep", "60"]},
                         linux={"resources": {"memory": {"limit": 512 << 20},
                                              "pids": {"limit": 64}}})
    oci("create", "--bundle", str(bundle), "c3", stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    oci("start", "c3")
    stats = json.loads(oci("events", "--stats", "c3").stdout)["data"]
    assert stats["memory"]["usage"]["limit"] == 512 << 20
    oci("pause", "c3")
    assert json.loads(oci("state", "c3").stdout)["status"] == "paused"
    oci("resume", "c3")
    assert json.loads(oci("state", "c3").stdout)["status"] == "running"
    oci("update", "--resources", "-", "c3", input=json.dumps({"memory": {"limit": 256 << 20}}).encode())
    stats = json.loads(oci("events", "--stats", "c3").stdout)["data"]
    assert stats["memory"]["usage"]["limit"] == 256 << 20
    oci("delete", "--force", "c3")


def test_plain_rootfs_refused(oci, tmp_path: Path, busybox_deb_root: Path) -> None:
    """A rootfs without a megabinary never runs (natively or otherwise): a clear error in the
    --log file as containerd reads it, exit 2, nothing left behind."""
    bundle = make_bundle(tmp_path / "bundle", busybox_deb_root, {"args": ["/bin/busybox", "true"]})
    got = oci("create", "--bundle", str(bundle), "plain", check=False)
    assert got.returncode == 2 and b"Traceback" not in got.stderr
    last = json.loads(oci.log.read_text().splitlines()[-1])
    assert last["level"] == "error" and "was not recompiled" in last["msg"]
    assert "recompile" in last["msg"] and b"never runs a program natively" in got.stderr
    assert not oci.root.exists() or os.listdir(oci.root) == []


def test_unsupported_config_refused(oci, oci_probe_images, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", oci_probe_images["rootfs"], {"args": ["/bin/true"]})
    spec = json.loads((bundle / "config.json").read_text())
    spec["mounts"].append({"destination": "/mnt", "type": "nfs", "source": "host:/x"})
    (bundle / "config.json").write_text(json.dumps(spec))
    got = oci("create", "--bundle", str(bundle), "bad", check=False)
    assert got.returncode == 2
    assert b"mounts of type 'nfs' (/mnt) are not supported" in got.stderr
    spec["mounts"].pop()
    spec["linux"]["namespaces"].append({"type": "pid", "path": "/proc/1/ns/pid"})
    (bundle / "config.json").write_text(json.dumps(spec))
    got = oci("create", "--bundle", str(bundle), "bad", check=False)
    assert got.returncode == 2 and b"asks to join the pid namespace" in got.stderr
    spec["linux"]["namespaces"].pop()
    spec["process"]["capabilities"]["bounding"].append("CAP_TELEPORT")
    (bundle / "config.json").write_text(json.dumps(spec))
    got = oci("create", "--bundle", str(bundle), "bad", check=False)
    assert got.returncode == 2, got.stderr
    assert b"process.capabilities.bounding: unknown capability 'CAP_TELEPORT'" in got.stderr
    assert b"Traceback" not in got.stderr
    assert not oci.root.exists() or os.listdir(oci.root) == []


def test_trust_policy_checked_at_create_and_exec(oci, oci_probe_images, tmp_path: Path) -> None:
    """The kill switch refuses a new container, and an exec into one that was created before
    it was thrown."""
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "kill_switch": True}))
    env = {**os.environ, "KILN_POLICY": str(policy)}
    bundle = make_bundle(tmp_path / "bundle", oci_probe_images["rootfs"],
                         {"args": ["/bin/sleep", "60"]})
    got = oci("create", "--bundle", str(bundle), "k1", check=False, env=env)
    assert got.returncode == 2 and b"kill switch" in got.stderr.lower()
    oci("create", "--bundle", str(bundle), "k1", stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    oci("start", "k1")
    got = oci("exec", "k1", "/bin/true", check=False, env=env)
    assert got.returncode == 2 and b"kill switch" in got.stderr.lower()
    oci("delete", "--force", "k1")


def test_megabinary_symlink_in_the_image_refused(oci, oci_probe_images, tmp_path: Path) -> None:
    """The image's files are untrusted: a /.kiln/megabinary.kmb that is a symbolic link (to a
    host file, say) is refused, never opened."""
    bundle = make_bundle(tmp_path / "bundle", oci_probe_images["rootfs"], {"args": ["/bin/true"]})
    mb = bundle / "rootfs" / ".kiln" / "megabinary.kmb"
    mb.unlink()
    mb.symlink_to("/etc/passwd")
    got = oci("create", "--bundle", str(bundle), "sym", check=False)
    assert got.returncode == 2 and b"is a symbolic link" in got.stderr
    assert not oci.root.exists() or os.listdir(oci.root) == []


def test_no_network_namespace_keeps_the_host_network_as_runc(oci, oci_probe_images,
                                                              tmp_path: Path) -> None:
    """A config.json without a network namespace keeps the runtime's network (the runtime
    spec; `docker run --network host`, the sandbox of a hostNetwork pod): the container reaches
    a service on the host's 127.0.0.1, under runc and under kiln-oci alike. With a network
    namespace it has a loopback of its own and does not."""
    import socket
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        for shared in (True, False):
            bundle = make_bundle(tmp_path / f"bundle-{shared}", oci_probe_images["rootfs"],
                                 {"args": ["/bin/sh", "-c", f"echo hello | nc 127.0.0.1 {port}"]})
            spec = json.loads((bundle / "config.json").read_text())
            if shared:
                spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                               if n["type"] != "network"]
            else:
                assert {"type": "network"} in spec["linux"]["namespaces"]
            (bundle / "config.json").write_text(json.dumps(spec))
            for runtime in ("runc", "kiln-oci"):
                argv = (["runc", "--root", str(tmp_path / "runc-root")] if runtime == "runc" else
                        [KILN_OCI, "--root", str(oci.root)])
                proc = subprocess.Popen([*argv, "run", "--bundle", str(bundle), f"c-{shared}"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                try:
                    if shared:
                        assert accept_line(server) == b"hello\n", runtime
                        _, err = proc.communicate(timeout=60)
                        assert proc.returncode == 0, (runtime, err)
                    else:
                        _, err = proc.communicate(timeout=60)
                        assert proc.returncode != 0, (runtime, err)     # nobody there
                        with pytest.raises(TimeoutError):
                            accept_line(server, seconds=0.5)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()


def test_features_name_the_capabilities_runc_names(oci) -> None:
    """``features`` lists the capabilities kiln-oci applies: the ones this host's runc knows."""
    ours = json.loads(oci("features").stdout)["linux"]["capabilities"]
    runc = json.loads(subprocess.run(["runc", "features"], capture_output=True, check=True,
                                     timeout=60).stdout)["linux"]["capabilities"]
    assert set(runc) <= set(ours), set(runc) - set(ours)
