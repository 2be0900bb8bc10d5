"""`kiln run` options a container user expects: --volume, --memory, --pids-limit, --timeout.

The guest is a real C program recompiled by the recompiler; the host side
is checked directly (files written through a volume, files left alone).
Escape-style bounds (fork and memory bombs, endless loops) are in
tests/test_escape.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from test_vkernel_guestc import Guest, kiln, recompiled

VOL_C = r"""/* Reads and writes in a volume mounted at /vol; tries to leave it through a link. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void show(const char *what, const char *path) {
    char buf[128] = {0};
    int fd = open(path, O_RDONLY);
    if (fd < 0) { printf("%s: %s\n", what, strerror(errno)); return; }
    read(fd, buf, sizeof buf - 1); close(fd);
    printf("%s: %s", what, buf);
}
int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    show("in", "/vol/in.txt");
    show("up-link", "/vol/up/outside.txt");
    int fd = open("/vol/out.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) printf("write: %s\n", strerror(errno));
    else { write(fd, "from the guest\n", 15); close(fd); printf("write: ok\n"); }
    printf("mkdir: %s\n", mkdir("/vol/newdir", 0755) ? strerror(errno) : "ok");
    printf("unlink: %s\n", unlink("/vol/in.txt") ? strerror(errno) : "ok");
    return 0;
}
"""


@pytest.fixture(scope="module")
def guest(tmp_path_factory) -> Guest:
    return recompiled(tmp_path_factory.mktemp("opts"), {"/bin/vol": VOL_C})


def _volume(tmp_path: Path) -> Path:
    (tmp_path / "outside.txt").write_text("HOST FILE OUTSIDE THE VOLUME\n")
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in.txt").write_text("hello from the host\n")
    (vol / "up").symlink_to("..")
    return vol


def test_volume_is_read_and_written_in_place(guest: Guest, tmp_path: Path) -> None:
    """With ':idmap' guest ids are host ids in the volume (as root; without root they are
    anyway), so the guest's root writes the host directory as its owner would."""
    vol = _volume(tmp_path)
    got = kiln(guest, "/bin/vol", opts=("--volume", f"{vol}:/vol:idmap"))
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode().splitlines() == [
        "in: hello from the host", "up-link: No such file or directory",
        "write: ok", "mkdir: ok", "unlink: ok"]
    assert (vol / "out.txt").read_text() == "from the guest\n"
    assert (vol / "newdir").is_dir() and not (vol / "in.txt").exists()
    assert (tmp_path / "outside.txt").read_text() == "HOST FILE OUTSIDE THE VOLUME\n"


def test_readonly_volume_refuses_writes(guest: Guest, tmp_path: Path) -> None:
    vol = _volume(tmp_path)
    before = sorted(p.name for p in vol.iterdir())
    got = kiln(guest, "/bin/vol", opts=("--volume", f"{vol}:/vol:ro"))
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode().splitlines() == [
        "in: hello from the host", "up-link: No such file or directory",
        "write: Read-only file system", "mkdir: Read-only file system",
        "unlink: Read-only file system"]
    assert sorted(p.name for p in vol.iterdir()) == before


@pytest.mark.parametrize("opts,needle", [
    (("--volume", "/nonexistent-kiln-dir:/vol"), "host directory /nonexistent-kiln-dir does not exist"),
    (("--volume", "novolume"), "is not of the form HOST:GUEST[:OPTIONS]"),
    (("--memory", "lots"), "--memory 'lots' is not a size"),
    (("--timeout", "0"), "must be a positive number of seconds"),
    (("--pids-limit", "0"), "--pids-limit"),
])
def test_bad_options_are_reported_without_traceback(guest: Guest, opts, needle: str) -> None:
    got = kiln(guest, "/bin/vol", opts=opts)
    err = got.stderr.decode()
    assert got.returncode == 2 and needle in err and "Traceback" not in err


def test_timeout_leaves_a_quick_guest_alone(guest: Guest, tmp_path: Path) -> None:
    vol = _volume(tmp_path)
    got = kiln(guest, "/bin/vol", opts=("--timeout", "30", "--volume", f"{vol}:/vol"))
    assert got.returncode == 0 and got.stdout.startswith(b"in: hello from the host\n"), got.stderr
