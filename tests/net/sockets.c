/* Sockets compared between Linux and vkernel: sockets NAME [ARGS]. Every line printed is a fact
   a program relies on; nothing depends on timing. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(x) do { if ((x) < 0) { printf("%s: %s\n", #x, strerror(errno)); exit(1); } } while (0)
#define SHOW(label, x) do { long r_ = (long)(x); int e_ = errno; \
    printf("%s: %ld%s%s\n", label, r_, r_ < 0 ? " " : "", r_ < 0 ? strerror(e_) : ""); } while (0)

static int pairs(void) {
    int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
    const char *names[] = {"stream", "dgram", "seqpacket"};
    for (int i = 0; i < 3; i++) {
        int sv[2]; CHECK(socketpair(AF_UNIX, types[i], 0, sv));
        write(sv[0], "abc", 3); write(sv[0], "defg", 4);
        char buf[16]; ssize_t a = read(sv[1], buf, sizeof buf);
        printf("%s: first read %zd\n", names[i], a);
        int t; socklen_t l = sizeof t; getsockopt(sv[1], SOL_SOCKET, SO_TYPE, &t, &l);
        printf("%s: SO_TYPE matches %d\n", names[i], t == types[i]);
        close(sv[0]);
        a = read(sv[1], buf, sizeof buf);
        printf("%s: after close %zd\n", names[i], a);
        close(sv[1]);
    }
    return 0;
}

static int named(int abstract) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    socklen_t len;
    if (abstract) {
        memcpy(a.sun_path, "\0kiln-test-abstract", 19);
        len = offsetof(struct sockaddr_un, sun_path) + 19;
    } else {
        strcpy(a.sun_path, "/tmp/kiln-test.sock");
        unlink(a.sun_path);
        len = sizeof a;
    }
    int s = socket(AF_UNIX, SOCK_STREAM, 0); CHECK(s);
    CHECK(bind(s, (void *)&a, len)); CHECK(listen(s, 4));
    SHOW("bind again", bind(socket(AF_UNIX, SOCK_STREAM, 0), (void *)&a, len));
    if (!abstract) {
        struct stat st; CHECK(stat(a.sun_path, &st));
        printf("path is a socket: %d\n", S_ISSOCK(st.st_mode));
    }
    pid_t c = fork();
    if (c == 0) {
        int k = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(connect(k, (void *)&a, len));
        write(k, "hello over unix\n", 16);
        _exit(0);
    }
    int k = accept(s, NULL, NULL); CHECK(k);
    char buf[64]; ssize_t r = read(k, buf, sizeof buf);
    printf("got %.*s", (int)r, buf);
    struct ucred cr; socklen_t l = sizeof cr;
    CHECK(getsockopt(k, SOL_SOCKET, SO_PEERCRED, &cr, &l));
    printf("peer is the child: %d\n", cr.pid == c);
    struct sockaddr_un got; l = sizeof got;
    getsockname(s, (void *)&got, &l);
    printf("name length %u, abstract %d\n", l, got.sun_path[0] == 0);
    waitpid(c, NULL, 0);
    if (!abstract) unlink(a.sun_path);
    return 0;
}

static int rights(void) {
    int sv[2]; CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    int f = open("/tmp/rights.txt", O_RDWR | O_CREAT | O_TRUNC, 0600); CHECK(f);
    write(f, "passed file\n", 12);
    char ctl[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec io = {.iov_base = "x", .iov_len = 1};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &f, sizeof f);
    CHECK(sendmsg(sv[0], &m, 0));
    close(f);
    char b; char rctl[CMSG_SPACE(sizeof(int))];
    struct iovec rio = {.iov_base = &b, .iov_len = 1};
    struct msghdr r = {.msg_iov = &rio, .msg_iovlen = 1, .msg_control = rctl, .msg_controllen = sizeof rctl};
    ssize_t n = recvmsg(sv[1], &r, MSG_CMSG_CLOEXEC);
    c = CMSG_FIRSTHDR(&r);
    printf("recvmsg %zd, rights %d\n", n, c && c->cmsg_type == SCM_RIGHTS);
    int g; memcpy(&g, CMSG_DATA(c), sizeof g);
    printf("cloexec %d\n", !!(fcntl(g, F_GETFD) & FD_CLOEXEC));
    char buf[32]; ssize_t k = pread(g, buf, sizeof buf, 0);
    printf("read through it: %.*s", (int)k, buf);
    unlink("/tmp/rights.txt");
    return 0;
}

static int tcp(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0); CHECK(s);
    int one = 1; CHECK(setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(s, (void *)&a, sizeof a)); CHECK(listen(s, 8));
    socklen_t l = sizeof a; getsockname(s, (void *)&a, &l);
    printf("bound to an ephemeral port: %d\n", ntohs(a.sin_port) != 0);
    pid_t c = fork();
    if (c == 0) {
        int k = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(connect(k, (void *)&a, sizeof a));
        CHECK(setsockopt(k, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
        for (int i = 0; i < 100; i++) dprintf(k, "line %d\n", i);
        shutdown(k, SHUT_WR);
        char buf[64]; ssize_t r = read(k, buf, sizeof buf);
        printf("child got back %.*s", (int)r, buf);
        _exit(0);
    }
    struct sockaddr_in peer; l = sizeof peer;
    int k = accept(s, (void *)&peer, &l); CHECK(k);
    printf("peer is loopback: %d\n", peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    long total = 0; char buf[4096]; ssize_t r;
    while ((r = read(k, buf, sizeof buf)) > 0) total += r;
    dprintf(k, "%ld bytes\n", total);
    close(k);
    waitpid(c, NULL, 0);
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int s6 = socket(AF_INET6, SOCK_STREAM, 0); CHECK(s6);
    SHOW("bind ::1", bind(s6, (void *)&a6, sizeof a6));
    return 0;
}

static int udp(void) {
    int s = socket(AF_INET, SOCK_DGRAM, 0); CHECK(s);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(s, (void *)&a, sizeof a));
    socklen_t l = sizeof a; getsockname(s, (void *)&a, &l);
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    for (int i = 0; i < 3; i++) {
        char m[16]; int n = snprintf(m, sizeof m, "dgram %d", i);
        CHECK(sendto(c, m, n, 0, (void *)&a, sizeof a));
    }
    for (int i = 0; i < 3; i++) {
        char buf[64]; struct sockaddr_in from; socklen_t fl = sizeof from;
        ssize_t r = recvfrom(s, buf, sizeof buf, 0, (void *)&from, &fl);
        printf("recvfrom %zd %.*s from loopback %d\n", r, (int)r, buf,
               from.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    }
    SHOW("nothing left", recv(s, (char[8]){0}, 8, MSG_DONTWAIT));
    return 0;
}

static int connect_to(const char *ip, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0); CHECK(s);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    if (connect(s, (void *)&a, sizeof a) < 0) { printf("connect: %s\n", strerror(errno)); return 1; }
    char buf[128]; ssize_t r = read(s, buf, sizeof buf);
    printf("connected, got %.*s", (int)(r > 0 ? r : 0), buf);
    return 0;
}

static int serve(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0); CHECK(s);
    int one = 1; setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    CHECK(bind(s, (void *)&a, sizeof a)); CHECK(listen(s, 4));
    printf("listening\n");
    int k = accept(s, NULL, NULL); CHECK(k);
    char buf[128]; ssize_t r = read(k, buf, sizeof buf);
    dprintf(k, "guest saw: %.*s", (int)(r > 0 ? r : 0), buf);
    close(k);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "pairs")) return pairs();
    if (!strcmp(w, "path")) return named(0);
    if (!strcmp(w, "abstract")) return named(1);
    if (!strcmp(w, "rights")) return rights();
    if (!strcmp(w, "tcp")) return tcp();
    if (!strcmp(w, "udp")) return udp();
    if (!strcmp(w, "connect") && argc == 4) return connect_to(argv[2], atoi(argv[3]));
    if (!strcmp(w, "serve") && argc == 3) return serve(atoi(argv[2]));
    printf("unknown %s\n", w);
    return 2;
}
