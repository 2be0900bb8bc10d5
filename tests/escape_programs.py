"""C sources of the attacks tests/test_escape.py runs against the host from inside a run."""
from __future__ import annotations

HOSTILE_C = r"""/* Attacks on the host from inside a run: argv[1] names one, the rest are its arguments.
 * Each step prints "what: done" or "what: <strerror>". */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <termios.h>
#include <unistd.h>

static FILE *out;

static void report(const char *what, long rc) {
    fprintf(out, "%s: %s\n", what, rc < 0 ? strerror(errno) : "done");
}

static int copy(const char *from, const char *to) {
    char buf[65536];
    int in = open(from, O_RDONLY), o = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (in < 0 || o < 0) return -1;
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) write(o, buf, n);
    close(in);
    close(o);
    return 0;
}

int main(int argc, char **argv) {
    out = stdout;
    const char *a = argv[1];
    if (argc > 2 && !strcmp(argv[argc - 1], "--report-on-stderr")) { out = stderr; argc--; }
    setvbuf(out, NULL, _IOLBF, 0);
    if (!strcmp(a, "whiteouts")) {
        /* argv[2]: a host directory. Plant links named like the upper layer's whiteouts,
           then remove what they would stand for (unlink, rmdir, rename). */
        char p[4096];
        snprintf(p, sizeof p, "%s/by-unlink", argv[2]);
        report("symlink .wh.passwd", symlink(p, "/etc/.wh.passwd"));
        report("unlink /etc/passwd", unlink("/etc/passwd"));
        snprintf(p, sizeof p, "%s/by-rmdir", argv[2]);
        report("symlink .wh.dir", symlink(p, "/pub/.wh.dir"));
        report("rmdir /pub/dir", rmdir("/pub/dir"));
        snprintf(p, sizeof p, "%s/by-rename", argv[2]);
        report("symlink .wh.file", symlink(p, "/pub/.wh.file"));
        report("rename /pub/file", rename("/pub/file", "/pub/moved"));
        report("link .wh.group", link("/etc/group", "/etc/.wh.group"));
        report("create .wh.hosts", open("/etc/.wh.hosts", O_WRONLY | O_CREAT, 0644));
        report("mkdir .wh.new", mkdir("/pub/.wh.new", 0755));
        report("rename to .wh.moved", rename("/pub/moved", "/pub/.wh.moved"));
        struct stat s;
        report("stat /etc/passwd", stat("/etc/passwd", &s));
        report("stat /pub/dir", stat("/pub/dir", &s));
        report("stat /pub/moved", stat("/pub/moved", &s));
    } else if (!strcmp(a, "setuid")) {
        /* argv[2]: where to make a set-user-ID copy of this program; then wait for SIGTERM. */
        report("copy", copy("/bin/hostile", argv[2]));
        report("chmod 4755", chmod(argv[2], 04755));
        struct stat s;
        if (stat(argv[2], &s) == 0) fprintf(out, "mode: %o\n", s.st_mode & 07777);
        fprintf(out, "ready\n");
        if (argc > 3) sleep(atoi(argv[3]));
    } else if (!strcmp(a, "fd-ops")) {
        /* fchown, fchmod and ftruncate on inherited descriptor argv[2] */
        int fd = atoi(argv[2]);
        report("fchown", fchown(fd, 1234, 1234));
        report("fchmod", fchmod(fd, 0777));
        report("ftruncate", ftruncate(fd, 0));
        int n = open("/dev/null", O_RDWR);
        report("fchown /dev/null", fchown(n, 1234, 1234));
        report("fchmod /dev/null", fchmod(n, 0600));
    } else if (!strcmp(a, "xattrs")) {
        /* user.* attributes aimed at host files: argv[2] is a host directory of decoys; stdout
           is one of them. Links to host paths, /proc/self/fd of an inherited descriptor, the
           descriptor itself, and the image's own file (copied up, never changed in place). */
        char target[4096];
        snprintf(target, sizeof target, "%s/secret", argv[2]);
        report("symlink to the host decoy", symlink(target, "/tmp/evil"));
        report("setxattr through it", setxattr("/tmp/evil", "user.pwned", "1", 1, 0));
        report("lsetxattr on it", lsetxattr("/tmp/evil", "user.pwned", "1", 1, 0));
        report("setxattr host path", setxattr(target, "user.pwned", "1", 1, 0));
        report("setxattr ../ out", setxattr("/../../../../../../../../../../../..", "user.pwned",
                                            "1", 1, 0));
        report("fsetxattr stdout", fsetxattr(1, "user.pwned", "1", 1, 0));
        report("setxattr /proc/self/fd/1", setxattr("/proc/self/fd/1", "user.pwned", "1", 1, 0));
        report("setxattr /dev/stdout", setxattr("/dev/stdout", "user.pwned", "1", 1, 0));
        report("image's file before", getxattr("/etc/passwd", "user.guest", target, 8));
        report("trusted on the image's file", setxattr("/etc/passwd", "trusted.x", "1", 1, 0));
        report("user on the image's file", setxattr("/etc/passwd", "user.guest", "1", 1, 0));
        char v[8];
        long n = getxattr("/etc/passwd", "user.guest", v, sizeof v);
        report("read back", n == 1 && v[0] == '1' ? 0 : -1);
    } else if (!strcmp(a, "reopen")) {
        /* open argv[2] for argv[3] (r, w = write+truncate, a = append) and write to it */
        int flags = argv[3][0] == 'w' ? O_WRONLY | O_TRUNC : argv[3][0] == 'a'
                    ? O_WRONLY | O_APPEND : O_RDONLY;
        int fd = open(argv[2], flags);
        report(argv[2], fd);
        if (fd >= 0 && flags != O_RDONLY) report("write", write(fd, "GUEST-WROTE\n", 12));
    } else if (!strcmp(a, "tty")) {
        int fd = open("/dev/tty", O_RDWR);
        report("open /dev/tty", fd);
        if (fd >= 0) {
            struct termios t;
            tcgetattr(fd, &t);
            t.c_lflag &= ~ECHO;
            report("tcsetattr -echo", tcsetattr(fd, TCSANOW, &t));
            report("isatty 0", isatty(0) ? 0 : -1);
        }
    } else if (!strcmp(a, "fill")) {
        /* write argv[2] MiB to /tmp/fill */
        static char buf[1 << 20];
        memset(buf, 'x', sizeof buf);
        int fd = open("/tmp/fill", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int mib = 0;
        for (; mib < atoi(argv[2]); mib++)
            if (write(fd, buf, sizeof buf) != sizeof buf) break;
        if (mib < atoi(argv[2])) report("write", -1);
        fprintf(out, "wrote %d MiB\n", mib);
        struct statfs f;
        if (statfs("/tmp", &f) == 0)
            fprintf(out, "size %lld MiB\n", (long long)f.f_blocks * f.f_bsize >> 20);
    } else if (!strcmp(a, "children-alloc")) {
        /* argv[2] children each allocate (and touch) up to argv[3] MiB in 1 MiB steps */
        int n = atoi(argv[2]), mib = atoi(argv[3]);
        int pipes[2];
        pid_t kids[64];
        pipe(pipes);
        for (int i = 0; i < n && i < 64; i++) {
            if ((kids[i] = fork()) == 0) {
                int got = 0;
                for (; got < mib; got++) {
                    char *p = malloc(1 << 20);
                    if (!p) break;
                    memset(p, got, 1 << 20);
                }
                write(pipes[1], &got, sizeof got);
                pause();
            }
        }
        int total = 0, reported = 0, status;
        while (reported < n) {
            struct pollfd pfd = {pipes[0], POLLIN, 0};
            if (poll(&pfd, 1, 100) == 1) {
                int got;
                read(pipes[0], &got, sizeof got);
                total += got;
                reported++;
            } else if (waitpid(-1, &status, WNOHANG) > 0) {   /* killed before it reported */
                fprintf(out, "a child ended otherwise: %x\n", status);
                reported++;
            }
        }
        fprintf(out, "total %d MiB\n", total);
        for (int i = 0; i < n && i < 64; i++) {
            int status;
            kill(kids[i], SIGTERM);
            waitpid(kids[i], &status, 0);
            if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGTERM)
                fprintf(out, "child %d ended otherwise: %x\n", i, status);
        }
    } else if (!strcmp(a, "copyup")) {
        /* touch /tree/dNNN/f for NNN < argv[2]: one directory copy-up each */
        char p[64];
        int ok = 0;
        for (int i = 0; i < atoi(argv[2]); i++) {
            snprintf(p, sizeof p, "/tree/d%03d/f", i);
            int fd = open(p, O_WRONLY | O_APPEND);
            if (fd >= 0) { write(fd, "x", 1); close(fd); ok++; }
        }
        fprintf(out, "copied up %d\n", ok);
    } else if (!strcmp(a, "getpid")) {
        long r = syscall(SYS_getpid);
        fprintf(out, "getpid: %ld %s\n", r, r < 0 ? strerror(errno) : "");
    } else if (!strcmp(a, "sleep")) {
        int fd = open("/tmp/marker", O_WRONLY | O_CREAT, 0644);
        write(fd, "GUEST-FILE\n", 11);
        close(fd);
        fprintf(out, "ready\n");
        sleep(atoi(argv[2]));
    }
    return 0;
}
"""
