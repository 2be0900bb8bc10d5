/* The fds the native syscall gate opens and closes itself (vkernel/_gate.c dispatches here).
 *
 * A server's request is accept4, open, fstat, write or sendfile, close, close: the gate served
 * the middle calls already; these are the rest, so a request no longer enters Python. Only in
 * a process with one guest thread (struct fdref's solo, kept by vkernel/process.py), and only
 * in the plain case:
 *
 *   - open/openat of a plain path (vkernel/lookup.py's: absolute or from the working directory, ordinary names, outside every
 *     mount and what ProcFs serves) read-only, found by QuickLookups._open_direct's lookup done
 *     here the same way (each layer asked with openat2 RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS), a
 *     regular file (looked at with O_PATH before it is opened: opening a FIFO or a device is
 *     not without effect);
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
#include <stdio.h>
#include <stdlib.h>
#include <linux/openat2.h>
#include <netinet/in.h>

#define PLAIN_LOOKUP (RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
#define KERNEL_O_LARGEFILE 0100000
/* Open flags served here besides O_RDONLY: none changes what the lookup finds. */
#define OPEN_FLAGS_OK (O_NONBLOCK | O_CLOEXEC | KERNEL_O_LARGEFILE | O_NOCTTY | O_NOFOLLOW)
#define MAX_LINKS 40

/* A guest C string of at most GUEST_PATH_MAX bytes with its NUL, copied to `out`; 0 when
 * Python must decide (NULL, outside guest memory, too long). */
static int guest_cstring(const struct gate *g, uint64_t addr, char *out) {
    uint64_t a = addr & 0xFFFFFFFFULL;
    if (addr == 0 || a < g->guard_end || a >= g->guest_size)
        return 0;
    uint64_t room = g->guest_size - a;
    if (room > GUEST_PATH_MAX)
        room = GUEST_PATH_MAX;
    const uint8_t *p = g->guest + a;
    const uint8_t *z = memchr(p, 0, room);
    if (z == NULL)
        return 0;
    memcpy(out, p, (size_t)(z - p) + 1);
    return 1;
}

static int under(const char *p, size_t n, const char *m) {
    size_t mn = strlen(m);
    return n >= mn && memcmp(p, m, mn) == 0 && (n == mn || p[mn] == '/');
}

/* Whether absolute `p` is plain (vkernel/lookup.py QuickLookups._plain): ordinary names (no
 * empty, "." or ".." component, none starting with the whiteout prefix), outside every mount,
 * and nothing ProcFs.lookup or ProcFs.device serves (/proc..., /dev/...). */
static int plain(const struct vfs *v, const char *p) {
    size_t n = strlen(p);
    if (n < 2 || p[0] != '/' || strncmp(p, "/proc", 5) == 0 || strncmp(p, "/dev/", 5) == 0)
        return 0;
    for (size_t i = 1; i <= n;) {
        size_t j = i;
        while (j < n && p[j] != '/')
            j++;
        size_t len = j - i;
        if (len == 0 || (len == 1 && p[i] == '.') || (len == 2 && p[i] == '.' && p[i + 1] == '.') ||
                (len >= 4 && memcmp(p + i, ".wh.", 4) == 0))
            return 0;
        i = j + 1;
    }
    for (const char *m = v->mounts; *m; m += strlen(m) + 1)
        if (under(p, n, m))
            return 0;
    return 1;
}

/* openat2(root, path, flags, PLAIN_LOOKUP), as vkernel/hostfs.py openat2_in_root. */
static int open_in(int root, const char *rel, int flags) {
    struct open_how how = {.flags = (uint64_t)(uint32_t)(flags | O_CLOEXEC), .mode = 0,
                           .resolve = PLAIN_LOOKUP};
    return (int)syscall(SYS_openat2, root, *rel ? rel : ".", &how, sizeof how);
}

/* `rel` in layer `root` opened with `flags` when it is a regular file, else -1: errno ENOENT
 * when the layer lacks it (the lookup goes on), another errno for the walk. It is found with
 * O_PATH first, which has no side effect: opening a FIFO waits for a writer (or releases one
 * that waits for a reader), a device may act on its open. */
static int open_regular(int root, const char *rel, int flags) {
    int p = open_in(root, rel, O_PATH);
    if (p < 0)
        return -1;
    struct stat st;
    int regular = fstat(p, &st) == 0 && S_ISREG(st.st_mode);
    close(p);
    if (!regular) {
        errno = EINVAL;               /* (not ENOENT: Python's walk decides) */
        return -1;
    }
    return open_in(root, rel, flags);
}

/* Vfs._has_whiteouts: 1 when the upper layer has a whiteout (or that is unknown). */
static int has_whiteouts(struct vfs *v) {
    if (v->whiteouts)
        return 1;
    struct stat st;
    if (fstatat(v->upper_fd, v->marker, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        v->whiteouts = 1;
        return 1;
    }
    return errno != ENOENT;
}

/* QuickLookups._lower_top_link: rootfs entry /name is a symlink to `target` (1), no symlink or
 * missing (0), unknown (-1). Kept in v->links: the rootfs never changes. */
static int top_link(struct vfs *v, const char *name, char *target, size_t size) {
    struct toplink *slot = NULL;
    for (int i = 0; i < VFS_TOP_LINKS; i++) {
        struct toplink *t = &v->links[i];
        if (t->name[0] == 0) {
            if (slot == NULL)
                slot = t;
        } else if (strcmp(t->name, name) == 0) {
            if (strlen(t->target) >= size)
                return -1;
            strcpy(target, t->target);
            return target[0] != 0;
        }
    }
    struct stat st;
    target[0] = 0;
    if (fstatat(v->lower_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
            ssize_t r = readlinkat(v->lower_fd, name, target, size);
            if (r <= 0 || (size_t)r >= size)
                return -1;
            target[r] = 0;
        }
    } else if (errno != ENOENT) {
        return -1;
    }
    if (slot != NULL && strlen(name) < sizeof slot->name && strlen(target) < sizeof slot->target) {
        strcpy(slot->target, target);
        strcpy(slot->name, name);
    }
    return target[0] != 0;
}

/* QuickLookups._upper_part's answer "the upper layer lacks the path from some component on,
 * and has directories before it" (1); 0 for anything else (it has the whole path, a file or
 * symlink on the way: not this lookup's). `rel` has at least two components; `first` is the
 * upper layer's lstat of the first. */
static int upper_lacks(const struct vfs *v, const char *rel, const struct stat *first) {
    if (!S_ISDIR(first->st_mode))
        return 0;
    char buf[GUEST_PATH_MAX];
    strcpy(buf, rel);
    char *comp = buf, *sl = strchr(comp, '/');
    *sl = 0;
    int fd = openat(v->upper_fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int lacks = 0;
    for (;;) {
        comp = sl + 1;
        sl = strchr(comp, '/');
        if (sl != NULL)
            *sl = 0;
        int step = sl == NULL ? O_PATH | O_NOFOLLOW : O_PATH | O_DIRECTORY | O_NOFOLLOW;
        int nfd = openat(fd, comp, step | O_CLOEXEC);
        if (nfd < 0) {
            lacks = errno == ENOENT;
            break;
        }
        close(fd);
        fd = nfd;
        if (sl == NULL)
            break;                    /* the upper layer has it all */
    }
    close(fd);
    return lacks;
}

/* QuickLookups._open_direct for a regular file: a host fd for plain `path`, or -1 (the walk,
 * or Python's open of anything else, decides). A top-level
 * symlink of the rootfs is followed by looking its target's path up again (a loop, not a
 * recursion: the gate runs on the guest thread's stack). */
static int open_direct(struct vfs *v, const char *path, int flags) {
    char cur[GUEST_PATH_MAX];
    if (strlen(path) >= sizeof cur)
        return -1;
    strcpy(cur, path);
    for (int links = 0;; links++) {
        if (!plain(v, cur))
            return -1;
        const char *rel = cur + 1, *rest = strchr(rel, '/');
        char first[256];
        size_t flen = rest != NULL ? (size_t)(rest - rel) : strlen(rel);
        if (flen >= sizeof first)
            return -1;
        memcpy(first, rel, flen);
        first[flen] = 0;
        struct stat fst;
        int have_first = fstatat(v->upper_fd, first, &fst, AT_SYMLINK_NOFOLLOW) == 0;
        if (!have_first && errno != ENOENT)
            return -1;
        if (have_first) {
            int fd = open_regular(v->upper_fd, rel, flags);
            if (fd >= 0 || errno != ENOENT)
                return fd;            /* (a symlink, a file on the way, no permission: walk) */
        }
        if (has_whiteouts(v))
            return -1;
        if (have_first) {
            if (rest == NULL || !upper_lacks(v, rel, &fst))
                return -1;
        } else if (rest != NULL) {
            char target[sizeof v->links[0].target];
            int link = top_link(v, first, target, sizeof target);
            if (link < 0)
                return -1;
            if (link) {               /* /lib -> usr/lib in a merged-/usr image */
                if (links >= MAX_LINKS)
                    return -1;
                const char *t = target;
                while (*t == '/')
                    t++;
                char next[GUEST_PATH_MAX];
                int w = snprintf(next, sizeof next, "/%s%s", t, rest);
                if (w < 0 || (size_t)w >= sizeof next)
                    return -1;
                strcpy(cur, next);
                continue;
            }
        }
        return open_regular(v->lower_fd, rel, flags);
    }
}

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

/* open(2) (dirfd AT_FDCWD) and openat(2): an absolute path's dirfd plays no part; a relative
 * one is taken from the working directory (AT_FDCWD only), joined as Kernel.guest_path joins
 * it, and must then be plain. */
int64_t gate_open(const struct gate *g, uint64_t dirfd, uint64_t pathp, uint64_t flags_arg,
                  int *served) {
    const struct fdref *r = g->fds;
    struct vfs *v = g->vfs;
    int flags = (int)(int32_t)(uint32_t)flags_arg;
    (void)dirfd;
    if (!may_change(r) || v == NULL || !v->quick || (flags & O_ACCMODE) != O_RDONLY ||
            (flags & ~OPEN_FLAGS_OK) != 0)
        return 0;
    char path[GUEST_PATH_MAX];
    if (!guest_cstring(g, pathp, path))
        return 0;
    if (path[0] != '/') {             /* relative to the working directory (Kernel.guest_path) */
        size_t n = strlen(path), c = r->cwd_len;
        int32_t at = (int32_t)(uint32_t)dirfd;
        while (c > 0 && r->cwd[c - 1] == '/')
            c--;
        if (at != AT_FDCWD || r->cwd_len == 0 || n == 0 || c + 1 + n >= sizeof path)
            return 0;
        memmove(path + c + 1, path, n + 1);
        memcpy(path, r->cwd, c);
        path[c] = '/';
    }
    int fd = lowest_free(r);
    if (fd < 0)
        return 0;
    int h = open_direct(v, path, flags & ~O_CLOEXEC);
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
