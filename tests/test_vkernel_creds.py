"""Guest credentials are real host credentials: image User, kiln run --user, the id family, su.

Each behaviour is checked against the real thing: the same busybox or C
program run natively on this host (as root, dropping privileges with the
real syscalls, ``su`` or ``chroot --userspec``) must print what the
recompiled program prints under ``kiln run``; files the guest creates must
have its uid/gid on the host (in the kept upper layer).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vkernel.userns import id_ranges

from examples.busybox.build import busybox_entries
from examples.debs import unpacked_deb
from recompiler.image import ExtraLayer, LayerEntry, file_entry, open_image, scratch_image, write_image
from recompiler.image.source import DEFAULT_ENV_PATH
from tests.test_vkernel_guestc import kiln, native, recompiled

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="guest ids are real host ids: needs root")

KILN = [sys.executable, "-m", "vkernel.cli"]
RECOMPILE = [sys.executable, "-m", "recompiler.cli"]

PASSWD = (b"root:x:0:0:root:/root:/bin/sh\n"
          b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
          b"app:x:1000:1000:app:/home/app:/bin/sh\n")
GROUP = b"root:x:0:\nstaff:x:50:app\nnogroup:x:65534:\napp:x:1000:\n"


def _entries() -> list[LayerEntry]:
    keep = [e for e in busybox_entries(unpacked_deb("busybox-static"))
            if e.path not in ("/etc/passwd", "/etc/group")]
    return keep + [
        file_entry("/etc/passwd", PASSWD), file_entry("/etc/group", GROUP),
        LayerEntry("/home", "dir", 0o755),
        LayerEntry("/home/app", "dir", 0o750, uid=1000, gid=1000),
        LayerEntry("/home/app/notes", "file", 0o600, data=b"app's notes\n", uid=1000, gid=1000),
        LayerEntry("/root/secret", "file", 0o600, data=b"root only\n"),
    ]


def _user_image(base: Path, user: str) -> Path:
    """The source image (busybox, PASSWD, GROUP) whose config says ``User: user``."""
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Cmd": ["/bin/sh"], "Env": [DEFAULT_ENV_PATH], "WorkingDir": "/",
                         "User": user}}
    src = base / "src"
    write_image(scratch_image(config, "app"), src,
                extra_layers=[ExtraLayer(tuple(_entries()), created_by="tests/test_vkernel_creds.py")])
    return src


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> tuple[Path, Path]:
    """(recompiled image whose config says ``User: app``, the same files unpacked with owners)."""
    base = tmp_path_factory.mktemp("userimg")
    src = _user_image(base, "app")
    out = base / "recompiled"
    proc = subprocess.run([*RECOMPILE, str(src), "-o", str(out)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    root = base / "rootfs"
    with open_image(src) as img:
        img.unpack(root, chown=True)
    return out, root


def _kiln(image: Path, *argv: str, opts: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*KILN, "run", *opts, str(image), "--", *argv], capture_output=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def _native(root: Path, *argv: str) -> subprocess.CompletedProcess:
    """``argv`` with Debian's busybox chrooted into ``root`` (as root, like the image's /bin)."""
    return subprocess.run(["unshare", f"--root={root}", "--wd=/", *argv], capture_output=True,
                          timeout=60, stdin=subprocess.DEVNULL, env={"PATH": DEFAULT_ENV_PATH[5:]})


def test_image_user_is_resolved_in_passwd_and_group_like_su(app: tuple[Path, Path]) -> None:
    image, root = app
    got = _kiln(image, "/bin/sh", "-c", 'id; echo "HOME=$HOME"; cat /home/app/notes')
    want = _native(root, "/bin/su", "-s", "/bin/sh", "app", "-c",
                   'id; echo "HOME=$HOME"; cat /home/app/notes')
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout
    assert got.stdout.startswith(b"uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n")


@pytest.mark.parametrize("user, ids", [("4321", (4321, 0)), ("app", (1000, 1000)),
                                       ("4321:50", (4321, 50)), ("app:staff", (1000, 50))])
def test_bundle_user_is_what_the_guest_runs_as(tmp_path: Path, user: str,
                                               ids: tuple[int, int]) -> None:
    """The OCI bundle kiln-oci hands to containerd says the ids ``kiln run`` gives the guest
    (formats/imageuser.py serves both): a uid with no /etc/passwd entry gets gid 0, as with
    ``docker run --user 4321``."""
    import json
    from recompiler.bundle import prepare_bundle
    out = tmp_path / "recompiled"
    proc = subprocess.run([*RECOMPILE, str(_user_image(tmp_path, user)), "-o", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    spec = json.loads((prepare_bundle(out, cache=tmp_path / "cache") / "config.json").read_text())
    assert (spec["process"]["user"]["uid"], spec["process"]["user"]["gid"]) == ids
    got = _kiln(out, "/bin/sh", "-c", "id -u; id -g")
    assert got.stdout.split() == [str(i).encode() for i in ids], got.stderr


def test_image_user_cannot_read_roots_files(app: tuple[Path, Path]) -> None:
    image, root = app
    cmd = "cat /root/secret; echo status $?; ls /root; echo status $?"
    got = _kiln(image, "/bin/sh", "-c", cmd)
    want = _native(root, "/bin/su", "-s", "/bin/sh", "app", "-c", cmd)
    assert (got.stdout, got.stderr) == (want.stdout, want.stderr)
    assert b"Permission denied" in got.stderr


@pytest.mark.parametrize("user, chroot_spec", [("nobody", None), ("root", None),
                                               ("1234:50", ("1234:50", "50")),
                                               ("app:root", ("1000:0", "0")),
                                               ("0:staff", ("0:50", "50"))])
def test_user_option_overrides_the_image_user(app: tuple[Path, Path], user: str,
                                              chroot_spec: tuple[str, str] | None) -> None:
    image, root = app
    got = _kiln(image, "/bin/sh", "-c", "id", opts=("--user", user))
    if chroot_spec is None:        # a passwd name: what su (initgroups) gives natively
        want = _native(root, "/bin/su", "-s", "/bin/sh", user, "-c", "id")
    else:                          # ids as given, the group as the only group
        spec, groups = chroot_spec
        want = subprocess.run(["chroot", f"--userspec={spec}", f"--groups={groups}", str(root),
                               "/bin/sh", "-c", "id"], capture_output=True, timeout=60,
                              env={"PATH": DEFAULT_ENV_PATH[5:]})
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout


def test_unknown_user_is_a_clear_error(app: tuple[Path, Path]) -> None:
    image, _ = app
    got = _kiln(image, "/bin/sh", "-c", "id", opts=("--user", "nosuchuser"))
    assert got.returncode != 0 and got.stdout == b""
    assert b"nosuchuser" in got.stderr and b"/etc/passwd" in got.stderr
    assert b"Traceback" not in got.stderr


def test_files_created_by_the_user_are_owned_by_it_on_the_host(app: tuple[Path, Path],
                                                                tmp_path: Path) -> None:
    image, _ = app
    upper = tmp_path / "upper"
    got = _kiln(image, "/bin/sh", "-c",
                "echo hi > /home/app/new && mkdir /tmp/d && echo more >> /home/app/notes && "
                "stat -c '%u:%g %a %n' /home/app /home/app/new /tmp/d /home/app/notes",
                opts=("--upper", str(upper)))
    assert got.returncode == 0, got.stderr
    assert got.stdout == (b"1000:1000 750 /home/app\n1000:1000 644 /home/app/new\n"
                          b"1000:1000 755 /tmp/d\n1000:1000 600 /home/app/notes\n")
    # On the host the guest's uid 1000 is uid 1000 of the run's user namespace: the host id
    # that many above the start of Kiln's unprivileged range (vkernel/userns.py).
    uids, gids = id_ranges()
    for rel, mode in (("home/app", 0o750), ("home/app/new", 0o644), ("tmp/d", 0o755),
                      ("home/app/notes", 0o600)):     # the copied-up rootfs files keep owners
        s = (upper / rel).stat()
        assert (s.st_uid, s.st_gid, s.st_mode & 0o7777) == \
            (uids.host(1000), gids.host(1000), mode), rel
    assert (upper / "home/app/notes").read_bytes() == b"app's notes\nmore\n"


def test_guest_processes_really_run_with_the_users_ids(app: tuple[Path, Path]) -> None:
    """The host kernel sees the guest's ids: /proc/self/status inside is the host's view."""
    image, _ = app
    got = _kiln(image, "/bin/sh", "-c", "grep -E '^(Uid|Gid|Groups):' /proc/self/status")
    assert got.stdout == b"Uid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t50 1000 \n"


ID_PROGRAM = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void show(const char *when) {
    uid_t r, e, s; gid_t rg, eg, sg; gid_t g[32];
    getresuid(&r, &e, &s); getresgid(&rg, &eg, &sg);
    int n = getgroups(32, g);
    printf("%s: uid %u %u %u gid %u %u %u groups", when, r, e, s, rg, eg, sg);
    for (int i = 0; i < n; i++) printf(" %u", g[i]);
    printf("\n");
}

static void try(const char *what, int rc) { printf("%s: %s\n", what, rc == 0 ? "ok" : strerror(errno)); }

static int readable(const char *p) { int fd = open(p, O_RDONLY); if (fd >= 0) close(fd); return fd < 0 ? -1 : 0; }

int main(void) {
    gid_t two[2] = {1000, 50};
    try("setgroups none", setgroups(0, NULL));
    int fd = open("tmp/secret", O_WRONLY | O_CREAT | O_TRUNC, 0600);   /* root's, 0600 */
    if (fd >= 0) { write(fd, "root only\n", 10); close(fd); }
    show("start");
    try("setgroups 1000,50", setgroups(2, two));
    try("setresgid 1000,1000,1000", setresgid(1000, 1000, 1000));
    try("setresuid 1000,1000,0", setresuid(1000, 1000, 0));
    show("dropped, saved 0");
    try("open 0600 root file", readable("tmp/secret"));
    try("seteuid 0 (saved uid 0)", seteuid(0));
    try("open 0600 root file as euid 0", readable("tmp/secret"));
    try("setuid 1000 as root", setuid(1000));
    show("all 1000");
    try("setuid 0", setuid(0));
    try("seteuid 0", seteuid(0));
    try("setresuid -1,0,-1", setresuid(-1, 0, -1));
    try("setreuid 0,0", setreuid(0, 0));
    try("setgid 0", setgid(0));
    try("setgroups 0", setgroups(1, (gid_t[]){0}));
    try("open 0600 root file again", readable("tmp/secret"));
    try("setuid 1000 (own)", setuid(1000));
    try("setreuid -1,1000", setreuid(-1, 1000));
    show("end");
    return 0;
}
"""


def test_id_syscalls_follow_linux_rules_and_root_is_not_regained(tmp_path: Path) -> None:
    g = recompiled(tmp_path, {"/bin/ids": ID_PROGRAM})
    want = native(g, "/bin/ids")
    got = kiln(g, "/bin/ids")
    assert got.returncode == want.returncode == 0, got.stderr
    assert got.stdout == want.stdout
    assert b"setuid 0: Operation not permitted" in got.stdout
    assert b"open 0600 root file: Permission denied" in got.stdout
    assert b"open 0600 root file as euid 0: ok" in got.stdout



def test_an_in_process_run_gives_the_callers_ids_back(app: tuple[Path, Path], tmp_path: Path) -> None:
    """run_guest in the caller's process (an agent host, a test) drops to the guest user for the
    run and restores the caller's own ids, groups included, afterwards."""
    from recompiler.bundle import prepare_bundle
    from vkernel.launch import run_guest
    from vkernel.runtime import RunSpec
    image, _ = app
    rootfs = prepare_bundle(image) / "rootfs"
    before = (os.getresuid(), os.getresgid(), sorted(os.getgroups()))
    os.setgroups([0, 4242])
    try:
        out = tmp_path / "out"
        fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o666)
        saved = os.dup(1)
        os.dup2(fd, 1)
        try:
            status = run_guest(RunSpec(rootfs=rootfs, megabinary=rootfs / ".kiln/megabinary.kmb",
                                       argv=("/bin/sh", "-c", "id"), user="nobody"))
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(fd)
        assert status == 0
        assert out.read_bytes() == b"uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n"
        assert (os.getresuid(), os.getresgid(), sorted(os.getgroups())) == \
            (before[0], before[1], [0, 4242])
    finally:
        os.setgroups(before[2])
