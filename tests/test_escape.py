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
    got = kiln(g, "/bin/forkbomb", opts=("--pids-limit", "6"))
    assert got.returncode == 0, got.stderr
    assert got.stdout == (b"fork failed after 5 children: Resource temporarily unavailable\n"
                          b"cleaned up\n")
    assert "--pids-limit 6" in got.stderr.decode()


def test_memory_bomb_is_bounded_by_memory(world, untouched) -> None:
    g, _ = world
    got = kiln(g, "/bin/membomb", opts=("--memory", "48m"))
    assert got.returncode == 0, got.stderr
    words = got.stdout.decode().split()
    assert words[0] == "allocated" and words[2:] == ["MiB", "before", "malloc", "failed"]
    assert 30 <= int(words[1]) < 48            # the program and its stack count too


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
