/* Extended attributes in the user namespace, as a user checks them: set, get, list and remove on
   files, directories, symbolic links, FIFOs and descriptors, the flags, the errors. argv[1] is a
   file that existed before the run (under kiln: one of the image's own). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

static void said(const char *what, long r) {
    if (r < 0) printf("%s: %s\n", what, strerror(errno));
    else printf("%s: %ld\n", what, r);
}

static void get(const char *what, const char *path, const char *name, int follow) {
    char buf[256];
    ssize_t n = follow ? getxattr(path, name, buf, sizeof buf) : lgetxattr(path, name, buf, sizeof buf);
    if (n < 0) printf("%s: %s\n", what, strerror(errno));
    else printf("%s: %zd '%.*s'\n", what, n, (int)n, buf);
}

static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }

static void list(const char *what, const char *path) {
    char buf[1024], *names[64];
    ssize_t want = listxattr(path, NULL, 0);
    ssize_t n = listxattr(path, buf, sizeof buf);
    if (n < 0) { printf("%s: %s\n", what, strerror(errno)); return; }
    int k = 0;
    for (char *p = buf; p < buf + n && k < 64; p += strlen(p) + 1)
        if (strncmp(p, "user.", 5) == 0) names[k++] = p;   /* the host may add security.* */
    qsort(names, k, sizeof *names, cmp);
    printf("%s: size query %s, %d user names:", what, want == n ? "agrees" : "differs", k);
    for (int i = 0; i < k; i++) printf(" %s", names[i]);
    printf("\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    close(open("f", O_CREAT | O_WRONLY, 0644));
    mkdir("d", 0755);
    symlink("d", "l");
    mkfifo("p", 0644);

    said("set f user.a", setxattr("f", "user.a", "one", 3, 0));
    said("size of f user.a", getxattr("f", "user.a", NULL, 0));
    get("get f user.a", "f", "user.a", 1);
    char tiny[1];
    said("get into 1 byte", getxattr("f", "user.a", tiny, 1));
    said("create existing", setxattr("f", "user.a", "two", 3, XATTR_CREATE));
    said("replace missing", setxattr("f", "user.zz", "two", 3, XATTR_REPLACE));
    said("replace", setxattr("f", "user.a", "three", 5, XATTR_REPLACE));
    get("get replaced", "f", "user.a", 1);
    said("empty value", setxattr("f", "user.empty", "", 0, 0));
    get("get empty", "f", "user.empty", 1);
    said("bad flags", setxattr("f", "user.a", "x", 1, 4));
    list("list f", "f");
    said("remove", removexattr("f", "user.a"));
    said("remove again", removexattr("f", "user.a"));
    get("get removed", "f", "user.a", 1);
    get("no namespace", "f", "plain", 1);
    get("an ACL", "f", "system.posix_acl_access", 1);
    char longname[301] = "user.";
    memset(longname + 5, 'a', 295);
    said("too long a name", getxattr("f", longname, NULL, 0));
    static char big[70000];
    said("too big a value", setxattr("f", "user.big", big, sizeof big, 0));
    get("missing file", "nothere", "user.a", 1);

    said("set d user.dir", setxattr("d", "user.dir", "D", 1, 0));
    get("get d through the link", "l", "user.dir", 1);
    get("lget the link", "l", "user.dir", 0);
    said("lset the link", lsetxattr("l", "user.x", "1", 1, 0));
    list("list through the link", "l");
    said("set on a FIFO", setxattr("p", "user.x", "1", 1, 0));

    int fd = open("f", O_RDWR);
    said("fset", fsetxattr(fd, "user.fd", "via fd", 6, 0));
    char buf[64];
    ssize_t n = fgetxattr(fd, "user.fd", buf, sizeof buf);
    printf("fget: %zd '%.*s'\n", n, n > 0 ? (int)n : 0, buf);
    said("flist size", flistxattr(fd, NULL, 0));
    said("fremove", fremovexattr(fd, "user.fd"));
    said("fremove again", fremovexattr(fd, "user.fd"));
    close(fd);
    int pfd[2];
    pipe(pfd);
    said("fset on a pipe", fsetxattr(pfd[1], "user.x", "1", 1, 0));

    const char *base = argv[1];
    get("shipped file before", base, "user.b", 1);
    said("set shipped file", setxattr(base, "user.b", "bee", 3, 0));
    get("shipped file after", base, "user.b", 1);
    list("list shipped file", base);
    FILE *in = fopen(base, "r");
    char line[64] = "";
    if (in) { fgets(line, sizeof line, in); fclose(in); }
    printf("shipped file still reads: %s", line);
    return 0;
}
