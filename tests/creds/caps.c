/* Capabilities as a container's root has them, and Linux's rules that change them.
 *
 * caps SCENARIO, run as root with runc's default capability set (natively:
 * under setpriv --bounding-set; under Kiln: what every guest starts with).
 * Every scenario prints the sets as capget, prctl and /proc/self/status give
 * them, at each step; files are made in the current directory.
 *
 *   show        the sets, bounding set, securebits, no_new_privs, AT_SECURE
 *   drop        capset without CAP_DAC_OVERRIDE: another user's 0600 file is
 *               refused by the kernel; back in the effective set: readable;
 *               out of the permitted set: cannot come back
 *   setuid      setresuid to 1000 clears them; setuid back fails
 *   keepcaps    PR_SET_KEEPCAPS, then setresuid: permitted kept, effective
 *               cleared; CAP_SETUID raised again lets setuid(0) work
 *   ambient     an ambient CAP_NET_BIND_SERVICE survives setresuid and exec
 *   bounding    PR_CAPBSET_DROP CAP_NET_RAW, then exec: not permitted
 *   exec-user   setresuid to 1000 and exec: nothing
 *   suid        a set-user-ID root copy of this program, run by uid 1000:
 *               euid 0, the bounding set, AT_SECURE; under no_new_privs not
 *   threads     capabilities are each thread's: one thread's capset leaves the
 *               other's; an id change clears them in every thread
 *   race        uid 1000 tries to open root's 0600 file while another thread
 *               makes vkernel work as root (/proc reads): never allowed
 *   pdeathsig   PR_SET_PDEATHSIG: SIGUSR1 when the parent dies; an id change
 *               clears it
 *   errors      capset growing permitted, another pid, bad versions, ranges
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *self;

static int capget_(cap_user_header_t h, cap_user_data_t d) { return syscall(SYS_capget, h, d); }
static int capset_(cap_user_header_t h, cap_user_data_t d) { return syscall(SYS_capset, h, d); }

static void get(unsigned long long *eff, unsigned long long *prm, unsigned long long *inh)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (capget_(&h, d) != 0) {
        printf("capget: %s\n", strerror(errno));
        exit(1);
    }
    *eff = d[0].effective | (unsigned long long)d[1].effective << 32;
    *prm = d[0].permitted | (unsigned long long)d[1].permitted << 32;
    *inh = d[0].inheritable | (unsigned long long)d[1].inheritable << 32;
}

static int set(unsigned long long eff, unsigned long long prm, unsigned long long inh)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {
        {(unsigned)eff, (unsigned)prm, (unsigned)inh},
        {(unsigned)(eff >> 32), (unsigned)(prm >> 32), (unsigned)(inh >> 32)}};
    return capset_(&h, d) == 0 ? 0 : errno;
}

static void show(const char *when)
{
    unsigned long long eff, prm, inh, bnd = 0, amb = 0;
    get(&eff, &prm, &inh);
    int last = -1;
    for (int c = 0; c < 64; c++) {
        int r = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
        if (r < 0)
            break;
        last = c;
        if (r)
            bnd |= 1ULL << c;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0) == 1)
            amb |= 1ULL << c;
    }
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    printf("%s: uid %u/%u/%u eff %llx prm %llx inh %llx bnd %llx amb %llx last %d "
           "keep %d secbits %d nnp %d secure %lu\n", when, r, e, s, eff, prm, inh, bnd, amb,
           last, prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0), prctl(PR_GET_SECUREBITS, 0, 0, 0, 0),
           prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), getauxval(AT_SECURE));
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs", 10))
            printf("  %s", line);
    if (f)
        fclose(f);
}

static void try_read(const char *path)
{
    int fd = open(path, O_RDONLY);
    printf("open %s: %s\n", path, fd >= 0 ? "ok" : strerror(errno));
    if (fd >= 0)
        close(fd);
}

static void again(const char *scenario)
{
    fflush(stdout);
    execl(self, self, scenario, (char *)NULL);
    printf("exec: %s\n", strerror(errno));
    exit(1);
}

#define BIT(c) (1ULL << (c))

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int stage;

static void *dropper(void *arg)
{
    unsigned long long eff, prm, inh;
    get(&eff, &prm, &inh);
    printf("thread capset eff without dac: %d\n",
           set(eff & ~(BIT(CAP_DAC_OVERRIDE) | BIT(CAP_DAC_READ_SEARCH)), prm, inh));
    get(&eff, &prm, &inh);
    printf("thread eff %llx\n", eff);
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, getpid()};
    struct __user_cap_data_struct d[2];
    int r = capget_(&h, d);
    printf("capget of the main thread: %d eff %x\n", r, d[0].effective);
    h.pid = getpid();
    r = capset_(&h, d);
    printf("capset of the main thread: %d %s\n", r, r ? strerror(errno) : "");
    try_read("capfile");
    return arg;
}

static void *waiter(void *arg)
{
    unsigned long long eff, prm, inh;
    pthread_mutex_lock(&mu);
    get(&eff, &prm, &inh);
    printf("waiter before: eff %llx prm %llx\n", eff, prm);
    stage = 1;
    pthread_cond_broadcast(&cv);
    while (stage < 2)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    get(&eff, &prm, &inh);
    printf("waiter after: eff %llx prm %llx\n", eff, prm);
    return arg;
}

static volatile int reader_done;

static void *status_reader(void *arg)
{
    char buf[4096];
    for (int i = 0; i < 3000; i++) {
        int fd = open("/proc/self/status", O_RDONLY);
        if (fd >= 0) {
            while (read(fd, buf, sizeof buf) > 0)
                ;
            close(fd);
        }
    }
    reader_done = 1;
    return arg;
}

static volatile sig_atomic_t got;
static void on_usr1(int sig) { got = sig; }

int main(int argc, char **argv)
{
    self = "/proc/self/exe";
    const char *what = argc > 1 ? argv[1] : "show";
    unsigned long long eff, prm, inh;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(what, "show")) {
        show("show");
    } else if (!strcmp(what, "drop")) {
        int fd = open("capfile", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write(fd, "x\n", 2) != 2 || fchown(fd, 1000, 1000) != 0) {
            printf("capfile: %s\n", strerror(errno));
            return 1;
        }
        close(fd);
        try_read("capfile");
        get(&eff, &prm, &inh);
        unsigned long long dac = BIT(CAP_DAC_OVERRIDE) | BIT(CAP_DAC_READ_SEARCH);
        printf("capset eff without dac: %d\n", set(eff & ~dac, prm, inh));
        show("dropped");
        try_read("capfile");
        printf("capset eff back: %d\n", set(eff, prm, inh));
        try_read("capfile");
        printf("capset prm without dac: %d\n", set(eff & ~dac, prm & ~dac, inh));
        printf("capset prm back: %d\n", set(eff, prm, inh));
        try_read("capfile");
        show("after");
        unlink("capfile");
    } else if (!strcmp(what, "setuid")) {
        printf("setresuid 1000: %d\n", setresuid(1000, 1000, 1000));
        show("user");
        printf("setuid 0: %d %s\n", setuid(0), strerror(errno));
    } else if (!strcmp(what, "keepcaps")) {
        printf("keepcaps: %d\n", prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
        show("keep");
        printf("setresuid 1000: %d\n", setresuid(1000, 1000, 1000));
        show("user");
        get(&eff, &prm, &inh);
        printf("capset eff setuid: %d\n", set(BIT(CAP_SETUID), prm, inh));
        printf("setuid 0: %d\n", setuid(0));
        show("root again");
    } else if (!strcmp(what, "ambient")) {
        get(&eff, &prm, &inh);
        printf("raise without inh: %d %s\n",
               prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0),
               strerror(errno));
        printf("capset inh: %d\n", set(eff, prm, inh | BIT(CAP_NET_BIND_SERVICE)));
        printf("raise: %d\n", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0));
        printf("keepcaps: %d\n", prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
        printf("setresuid 1000: %d\n", setresuid(1000, 1000, 1000));
        show("user");
        printf("raise again: %d\n", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0));
        show("raised");
        again("show");
    } else if (!strcmp(what, "bounding")) {
        printf("drop net_raw: %d\n", prctl(PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0));
        printf("drop 64: %d %s\n", prctl(PR_CAPBSET_DROP, 64, 0, 0, 0), strerror(errno));
        show("dropped");
        again("show");
    } else if (!strcmp(what, "exec-user")) {
        printf("setresuid 1000: %d\n", setresuid(1000, 1000, 1000));
        again("show");
    } else if (!strcmp(what, "suid") || !strcmp(what, "suid-nnp")) {
        int in = open("/proc/self/exe", O_RDONLY), out = open("caps-suid", O_WRONLY | O_CREAT | O_TRUNC, 0755);
        char buf[65536];
        ssize_t n;
        while ((n = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, n) != n)
                return 1;
        close(in);
        close(out);
        printf("chmod 4755: %d\n", chmod("caps-suid", 04755));
        pid_t pid = fork();
        if (pid == 0) {
            if (!strcmp(what, "suid-nnp"))
                printf("nnp: %d\n", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
            printf("setresuid 1000: %d\n", setresuid(1000, 1000, 1000));
            self = "./caps-suid";
            again("show");
        }
        int status;
        waitpid(pid, &status, 0);
        printf("child: %d\n", WEXITSTATUS(status));
        unlink("caps-suid");
    } else if (!strcmp(what, "threads")) {
        int fd = open("capfile", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || fchown(fd, 1000, 1000) != 0)
            return 1;
        close(fd);
        pthread_t t;
        pthread_create(&t, NULL, dropper, NULL);
        pthread_join(t, NULL);
        get(&eff, &prm, &inh);
        printf("main eff %llx\n", eff);
        try_read("capfile");
        pthread_mutex_lock(&mu);
        pthread_create(&t, NULL, waiter, NULL);
        while (stage < 1)
            pthread_cond_wait(&cv, &mu);
        printf("setresuid 1000: %d\n", setresuid(1000, 1000, 1000));
        stage = 2;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        pthread_join(t, NULL);
        show("main after");
        unlink("capfile");
    } else if (!strcmp(what, "race")) {
        int fd = open("secret", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write(fd, "s\n", 2) != 2)
            return 1;
        close(fd);
        printf("setresuid 1000: %d\n", setresuid(1000, 1000, 1000));
        pthread_t t;
        pthread_create(&t, NULL, status_reader, NULL);
        long opened = 0, tries = 0;
        while (!reader_done) {
            int f = open("secret", O_RDONLY);
            tries++;
            if (f >= 0) {
                opened++;
                close(f);
            }
        }
        pthread_join(t, NULL);
        printf("secret opened by uid 1000: %ld times (%s)\n", opened, tries > 0 ? "tried" : "not tried");
        if (setresuid(0, 0, 0) == 0)
            unlink("secret");
    } else if (!strcmp(what, "pdeathsig")) {
        int out[2], ready[2];
        if (pipe(out) || pipe(ready))
            return 1;
        pid_t middle = fork();
        if (middle == 0) {
            pid_t c = fork();
            if (c == 0) {
                close(out[0]);
                close(ready[0]);
                dup2(out[1], 1);
                signal(SIGUSR1, on_usr1);
                int sig = -1;
                printf("set: %d\n", prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0));
                prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0);
                printf("get: %d\n", sig);
                if (write(ready[1], "r", 1) != 1)
                    _exit(1);
                while (!got)
                    pause();
                printf("got %d\n", got);
                printf("setresuid 1000: %d\n", setresuid(1000, 1000, 1000));
                prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0);
                printf("after setresuid: %d\n", sig);
                _exit(0);
            }
            char r;
            if (read(ready[0], &r, 1) != 1)
                _exit(1);
            _exit(0);                          /* the child's parent dies */
        }
        close(out[1]);
        close(ready[1]);
        waitpid(middle, NULL, 0);
        char buf[512];
        ssize_t n;
        while ((n = read(out[0], buf, sizeof buf)) > 0)
            fwrite(buf, 1, n, stdout);
    } else if (!strcmp(what, "errors")) {
        get(&eff, &prm, &inh);
        printf("drop setpcap: %d\n", set(eff & ~BIT(CAP_SETPCAP), prm & ~BIT(CAP_SETPCAP), inh));
        printf("grow prm: %d\n", set(eff, prm | BIT(CAP_SETPCAP), inh));
        printf("eff past prm: %d\n", set(eff, prm & ~BIT(CAP_SETPCAP), inh));
        printf("inh past prm: %d\n", set(eff & ~BIT(CAP_SETPCAP), prm & ~BIT(CAP_SETPCAP), BIT(CAP_SYS_ADMIN)));
        printf("bset drop no setpcap: %d %s\n", prctl(PR_CAPBSET_DROP, CAP_KILL, 0, 0, 0), strerror(errno));
        printf("securebits no setpcap: %d %s\n", prctl(PR_SET_SECUREBITS, 1, 0, 0, 0), strerror(errno));
        struct __user_cap_header_struct h = {0x12345678, 0};
        struct __user_cap_data_struct d[2];
        int r = capget_(&h, d);
        printf("bad version: %d %s %x\n", r, strerror(errno), h.version);
        h.version = 0x12345678;
        r = capget_(&h, NULL);
        printf("probe: %d %x\n", r, h.version);
        h.version = _LINUX_CAPABILITY_VERSION_1;
        memset(d, 0xff, sizeof d);
        r = capget_(&h, d);
        printf("v1: %d %x %x\n", r, d[0].permitted, d[1].permitted);
        h.version = _LINUX_CAPABILITY_VERSION_3;
        h.pid = getppid();
        r = capset_(&h, d);
        printf("capset parent: %d %s\n", r, strerror(errno));
        h.pid = -1;
        r = capget_(&h, d);
        printf("capget -1: %d %s\n", r, strerror(errno));
        printf("bset read 64: %d %s\n", prctl(PR_CAPBSET_READ, 64, 0, 0, 0), strerror(errno));
        printf("ambient bad op: %d %s\n", prctl(PR_CAP_AMBIENT, 9, 0, 0, 0), strerror(errno));
        printf("keepcaps 2: %d %s\n", prctl(PR_SET_KEEPCAPS, 2, 0, 0, 0), strerror(errno));
        printf("nnp 2: %d %s\n", prctl(PR_SET_NO_NEW_PRIVS, 2, 0, 0, 0), strerror(errno));
        show("end");
    } else {
        printf("unknown scenario %s\n", what);
        return 2;
    }
    return 0;
}
