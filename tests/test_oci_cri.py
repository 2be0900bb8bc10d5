"""Pods through the CRI, the kubelet's path: containerd's CRI plugin runs them with kiln-oci.

A private containerd with its CRI plugin (tests/cririg.py) gets the recompiled
pause image as its sandbox image and the probe image, recompiled and plain.
The tests call the CRI over gRPC as the kubelet does for a pod whose
RuntimeClass names the handler ``kiln`` (RunPodSandbox, CreateContainer,
StartContainer, ContainerStatus, ExecSync, StopPodSandbox, RemovePodSandbox),
and compare with the same pod under the handler ``runc`` (issue 10).
"""
from __future__ import annotations

import os
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from tests.cririg import NETNS_DIR, CriNode, log_streams, pb
from tests.ocirig import PROBE_PATH, accept_line, build_pause_image, recompile

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containerd and kiln-oci run as root"),
    pytest.mark.skipif(shutil.which("containerd") is None or shutil.which("runc") is None
                       or not Path("/usr/lib/cni/bridge").exists(),
                       reason="Debian's containerd, runc and containernetworking-plugins "
                              "are not installed"),
    pytest.mark.timeout(300),
]

PROBE, PLAIN = "kiln.test/probe:latest", "kiln.test/plain:latest"


@pytest.fixture(scope="module")
def node(oci_probe_images, tmp_path_factory):
    base = tmp_path_factory.mktemp("cri")
    pause = recompile(build_pause_image(base / "pause.tar"), base / "pause-kiln.tar")
    n = CriNode(base / "node")
    try:
        n.start()
        n.import_image(pause, "kiln.test/pause")
        n.import_image(oci_probe_images["recompiled"], "kiln.test/probe")
        n.import_image(oci_probe_images["plain"], "kiln.test/plain")
        yield n
    finally:
        n.stop()


def _probe_pod(node: CriNode, handler: str) -> tuple[int, dict[str, str]]:
    config = node.pod_config("probe-pod", handler)
    pod = node.run_pod(config, handler)
    try:
        cid = node.start_container(pod, config, "probe", PROBE, [PROBE_PATH, "one", "two words"],
                                   env={"PROBE_VAR": "from the pod spec", "PROBE_EXIT": "3"})
        st = node.wait_exited(cid)
        return st.exit_code, log_streams(Path(config.log_directory) / "probe.log")
    finally:
        node.remove_pod(pod)


def test_pod_output_and_exit_code_as_under_runc(node: CriNode) -> None:
    """The same pod under both handlers: the kubelet reads the same log and exit code. The
    probe prints its argv, env, ids, host name (the pod's) and what it may write."""
    native = _probe_pod(node, "runc")
    kiln = _probe_pod(node, "kiln")
    assert native[0] == 3 and "argv[2]=two words\n" in native[1]["stdout"], native
    assert "hostname=probe-pod\n" in native[1]["stdout"]
    assert kiln == native


def test_pod_containers_share_the_pod_network_and_host_name(node: CriNode) -> None:
    """Two containers of one kiln pod meet on the pod's 127.0.0.1 (the network CNI made,
    which kiln-oci joins by path), and see the pod's host name; ExecSync reaches a running
    container."""
    config = node.pod_config("net-pod", "kiln")
    pod = node.run_pod(config, "kiln")
    try:
        server = node.start_container(pod, config, "server", PROBE,
                                      ["/bin/sh", "-c", "nc -l -p 8080; echo server-done"])
        node.wait_running(server)
        got = node.exec_sync(server, ["/bin/sh", "-c", "hostname; cat /etc/hostname"])
        assert (got.exit_code, got.stdout) == (0, b"net-pod\nnet-pod\n"), got.stderr
        client = node.start_container(
            pod, config, "client", PROBE,
            ["/bin/sh", "-c", "i=0; until echo hello-over-the-pod-network | nc 127.0.0.1 8080; "
                              "do i=$((i+1)); [ $i -lt 100 ] || exit 9; sleep 0.2; done; hostname"])
        assert node.wait_exited(client).exit_code == 0, \
            log_streams(Path(config.log_directory) / "client.log")
        assert node.wait_exited(server).exit_code == 0
        logs = Path(config.log_directory)
        assert log_streams(logs / "server.log")["stdout"] == \
            "hello-over-the-pod-network\nserver-done\n"
        assert log_streams(logs / "client.log")["stdout"] == "net-pod\n"
    finally:
        node.remove_pod(pod)


def test_host_network_pod_shares_the_node_network_as_under_runc(node: CriNode) -> None:
    """A pod with ``hostNetwork: true`` (network mode NODE): config.json lists no network
    namespace, so the containers keep the node's network, as runc's do: they reach a service
    on the node's own 127.0.0.1, from the container's process and from ExecSync."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        for handler in ("runc", "kiln"):
            config = node.pod_config(f"hostnet-{handler}", handler, network=pb.NODE)
            pod = node.run_pod(config, handler)
            try:
                cid = node.start_container(
                    pod, config, "client", PROBE,
                    ["/bin/sh", "-c", f"echo from-{handler} | nc 127.0.0.1 {port}; sleep 120"],
                    network=pb.NODE)
                assert accept_line(server) == f"from-{handler}\n".encode()
                node.wait_running(cid)
                with ThreadPoolExecutor(1) as pool:     # ExecSync returns once nc has ended
                    line = pool.submit(accept_line, server)
                    got = node.exec_sync(cid, ["/bin/sh", "-c",
                                               f"echo exec-{handler} | nc 127.0.0.1 {port}"])
                    assert line.result() == f"exec-{handler}\n".encode(), got.stderr
                assert got.exit_code == 0, got.stderr
            finally:
                node.remove_pod(pod)


def test_shared_pid_namespace_is_refused(node: CriNode) -> None:
    """shareProcessNamespace (pid mode POD) asks to join the sandbox's pid namespace, which
    kiln-oci cannot do: CreateContainer fails with the reason, and the pod survives."""
    config = node.pod_config("pid-pod", "kiln")
    pod = node.run_pod(config, "kiln")
    try:
        with pytest.raises(grpc.RpcError) as e:
            node.start_container(pod, config, "shared", PROBE, [PROBE_PATH], pid_mode=pb.POD)
        assert "shared pid, mount or user namespaces are not supported" in e.value.details()
        cid = node.start_container(pod, config, "after", PROBE, [PROBE_PATH])
        assert node.wait_exited(cid).exit_code == 0
    finally:
        node.remove_pod(pod)


def test_plain_image_refused_in_a_kiln_pod(node: CriNode) -> None:
    config = node.pod_config("plain-pod", "kiln")
    pod = node.run_pod(config, "kiln")
    try:
        with pytest.raises(grpc.RpcError) as e:
            node.start_container(pod, config, "plain", PLAIN, ["/bin/echo", "native"])
        assert "this image was not recompiled by Kiln" in e.value.details()
    finally:
        node.remove_pod(pod)


def test_removed_pods_leave_nothing(node: CriNode) -> None:
    """After the pods above were stopped and removed: no kiln-oci state, no process of a
    container, no pod network namespace."""
    root = node.base / "kiln-oci" / "k8s.io"
    assert not root.exists() or os.listdir(root) == []
    for p in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        assert str(node.base / "kiln-oci").encode() not in cmd, cmd
    if NETNS_DIR.is_dir():
        assert set(os.listdir(NETNS_DIR)) <= node.netns_before
