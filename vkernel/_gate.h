/* What vkernel/_gate.c (the syscall gate) and vkernel/_gatefds.c (the fds it opens and closes)
 * share. The structures are laid out as vkernel/gate.py and vkernel/fdtable.py declare them
 * with ctypes; a change here bumps KILN_GATE_VERSION (and gate.py's VERSION). */
#ifndef KILN_GATE_H
#define KILN_GATE_H

#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#define KILN_GATE_VERSION 3
#define MAX_RW_COUNT 0x7FFFF000ULL
#define MAX_IOVECS 1024           /* UIO_MAXIOV */
#define EPOLL_EVENT_SIZE 12
#define EPOLL_MAXEVENTS (0x7FFFFFFF / EPOLL_EVENT_SIZE)
#define GUEST_PATH_MAX 4096       /* vkernel/syscalls/args.py path_arg */

/* Kinds of file, as the gate learns them (fd map bits 32-39; 0: not looked at yet). */
enum { KIND_UNKNOWN = 0, KIND_NEVER_BLOCKS = 1, KIND_SOCKET = 2, KIND_OTHER = 3,
       KIND_DIRECTORY = 4 };  /* a directory never blocks either; lseek on one is Python's */
#define ENTRY_SPECIAL (1LL << 40)   /* vkernel handles the file specially: no epoll_ctl here */
#define ENTRY_STREAM (1LL << 41)    /* a stream socket: recvfrom without an address is a recv */
#define ENTRY_GATE (1LL << 42)      /* the gate opened it; Python has no OpenFile for it yet */

/* A guest fd the gate opened (vkernel/_gatefds.c), until Python adopts it. */
enum { OWNED_NONE = 0, OWNED_FILE = 1, OWNED_ACCEPTED = 2 };
struct owned {
    char *path;               /* OWNED_FILE: the guest path (malloc'd; freed when adopted) */
    int32_t flags;            /* the open file's flags, as OpenFile.flags */
    int32_t listener;         /* OWNED_ACCEPTED: the listening guest fd */
    uint8_t what;             /* OWNED_* */
    uint8_t cloexec;
    uint8_t published;        /* OWNED_ACCEPTED: from a --publish host socket */
    uint8_t pad[5];
};

/* A listening socket whose connections the gate may accept: its guest fd, its host fd and the
 * --publish host sockets tried first, all non-blocking and of the guest socket's family. */
#define LISTENER_PUBLISHED 6
struct listener {
    int32_t fd;               /* -1: unused */
    int32_t host;
    int32_t n;
    int32_t published[LISTENER_PUBLISHED];
    int32_t pad;
};

#define GATE_OWNED_FDS 4096      /* the gate opens guest fds below this */
#define GATE_LISTENERS 8

/* Per fd table (vkernel/fdtable.py GateTable): what the gate may add to it. */
struct table {
    uint64_t limit;           /* RLIMIT_NOFILE: guest fds stay below it */
    uint64_t owned_count;     /* fds the gate opened that Python has not adopted */
    uint64_t owned_start;     /* every such fd is at or above this */
    uint64_t owned_end;       /* and below this */
    struct listener listeners[GATE_LISTENERS];
    struct owned owned[GATE_OWNED_FDS];
};

struct fdref {                /* per process: its current fd table */
    int64_t *map;
    uint64_t len;
    struct table *tab;
    uint64_t solo;            /* 1: one guest thread uses the table (the gate may change it) */
    uint64_t cwd_len;         /* the process's working directory, as Kernel.guest_path joins */
    char cwd[GUEST_PATH_MAX]; /* a relative path to it (0: unknown, no relative opens here) */
};

/* The process's file tree (vkernel/vfs.py): what a plain path's lookup needs. */
#define VFS_MOUNTS_BYTES 2048
#define VFS_TOP_LINKS 16
struct toplink {
    char name[64];            /* "" unused */
    char target[192];         /* "" : not a symlink */
};
struct vfs {
    int32_t upper_fd;
    int32_t lower_fd;
    int32_t whiteouts;        /* 1 once the upper layer's whiteout marker was seen */
    int32_t quick;            /* 0: no lookup here (mounts that do not fit, ...) */
    char marker[32];          /* vkernel/hostfs.py WHITEOUT_MARKER */
    char mounts[VFS_MOUNTS_BYTES];   /* the mounts' guest paths, each NUL-ended, then "" */
    struct toplink links[VFS_TOP_LINKS];   /* rootfs /NAME -> its symlink target, as found */
};

typedef void *(*slow_fn)(void *env);     /* the Python handler: a trap, or NULL */

struct gate {
    uint8_t *ctl;             /* control memory (memory 1); NULL: not bound, all slow */
    uint8_t *guest;           /* guest memory 0 */
    uint64_t guest_size;
    uint64_t guard_end;       /* guest addresses below this fault (the null guard) */
    uint64_t frame_off;       /* the syscall frame in the control memory */
    uint64_t intr_off;        /* the interrupt flag in the control memory */
    struct fdref *fds;        /* the process's fd map */
    uint64_t served[8];       /* bit n: syscall n (< 512) may be served here */
    slow_fn slow;             /* the Python handler (vkernel/instances.py _gate_slow) */
    void *slow_env;
    uint64_t fast_calls;      /* served here */
    uint64_t slow_calls;      /* handed to Python */
    uint64_t wait_slice_ns;   /* a private futex wait here sleeps this long at most */
    struct vfs *vfs;          /* the process's file tree; NULL: no opens here */
};

/* The host address of guest bytes [addr, addr + n), or NULL when Python would fault. */
static inline uint8_t *guest_range(const struct gate *g, uint64_t addr, uint64_t n) {
    addr &= 0xFFFFFFFFULL;
    if (addr < g->guard_end || n > g->guest_size || addr + n > g->guest_size)
        return NULL;
    return g->guest + addr;
}

/* The host fd of guest fd `fd` (its low 32 bits, signed, as s32 in Python), or -1. */
static inline int host_fd(const struct gate *g, uint64_t fd, int64_t *entry, int32_t *slot) {
    const struct fdref *r = g->fds;
    int32_t gfd = (int32_t)(uint32_t)fd;
    if (r == NULL || r->map == NULL || gfd < 0 || (uint64_t)gfd >= r->len)
        return -1;
    int64_t e = __atomic_load_n(&r->map[gfd], __ATOMIC_ACQUIRE);
    if (e == 0)
        return -1;
    *entry = e;
    *slot = gfd;
    return (int)((e & 0xFFFFFFFFLL) - 1);
}

/* A host call's result as the gate's: a success is served (the guest gets it); a failure
 * leaves the call to Python, which makes it again. */
static inline int64_t done(int64_t r, int *served) {
    if (r < 0)
        return 0;
    *served = 1;
    return r;
}

/* vkernel/_gatevfs.c */
int gate_guest_path(const struct gate *g, uint64_t dirfd, uint64_t pathp, char *out);
int gate_lookup(struct vfs *v, const char *path, int flags);
int64_t gate_stat(const struct gate *g, const uint64_t *f, int *served);

/* vkernel/_gatefds.c */
int64_t gate_open(const struct gate *g, uint64_t dirfd, uint64_t path, uint64_t flags,
                  int *served);
int64_t gate_close(const struct gate *g, uint64_t fd, int *served);
int64_t gate_accept(const struct gate *g, const uint64_t *f, int *served);
int64_t gate_fcntl(const struct gate *g, const uint64_t *f, int *served);

#endif
