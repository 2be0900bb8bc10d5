"""File-system calls under vkernel against Linux: umask, mkfifo/mknod, chown family, trailing
slashes (on names looked up, created, renamed and removed), hard links. The same static program runs natively in an empty directory and under
`kiln run -w /tmp`; the lines it prints must agree.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from test_vkernel_guestc import Guest, kiln, recompiled

FSOPS_C = r"""/* File-system calls whose results a user checks: umask, mkfifo, chown, trailing slashes, links. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void st(const char *what, const char *path, int follow) {
    struct stat s;
    int r = follow ? stat(path, &s) : lstat(path, &s);
    if (r) { printf("%s: %s\n", what, strerror(errno)); return; }
    const char *t = S_ISREG(s.st_mode) ? "file" : S_ISDIR(s.st_mode) ? "dir" : S_ISFIFO(s.st_mode) ? "fifo"
                  : S_ISLNK(s.st_mode) ? "link" : S_ISSOCK(s.st_mode) ? "sock" : "other";
    printf("%s: %s %03o uid=%d gid=%d nlink=%d\n", what, t, s.st_mode & 0777, (int)s.st_uid,
           (int)s.st_gid, (int)s.st_nlink);
}

static void res(const char *what, int r) {
    printf("%s: %s\n", what, r < 0 ? strerror(errno) : "ok");
    if (r > 2) close(r);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    umask(002);
    close(open("f", O_CREAT | O_WRONLY, 0666));
    mkdir("d", 0777);
    st("file 0666 umask 002", "f", 1);
    st("dir 0777 umask 002", "d", 1);
    printf("mkfifo: %s\n", mkfifo("p", 0666) ? strerror(errno) : "ok");
    st("fifo", "p", 1);
    printf("mknod reg: %s\n", mknod("r", S_IFREG | 0600, 0) ? strerror(errno) : "ok");
    st("mknod reg", "r", 1);
    printf("chown: %s\n", chown("f", 1234, 5678) ? strerror(errno) : "ok");
    st("chowned", "f", 1);
    symlink("d", "l");
    printf("lchown: %s\n", lchown("l", 42, 43) ? strerror(errno) : "ok");
    st("lchowned link", "l", 0);
    st("its target", "d", 1);
    int fd = open("d", O_RDONLY);
    printf("fchown: %s\n", fchown(fd, 7, 8) ? strerror(errno) : "ok");
    close(fd);
    st("fchowned", "d", 1);
    printf("chown -1 keeps: %s\n", chown("f", -1, 99) ? strerror(errno) : "ok");
    st("gid only", "f", 1);
    st("file/", "f/", 1);
    st("dir/", "d/", 1);
    st("link/ (lstat)", "l/", 0);
    st("missing/", "nothere/", 1);
    printf("open file/: %s\n", open("f/", O_RDONLY) < 0 ? strerror(errno) : "opened");
    printf("link: %s\n", link("f", "g") ? strerror(errno) : "ok");
    st("hard link", "g", 1);
    printf("unlink file/: %s\n", unlink("g/") ? strerror(errno) : "ok");
    /* a trailing slash on a name being created, renamed or removed: no file named "n1" may
       appear, no symlink's target may be removed */
    mkdir("e", 0777);
    symlink("e", "le");
    symlink("nowhere", "dangling");
    res("creat new/", open("n1/", O_CREAT | O_WRONLY, 0644));
    res("creat excl new/", open("n2/", O_CREAT | O_EXCL | O_WRONLY, 0644));
    res("creat file/", open("f/", O_CREAT | O_WRONLY, 0644));
    res("creat dangling/", open("dangling/", O_CREAT | O_WRONLY, 0644));
    res("creat missing/new/", open("nothere/n/", O_CREAT | O_WRONLY, 0644));
    res("creat file/new", open("f/n", O_CREAT | O_WRONLY, 0644));
    res("mkdir new/", mkdir("n3/", 0755));
    res("mkdir link/", mkdir("le/", 0755));
    res("mknod new/", mknod("n4/", S_IFREG | 0600, 0));
    res("mkfifo new/", mkfifo("n5/", 0600));
    res("symlink to new/", symlink("f", "n6/"));
    res("symlink to file/", symlink("f", "f/"));
    res("link to new/", link("f", "n7/"));
    res("link from file/", link("f/", "n8"));
    res("rename file to new/", rename("f", "n9/"));
    res("rename file/ to new", rename("f/", "n10"));
    res("rename link/ to new", rename("le/", "n11"));
    res("unlink dir/", unlink("e/"));
    res("unlink link/", unlink("le/"));
    res("rmdir link/", rmdir("le/"));
    res("rmdir file/", rmdir("f/"));
    res("rename dir to new/", rename("n3", "n12/"));
    res("rmdir dir/", rmdir("n12/"));
    st("link still there", "le", 0);
    st("its target still there", "e", 1);
    for (const char *const *n = (const char *const[]){"n1", "n2", "n4", "n5", "n6", "n7", "n8",
                                                       "n9", "n10", "n11", 0}; *n; n++)
        if (access(*n, F_OK) == 0) printf("%s exists\n", *n);
    return 0;
}
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to other ids needs root natively")


@pytest.fixture(scope="module")
def guest(tmp_path_factory) -> Guest:
    return recompiled(tmp_path_factory.mktemp("fsops"), {"/bin/fsops": FSOPS_C})


def test_fs_calls_match_native(guest: Guest, tmp_path) -> None:
    want = subprocess.run([str(guest.host("/bin/fsops"))], cwd=tmp_path, capture_output=True,
                          timeout=60)
    got = kiln(guest, "/bin/fsops", opts=("-w", "/tmp"))
    assert want.returncode == 0 and b"file/: Not a directory" in want.stdout
    assert (got.stdout.decode(), got.stderr, got.returncode) == \
        (want.stdout.decode(), want.stderr, want.returncode)


XATTRS_C = (Path(__file__).resolve().parent / "fs" / "xattrs.c").read_text()
SHIPPED = b"shipped content\n"


@pytest.fixture(scope="module")
def xattr_guest(tmp_path_factory) -> Guest:
    return recompiled(tmp_path_factory.mktemp("xattrs"), {"/bin/xattrs": XATTRS_C},
                      files={"/etc/shipped.txt": SHIPPED})


def test_user_xattrs_match_native(xattr_guest: Guest, tmp_path) -> None:
    """user.* attributes on files, directories, links, FIFOs and fds, natively (a fresh
    directory of the host's /tmp) and under kiln run (its writable layer; the image's own
    file is copied up). A second run sees the image's file as it was: without the attribute
    the first run set."""
    shipped = tmp_path / "shipped.txt"
    shipped.write_bytes(SHIPPED)
    work = tmp_path / "work"
    work.mkdir()
    want = subprocess.run([str(xattr_guest.host("/bin/xattrs")), str(shipped)], cwd=work,
                          capture_output=True, timeout=60)
    assert want.returncode == 0 and b"set f user.a: 0" in want.stdout, want.stdout
    for _ in range(2):
        got = kiln(xattr_guest, "/bin/xattrs", "/etc/shipped.txt", opts=("-w", "/tmp"))
        assert (got.stdout.decode(), got.stderr, got.returncode) == \
            (want.stdout.decode(), want.stderr, want.returncode)
