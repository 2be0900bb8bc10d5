"""A guest process's view of its run's network: mode, policy, published sockets, broker, names.

Made once per run by its first process (vkernel/runtime.py) from the RunSpec
and inherited by every process it forks; the socket syscalls
(vkernel/syscalls/net.py, netmsg.py) consult it. Refusals are audited here.
"""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vkernel.netns import PublishedSocket
from vkernel.netpolicy import HOST, ISOLATED, NONE, NetPolicy
from vkernel.sockaddr import UnixNames

if TYPE_CHECKING:
    from vkernel.audit import AuditLog

NAMES_DIR = "kiln-unix"
"""The socket-name directory's name in an isolated run's scratch directory (vkernel/sockaddr.py)."""


@dataclass
class RunNetwork:
    """The network a guest process lives in (vkernel/netpolicy.py describes the modes)."""
    policy: NetPolicy
    names: UnixNames
    broker_fd: int = -1                       # the supervisor's broker socket (--allow-net)
    published: dict[int, tuple[PublishedSocket, ...]] = field(default_factory=dict)
    owned_names_dir: str = ""                 # removed by the run's first process at the end
    reported: set[tuple[str, int]] = field(default_factory=set)   # refusals said on stderr

    @property
    def mode(self) -> str:
        return self.policy.mode

    @property
    def inet(self) -> bool:
        """Whether internet and netlink sockets exist in this run."""
        return self.policy.mode in (ISOLATED, HOST)

    def refuse(self, audit: "AuditLog", exe: str, ip: str, port: int, what: str) -> None:
        """Audit a connection or datagram the policy does not permit (stderr once per
        destination and process when there is no audit log)."""
        text = (f"{exe or 'guest'}: {what} {ip} port {port} refused: the run's network reaches "
                "no further than its own loopback (kiln run --allow-net DEST[:PORT] permits "
                "a destination)")
        if audit.path is None:
            if (ip, port) in self.reported:
                return
            self.reported.add((ip, port))
        audit.record("net", "refused", text, ip=ip, port=port, exe=exe, reason="not allowed")

    def close(self) -> None:
        if self.owned_names_dir:
            shutil.rmtree(self.owned_names_dir, ignore_errors=True)


def make(policy: NetPolicy, isolated: bool, broker_fd: int = -1,
         published: tuple[PublishedSocket, ...] = ()) -> RunNetwork:
    """The run network of a run's first process. ``isolated``: the run has a scratch
    directory of its own (vkernel/sandbox.py), which keeps the socket names."""
    owned = ""
    if isolated:
        names_dir = os.path.join(tempfile.gettempdir(), NAMES_DIR)
        try:
            os.mkdir(names_dir, 0o1777)
            os.chmod(names_dir, 0o1777)       # every guest user records its binds there
        except FileExistsError:
            pass
    else:
        names_dir = owned = tempfile.mkdtemp(prefix="kiln-unix-")
    # Abstract names are the namespace's: only a run without a network namespace of its own
    # needs them kept apart from the host's.
    tag = None if policy.mode in (ISOLATED, HOST) else f"kiln-{secrets.token_hex(6)}/".encode()
    by_port: dict[int, tuple[PublishedSocket, ...]] = {}
    for ps in published:
        by_port[ps.publish.guest_port] = (*by_port.get(ps.publish.guest_port, ()), ps)
    return RunNetwork(policy, UnixNames(names_dir, tag), broker_fd, by_port, owned)


def without_namespace(policy: NetPolicy) -> NetPolicy:
    """The policy of a run that cannot have a network namespace (kiln is not root): no
    internet sockets, unless the user asked for the host's network."""
    if policy.mode == HOST:
        return policy
    return NetPolicy(NONE)
