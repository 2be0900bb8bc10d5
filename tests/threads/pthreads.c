/* pthread behaviour a user can see, one scenario per argument: run natively and recompiled,
   the output and exit status must be the same. Every line is printed from one thread after
   the others are joined (or from a process of its own), so the output is deterministic. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NT 4
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long counter;
static int arrived;
static __thread long tls_value = 7;

static long tid(void) { return syscall(SYS_gettid); }

/* mutex + condition variable: every thread adds under the lock, then waits for all */
static void *count_worker(void *arg) {
    long id = (long)arg;
    tls_value = 100 + id;
    for (int i = 0; i < 20000; i++) {
        pthread_mutex_lock(&mu);
        counter++;
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_lock(&mu);
    arrived++;
    pthread_cond_broadcast(&cv);
    while (arrived < NT) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return (void *)(id * 10 + (tls_value == 100 + id) + (tid() != getpid()));
}

static int counting(void) {
    pthread_t t[NT];
    for (long i = 0; i < NT; i++) pthread_create(&t[i], 0, count_worker, (void *)i);
    for (int i = 0; i < NT; i++) {
        void *r;
        pthread_join(t[i], &r);
        printf("thread %d returned %ld\n", i, (long)r);
    }
    printf("counter %ld, main's tls %ld, main tid is pid: %d\n", counter, tls_value,
           tid() == getpid());
    return 0;
}

/* lock-prefixed instructions: atomic adds and a compare-exchange spin lock, no libc locks */
static long atomic_total, plain_total;
static int spin;
static void *atomic_worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 200000; i++) {
        __atomic_fetch_add(&atomic_total, 1, __ATOMIC_SEQ_CST);
        int expect = 0;
        while (!__atomic_compare_exchange_n(&spin, &expect, 1, 0, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
            expect = 0;
        plain_total += 2;
        __atomic_store_n(&spin, 0, __ATOMIC_RELEASE);
    }
    return 0;
}

static int atomics(void) {
    pthread_t t[NT];
    for (int i = 0; i < NT; i++) pthread_create(&t[i], 0, atomic_worker, 0);
    for (int i = 0; i < NT; i++) pthread_join(t[i], 0);
    printf("atomic %ld, under the spin lock %ld\n", atomic_total, plain_total);
    return 0;
}

/* pthread_exit values, a detached thread, and exit() from a thread ending the process */
static void *exiting_worker(void *arg) {
    pthread_exit((void *)((long)arg * 3));
}
static void *detached_worker(void *arg) {
    pthread_mutex_lock(&mu);
    arrived = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    return arg;
}
static void *ender(void *arg) {
    (void)arg;
    printf("a thread calls exit(3)\n");
    fflush(stdout);
    exit(3);
}

static int exits(void) {
    pthread_t t[3], d, e;
    for (long i = 0; i < 3; i++) pthread_create(&t[i], 0, exiting_worker, (void *)i);
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(t[i], &r);
        printf("pthread_exit value %ld\n", (long)r);
    }
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_create(&d, &a, detached_worker, 0);
    pthread_mutex_lock(&mu);
    while (!arrived) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    printf("the detached thread ran\n");
    fflush(stdout);
    pthread_create(&e, 0, ender, 0);
    pthread_join(e, 0);                    /* never returns: the process exits with 3 */
    printf("not reached\n");
    return 0;
}

/* a signal directed at one thread runs its handler in that thread */
static volatile sig_atomic_t spun, handled_in_target;
static volatile long target_tid, handler_tid;
static void on_usr1(int sig) {
    (void)sig;
    handler_tid = tid();
    handled_in_target = handler_tid == target_tid;
    spun = 1;
}
static void *spinner(void *arg) {
    (void)arg;
    target_tid = tid();
    __atomic_store_n(&arrived, 1, __ATOMIC_SEQ_CST);
    while (!spun) { }                      /* taken at the loop's interrupt poll */
    return 0;
}
static void *sleeper(void *arg) {
    (void)arg;
    target_tid = tid();
    __atomic_store_n(&arrived, 2, __ATOMIC_SEQ_CST);
    int r = pause();                       /* ends with EINTR once the handler ran */
    return (void *)(long)(r == -1 && errno == EINTR);
}

static int signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, 0);
    pthread_t t;
    pthread_create(&t, 0, spinner, 0);
    while (__atomic_load_n(&arrived, __ATOMIC_SEQ_CST) != 1) sched_yield();
    pthread_kill(t, SIGUSR1);
    pthread_join(t, 0);
    printf("busy thread: handler ran in it: %d, not in main: %d\n", (int)handled_in_target,
           handler_tid != getpid());
    spun = handled_in_target = 0;
    /* main then blocks SIGUSR1: its own mask, not the sleeper's (started before) */
    pthread_create(&t, 0, sleeper, 0);
    while (__atomic_load_n(&arrived, __ATOMIC_SEQ_CST) != 2) sched_yield();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, 0);
    usleep(50000);                         /* let it reach pause() */
    pthread_kill(t, SIGUSR1);
    void *r;
    pthread_join(t, &r);
    printf("sleeping thread: handler ran in it: %d, pause gave EINTR: %ld\n",
           (int)handled_in_target, (long)r);
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, 0, &now);
    printf("main still blocks SIGUSR1: %d\n", sigismember(&now, SIGUSR1));
    return 0;
}

/* /proc/self/task lists the threads; fork in a threaded process leaves the child one */
static int tasks(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}
static pthread_barrier_t bar;
static void *parked(void *arg) {
    (void)arg;
    pthread_barrier_wait(&bar);            /* all started */
    pthread_barrier_wait(&bar);            /* main is done */
    return 0;
}
static void *forker(void *arg) {
    (void)arg;
    pid_t pid = fork();
    if (pid == 0) {
        printf("child of a thread: %d task(s)\n", tasks());
        fflush(stdout);
        _exit(9);
    }
    int st;
    waitpid(pid, &st, 0);
    return (void *)(long)WEXITSTATUS(st);
}

static int forks(void) {
    pthread_t t[2], f;
    for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, parked, 0);
    pthread_barrier_wait(&bar);
    printf("with two more threads: %d tasks\n", tasks());
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        printf("child of main: %d task(s)\n", tasks());
        fflush(stdout);
        _exit(5);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("child of main exited %d\n", WEXITSTATUS(st));
    fflush(stdout);
    void *r;
    pthread_create(&f, 0, forker, 0);
    pthread_join(f, &r);
    printf("child of a thread exited %ld\n", (long)r);
    pthread_barrier_wait(&bar);
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    printf("after joins: %d task(s)\n", tasks());
    return 0;
}

/* execve from a thread while main waits: the new program is the process's only thread */
static char *self_path;
static void *execer(void *arg) {
    (void)arg;
    char *argv[] = {self_path, "after-exec", 0};
    execv(self_path, argv);
    return 0;
}
static int execs(void) {
    pthread_t t[2];
    printf("before exec\n");
    fflush(stdout);
    pthread_create(&t[0], 0, parked, 0);   /* never released: exec ends it */
    pthread_create(&t[1], 0, execer, 0);
    pthread_join(t[1], 0);
    printf("not reached\n");
    return 1;
}
static int after_exec(void) {
    printf("after exec: %d task(s), pid %s tid\n", tasks(), tid() == getpid() ? "==" : "!=");
    return 4;
}

/* futex timeouts (a timed wait that expires, one signalled in time) and pthread_once */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int once_runs;
static void once_fn(void) { once_runs++; }
static int signalled;
static void *once_worker(void *arg) {
    pthread_once(&once, once_fn);
    if (arg) {
        usleep(20000);
        pthread_mutex_lock(&mu);
        signalled = 1;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
    }
    return 0;
}
static void *timed_locker(void *arg) {
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 30000000;
    if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
    return (void *)(long)pthread_mutex_timedlock(&mu, &ts);
}
static int timed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 60000000;
    if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
    pthread_mutex_lock(&mu);
    int r = pthread_cond_timedwait(&cv, &mu, &ts);
    pthread_mutex_unlock(&mu);
    printf("nobody signals: %s\n", r == ETIMEDOUT ? "ETIMEDOUT" : "woken");
    pthread_t t[3];
    for (long i = 0; i < 3; i++) pthread_create(&t[i], 0, once_worker, (void *)(long)(i == 0));
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    pthread_mutex_lock(&mu);
    r = 0;
    while (!signalled && r == 0) r = pthread_cond_timedwait(&cv, &mu, &ts);
    pthread_mutex_unlock(&mu);
    printf("signalled in time: %d (%s)\n", signalled, r == 0 ? "no timeout" : "timeout");
    for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
    printf("pthread_once ran %d time(s)\n", once_runs);
    pthread_mutex_lock(&mu);               /* held: another thread's timed lock expires */
    pthread_t h;
    void *r2;
    pthread_create(&h, 0, timed_locker, 0);
    pthread_join(h, &r2);
    pthread_mutex_unlock(&mu);
    printf("timed lock of a held mutex: %s\n", (long)r2 == ETIMEDOUT ? "ETIMEDOUT" : "other");
    return 0;
}

/* a signal sent to the process while the main thread blocks it: a thread that does not block
   it runs the handler */
static volatile sig_atomic_t proc_handled;
static volatile long proc_handler_tid;
static void on_usr1_proc(int sig) {
    (void)sig;
    proc_handler_tid = tid();
    proc_handled = 1;
}
static void *taker(void *arg) {
    (void)arg;
    target_tid = tid();
    __atomic_store_n(&arrived, 3, __ATOMIC_SEQ_CST);
    while (!proc_handled) { }
    return 0;
}
static int process_signal(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1_proc;
    sigaction(SIGUSR1, &sa, 0);
    pthread_t t;
    pthread_create(&t, 0, taker, 0);
    while (__atomic_load_n(&arrived, __ATOMIC_SEQ_CST) != 3) sched_yield();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, 0);
    kill(getpid(), SIGUSR1);
    pthread_join(t, 0);
    printf("process-directed signal handled in the thread that does not block it: %d\n",
           proc_handler_tid == target_tid);
    return 0;
}

/* sigwait in a thread: a directed signal, then a process-directed one every thread blocks */
static void *waiter(void *arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    int sig, got = 0;
    for (int i = 0; i < 2; i++)
        if (sigwait(&set, &sig) == 0 && sig == SIGUSR2) got++;
    return (void *)(long)got;
}
static int sigwaits(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, 0);   /* the waiter inherits it */
    pthread_t t;
    pthread_create(&t, 0, waiter, 0);
    usleep(20000);
    pthread_kill(t, SIGUSR2);
    usleep(20000);
    kill(getpid(), SIGUSR2);
    void *r;
    pthread_join(t, &r);
    printf("sigwait in a thread took %ld signal(s)\n", (long)r);
    struct timespec ts = {0, 30000000};
    siginfo_t si;
    int rr = sigtimedwait(&set, &si, &ts);
    printf("sigtimedwait with nothing pending: %s\n",
           rr == -1 && errno == EAGAIN ? "EAGAIN" : "other");
    kill(getpid(), SIGUSR2);
    rr = sigtimedwait(&set, &si, &ts);
    printf("sigtimedwait: SIGUSR2 %d, si_pid is ours %d, si_code SI_USER %d\n", rr == SIGUSR2,
           si.si_pid == getpid(), si.si_code == SI_USER);
    return 0;
}

/* the main thread leaves by pthread_exit: the process lives until its last thread ends */
static void *last_one(void *arg) {
    (void)arg;
    usleep(50000);
    printf("the last thread runs after main's pthread_exit: %d task(s)\n", tasks());
    fflush(stdout);
    return 0;
}
/* robust mutex: a thread that dies holding one leaves it to the next locker with EOWNERDEAD
   (the kernel walks the dead thread's robust list), who makes it consistent */
static pthread_mutex_t robust_mu;
static void *die_holding(void *arg) {
    (void)arg;
    pthread_mutex_lock(&robust_mu);
    return 0;                                  /* ends without unlocking */
}

static void *wait_then_lock(void *arg) {
    (void)arg;
    int r = pthread_mutex_lock(&robust_mu);    /* blocks until the holder dies */
    if (r == EOWNERDEAD)
        pthread_mutex_consistent(&robust_mu);
    pthread_mutex_unlock(&robust_mu);
    return (void *)(long)r;
}

static int robust(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&robust_mu, &a);
    pthread_t t, w;
    pthread_create(&t, 0, die_holding, 0);
    pthread_join(t, 0);
    int r = pthread_mutex_lock(&robust_mu);
    printf("lock after the holder died: %s\n", r == EOWNERDEAD ? "EOWNERDEAD" : strerror(r));
    printf("consistent: %d\n", pthread_mutex_consistent(&robust_mu));
    printf("unlock: %d\n", pthread_mutex_unlock(&robust_mu));
    printf("lock again: %d\n", pthread_mutex_lock(&robust_mu));
    pthread_mutex_unlock(&robust_mu);
    /* a waiter already blocked when the holder dies is woken with EOWNERDEAD */
    pthread_mutex_lock(&robust_mu);
    pthread_create(&w, 0, wait_then_lock, 0);
    usleep(100000);
    pthread_create(&t, 0, die_holding, 0);    /* blocks behind main; main hands over below */
    pthread_mutex_unlock(&robust_mu);
    void *rv;
    pthread_join(t, 0);
    pthread_join(w, &rv);
    printf("second round: the holder and the waiter ended, waiter saw %s\n",
           (long)rv == EOWNERDEAD || (long)rv == 0 ? "a usable lock" : strerror((int)(long)rv));
    return 0;
}

/* in a forked child, a thread that is not the main one installs a handler; the signal the
   parent then sends runs it (the main thread blocked it until sigsuspend) */
static volatile sig_atomic_t child_handled;
static int handoff[2];
static void on_usr1_child(int sig) { (void)sig; child_handled = 1; }
static void *installer(void *arg) {
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1_child;
    sigaction(SIGUSR1, &sa, 0);
    write(handoff[1], "x", 1);
    return 0;
}
static int thread_handler(void) {
    pipe(handoff);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t set, none;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigemptyset(&none);
        pthread_sigmask(SIG_BLOCK, &set, 0);
        pthread_t t;
        pthread_create(&t, 0, installer, 0);
        pthread_join(t, 0);
        while (!child_handled) sigsuspend(&none);
        printf("child: the handler another thread installed ran\n");
        fflush(stdout);
        _exit(0);
    }
    char c;
    read(handoff[0], &c, 1);
    kill(pid, SIGUSR1);
    int st;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) printf("child killed by signal %d\n", WTERMSIG(st));
    else printf("child exited %d\n", WEXITSTATUS(st));
    return 0;
}

static int main_exits(void) {
    pthread_t t;
    pthread_create(&t, 0, last_one, 0);
    pthread_exit(0);
}

int main(int argc, char **argv) {
    self_path = argv[0];
    pthread_barrier_init(&bar, 0, 3);
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "counting")) return counting();
    if (!strcmp(what, "atomics")) return atomics();
    if (!strcmp(what, "exits")) return exits();
    if (!strcmp(what, "signals")) return signals();
    if (!strcmp(what, "forks")) return forks();
    if (!strcmp(what, "execs")) return execs();
    if (!strcmp(what, "timed")) return timed();
    if (!strcmp(what, "sigwaits")) return sigwaits();
    if (!strcmp(what, "main-exits")) return main_exits();
    if (!strcmp(what, "process-signal")) return process_signal();
    if (!strcmp(what, "after-exec")) return after_exec();
    if (!strcmp(what, "robust")) return robust();
    if (!strcmp(what, "thread-handler")) return thread_handler();
    fprintf(stderr, "usage: pthreads counting|atomics|exits|signals|forks|execs|timed|sigwaits|"
            "main-exits|process-signal|robust|thread-handler\n");
    return 2;
}
