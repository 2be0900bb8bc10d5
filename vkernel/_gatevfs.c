/* Plain paths looked up in C, as vkernel/lookup.py's QuickLookups does (for vkernel/_gatefds.c's
 * opens and the gate's newfstatat).
 *
 * A plain path is absolute (or relative to the working directory, joined as Kernel.guest_path
 * joins it) and made of ordinary names, outside every mount and what ProcFs serves. Its merged
 * view is the upper layer's entry when the upper layer holds every component (all but the last
 * as directories), else the rootfs's; each layer is asked with openat2
 * RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS, so a symlink anywhere -- and any
 * name another process swaps for one -- sends the call to Python's walk, never out of the
 * layer. Only a success is answered here; anything else is Python's. */
#include "_gate.h"

#include <errno.h>
#include <stdio.h>
#include <linux/openat2.h>

#define PLAIN_LOOKUP (RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
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
    if (flags & O_PATH)
        return open_in(root, rel, flags);
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

/* QuickLookups._open_direct: a host fd for plain `path` opened with `flags` when it is a
 * regular file (with O_PATH: whatever it is, a final symlink itself), or -1 (the walk, or
 * Python's open of anything else, decides). A top-level
 * symlink of the rootfs is followed by looking its target's path up again (a loop, not a
 * recursion: the gate runs on the guest thread's stack). */
int gate_lookup(struct vfs *v, const char *path, int flags) {
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

/* The guest path at `pathp` (relative ones joined to the working directory, AT_FDCWD only),
 * into `out`; 0 when Python must decide. */
int gate_guest_path(const struct gate *g, uint64_t dirfd, uint64_t pathp, char *out) {
    const struct fdref *r = g->fds;
    if (r == NULL || !guest_cstring(g, pathp, out))
        return 0;
    if (out[0] == '/')
        return 1;                     /* (an absolute path's dirfd plays no part) */
    size_t n = strlen(out), c = r->cwd_len;
    while (c > 0 && r->cwd[c - 1] == '/')
        c--;
    if ((int32_t)(uint32_t)dirfd != AT_FDCWD || r->cwd_len == 0 || n == 0 ||
            c + 1 + n >= GUEST_PATH_MAX)
        return 0;
    memmove(out + c + 1, out, n + 1);
    memcpy(out, r->cwd, c);
    out[c] = '/';
    return 1;
}

/* newfstatat(dirfd, path, buf, flags) of a plain path (Vfs.stat's quick lookup, _direct): the
 * stat of what the lookup finds; a final symlink only with AT_SYMLINK_NOFOLLOW (one to follow
 * is Python's). In a process with one guest thread (the lookup keeps what it learns in struct
 * vfs). */
int64_t gate_stat(const struct gate *g, const uint64_t *f, int *served) {
    const struct fdref *r = g->fds;
    struct vfs *v = g->vfs;
    uint32_t flags = (uint32_t)f[4];
    if (r == NULL || !r->solo || v == NULL || !v->quick || (flags & ~(uint32_t)AT_SYMLINK_NOFOLLOW))
        return 0;
    char path[GUEST_PATH_MAX];
    uint8_t *out = guest_range(g, f[3], sizeof(struct stat));
    if (out == NULL || !gate_guest_path(g, f[1], f[2], path))
        return 0;
    int h = gate_lookup(v, path, O_PATH | O_NOFOLLOW);
    if (h < 0)
        return 0;
    struct stat st;
    int ok = fstat(h, &st) == 0 && !(S_ISLNK(st.st_mode) && !(flags & AT_SYMLINK_NOFOLLOW));
    close(h);
    if (!ok)
        return 0;
    memcpy(out, &st, sizeof st);      /* the guest's struct stat is the host's (statinfo.py) */
    return done(0, served);
}
