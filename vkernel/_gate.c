/* The native syscall gate: vkernel's syscall import, with its most frequent calls served in C.
 *
 * Wasmtime calls kiln_gate for every guest syscall (the core module's `syscall` import). The
 * gate serves a call itself only in the plain case the Python handler would serve the same way
 * (vkernel/syscalls/fs.py, events.py, fdops.py, time.py): the same host syscall on the same host
 * fd with the same guest buffer, and a result that is a success. Everything else -- an errno,
 * an argument out of the guest's memory, an fd vkernel treats specially, a syscall the gate
 * does not know, a pending interrupt, a gate not bound yet -- goes to the Python handler, which
 * is the reference: it runs the call again from the start (a failed call changed nothing).
 *
 * What the gate reads is written by vkernel/gate.py and vkernel/fdtable.py:
 *   - struct gate (one per store, so one per guest thread): the control memory, guest memory 0
 *     and its bounds, the syscall numbers served, and the Python callback for the rest;
 *   - struct fdref (one per process): the fd table's map, guest fd -> host fd + 1 with what the
 *     gate learned of the file (bits 32-39) and whether vkernel treats it specially (bit 40);
 *     its struct table and struct vfs (vkernel/_gate.h) for the fds the gate opens itself in a
 *     process with one guest thread (vkernel/_gatefds.c).
 *
 * Every guest address is checked against guest memory 0 before use, as AddressSpace._check
 * does; nothing here allocates, and nothing writes outside guest memory 0, the frame's rax
 * slot, the fd map's kind bits and the gate's counters (vkernel/_gatefds.c says what it adds).
 * No Python API: the gate runs without the GIL, so guest threads make these syscalls in
 * parallel. */
#include "_gate.h"

int kiln_gate_version(void) { return KILN_GATE_VERSION; }
size_t kiln_gate_size(void) { return sizeof(struct gate); }
/* The other structures' sizes, checked against vkernel/gate.py's and fdtable.py's ctypes. */
size_t kiln_gate_sizes(int which) {
    switch (which) {
    case 0: return sizeof(struct fdref);
    case 1: return sizeof(struct table);
    case 2: return sizeof(struct vfs);
    default: return 0;
    }
}

static int kind_of(const struct gate *g, int32_t slot, int h, int64_t e) {
    int kind = (int)((e >> 32) & 0xFF);
    if (kind != KIND_UNKNOWN)
        return kind;
    struct stat st;
    if (fstat(h, &st) < 0)
        return KIND_UNKNOWN;
    if (S_ISDIR(st.st_mode))
        kind = KIND_DIRECTORY;
    else if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))
        kind = KIND_NEVER_BLOCKS;
    else if (S_ISSOCK(st.st_mode))
        kind = KIND_SOCKET;
    else
        kind = KIND_OTHER;
    /* Remember it unless the entry changed meanwhile (closed, replaced). */
    int64_t want = e | ((int64_t)kind << 32);
    __atomic_compare_exchange_n(&g->fds->map[slot], &e, want, 0, __ATOMIC_RELEASE,
                                __ATOMIC_RELAXED);
    return kind;
}

/* Whether a read from host fd `h` would not block now: what sys_read's wait for a pipe, tty
 * or socket would find at once. Sockets are read with MSG_DONTWAIT instead. */
static int readable_now(int h) {
    struct pollfd p = {.fd = h, .events = POLLIN | POLLPRI};
    return poll(&p, 1, 0) == 1;
}

static int64_t do_read(const struct gate *g, const uint64_t *f, int *served) {
    int64_t e; int32_t slot;
    int h = host_fd(g, f[1], &e, &slot);
    if (h < 0)
        return 0;
    uint64_t count = f[3];
    if (count == 0)
        return done(0, served);
    uint64_t room = 0x100000000ULL - (f[2] & 0xFFFFFFFFULL);
    uint64_t n = count < MAX_RW_COUNT ? count : MAX_RW_COUNT;
    n = n < room ? n : room;
    uint8_t *p = guest_range(g, f[2], n);
    if (p == NULL)
        return 0;
    ssize_t r;
    switch (kind_of(g, slot, h, e)) {
    case KIND_NEVER_BLOCKS: case KIND_DIRECTORY: r = read(h, p, n); break;
    case KIND_SOCKET: r = recv(h, p, n, MSG_DONTWAIT); break;
    case KIND_OTHER: r = readable_now(h) ? read(h, p, n) : -1; break;
    default: return 0;
    }
    return done(r, served);
}

static int64_t do_write(const struct gate *g, const uint64_t *f, int *served) {
    int64_t e; int32_t slot;
    int h = host_fd(g, f[1], &e, &slot);
    if (h < 0)
        return 0;
    uint64_t n = f[3] < MAX_RW_COUNT ? f[3] : MAX_RW_COUNT;
    if (n == 0)
        return done(0, served);
    uint8_t *p = guest_range(g, f[2], n);
    if (p == NULL)
        return 0;
    return done(write(h, p, n), served);   /* EPIPE (SIGPIPE), EINTR, EAGAIN...: Python's */
}

/* lseek of anything but a directory (whose position is vkernel's: getdents64 is Python's). */
static int64_t do_lseek(const struct gate *g, const uint64_t *f, int *served) {
    int64_t e; int32_t slot;
    int h = host_fd(g, f[1], &e, &slot);
    int kind = h < 0 ? KIND_UNKNOWN : kind_of(g, slot, h, e);
    if (kind == KIND_UNKNOWN || kind == KIND_DIRECTORY)
        return 0;
    return done(lseek(h, (off_t)f[2], (int)(int32_t)(uint32_t)f[3]), served);
}

/* pread64 and pwrite64: the whole buffer must be guest memory, as for the Python handler. */
static int64_t do_pread_pwrite(const struct gate *g, const uint64_t *f, int *served, int writing) {
    int64_t e; int32_t slot;
    int h = host_fd(g, f[1], &e, &slot);
    if (h < 0 || (int64_t)f[4] < 0)
        return 0;
    if (f[3] == 0)
        return done(0, served);
    uint8_t *p = guest_range(g, f[2], f[3]);
    if (p == NULL)
        return 0;
    return done(writing ? pwrite(h, p, f[3], (off_t)f[4]) : pread(h, p, f[3], (off_t)f[4]), served);
}

/* Guest iovecs as host ones (zero-length ones left out, as vkernel/syscalls/args.py iovecs):
 * how many, or -1 when Python must decide (a bad count or address). */
static int host_iovecs(const struct gate *g, uint64_t iov, uint64_t cnt_arg, struct iovec *out) {
    int32_t cnt = (int32_t)(uint32_t)cnt_arg;
    if (cnt < 0 || cnt > MAX_IOVECS)
        return -1;
    const uint8_t *raw = guest_range(g, iov, 16ULL * (uint64_t)cnt);
    if (raw == NULL)
        return -1;
    int n = 0;
    for (int i = 0; i < cnt; i++) {
        uint64_t base, len;
        memcpy(&base, raw + 16 * i, 8);
        memcpy(&len, raw + 16 * i + 8, 8);
        if (len == 0)
            continue;
        uint8_t *p = guest_range(g, base, len);
        if (p == NULL)
            return -1;
        out[n].iov_base = p;
        out[n].iov_len = len;
        n++;
    }
    return n;
}

/* readv and writev: the fd and host iovecs; n == 0 (nothing to move) is served as 0. */
#define VECTORS()                                          \
    int64_t e; int32_t slot;                               \
    int h = host_fd(g, f[1], &e, &slot);                   \
    struct iovec v[MAX_IOVECS];                            \
    int n = h < 0 ? -1 : host_iovecs(g, f[2], f[3], v);    \
    if (n < 0)                                             \
        return 0;                                          \
    if (n == 0)                                            \
        return done(0, served)

static int64_t do_readv(const struct gate *g, const uint64_t *f, int *served) {
    VECTORS();
    int kind = kind_of(g, slot, h, e);
    if (kind == KIND_UNKNOWN ||
            (kind != KIND_NEVER_BLOCKS && kind != KIND_DIRECTORY && !readable_now(h)))
        return 0;
    ssize_t r = readv(h, v, n);
    return done(r, served);
}

static int64_t do_writev(const struct gate *g, const uint64_t *f, int *served) {
    VECTORS();
    (void)e; (void)slot;
    ssize_t r = writev(h, v, n);
    return done(r, served);
}

static int64_t do_sendfile(const struct gate *g, const uint64_t *f, int *served) {
    int64_t e1, e2; int32_t s1, s2;
    int out = host_fd(g, f[1], &e1, &s1), in = host_fd(g, f[2], &e2, &s2);
    if (out < 0 || in < 0)
        return 0;
    size_t count = f[4] < MAX_RW_COUNT ? f[4] : MAX_RW_COUNT;
    ssize_t r;
    if (f[3] != 0) {
        uint8_t *p = guest_range(g, f[3], 8);
        if (p == NULL)
            return 0;
        off_t off;
        memcpy(&off, p, 8);
        if (off < 0)
            return 0;
        r = sendfile(out, in, &off, count);
        if (r >= 0)
            memcpy(p, &off, 8);
    } else {
        r = sendfile(out, in, NULL, count);
    }
    return done(r, served);
}

static int64_t do_recvfrom(const struct gate *g, const uint64_t *f, int *served) {
    int64_t e; int32_t slot;
    int h = host_fd(g, f[1], &e, &slot);
    if (h < 0 || !(e & ENTRY_STREAM) || (int32_t)(uint32_t)f[4] != 0 || f[5] != 0)
        return 0;
    uint64_t n = f[3] < MAX_RW_COUNT ? f[3] : MAX_RW_COUNT;
    uint8_t *p = guest_range(g, f[2], n);
    if (p == NULL)
        return 0;
    ssize_t r = recv(h, p, n, MSG_DONTWAIT);
    return done(r, served);
}

static int64_t fstat_into(const struct gate *g, uint64_t fd, uint64_t statbuf, int *served) {
    int64_t e; int32_t slot;
    int h = host_fd(g, fd, &e, &slot);
    uint8_t *p = guest_range(g, statbuf, sizeof(struct stat));
    /* The guest's struct stat is the host's (x86-64), padding zeroed by the kernel as by
     * statinfo.py's pack_stat. */
    if (h < 0 || p == NULL || fstat(h, (struct stat *)p) < 0)
        return 0;
    return done(0, served);
}

static int64_t do_fstat(const struct gate *g, const uint64_t *f, int *served) {
    return fstat_into(g, f[1], f[2], served);
}

/* newfstatat(fd, "", buf, AT_EMPTY_PATH): an fstat; a plain path: vkernel/_gatevfs.c's. */
static int64_t do_newfstatat(const struct gate *g, const uint64_t *f, int *served) {
    const uint8_t *path = f[2] ? guest_range(g, f[2], 1) : NULL;
    if (path != NULL && *path != 0)
        return gate_stat(g, f, served);
    if (path == NULL || !(f[4] & AT_EMPTY_PATH) || (int32_t)(uint32_t)f[1] == AT_FDCWD)
        return 0;
    return fstat_into(g, f[1], f[3], served);
}

static int64_t do_epoll_wait(const struct gate *g, const uint64_t *f, int *served) {
    int64_t e; int32_t slot;
    int h = host_fd(g, f[1], &e, &slot);
    if (h < 0)
        return 0;
    int32_t maxevents = (int32_t)(uint32_t)f[3];
    if (maxevents <= 0 || maxevents > EPOLL_MAXEVENTS)
        return 0;
    uint8_t *p = guest_range(g, f[2], (uint64_t)EPOLL_EVENT_SIZE * (uint64_t)maxevents);
    if (p == NULL)
        return 0;
    int r = epoll_wait(h, (struct epoll_event *)p, maxevents, 0);
    /* Events, or none with a zero timeout; a wait that would block is Python's (signals). */
    if (r == 0 && (int32_t)(uint32_t)f[4] != 0)
        return 0;
    return done(r, served);
}

static int64_t do_epoll_ctl(const struct gate *g, const uint64_t *f, int *served) {
    int64_t e1, e2; int32_t s1, s2;
    int ep = host_fd(g, f[1], &e1, &s1), h = host_fd(g, f[3], &e2, &s2);
    if (ep < 0 || h < 0 || (e2 & ENTRY_SPECIAL))
        return 0;
    int32_t op = (int32_t)(uint32_t)f[2];
    if (op != EPOLL_CTL_ADD && op != EPOLL_CTL_DEL && op != EPOLL_CTL_MOD)
        return 0;
    struct epoll_event *ev = NULL;
    if (op != EPOLL_CTL_DEL) {
        ev = (struct epoll_event *)guest_range(g, f[4], EPOLL_EVENT_SIZE);
        if (ev == NULL)
            return 0;
    }
    return done(epoll_ctl(ep, op, h, ev), served);
}

static int64_t do_clock_gettime(const struct gate *g, const uint64_t *f, int *served) {
    uint8_t *p = guest_range(g, f[2], 16);
    struct timespec ts;
    if (p == NULL || clock_gettime((clockid_t)(int32_t)(uint32_t)f[1], &ts) < 0)
        return 0;
    int64_t out[2] = {ts.tv_sec, ts.tv_nsec};
    memcpy(p, out, 16);
    return done(0, served);
}

static int64_t do_gettimeofday(const struct gate *g, const uint64_t *f, int *served) {
    uint8_t *tv = f[1] ? guest_range(g, f[1], 16) : NULL, *tz = f[2] ? guest_range(g, f[2], 8) : NULL;
    struct timespec ts;
    if ((f[1] && tv == NULL) || (f[2] && tz == NULL) || clock_gettime(CLOCK_REALTIME, &ts) < 0)
        return 0;
    if (tv) {
        int64_t out[2] = {ts.tv_sec, ts.tv_nsec / 1000};
        memcpy(tv, out, 16);
    }
    if (tz)
        memset(tz, 0, 8);
    return done(0, served);
}

static int64_t do_time(const struct gate *g, const uint64_t *f, int *served) {
    uint8_t *p = f[1] ? guest_range(g, f[1], 8) : NULL;
    struct timespec ts;
    if ((f[1] && p == NULL) || clock_gettime(CLOCK_REALTIME, &ts) < 0)
        return 0;
    int64_t t = ts.tv_sec;
    if (p)
        memcpy(p, &t, 8);
    return done(t, served);
}

/* futex(2). A private WAIT without a timeout sleeps one slice here, as the Python handler's
 * first slice (vkernel/syscalls/futex.py): woken, it returns 0; anything else (the word
 * differs, the slice ended, a host signal) is Python's, which waits again in slices and sees
 * guest signals between them. A shared wait is Python's: a waiter another process requeues
 * must stay asleep in one host call. */
enum { FUTEX_WAIT_ = 0, FUTEX_WAIT_BITSET_ = 9, FUTEX_WAKE_ = 1, FUTEX_REQUEUE_ = 3, FUTEX_CMP_REQUEUE_ = 4, FUTEX_WAKE_OP_ = 5,
       FUTEX_WAKE_BITSET_ = 10, FUTEX_PRIVATE_ = 128, FUTEX_CLOCK_REALTIME_ = 256 };

static int64_t do_futex(const struct gate *g, const uint64_t *f, int *served) {
    int32_t op = (int32_t)(uint32_t)f[2];
    int32_t cmd = op & ~(FUTEX_PRIVATE_ | FUTEX_CLOCK_REALTIME_);
    if ((op & FUTEX_CLOCK_REALTIME_) || (f[1] & 3))
        return 0;
    uint8_t *word = guest_range(g, f[1], 4);
    if (word == NULL)
        return 0;
    long val = (long)(f[3] & 0xFFFFFFFFULL), val3 = (long)(f[6] & 0xFFFFFFFFULL), r;
    if ((cmd == FUTEX_WAIT_ || cmd == FUTEX_WAIT_BITSET_) && (op & FUTEX_PRIVATE_) && f[4] == 0) {
        long bitset = cmd == FUTEX_WAIT_BITSET_ ? val3 : -1L;
        struct timespec end;
        if ((bitset & 0xFFFFFFFFL) == 0 || g->wait_slice_ns == 0 ||
                clock_gettime(CLOCK_MONOTONIC, &end) < 0)
            return 0;
        uint64_t ns = (uint64_t)end.tv_nsec + g->wait_slice_ns;
        end.tv_sec += (time_t)(ns / 1000000000ULL);
        end.tv_nsec = (long)(ns % 1000000000ULL);
        r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET_ | FUTEX_PRIVATE_, val, &end, NULL,
                    bitset & 0xFFFFFFFFL);
    } else if (cmd == FUTEX_WAKE_ || cmd == FUTEX_WAKE_BITSET_) {
        r = syscall(SYS_futex, word, op, val, NULL, NULL, val3);
    } else if (cmd == FUTEX_REQUEUE_ || cmd == FUTEX_CMP_REQUEUE_ || cmd == FUTEX_WAKE_OP_) {
        uint8_t *word2 = (f[5] & 3) ? NULL : guest_range(g, f[5], 4);
        if (word2 == NULL)
            return 0;
        /* val2 (how many to requeue, or to wake on the second word) is the timeout argument */
        r = syscall(SYS_futex, word, cmd | (op & FUTEX_PRIVATE_), val,
                    (void *)(uintptr_t)(f[4] & 0xFFFFFFFFULL), word2, val3);
    } else {
        return 0;
    }
    return done(r, served);
}

/* Syscall numbers (x86-64). */
enum { NR_READ = 0, NR_WRITE = 1, NR_OPEN = 2, NR_CLOSE = 3, NR_STAT = 4, NR_FSTAT = 5,
       NR_LSTAT = 6, NR_LSEEK = 8,
       NR_PREAD64 = 17, NR_ACCEPT = 43, NR_ACCEPT4 = 288, NR_OPENAT = 257, NR_FCNTL = 72,
       NR_PWRITE64 = 18, NR_READV = 19, NR_WRITEV = 20,
       NR_SCHED_YIELD = 24, NR_SENDFILE = 40, NR_RECVFROM = 45, NR_FUTEX = 202,
       NR_GETTIMEOFDAY = 96, NR_TIME = 201, NR_CLOCK_GETTIME = 228, NR_EPOLL_WAIT = 232,
       NR_EPOLL_CTL = 233, NR_NEWFSTATAT = 262, NR_EPOLL_PWAIT = 281 };

static int64_t serve(const struct gate *g, const uint64_t *f, int *served) {
    uint64_t nr = f[0];
    if (nr >= 512 || !(g->served[nr >> 6] >> (nr & 63) & 1))
        return 0;
    switch (nr) {
    case NR_READ: return do_read(g, f, served);
    case NR_WRITE: return do_write(g, f, served);
    case NR_OPEN: return gate_open(g, (uint64_t)(int64_t)AT_FDCWD, f[1], f[2], served);
    case NR_OPENAT: return gate_open(g, f[1], f[2], f[3], served);
    case NR_CLOSE: return gate_close(g, f[1], served);
    case NR_FCNTL: return gate_fcntl(g, f, served);
    case NR_ACCEPT4: return gate_accept(g, f, served);
    case NR_ACCEPT: {
        uint64_t three[5] = {f[0], f[1], f[2], f[3], 0};   /* accept has no flags argument */
        return gate_accept(g, three, served);
    }
    case NR_FSTAT: return do_fstat(g, f, served);
    case NR_STAT: case NR_LSTAT: {        /* newfstatat(AT_FDCWD, path, buf, 0 or NOFOLLOW) */
        uint64_t at[5] = {NR_NEWFSTATAT, (uint64_t)(int64_t)AT_FDCWD, f[1], f[2],
                          f[0] == NR_LSTAT ? AT_SYMLINK_NOFOLLOW : 0};
        return gate_stat(g, at, served);
    }
    case NR_LSEEK: return do_lseek(g, f, served);
    case NR_PREAD64: return do_pread_pwrite(g, f, served, 0);
    case NR_PWRITE64: return do_pread_pwrite(g, f, served, 1);
    case NR_NEWFSTATAT: return do_newfstatat(g, f, served);
    case NR_READV: return do_readv(g, f, served);
    case NR_WRITEV: return do_writev(g, f, served);
    case NR_SENDFILE: return do_sendfile(g, f, served);
    case NR_RECVFROM: return do_recvfrom(g, f, served);
    case NR_FUTEX: return do_futex(g, f, served);
    case NR_SCHED_YIELD: return done(sched_yield(), served);
    case NR_GETTIMEOFDAY: return do_gettimeofday(g, f, served);
    case NR_TIME: return do_time(g, f, served);
    case NR_CLOCK_GETTIME: return do_clock_gettime(g, f, served);
    case NR_EPOLL_WAIT: return do_epoll_wait(g, f, served);
    case NR_EPOLL_PWAIT: return f[5] == 0 ? do_epoll_wait(g, f, served) : 0;
    case NR_EPOLL_CTL: return do_epoll_ctl(g, f, served);
    default: return 0;
    }
}

/* wasmtime_func_callback_t: the syscall import. */
void *kiln_gate(void *env, void *caller, const void *args, size_t nargs, void *results,
                size_t nresults) {
    struct gate *g = env;
    if (g->ctl != NULL &&
        __atomic_load_n((uint32_t *)(g->ctl + g->intr_off), __ATOMIC_ACQUIRE) == 0) {
        uint64_t *f = (uint64_t *)(g->ctl + g->frame_off);
        int served = 0;
        int64_t r = serve(g, f, &served);
        if (served) {
            f[0] = (uint64_t)r;
            g->fast_calls++;
            return NULL;
        }
    }
    g->slow_calls++;
    return g->slow(g->slow_env);
}
