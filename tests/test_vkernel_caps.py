"""Capabilities (tests/creds/caps.c), natively as a container's root and under vkernel.

A guest starts as a container's process does: root with runc's default
capability set. Natively the same static program runs as root under
``setpriv --bounding-set`` with that set, so its exec gives it exactly those.
Each scenario prints the sets as capget, prctl and /proc/self/status show them
while it drops, keeps and raises them (capset, PR_SET_KEEPCAPS, ambient
capabilities, PR_CAPBSET_DROP), changes ids, execs (a set-user-ID copy of
itself, no_new_privs), sets a parent-death signal and makes every error case
Linux has; the kernel must then refuse what a dropped capability allowed (a
0600 file of another user without CAP_DAC_OVERRIDE). Output and status must
be byte-identical.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.test_vkernel_guestc import Guest, kiln, recompiled

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="a guest's ids and capabilities change only as root")

SOURCE = (Path(__file__).resolve().parent / "creds" / "caps.c").read_text()
RUNC_CAPABILITIES = ("chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid",
                     "setuid", "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill",
                     "audit_write")
AS_CONTAINER = ["setpriv", "--bounding-set", ",".join(["-all", *(f"+{c}" for c in RUNC_CAPABILITIES)]),
                "--inh-caps=-all"]
SCENARIOS = ("show", "drop", "setuid", "keepcaps", "ambient", "bounding", "exec-user", "suid",
             "suid-nnp", "threads", "race", "pdeathsig", "errors")


@pytest.fixture(scope="module")
def caps_guest(tmp_path_factory) -> Guest:
    """caps.c built statically with glibc (musl has no <linux/capability.h>), recompiled once."""
    return recompiled(tmp_path_factory.mktemp("caps"), {"/bin/caps": SOURCE}, libc="glibc")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_capabilities_as_a_containers_root(caps_guest: Guest, scenario: str) -> None:
    g = caps_guest
    want = subprocess.run([*AS_CONTAINER, str(g.host("/bin/caps")), scenario],
                          capture_output=True, timeout=60, cwd=g.rootfs / "tmp")
    assert want.returncode == 0 and want.stderr == b"", want
    assert b"capget: " not in want.stdout and b"exec: " not in want.stdout
    got = kiln(g, "/bin/caps", scenario, opts=("--workdir", "/tmp"))
    assert got.stdout.decode() == want.stdout.decode(), got.stderr.decode()[-2000:]
    assert (got.returncode, got.stderr) == (want.returncode, want.stderr)


def test_a_dropped_capability_is_refused_by_the_host(caps_guest: Guest) -> None:
    """What the differential check above relies on, said outright: without CAP_DAC_OVERRIDE
    the guest's root cannot open another user's 0600 file, with it again it can."""
    got = kiln(caps_guest, "/bin/caps", "drop", opts=("--workdir", "/tmp"))
    opens = [line for line in got.stdout.decode().splitlines() if line.startswith("open ")]
    assert opens == ["open capfile: ok", "open capfile: Permission denied", "open capfile: ok",
                     "open capfile: Permission denied"], got.stdout.decode()


@pytest.mark.parametrize("opts,bounding", [
    (("--cap-drop", "ALL", "--cap-add", "NET_RAW"), "-all,+net_raw"),
    (("--cap-add", "sys_ptrace", "--cap-drop", "CAP_CHOWN"),
     ",".join(["-all", *(f"+{c}" for c in RUNC_CAPABILITIES if c != "chown"), "+sys_ptrace"])),
], ids=["drop-all-add-one", "add-and-drop"])
def test_cap_add_and_cap_drop_as_docker(caps_guest: Guest, opts: tuple[str, ...],
                                        bounding: str) -> None:
    """``kiln run --cap-add/--cap-drop`` give the run's root what docker run's do: natively,
    the same program under that bounding set."""
    g = caps_guest
    want = subprocess.run(["setpriv", "--bounding-set", bounding, "--inh-caps=-all",
                           str(g.host("/bin/caps")), "show"], capture_output=True, timeout=60)
    assert want.returncode == 0, want
    got = kiln(g, "/bin/caps", "show", opts=opts)
    assert (got.stdout.decode(), got.returncode) == (want.stdout.decode(), 0), got.stderr.decode()


def test_an_unknown_capability_is_a_clear_error(caps_guest: Guest) -> None:
    got = kiln(caps_guest, "/bin/caps", "show", opts=("--cap-add", "CAP_FLY"))
    assert got.returncode == 2 and got.stdout == b""
    assert b"--cap-add: unknown capability 'CAP_FLY'" in got.stderr
    assert b"Traceback" not in got.stderr
