"""What a run is asked to be: :class:`RunSpec`, the record every way of starting a guest fills
(``kiln run``, kiln-oci, kiln serve) and vkernel/runtime.py runs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vkernel.caps import CONTAINER_DEFAULT
from vkernel.netpolicy import NONE, NetPolicy

if TYPE_CHECKING:
    from vkernel.cgroup import RunCgroup
    from vkernel.netns import PublishedSocket
    from vkernel.sandbox import Isolation
    from vkernel.vfs import Volume

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to start a guest."""
    rootfs: Path                        # read-only lower layer
    megabinary: Path
    argv: tuple[str, ...]               # argv[0] is looked up on PATH when it has no "/"
    env: tuple[str, ...] = ()           # "KEY=VALUE"; PATH defaults to DEFAULT_PATH
    workdir: str = "/"
    trace: bool = False
    audit_log: Path | None = None       # JSON lines; None: a summary on stderr
    upper: Path | None = None           # writable upper layer; None: a temporary one per run
    volumes: tuple["Volume", ...] = ()  # host directories bound into the guest tree
    timeout: float | None = None        # seconds; then the whole guest tree is killed (exit 124)
    pids_limit: int = 0                 # live guest processes at most (fork: EAGAIN); 0 = no limit
    memory: int = 0                     # bytes: the run's memory (a cgroup when supervised as
                                        # root), else mapped bytes per guest process; 0 = none
    tree_root: int = 0                  # internal: the --timeout supervisor's pid
    user: str = ""                      # image User / --user: uid, uid:gid, name, name:group; "" = root
    cap_bounding: int = CONTAINER_DEFAULT   # --cap-add/--cap-drop: root holds these, others none
    cap_sets: tuple[int, ...] = ()      # (effective, permitted, inheritable, bounding, ambient)
                                        # as given (OCI process.capabilities); () = as above
    no_new_privs: bool = False          # the guest starts with no_new_privs (OCI noNewPrivileges)
    pid_namespace: bool = False         # isolate as root: pid, mount and user namespaces, cgroup
    disk: int = 0                       # bytes the upper layer may hold (root: its tmpfs size)
    tty: bool = False                   # -t: the run gets a pseudo-terminal of its own
    lockdown: bool = False              # seccomp-lock the guest's host process (kiln run itself)
    isolation: "Isolation | None" = None   # internal: set up by the run's first process
    run_memory: "RunCgroup | None" = None  # internal: the run's cgroup (ENOMEM run-wide)
    supervised: bool = False            # internal: this is the supervisor's child already
    megabinary_digest: str = ""         # the digest the trust policy accepted (vkernel/trust.py):
                                        # a megabinary with another one is refused; "" = any
    hostname: str = ""                  # the guest's uname nodename; "" = "kiln"
    rlimits: tuple[tuple[int, int, int], ...] = ()   # (resource, soft, hard) the guest starts with
    readonly_root: bool = False         # as root: the upper layer is read-only (writes: EROFS)
    ready_fd: int = -1                  # internal (vkernel/containers.py): the first process
                                        # reports "ready" or its error here, as a JSON line
    start_fd: int = -1                  # internal: ... then reads one byte here before the guest
    files: tuple[tuple[str, bytes, int], ...] = ()   # (guest path, content, mode) copied into
                                        # the upper layer before the guest runs (kiln-oci's
                                        # file bind mounts: /etc/hosts, /etc/resolv.conf...)
    net: NetPolicy = NetPolicy(NONE)    # the run's network (vkernel/netpolicy.py): kiln run
                                        # asks for its own loopback (as root) or the host's
    net_namespace: bool = False         # internal: the first process made the run's network
    net_broker_fd: int = -1             # internal: the supervisor's --allow-net broker socket
    net_published: tuple["PublishedSocket", ...] = ()   # internal: bound --publish sockets
