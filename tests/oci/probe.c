/* What an OCI runtime gave this process, printed the same way under runc and kiln-oci:
 * arguments, chosen environment variables, working directory, ids, hostname, the
 * RLIMIT_NOFILE limits, the capability sets and no_new_privs, whether / and /run are
 * writable, what a bound directory holds.
 * Exits with the number given by $PROBE_EXIT (default 0). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

static void try_write(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        printf("write %s: %s\n", path, strerror(errno));
        return;
    }
    int ok = write(fd, "x\n", 2) == 2;
    close(fd);
    printf("write %s: %s\n", path, ok ? "ok" : strerror(errno));
}

int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    const char *names[] = {"PATH", "PROBE_VAR", "HOME", NULL};
    for (int i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        printf("%s=%s\n", names[i], v ? v : "(unset)");
    }
    char cwd[4096];
    printf("cwd=%s\n", getcwd(cwd, sizeof cwd) ? cwd : strerror(errno));
    printf("uid=%d gid=%d euid=%d\n", (int)getuid(), (int)getgid(), (int)geteuid());
    struct utsname u;
    uname(&u);
    printf("hostname=%s\n", u.nodename);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    printf("nofile=%llu/%llu\n", (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
    FILE *st = fopen("/proc/self/status", "r");
    char sline[256];
    while (st && fgets(sline, sizeof sline, st))
        if (!strncmp(sline, "Cap", 3) || !strncmp(sline, "NoNewPrivs", 10))
            printf("%s", sline);
    if (st)
        fclose(st);
    try_write("/probe-root-file");
    try_write("/run/probe-run-file");
    DIR *d = opendir("/data");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                printf("/data has %s\n", e->d_name);
        closedir(d);
        FILE *f = fopen("/data/hello.txt", "r");
        char line[256];
        if (f && fgets(line, sizeof line, f))
            printf("/data/hello.txt: %s", line);
        if (f)
            fclose(f);
    } else {
        printf("/data: %s\n", strerror(errno));
    }
    fflush(stdout);
    const char *code = getenv("PROBE_EXIT");
    return code ? atoi(code) : 0;
}
