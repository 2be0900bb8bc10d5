"""Test rig for pods through the CRI: containerd's CRI plugin, a CNI network, a gRPC client.

This is the kubelet's path to a runtime, driven without a kubelet (Debian
bookworm has neither kubelet nor crictl): a private containerd with its CRI
plugin on, configured with docs/integration/containerd-kiln.toml (the runtime
handlers ``kiln``, containerd's runc shim driving kiln-oci, and ``runc``);
a pod network from Debian's CNI plugins (a bridge of the rig's own and
host-local addresses, no NAT: pods reach each other and nothing else); and
a CRI client over gRPC (the messages of runtime.v1 this suite uses are in
tests/cri/api.proto). The pod's sandbox image is Kubernetes' pause program
(tests/oci/pause.c), recompiled: kiln-oci runs nothing that was not.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from tests.ocirig import Containerd, documented_config

_PROTO_DIR = Path(__file__).resolve().parent / "cri"
if str(_PROTO_DIR) not in sys.path:
    sys.path.insert(0, str(_PROTO_DIR))
pb, _services = grpc.protos_and_services("api.proto")

PAUSE_IMAGE = "kiln.test/pause:latest"
NETNS_DIR = Path("/var/run/netns")


def _cri_config(base: Path, bridge: str, subnet: str) -> str:
    """containerd's CRI section: docs/integration/containerd-kiln.toml itself (the runtimes
    ``kiln`` and ``runc``, with this venv's kiln-oci and a runtime root of the rig's), plus what
    a node adds: the pause image, the CNI network and runc's root."""
    cni = base / "cni"
    cni.mkdir(parents=True)
    (cni / "10-kiln-test.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": "kiln-test",
        "plugins": [{"type": "bridge", "bridge": bridge, "isGateway": False, "ipMasq": False,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                              "dataDir": str(base / "cni-ipam")}}]}))
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""{documented_config(base)}

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  restrict_oom_score_adj = true   # this host lacks CAP_SYS_RESOURCE for the pause oom score
[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{cni}"
[{cri}.containerd.runtimes.runc.options]
  Root = "{base}/runc"
"""


class CriNode:
    """A node as the kubelet sees it: containerd's CRI over gRPC, with images imported."""

    def __init__(self, base: Path) -> None:
        tag = os.getpid() % 10000
        self.base = base
        self.bridge = f"kilncri{tag}"
        self.netns_before = set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()
        self.ctd = Containerd(base, cri=True,
                              extra=_cri_config(base, self.bridge, f"10.203.{tag % 250}.0/24"))
        self.logs = base / "logs"
        self.channel: grpc.Channel | None = None
        self.rt: Any = None

    def start(self) -> "CriNode":
        self.ctd.start()
        self.channel = grpc.insecure_channel(f"unix://{self.ctd.socket}")
        self.rt = _services.RuntimeServiceStub(self.channel)
        self.logs.mkdir()
        return self

    def import_image(self, archive: Path, base_name: str) -> None:
        """An oci-archive (its one image is tagged ``latest``) into the CRI's namespace."""
        self.ctd.ctr("-n", "k8s.io", "image", "import", "--platform", "linux/amd64",
                     "--base-name", base_name, str(archive))

    # -- pods ------------------------------------------------------------------------------

    def pod_config(self, name: str, handler_dir: str, network: int | None = None) -> Any:
        """A pod as the kubelet describes one: its own pid namespace per container (v1 pods),
        the pod network (``network=pb.NODE``: the node's, as for ``hostNetwork: true``), a
        host name, a log directory."""
        logdir = self.logs / handler_dir / name
        logdir.mkdir(parents=True)
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}-{handler_dir}",
                                           namespace="default"),
            hostname=name if network is None else "",   # a node-network pod has the node's
            log_directory=str(logdir),
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(
                    pid=pb.CONTAINER, network=pb.POD if network is None else network))))

    def run_pod(self, config: Any, handler: str) -> str:
        return self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config,
                                                             runtime_handler=handler),
                                     timeout=120).pod_sandbox_id

    def remove_pod(self, pod: str) -> None:
        self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)

    def start_container(self, pod: str, pod_config: Any, name: str, image: str,
                        command: list[str], env: dict[str, str] | None = None,
                        pid_mode: int | None = None, network: int | None = None) -> str:
        ns = pb.NamespaceOption(pid=pb.CONTAINER if pid_mode is None else pid_mode,
                                network=pb.POD if network is None else network)
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=image),
            command=command, envs=[pb.KeyValue(key=k, value=v) for k, v in (env or {}).items()],
            log_path=f"{name}.log",
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                namespace_options=ns)))
        cid = self.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=config, sandbox_config=pod_config),
            timeout=120).container_id
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
        return cid

    def status(self, cid: str) -> Any:
        return self.rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid),
                                       timeout=30).status

    def wait_exited(self, cid: str, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(cid)
            if st.state == pb.CONTAINER_EXITED:
                return st
            assert time.monotonic() < deadline, f"container {cid} still {st.state}"
            time.sleep(0.1)

    def wait_running(self, cid: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.status(cid).state != pb.CONTAINER_RUNNING:
            assert time.monotonic() < deadline, f"container {cid} not running"
            time.sleep(0.1)

    def exec_sync(self, cid: str, cmd: list[str], timeout: int = 60) -> Any:
        return self.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout),
                                timeout=timeout + 30)

    # -- teardown --------------------------------------------------------------------------

    def stop(self) -> None:
        """containerd and everything the pods left: their netns, the bridge, the shims."""
        if self.channel is not None:
            self.channel.close()
        self.ctd.stop()
        if NETNS_DIR.is_dir():
            for name in set(os.listdir(NETNS_DIR)) - self.netns_before:
                subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)


def log_streams(path: Path) -> dict[str, str]:
    """A container's CRI log file (``TIME STREAM F|P TEXT`` per line) as the text of each
    stream, as ``kubectl logs`` rebuilds it."""
    out: dict[str, list[str]] = {"stdout": [], "stderr": []}
    for line in path.read_text().splitlines():
        _, stream, tag, text = (line.split(" ", 3) + [""])[:4]
        out[stream].append(text + ("\n" if tag == "F" else ""))
    return {k: "".join(v) for k, v in out.items()}
