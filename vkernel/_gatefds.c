/* The fds the native syscall gate opens and closes itself (vkernel/_gate.c dispatches here).
 *
 * A server's request is accept4, open, fstat, write or sendfile, close, close: the gate served
 * the middle calls already; these are the rest, so a request no longer enters Python. Only in
 * a process with one guest thread (struct fdref's solo, kept by vkernel/process.py), and only
 * in the plain case:
 *
 *   - open/openat of a plain path read-only, a regular file (vkernel/_gatevfs.c finds it as
 *     QuickLookups._open_direct does);
 *   - accept4 on a listening socket with --publish host sockets (struct listener, which
 *     vkernel/fdtable.py fills for such a socket), when one of them has a connection;
 *   - close of an fd the gate opened, and its F_GETFD and F_SETFD.
 *
 * The new guest fd is the lowest free one, as FdTable.lowest_free finds it. Python has no
 * OpenFile for it yet: its map entry carries ENTRY_GATE and struct owned says what it is. Before
 * any Python handler runs, vkernel/gatefds.py adopts every such fd into the table (the same
 * OpenFile the Python handler would have made); a close here of an fd never adopted ends it.
 * Anything else -- a failure, a path the walk must decide, no free fd below GATE_OWNED_FDS --
 * is Python's, which runs the call from the start (nothing was changed: a file opened here is
 * closed again). */
#include "_gate.h"

#include <errno.h>
#include <stdlib.h>
#include <netinet/in.h>

#define KERNEL_O_LARGEFILE 0100000
/* Open flags served here besides O_RDONLY: none changes what the lookup finds. */
#define OPEN_FLAGS_OK (O_NONBLOCK | O_CLOEXEC | KERNEL_O_LARGEFILE | O_NOCTTY | O_NOFOLLOW)

/* The lowest free guest fd the gate may open, or -1 (FdTable.lowest_free). */
static int lowest_free(const struct fdref *r) {
    uint64_t end = r->len < r->tab->limit ? r->len : r->tab->limit;
    if (end > GATE_OWNED_FDS)
        end = GATE_OWNED_FDS;
    for (uint64_t fd = 0; fd < end; fd++)
        if (__atomic_load_n(&r->map[fd], __ATOMIC_ACQUIRE) == 0)
            return (int)fd;
    return -1;
}

/* Whether the gate may change this process's fd table now. */
static int may_change(const struct fdref *r) {
    return r != NULL && r->map != NULL && r->tab != NULL && r->solo;
}

static void own(const struct fdref *r, int fd, int h, int64_t bits, const struct owned *rec) {
    struct table *t = r->tab;
    t->owned[fd] = *rec;
    if (t->owned_count++ == 0 || (uint64_t)fd < t->owned_start)
        t->owned_start = (uint64_t)fd;
    if ((uint64_t)fd + 1 > t->owned_end)
        t->owned_end = (uint64_t)fd + 1;
    __atomic_store_n(&r->map[fd], (int64_t)(h + 1) | ENTRY_GATE | bits, __ATOMIC_RELEASE);
}

/* open(2) (dirfd AT_FDCWD) and openat(2) (vkernel/_gatevfs.c finds the file). */
int64_t gate_open(const struct gate *g, uint64_t dirfd, uint64_t pathp, uint64_t flags_arg,
                  int *served) {
    const struct fdref *r = g->fds;
    struct vfs *v = g->vfs;
    int flags = (int)(int32_t)(uint32_t)flags_arg;
    if (!may_change(r) || v == NULL || !v->quick || (flags & O_ACCMODE) != O_RDONLY ||
            (flags & ~OPEN_FLAGS_OK) != 0)
        return 0;
    char path[GUEST_PATH_MAX];
    if (!gate_guest_path(g, dirfd, pathp, path))
        return 0;
    int fd = lowest_free(r);
    if (fd < 0)
        return 0;
    int h = gate_lookup(v, path, flags & ~O_CLOEXEC);
    if (h < 0)
        return 0;
    struct stat st;
    char *copy = NULL;
    if (fstat(h, &st) < 0 || !S_ISREG(st.st_mode) || (copy = strdup(path)) == NULL) {
        close(h);                     /* (swapped since the look with O_PATH): Python's */
        return 0;
    }
    struct owned rec = {.path = copy, .flags = flags & ~O_CLOEXEC, .what = OWNED_FILE,
                        .cloexec = (flags & O_CLOEXEC) != 0};
    own(r, fd, h, (int64_t)KIND_NEVER_BLOCKS << 32, &rec);
    return done(fd, served);
}

/* close(2) of an fd the gate opened and Python never adopted. */
int64_t gate_close(const struct gate *g, uint64_t fd_arg, int *served) {
    const struct fdref *r = g->fds;
    int32_t fd = (int32_t)(uint32_t)fd_arg;
    if (!may_change(r) || fd < 0 || fd >= GATE_OWNED_FDS || (uint64_t)fd >= r->len)
        return 0;
    int64_t e = __atomic_load_n(&r->map[fd], __ATOMIC_ACQUIRE);
    if (!(e & ENTRY_GATE))
        return 0;
    struct owned *o = &r->tab->owned[fd];
    __atomic_store_n(&r->map[fd], 0, __ATOMIC_RELEASE);
    free(o->path);
    memset(o, 0, sizeof *o);
    r->tab->owned_count--;
    close((int)((e & 0xFFFFFFFFLL) - 1));       /* (an error still closes it: Python's too) */
    return done(0, served);
}

/* fcntl(2) F_GETFD and F_SETFD of an fd the gate opened (its host fd is close-on-exec
 * whatever the guest asks, as every vkernel host fd: the record keeps the guest's flag). musl
 * follows each open with O_CLOEXEC by an F_SETFD. */
int64_t gate_fcntl(const struct gate *g, const uint64_t *f, int *served) {
    const struct fdref *r = g->fds;
    int32_t fd = (int32_t)(uint32_t)f[1], cmd = (int32_t)(uint32_t)f[2];
    if (!may_change(r) || fd < 0 || fd >= GATE_OWNED_FDS || (uint64_t)fd >= r->len ||
            (cmd != F_GETFD && cmd != F_SETFD))
        return 0;
    if (!(__atomic_load_n(&r->map[fd], __ATOMIC_ACQUIRE) & ENTRY_GATE))
        return 0;
    struct owned *o = &r->tab->owned[fd];
    if (cmd == F_GETFD)
        return done(o->cloexec ? FD_CLOEXEC : 0, served);
    o->cloexec = (f[3] & FD_CLOEXEC) != 0;
    return done(0, served);
}

/* accept(2) (f[4] = 0) and accept4(2) on a listening socket of struct listener. */
int64_t gate_accept(const struct gate *g, const uint64_t *f, int *served) {
    const struct fdref *r = g->fds;
    int64_t e;
    int32_t slot;
    int lh = may_change(r) ? host_fd(g, f[1], &e, &slot) : -1;
    if (lh < 0 || !(e & ENTRY_SPECIAL))
        return 0;
    const struct listener *l = NULL;
    for (int i = 0; i < GATE_LISTENERS && l == NULL; i++)
        if (r->tab->listeners[i].fd == slot && r->tab->listeners[i].host == lh)
            l = &r->tab->listeners[i];
    int flags = (int)(int32_t)(uint32_t)f[4];
    if (l == NULL || l->n > LISTENER_PUBLISHED || (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)))
        return 0;
    /* The address out-arguments are checked before a connection is taken: once accepted, the
     * call must be served here. */
    uint8_t *lenp = NULL, *name = NULL;
    uint32_t room = 0;
    if (f[2] != 0) {
        if ((lenp = guest_range(g, f[3], 4)) == NULL)
            return 0;
        int32_t given;
        memcpy(&given, lenp, 4);
        if (given < 0)
            return 0;
        room = (uint32_t)given;
        uint32_t most = room < sizeof(struct sockaddr_in6) ? room : sizeof(struct sockaddr_in6);
        if (most && (name = guest_range(g, f[2], most)) == NULL)
            return 0;
    }
    int fd = lowest_free(r);
    if (fd < 0)
        return 0;
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    int got = -1, from_published = 0;
    for (int i = 0; i <= l->n && got < 0; i++) {      /* the published host sockets first */
        salen = sizeof sa;
        got = accept4(i < l->n ? l->published[i] : l->host, (struct sockaddr *)&sa, &salen,
                      SOCK_CLOEXEC | (flags & SOCK_NONBLOCK));
        if (got >= 0)
            from_published = i < l->n;
        else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            return 0;
    }
    if (got < 0)
        return 0;                     /* none waiting: Python waits or says EAGAIN */
    if (lenp != NULL) {
        uint32_t n = salen < room ? salen : room;
        if (n > sizeof(struct sockaddr_in6))
            n = sizeof(struct sockaddr_in6);
        if (n)
            memcpy(name, &sa, n);
        uint32_t full = salen;
        memcpy(lenp, &full, 4);
    }
    struct owned rec = {.flags = O_RDWR | (flags & SOCK_NONBLOCK), .listener = slot,
                        .what = OWNED_ACCEPTED, .cloexec = (flags & SOCK_CLOEXEC) != 0,
                        .published = (uint8_t)from_published};
    own(r, fd, got, ENTRY_STREAM | ((int64_t)KIND_SOCKET << 32), &rec);
    return done(fd, served);
}

/* Python has adopted guest fd `fd` (vkernel/gatefds.py): its record goes. */
void kiln_gate_release(struct table *t, int fd) {
    if (fd < 0 || fd >= GATE_OWNED_FDS)
        return;
    free(t->owned[fd].path);
    memset(&t->owned[fd], 0, sizeof t->owned[fd]);
}
