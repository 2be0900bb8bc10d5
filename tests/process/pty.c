/* Pseudo-terminals: /dev/ptmx and /dev/pts as a program in a container uses them.
 *
 * pty SCENARIO:
 *   basic     posix_openpt, grantpt, unlockpt, ptsname, the slave opened by name and
 *             by TIOCGPTPEER; bytes both ways through the line discipline (ICRNL, ONLCR,
 *             echo), raw mode, window size, TIOCGPTN against ptsname, isatty
 *   session   a child makes the slave its controlling terminal (setsid, TIOCSCTTY),
 *             opens /dev/tty, sees its window size; ^C written to the master
 *             interrupts it (SIGINT to the foreground process group), a line and EOF follow;
 *             the parent reads everything through the master and reaps it
 *   openpty   openpty() and forkpty() from libutil/libc
 *   list      what /dev/pts holds once one pty is open (a run's own devpts: that one)
 * Pty numbers differ between hosts, so they are compared, never printed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void drain(int fd, const char *what)
{
    char buf[512];
    ssize_t n, total = 0;
    char out[2048];
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        if (total + n < (ssize_t)sizeof out) {
            memcpy(out + total, buf, n);
            total += n;
        }
    }
    printf("%s: %zd bytes:", what, total);
    for (ssize_t i = 0; i < total; i++)
        printf(out[i] >= 32 && out[i] < 127 ? "%c" : "\\x%02x", (unsigned char)out[i]);
    printf(" (end: %s)\n", n == 0 ? "eof" : errno == EIO ? "EIO" : strerror(errno));
}

static void basic(void)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    printf("posix_openpt: %s\n", m >= 0 ? "ok" : strerror(errno));
    printf("grantpt %d unlockpt %d\n", grantpt(m), unlockpt(m));
    char *name = ptsname(m);
    unsigned n = 99;
    printf("TIOCGPTN: %d\n", ioctl(m, TIOCGPTN, &n));
    char want[32];
    snprintf(want, sizeof want, "/dev/pts/%u", n);
    printf("ptsname is /dev/pts/TIOCGPTN: %d\n", name && !strcmp(name, want));
    int s = open(name, O_RDWR | O_NOCTTY);
    printf("open slave: %s, isatty %d, master isatty %d\n", s >= 0 ? "ok" : strerror(errno),
           isatty(s), isatty(m));
    printf("ttyname is ptsname: %d\n", !strcmp(ttyname(s), name));
    struct winsize ws = {24, 80, 0, 0}, got = {0};
    int set = ioctl(m, TIOCSWINSZ, &ws);
    int get = ioctl(s, TIOCGWINSZ, &got);
    printf("TIOCSWINSZ %d TIOCGWINSZ %d -> %dx%d\n", set, get, got.ws_row, got.ws_col);
    if (write(m, "hello\r", 6) != 6)
        printf("write master failed\n");
    char buf[64] = {0};
    ssize_t r = read(s, buf, sizeof buf - 1);
    printf("slave read %zd: %s", r, buf);
    if (write(s, "back\n", 5) != 5)
        printf("write slave failed\n");
    usleep(100000);
    fcntl(m, F_SETFL, O_NONBLOCK);
    memset(buf, 0, sizeof buf);
    r = read(m, buf, sizeof buf - 1);
    printf("master read %zd:", r);
    for (ssize_t i = 0; i < r; i++)
        printf(buf[i] >= 32 ? "%c" : "\\x%02x", (unsigned char)buf[i]);
    printf("\n");
    struct termios t;
    tcgetattr(s, &t);
    printf("ECHO %d ICANON %d ONLCR %d\n", !!(t.c_lflag & ECHO), !!(t.c_lflag & ICANON),
           !!(t.c_oflag & ONLCR));
    cfmakeraw(&t);
    printf("tcsetattr raw: %d\n", tcsetattr(s, TCSANOW, &t));
    fcntl(m, F_SETFL, 0);
    if (write(m, "x\r", 2) != 2)
        printf("write master failed\n");
    memset(buf, 0, sizeof buf);
    r = read(s, buf, sizeof buf - 1);
    printf("raw read %zd: %02x %02x\n", r, (unsigned char)buf[0], (unsigned char)buf[1]);
    int peer = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    printf("TIOCGPTPEER: %s, same terminal %d\n", peer >= 0 ? "ok" : strerror(errno),
           peer >= 0 && !strcmp(ttyname(peer), name));
}

static volatile sig_atomic_t interrupted;
static void on_int(int sig) { interrupted = sig; }

static void session(void)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    grantpt(m);
    unlockpt(m);
    char name[64];
    snprintf(name, sizeof name, "%s", ptsname(m));
    struct winsize ws = {40, 100, 0, 0};
    ioctl(m, TIOCSWINSZ, &ws);
    pid_t pid = fork();
    if (pid == 0) {
        close(m);
        setsid();
        int s = open(name, O_RDWR);            /* a session leader's first tty: its ctty */
        if (ioctl(s, TIOCSCTTY, 0) != 0)
            printf("TIOCSCTTY: %s\n", strerror(errno));
        dup2(s, 0);
        dup2(s, 1);
        dup2(s, 2);
        if (s > 2)
            close(s);
        setvbuf(stdout, NULL, _IONBF, 0);
        int tty = open("/dev/tty", O_RDWR);
        struct winsize got = {0};
        ioctl(tty, TIOCGWINSZ, &got);
        printf("child: /dev/tty %s, %dx%d, foreground is me %d\n", tty >= 0 ? "ok" : strerror(errno),
               got.ws_row, got.ws_col, tcgetpgrp(0) == getpgrp());
        signal(SIGINT, on_int);
        printf("ready\n");
        char buf[64];
        ssize_t r = read(0, buf, sizeof buf);
        printf("child: read %zd (%.3s), interrupted by %d\n", r, r > 0 ? buf : "", interrupted);
        r = read(0, buf, sizeof buf);
        printf("child: read %zd (eof)\n", r);
        _exit(7);
    }
    char buf[256];
    size_t have = 0;
    while (have < sizeof buf - 1) {            /* wait for "ready" before the ^C */
        ssize_t r = read(m, buf + have, sizeof buf - 1 - have);
        if (r <= 0)
            break;
        have += r;
        buf[have] = 0;
        if (strstr(buf, "ready\r\n"))
            break;
    }
    printf("parent got: ");
    for (size_t i = 0; i < have; i++)
        printf(buf[i] >= 32 ? "%c" : "\\x%02x", (unsigned char)buf[i]);
    printf("\n");
    if (write(m, "\x03", 1) != 1)              /* ^C: SIGINT; the read goes on (SA_RESTART) */
        printf("write master failed\n");
    usleep(200000);
    if (write(m, "abc\n", 4) != 4 || write(m, "\x04", 1) != 1)    /* a line, then ^D */
        printf("write master failed\n");
    drain(m, "parent then got");
    int status;
    waitpid(pid, &status, 0);
    printf("child exit %d\n", WEXITSTATUS(status));
}

static void open_pty(void)
{
    int m, s;
    char name[64];
    struct winsize ws = {30, 90, 0, 0};
    printf("openpty: %d\n", openpty(&m, &s, name, NULL, &ws));
    printf("name is ttyname: %d\n", !strcmp(name, ttyname(s)));
    close(m);
    close(s);
    pid_t pid = forkpty(&m, NULL, NULL, &ws);
    if (pid == 0) {
        struct winsize got = {0};
        ioctl(0, TIOCGWINSZ, &got);
        printf("forkpty child: %dx%d, session leader %d\n", got.ws_row, got.ws_col,
               getsid(0) == getpid());
        _exit(0);
    }
    drain(m, "forkpty parent got");
    int status;
    waitpid(pid, &status, 0);
    printf("forkpty child exit %d\n", WEXITSTATUS(status));
}

static void list(void)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    grantpt(m);
    unlockpt(m);
    DIR *d = opendir("/dev/pts");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            printf("/dev/pts/%s\n", e->d_name);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *what = argc > 1 ? argv[1] : "basic";
    if (!strcmp(what, "basic"))
        basic();
    else if (!strcmp(what, "session"))
        session();
    else if (!strcmp(what, "openpty"))
        open_pty();
    else if (!strcmp(what, "list"))
        list();
    else
        return 2;
    return 0;
}
