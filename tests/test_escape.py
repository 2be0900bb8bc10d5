"""Hostile guests: each escape attempt is a real C program, recompiled and run with `kiln run`.

Path escapes (``..``, absolute and relative symlinks out of the root, a
symlink made at run time, /proc/self/root and /proc/self/cwd, hard links,
writes through links, a symlink swap race), no-JIT refusals (RWX mmap,
mprotect(PROT_EXEC) of anonymous memory and of the program's own data, with
their audit records), jumping to data, exec of a binary modified after
recompilation, a fork bomb under --pids-limit, a memory bomb under --memory
and endless loops under --timeout. After each run the host files (a secret
directory outside the root and the rootfs itself) are unchanged.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_vkernel_guestc import KILN, Guest, bundle_rootfs, host_tree_snapshot, kiln, recompiled

ESCAPE_C = r"""/* Path tricks a hostile guest tries; argv[1] is the host directory holding secret.txt. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int leaks;

static void try_open(const char *what, const char *path) {
    char buf[64] = {0};
    int fd = open(path, O_RDONLY);
    if (fd < 0) { printf("%s: %s\n", what, strerror(errno)); return; }
    int n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0 && strstr(buf, "HOST-SECRET")) { printf("%s: LEAK\n", what); leaks++; }
    else printf("%s: opened a guest file\n", what);
}

static void try_write(const char *what, const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { printf("%s: %s\n", what, strerror(errno)); return; }
    write(fd, "GUEST-WROTE\n", 12);
    close(fd);
    printf("%s: written (inside the guest tree)\n", what);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *host = argv[1];
    char p[4096];
    snprintf(p, sizeof p, "../../../../../../../../..%s/secret.txt", host);
    chdir("/tmp");
    try_open("dotdot", p);
    snprintf(p, sizeof p, "%s/secret.txt", host);
    try_open("absolute", p);
    try_open("abs-symlink", "/data/abs/secret.txt");
    try_open("rel-symlink", "/data/rel/secret.txt");
    snprintf(p, sizeof p, "/proc/self/root%s/secret.txt", host);
    try_open("proc-root", p);
    snprintf(p, sizeof p, "/proc/self/cwd/../../../../..%s/secret.txt", host);
    try_open("proc-cwd", p);
    /* symlinks (of the image, and made now) whose targets run through /proc/self/... */
    try_open("link-proc-root-secret", "/data/proc-secret/secret.txt");
    snprintf(p, sizeof p, "/data/via-proc-root/../../..%s/secret.txt", host);
    try_open("link-proc-root", p);
    snprintf(p, sizeof p, "/data/via-proc-cwd/../../../../../..%s/secret.txt", host);
    try_open("link-proc-cwd", p);
    snprintf(p, sizeof p, "/data/via-self/root/../../..%s/secret.txt", host);
    try_open("link-self-root", p);
    symlink("/proc/self/root/../../../..", "/tmp/up");
    snprintf(p, sizeof p, "/tmp/up%s/secret.txt", host);
    try_open("made-proc-root-link", p);
    symlink(host, "/tmp/made");
    try_open("new-symlink", "/tmp/made/secret.txt");
    snprintf(p, sizeof p, "%s/secret.txt", host);
    printf("hardlink: %s\n", link(p, "/tmp/hard") == 0 ? "made" : strerror(errno));
    try_open("hardlink-read", "/tmp/hard");
    printf("hardlink-abs-symlink: %s\n",
           link("/data/abs/secret.txt", "/tmp/hard2") == 0 ? "made" : strerror(errno));
    try_write("write-through-symlink", "/data/abs/secret.txt");
    snprintf(p, sizeof p, "%s/planted.txt", host);
    try_write("write-absolute", p);
    /* symlink swap race: a child flips /tmp/swap between a directory and a link out */
    mkdir("/tmp/dir", 0755);
    int fd = open("/tmp/dir/secret.txt", O_WRONLY | O_CREAT, 0644);
    write(fd, "guest copy\n", 11);
    close(fd);
    pid_t c = fork();
    if (c == 0) {
        for (;;) {
            unlink("/tmp/swap");
            symlink("/tmp/dir", "/tmp/swap");
            unlink("/tmp/swap");
            symlink(host, "/tmp/swap");
        }
    }
    int guest = 0, missing = 0;
    for (int i = 0; i < 20000 && (guest < 20 || missing < 20); i++) {
        char buf[64] = {0};
        int f = open("/tmp/swap/secret.txt", O_RDONLY);
        if (f < 0) { missing++; continue; }
        read(f, buf, sizeof buf - 1);
        close(f);
        if (strstr(buf, "HOST-SECRET")) leaks++;
        else guest++;
    }
    kill(c, SIGKILL);
    waitpid(c, 0, 0);
    printf("swap race: guest=%s missing=%s leaks=%d\n", guest > 0 ? "yes" : "no",
           missing > 0 ? "yes" : "no", leaks);
    return leaks ? 1 : 0;
}
"""

NOJIT_C = r"""/* No-JIT: RWX memory and mprotect(PROT_EXEC) of data are refused; jumping to data faults. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static unsigned char code[4096] __attribute__((aligned(4096))) = {0xb8, 0x2a, 0, 0, 0, 0xc3};

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    void *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("rwx mmap: %s\n", p == MAP_FAILED ? strerror(errno) : "mapped");
    p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(p, code, 6);
    printf("mprotect anon: %s\n", mprotect(p, 4096, PROT_READ | PROT_EXEC) ? strerror(errno) : "done");
    printf("mprotect data: %s\n", mprotect(code, 4096, PROT_READ | PROT_EXEC) ? strerror(errno) : "done");
    if (argc > 1) {
        int (*f)(void) = (int (*)(void))(argc > 2 ? p : (void *)code);
        printf("jumping\n");
        printf("returned %d\n", f());
    }
    return 0;
}
"""

EXECER_C = r"""/* Exec argv[1]; report the errno when the exec fails. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    execv(argv[1], argv + 1);
    printf("exec %s: %s\n", argv[1], strerror(errno));
    return 1;
}
"""

HELLO_C = r"""#include <stdio.h>
int main(void) { printf("hello from the guest\n"); return 0; }
"""

FORKBOMB_C = r"""/* Fork until fork fails; report how many children exist, then clean up. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t kids[1000];
    int n = 0;
    for (; n < 1000; n++) {
        pid_t c = fork();
        if (c < 0) { printf("fork failed after %d children: %s\n", n, strerror(errno)); break; }
        if (c == 0) { for (;;) pause(); }
        kids[n] = c;
    }
    for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
    for (int i = 0; i < n; i++) waitpid(kids[i], 0, 0);
    printf("cleaned up\n");
    return 0;
}
"""

MEMBOMB_C = r"""/* Allocate and touch 1 MiB blocks until allocation fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int n = 0;
    for (; n < 100000; n++) {
        char *p = malloc(1 << 20);
        if (!p) break;
        memset(p, n, 1 << 20);
    }
    printf("allocated %d MiB before malloc failed\n", n);
    return 0;
}
"""

SPIN_C = r"""/* Spin forever without syscalls (with "child": in a forked child too), after printing the pids. */
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    pid_t c = 0;
    if (argc > 1 && (c = fork()) == 0) { for (volatile int i = 0;; i++) {} }
    printf("spinning %d %d\n", (int)getpid(), (int)c);
    fflush(stdout);
    for (volatile int i = 0;; i++) {}
}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Guest, Path]:
    """(the recompiled guest, the host directory with the secret, outside the rootfs)."""
    base = tmp_path_factory.mktemp("escape")
    secret_dir = base / "host-secret"
    secret_dir.mkdir()
    (secret_dir / "secret.txt").write_text("HOST-SECRET\n")
    g = recompiled(base, {"/bin/escape": ESCAPE_C, "/bin/nojit": NOJIT_C, "/bin/execer": EXECER_C,
                          "/bin/hello": HELLO_C, "/bin/forkbomb": FORKBOMB_C,
                          "/bin/membomb": MEMBOMB_C, "/bin/spin": SPIN_C},
                   # links out of the root, shipped in the image itself
                   links={"/data/abs": str(secret_dir),
                          "/data/rel": "../" * 12 + str(secret_dir).lstrip("/"),
                          # ... and through /proc's magic links
                          "/data/proc-secret": "/proc/self/root" + str(secret_dir),
                          "/data/via-proc-root": "/proc/self/root",
                          "/data/via-proc-cwd": "../proc/self/cwd",
                          "/data/via-self": "/proc/self"})
    assert os.path.islink(bundle_rootfs(g) / "data/abs")
    return g, secret_dir


@pytest.fixture
def untouched(world):
    """Asserts, after the test, that the host secret directory and the image's rootfs (the
    lower layer kiln ran over) did not change."""
    g, secret = world
    lower = bundle_rootfs(g)
    before = (host_tree_snapshot(secret), host_tree_snapshot(lower))
    yield
    assert (host_tree_snapshot(secret), host_tree_snapshot(lower)) == before


def test_path_escapes_stay_inside_the_root(world, untouched) -> None:
    g, secret = world
    got = kiln(g, "/bin/escape", str(secret))
    out = got.stdout.decode()
    assert got.returncode == 0, (out, got.stderr)
    assert "LEAK" not in out
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    for what in ("dotdot", "absolute", "abs-symlink", "rel-symlink", "proc-root", "proc-cwd",
                 "link-proc-root-secret", "link-proc-root", "link-proc-cwd", "link-self-root",
                 "made-proc-root-link",
                 "new-symlink", "hardlink", "hardlink-read", "hardlink-abs-symlink",
                 "write-through-symlink", "write-absolute"):
        assert lines[what] == "No such file or directory", (what, out)
    assert lines["swap race"] == "guest=yes missing=yes leaks=0"   # both link targets were seen
    assert not (secret / "planted.txt").exists()


def test_rwx_memory_is_refused_and_audited(world, untouched, tmp_path: Path) -> None:
    g, _ = world
    log = tmp_path / "audit.jsonl"
    got = kiln(g, "/bin/nojit", opts=("--audit-log", str(log)))
    assert (got.returncode, got.stdout.decode()) == (0, "rwx mmap: Permission denied\n"
                                                         "mprotect anon: Permission denied\n"
                                                         "mprotect data: Permission denied\n")
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["event"], r["decision"]) for r in recs] == [("mmap", "refused"), ("mprotect", "refused"),
                                                           ("mprotect", "refused")]
    assert recs[0]["reason"] == recs[1]["reason"] == "anonymous executable memory (no-JIT rule)"
    assert "data cannot become code" in recs[2]["reason"] and recs[2]["path"] == "/bin/nojit"


@pytest.mark.parametrize("target", ["data", "anon"])
def test_jumping_to_data_faults(world, untouched, target: str) -> None:
    g, _ = world
    got = kiln(g, "/bin/nojit", "jump", *(["anon"] if target == "anon" else []))
    err = got.stderr.decode()
    assert got.returncode == 139 and got.stdout.decode().endswith("jumping\n")
    assert "kiln: no translation for 0x" in err and "returned" not in got.stdout.decode()
    assert "Traceback" not in err


def test_exec_of_a_binary_modified_after_recompile_is_refused(world, untouched, tmp_path) -> None:
    g, _ = world
    root = tmp_path / "rootfs"
    shutil.copytree(bundle_rootfs(g), root, symlinks=True)
    mb = root / ".kiln/megabinary.kmb"
    shutil.copyfile(root / "bin/hello", root / "bin/tampered")
    with open(root / "bin/tampered", "ab") as f:       # one byte more after recompilation
        f.write(b"\0")
    os.chmod(root / "bin/tampered", 0o755)
    direct = ("--rootfs", str(root), "--megabinary", str(mb))
    ok = subprocess.run([*KILN, "run", *direct, "--", "/bin/execer", "/bin/hello"],
                        capture_output=True, timeout=60)
    assert ok.stdout == b"hello from the guest\n", ok.stderr
    log = tmp_path / "audit.jsonl"
    got = subprocess.run([*KILN, "run", *direct, "--audit-log", str(log), "--", "/bin/execer",
                          "/bin/tampered"], capture_output=True, timeout=60)
    assert (got.returncode, got.stdout) == (1, b"exec /bin/tampered: Permission denied\n")
    assert "refusing to run /bin/tampered" in got.stderr.decode()
    (rec,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert (rec["event"], rec["path"], rec["reason"]) == ("exec", "/bin/tampered", "hash-not-indexed")


def test_fork_bomb_is_bounded_by_pids_limit(world, untouched) -> None:
    g, _ = world
    got = kiln(g, "/bin/forkbomb", opts=("--pids-limit", "6", "--audit-log", "-"))
    assert got.returncode == 0, got.stderr
    assert got.stdout == (b"fork failed after 5 children: Resource temporarily unavailable\n"
                          b"cleaned up\n")
    assert "--pids-limit 6" in got.stderr.decode()          # the audit record, on stderr with "-"


def test_memory_bomb_is_bounded_by_memory(world, untouched) -> None:
    g, _ = world
    got = kiln(g, "/bin/membomb", opts=("--memory", "128m"))
    assert got.returncode == 0, got.stderr
    words = got.stdout.decode().split()
    assert words[0] == "allocated" and words[2:] == ["MiB", "before", "malloc", "failed"]
    # As root the limit is the whole run's, vkernel's own memory included (a cgroup), so the
    # program gets what vkernel and the kept headroom leave; without root, its mappings'.
    assert (40 if os.geteuid() == 0 else 100) <= int(words[1]) < 128


@pytest.mark.parametrize("tree", [False, True], ids=["loop", "loop-in-two-processes"])
def test_endless_loop_is_ended_by_timeout(world, untouched, tree: bool) -> None:
    g, _ = world
    t = time.monotonic()
    got = kiln(g, "/bin/spin", *(["child"] if tree else []), opts=("--timeout", "2"), timeout=30)
    took = time.monotonic() - t
    assert got.returncode == 124 and 2 <= took < 20
    assert got.stderr.decode().endswith("kiln: timed out after 2 s: the guest's processes were killed\n")
    _, parent, child = got.stdout.decode().split()
    # Guest pids are the run's own pid namespace's: look for its host processes instead.
    left = _host_processes_of(g.image, "/bin/spin")
    assert not left, f"guest processes {parent} {child} survived the timeout (host pids {left})"


def _host_processes_of(image: Path, program: str) -> list[int]:
    """Live host processes of a ``kiln run IMAGE ... program`` (guest processes are forks of it)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(image).encode() in argv and program.encode() in argv and _alive(int(entry.name)):
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


# ---------------------------------------------------------------------------------------------
# The host itself: an adversarial review of `kiln run` as root (issue "no guest may touch the
# host"). Each test is an attack; the host files it aims at are decoys in a temporary
# directory, and the state directory is the test's own ($KILN_STATE).
# ---------------------------------------------------------------------------------------------
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="kiln isolates runs this way as root")
NOBODY = 65534


@pytest.fixture(scope="module")
def host_world(tmp_path_factory) -> Guest:
    """/bin/hostile (tests/escape_programs.py) in a rootfs with things to remove: /etc files,
    and /pub (1777) holding a directory and a file of nobody's, and /tree/dNNN/f."""
    from escape_programs import HOSTILE_C
    from test_vkernel_guestc import RECOMPILE, compile_c
    base = tmp_path_factory.mktemp("hostworld")
    root = base / "rootfs"
    for d in ("bin", "etc", "tmp", "pub/dir"):
        (root / d).mkdir(parents=True)
    compile_c(HOSTILE_C, root / "bin/hostile")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/hostile\n"
                                     "nobody:x:65534:65534:nobody:/:/bin/hostile\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (root / "pub/file").write_text("nobody's file\n")
    for i in range(200):
        (root / f"tree/d{i:03d}").mkdir(parents=True)
        (root / f"tree/d{i:03d}/f").write_text("lower\n")
    os.chmod(root / "pub", 0o1777)
    os.chmod(root / "tmp", 0o1777)
    for p in (root / "pub/dir", root / "pub/file"):
        os.chown(p, NOBODY, NOBODY)
    out = base / "image"
    proc = subprocess.run([*RECOMPILE, str(root), "-o", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return Guest(root, out)


@pytest.fixture
def state(tmp_path: Path, monkeypatch) -> Path:
    """A state directory of the test's own, through $KILN_STATE (kiln and its children)."""
    d = tmp_path / "state"
    monkeypatch.setenv("KILN_STATE", str(d))
    return d


@pytest.fixture
def decoys(tmp_path: Path):
    """A host directory of decoy files (root's, as the host's own files are), checked unchanged
    (owners, modes, contents, nothing added) after the test."""
    d = tmp_path / "decoys"
    d.mkdir()
    (d / "log").write_text("HOST LOG\n")
    (d / "readonly").write_text("HOST READ-ONLY\n")
    os.chmod(d / "readonly", 0o444)
    (d / "secret").write_text("HOST SECRET\n")
    os.chmod(d / "secret", 0o600)
    os.chmod(d, 0o777)                   # writable by anyone: only kiln's rules keep guests out
    before = _owned_snapshot(d)
    yield d
    assert _owned_snapshot(d) == before


def _owned_snapshot(path: Path) -> dict[str, tuple]:
    snap = {k: (*v, (path / k).lstat().st_uid, (path / k).lstat().st_gid)
            for k, v in host_tree_snapshot(path).items()}
    s = path.lstat()
    snap["."] = (s.st_mode, s.st_uid, s.st_gid)
    return snap


def _lines(got: subprocess.CompletedProcess, stream: str = "stdout") -> dict[str, str]:
    text = getattr(got, stream).decode()
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


@as_root
@pytest.mark.parametrize("user", ["0", str(NOBODY)], ids=["root", "nobody"])
def test_whiteout_names_cannot_be_planted(host_world, state, decoys, user: str) -> None:
    """The review's item 1: a symlink named `.wh.NAME` followed by the removal of NAME made
    kiln create a root-owned file where the link pointed. Names with the whiteout prefix are
    now the upper layer's own (EPERM for a guest), and whiteouts are made O_EXCL|O_NOFOLLOW."""
    got = kiln(host_world, "/bin/hostile", "whiteouts", str(decoys), opts=("-u", user))
    assert got.returncode == 0, got.stderr
    r = _lines(got)
    for planted in ("symlink .wh.passwd", "symlink .wh.dir", "symlink .wh.file",
                    "link .wh.group", "create .wh.hosts", "mkdir .wh.new", "rename to .wh.moved"):
        assert r[planted] == "Operation not permitted", (planted, got.stdout)
    # The removals themselves work as Linux's would for this user.
    assert r["rmdir /pub/dir"] == r["rename /pub/file"] == "done"
    assert r["stat /pub/dir"] == "No such file or directory"
    assert r["stat /pub/moved"] == "done"
    if user == "0":
        assert r["unlink /etc/passwd"] == "done"
        assert r["stat /etc/passwd"] == "No such file or directory"
    else:                                  # /etc is root's: nobody may not remove from it
        assert r["unlink /etc/passwd"] == "Permission denied"


@as_root
def test_the_reviewers_whiteout_command_creates_nothing(busybox_image, state, decoys) -> None:
    """The exact reproduction from the review, on the busybox example image."""
    got = subprocess.run([*KILN, "run", str(busybox_image), "--", "/bin/sh", "-c",
                          f"ln -s {decoys}/created /etc/.wh.passwd; rm /etc/passwd; "
                          "ls /etc/passwd"], capture_output=True, timeout=120)
    assert b"Operation not permitted" in got.stderr
    assert not (decoys / "created").exists()


def _guest_host_pids(image: Path) -> list[int]:
    """Host pids of the guest processes of a `kiln run IMAGE ...` (not its supervisor)."""
    pids = _host_processes_of(image, "/bin/hostile")
    out = []
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        ns_pids = next(l for l in status.splitlines() if l.startswith("NSpid:")).split()[1:]
        if len(ns_pids) > 1:                    # inside the run's own pid namespace
            out.append(pid)
    return out


def _wait_for(pred, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@as_root
def test_guest_root_is_not_host_root_and_setuid_copies_stay_harmless(host_world, state,
                                                                     tmp_path: Path) -> None:
    """Item 2: guest root made a real setuid-root file in the host's /tmp. Now guest root is
    an unprivileged host id of the run's user namespace, the upper layer lives on a tmpfs
    seen only in the run's mount namespace, and the state directory is root's alone."""
    from vkernel.userns import id_ranges
    proc = subprocess.Popen([*KILN, "run", str(host_world.image), "--", "/bin/hostile",
                             "setuid", "/tmp/e", "30"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().decode() for _ in range(4)]
        assert lines == ["copy: done\n", "chmod 4755: done\n", "mode: 4755\n", "ready\n"], lines
        guests = _guest_host_pids(host_world.image)
        assert guests
        uids = id_ranges()[0]
        for pid in guests:                       # real, effective, saved and fs uid: the range's
            ids = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if l.startswith("Uid:")).split()[1:]
            assert all(uids.first <= int(i) < uids.first + uids.count for i in ids), ids
        s = state.stat()
        assert s.st_uid == 0 and s.st_mode & 0o777 == 0o700
        for dirpath, dirnames, filenames in os.walk(state):   # the host's view holds no file
            assert not filenames or filenames == ["lock"], (dirpath, filenames)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert [p.name for p in (state / "runs").iterdir()] == []


@as_root
@pytest.mark.parametrize("idmap", [False, True], ids=["volume", "idmapped-volume"])
def test_setuid_bits_never_reach_a_volume(host_world, state, tmp_path: Path, idmap: bool) -> None:
    """Item 2 in a writable volume: the copy lands on the host, without its set-id bits, and
    owned by the run's unprivileged root (or, with :idmap, by the host's root)."""
    from vkernel.userns import id_ranges
    vol = tmp_path / "vol"
    vol.mkdir()
    os.chmod(vol, 0o755 if idmap else 0o777)
    got = kiln(host_world, "/bin/hostile", "setuid", "/vol/e",
               opts=("-v", f"{vol}:/vol" + (":idmap" if idmap else "")))
    assert got.returncode == 0, got.stderr
    r = _lines(got)
    assert r["copy"] == r["chmod 4755"] == "done" and r["mode"] == "755"
    s = (vol / "e").stat()
    assert s.st_mode & 0o7777 == 0o755
    assert s.st_uid == (0 if idmap else id_ranges()[0].first)


@as_root
def test_without_idmap_a_volume_is_used_with_the_runs_ids(host_world, state, decoys) -> None:
    """Guest root is no host root in a volume either: root-only host files stay closed."""
    got = kiln(host_world, "/bin/hostile", "reopen", "/vol/secret", "r",
               opts=("-v", f"{decoys}:/vol"))
    assert _lines(got)["/vol/secret"] == "Permission denied", got.stdout


@as_root
def test_copy_up_race_with_a_host_thread_swapping_directories(host_world, state,
                                                             tmp_path: Path) -> None:
    """Item 3: copy-up made a directory, then chmod'ed it by name, so a host user swapping it
    for a symlink had a root-owned file's mode changed. A host thread here exchanges each
    directory the guest copies up (in a visible --upper) with a symlink to a decoy directory,
    as fast as it can, for 200 copy-ups."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    upper = tmp_path / "upper"
    upper.mkdir()
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "f").write_text("HOST FILE\n")
    os.chmod(decoy / "f", 0o600)
    os.chmod(decoy, 0o700)
    before = _owned_snapshot(decoy)
    stop = False
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        seen: set[str] = set()
        while not stop:
            tree = upper / "tree"
            try:
                names = [n for n in os.listdir(tree) if n.startswith("d") and n not in seen]
            except FileNotFoundError:
                continue
            for n in names:
                seen.add(n)
                link = tree / f"link-{n}"
                os.symlink(decoy, link)
                # renameat2(RENAME_EXCHANGE): the directory and the link trade places
                if libc.renameat2(-100, str(tree / n).encode(), -100, str(link).encode(), 2) == 0:
                    swaps += 1
    import threading
    t = threading.Thread(target=swapper)
    t.start()
    try:
        got = kiln(host_world, "/bin/hostile", "copyup", "200", opts=("--upper", str(upper)))
    finally:
        stop = True
        t.join()
    assert "Traceback" not in got.stderr.decode()
    assert swaps > 0
    assert _owned_snapshot(decoy) == before


@as_root
@pytest.mark.parametrize("user", ["0", str(NOBODY)], ids=["root", "nobody"])
@pytest.mark.parametrize("stream", [0, 1, 2])
def test_inherited_descriptors_stay_what_the_host_gave(host_world, state, decoys, stream: int,
                                                       user: str) -> None:
    """Items 4 and 5: fchown/fchmod/ftruncate on an inherited descriptor changed the host's
    file, and re-opening /proc/self/fd/N or /dev/stdin gained write access to a read-only
    host file. Each stdio stream is a decoy file here; the decoys fixture checks them."""
    target = decoys / ("readonly" if stream == 0 else "log")
    report_on = ["--report-on-stderr"] if stream == 1 else []
    with open(target, "rb" if stream == 0 else "ab") as f:
        streams = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE,
                   "stderr": subprocess.PIPE}
        streams[("stdin", "stdout", "stderr")[stream]] = f
        got = subprocess.run([*KILN, "run", "-u", user, str(host_world.image), "--",
                              "/bin/hostile", "fd-ops", str(stream), *report_on],
                             timeout=60, **streams)
        r = _lines(got, "stderr" if stream == 1 else "stdout")
        assert (r["fchown"], r["fchmod"], r["ftruncate"]) == (
            "Operation not permitted", "Operation not permitted", "Invalid argument"), r
        assert r["fchown /dev/null"] == r["fchmod /dev/null"] == "Operation not permitted"
        name = ("/dev/stdin", "/dev/stdout", "/dev/stderr")[stream]
        for path in (name, f"/proc/self/fd/{stream}", f"/dev/fd/{stream}"):
            got = subprocess.run([*KILN, "run", "-u", user, str(host_world.image), "--",
                                  "/bin/hostile", "reopen", path, "w" if stream == 0 else "r",
                                  *report_on], timeout=60, **streams)
            r = _lines(got, "stderr" if stream == 1 else "stdout")
            assert r[path] == "Permission denied", (path, r)
    assert os.stat("/dev/null").st_uid == 0


@as_root
def test_truncating_stdout_leaves_the_host_log_alone(host_world, state, decoys) -> None:
    """`: > /dev/stdout` truncated the host file stdout was redirected to: a re-opened stdout
    is the same open file again, and O_TRUNC does nothing to it (as to a pipe)."""
    log = decoys / "log"
    before = log.read_bytes()
    with open(log, "ab") as f:
        got = subprocess.run([*KILN, "run", str(host_world.image), "--", "/bin/hostile",
                              "reopen", "/dev/stdout", "w", "--report-on-stderr"],
                             stdout=f, stderr=subprocess.PIPE, timeout=60)
    assert _lines(got, "stderr") == {"/dev/stdout": "done", "write": "done"}
    assert log.read_bytes() == before + b"GUEST-WROTE\n"
    log.write_bytes(before)                # the decoys fixture checks the rest


def _in_terminal(argv: list[str], stdio_is_tty: bool) -> tuple[int, bytes, list]:
    """Run ``argv`` with a pseudo-terminal as its controlling terminal (stdio on it, or on
    pipes); (status, what it wrote, the terminal's settings after the run)."""
    import pty
    import select
    import termios
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)

    def ctty() -> None:
        os.setsid()
        import fcntl
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    io = dict(stdin=slave, stdout=slave, stderr=slave) if stdio_is_tty else \
        dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc = subprocess.Popen(argv, preexec_fn=ctty, **io)
    data = b""
    while proc.poll() is None or select.select([master], [], [], 0.2)[0]:
        if select.select([master], [], [], 0.2)[0]:
            try:
                data += os.read(master, 65536)
            except OSError:
                break
    if not stdio_is_tty:
        assert proc.stdout is not None
        data = proc.stdout.read()
    proc.wait(timeout=60)
    after = termios.tcgetattr(slave)
    os.close(master)
    os.close(slave)
    assert after == before, "the guest changed the host's terminal"
    return proc.returncode, data, after


@as_root
def test_dev_tty_is_not_the_hosts_terminal(host_world, state) -> None:
    """Item 6: /dev/tty was kiln's controlling terminal even with every stream redirected."""
    status, out, _ = _in_terminal([*KILN, "run", str(host_world.image), "--", "/bin/hostile",
                                   "tty"], stdio_is_tty=False)
    assert status == 0
    assert b"open /dev/tty: No such device or address" in out


@as_root
def test_with_t_the_run_has_a_terminal_of_its_own(host_world, state) -> None:
    """`kiln run -t`: /dev/tty and stdio are the run's own pseudo-terminal; what the guest
    sets there never reaches the terminal kiln runs in (checked by _in_terminal)."""
    status, out, _ = _in_terminal([*KILN, "run", "-t", str(host_world.image), "--",
                                   "/bin/hostile", "tty"], stdio_is_tty=True)
    assert status == 0, out
    text = out.decode().replace("\r\n", "\n")
    assert "open /dev/tty: done\n" in text and "tcsetattr -echo: done\n" in text
    assert "isatty 0: done\n" in text


@as_root
def test_disk_quota_bounds_the_upper_layer(host_world, state) -> None:
    """Item 7: 200 MB went to the host's /tmp unchecked. --disk is the size of the run's
    upper layer (a tmpfs): writes beyond it fail with ENOSPC, and statfs says so."""
    got = kiln(host_world, "/bin/hostile", "fill", "64", opts=("--disk", "16m"))
    assert got.returncode == 0, got.stderr
    r = _lines(got)
    assert r["write"] == "No space left on device"
    wrote = int(got.stdout.decode().split("wrote ")[1].split()[0])
    assert 12 <= wrote <= 16
    assert "size 16 MiB" in got.stdout.decode()


@as_root
def test_default_disk_quota(host_world, state) -> None:
    from vkernel.supervisor import DEFAULT_DISK
    got = kiln(host_world, "/bin/hostile", "fill", "1")
    assert f"size {DEFAULT_DISK >> 20} MiB" in got.stdout.decode(), got.stdout


@as_root
def test_memory_limit_covers_the_whole_run(host_world, state) -> None:
    """Item 7: --memory was per process, so 8 children each took 55 MiB under 64m. Now the
    run's processes share it (a cgroup), and each child's malloc fails when it is used up."""
    got = kiln(host_world, "/bin/hostile", "children-alloc", "8", "55", opts=("--memory", "256m"),
               timeout=120)
    assert got.returncode == 0, got.stderr
    total = int(got.stdout.decode().split("total ")[1].split()[0])
    assert 64 <= total < 256, got.stdout           # vkernel's own memory counts too
    assert "ended otherwise" not in got.stdout.decode()   # ENOMEM, not the OOM killer


@as_root
def test_runs_get_safe_default_limits(host_world, state) -> None:
    """With no flags, a run's cgroup bounds its memory (2 GiB) and tasks."""
    from vkernel.cli import DEFAULT_MEMORY, _parse_bytes
    proc = subprocess.Popen([*KILN, "run", str(host_world.image), "--", "/bin/hostile", "sleep",
                             "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        (pid,) = _guest_host_pids(host_world.image)
        cgroups = dict(l.split(":", 2)[1:] for l in Path(f"/proc/{pid}/cgroup").read_text()
                       .splitlines())
        if "memory" in cgroups:                        # cgroup v1
            d = Path("/sys/fs/cgroup/memory") / cgroups["memory"].lstrip("/")
            limit = int((d / "memory.limit_in_bytes").read_text())
        else:
            d = Path("/sys/fs/cgroup") / cgroups[""].lstrip("/")
            limit = int((d / "memory.max").read_text())
        assert d.name.startswith("kiln-") and limit == _parse_bytes(DEFAULT_MEMORY)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not d.exists()                              # removed with the run


@as_root
def test_a_killed_run_leaves_nothing_that_cleanup_does_not_remove(host_world, state) -> None:
    """Item 2's last part: the upper layer survived a kill -9 of kiln. The run's files live on
    a tmpfs of its own mount namespace, which dies with it; `kiln cleanup` (or the next run)
    removes the empty directory and the lock."""
    proc = subprocess.Popen([*KILN, "run", str(host_world.image), "--", "/bin/hostile", "sleep",
                             "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    guests = _guest_host_pids(host_world.image)
    proc.kill()
    proc.wait()
    _wait_for(lambda: not any(_alive(p) for p in guests))
    leftover = list((state / "runs").iterdir())
    assert len(leftover) == 1
    files = [f for _, _, fs in os.walk(state) for f in fs]
    assert files == ["lock"]                            # no guest file reached the disk
    got = subprocess.run([*KILN, "cleanup", "--json"], capture_output=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == {"removed": [leftover[0].name], "running": [],
                                      "state": str(state)}
    assert list((state / "runs").iterdir()) == []


@as_root
@pytest.mark.parametrize("attempt", ["mmap-exec", "execve", "ptrace"])
def test_seccomp_stops_a_broken_handler(host_world, state, attempt: str) -> None:
    """The fourth no-JIT layer: once a run is locked down, even vkernel's own code (here a
    deliberately broken getpid handler, patched in before kiln starts) can neither map
    executable memory (EPERM) nor start a host program or trace a process (killed)."""
    script = f"""
import ctypes, errno, mmap, os, sys
from vkernel.syscalls import table
def broken(k):
    if {attempt!r} == "mmap-exec":
        try:
            mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        except OSError as e:
            return -e.errno
        return 4242
    if {attempt!r} == "execve":
        os.execv("/bin/true", ["true"])
    ctypes.CDLL(None).ptrace(16, 1, 0, 0)          # PTRACE_ATTACH to pid 1
    return 0
table.DISPATCH[39] = (broken, 0)
from vkernel.cli import main
main(["run", {str(host_world.image)!r}, "--", "/bin/hostile", "getpid"])
"""
    got = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    if attempt == "mmap-exec":
        assert got.returncode == 0, got.stderr
        assert got.stdout == b"getpid: -1 Operation not permitted\n"
    else:
        assert got.returncode == 128 + 31, (got.returncode, got.stderr)     # SIGSYS
        assert got.stdout == b""


@as_root
@pytest.mark.parametrize("user", ["0", str(NOBODY)], ids=["root", "nobody"])
def test_user_xattrs_never_reach_host_files(host_world, state, decoys, user: str) -> None:
    """A guest's user.* attributes land on its own files only: not on a host file named by a
    link, a host path, /proc/self/fd or /dev/stdout of an inherited descriptor, or that
    descriptor; the image's file gets them on its copy, and no other namespace is accepted."""
    for _ in range(2):                         # the second run: the image's file as it was
        with open(decoys / "log", "ab") as log:
            got = subprocess.run([*KILN, "run", "-u", user, str(host_world.image), "--",
                                  "/bin/hostile", "xattrs", str(decoys), "--report-on-stderr"],
                                 stdout=log, stderr=subprocess.PIPE, timeout=60)
        r = _lines(got, "stderr")
        assert r["image's file before"] == "No data available", r
    assert r["symlink to the host decoy"] == "done", r
    for what in ("setxattr through it", "setxattr host path"):
        assert r[what] == "No such file or directory", (what, r)
    for what in ("lsetxattr on it", "fsetxattr stdout", "setxattr /proc/self/fd/1",
                 "setxattr /dev/stdout"):
        assert r[what] == "Operation not permitted", (what, r)
    assert r["trusted on the image's file"] == "Not supported", r          # (musl's EOPNOTSUPP)
    if user == "0":
        assert r["user on the image's file"] == r["read back"] == "done", r
    else:                                      # nobody may not change root's /etc/passwd
        assert r["user on the image's file"] == "Permission denied", r
    for p in [decoys, *decoys.iterdir()]:
        assert os.listxattr(p, follow_symlinks=False) == [], p
