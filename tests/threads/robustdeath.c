/* A process-shared robust mutex in MAP_SHARED memory, held by a forked child that then dies or
   execs: the kernel walks the child's robust lists (every thread's) as it goes, so the parent's
   pthread_mutex_lock returns EOWNERDEAD instead of waiting forever. One scenario per argument,
   run natively and recompiled: the output and exit status must be the same.

   term    the child holds it and waits in pause(); the parent kills it with SIGTERM
   abort   the child holds it and calls abort() while the parent already waits in the lock
   busy    the child holds it and spins without a syscall; the parent kills it with SIGTERM
   thread  a second thread of the child holds it; the parent kills the child with SIGTERM
   exec    the child holds it and execs a program that waits; the lock is free at the exec
   kill    as term, with SIGKILL */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t *mu;
static int ready[2];
static char *self_path;

static void holding(void) {
    pthread_mutex_lock(mu);
    write(ready[1], "x", 1);
}
static void *holder_thread(void *arg) {
    (void)arg;
    holding();
    for (;;) pause();
    return 0;
}

static void child(const char *how) {
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);         /* no core file natively */
    if (!strcmp(how, "thread")) {
        pthread_t t;
        pthread_create(&t, 0, holder_thread, 0);
        pthread_join(t, 0);                /* never returns */
    }
    holding();
    if (!strcmp(how, "abort")) {
        usleep(100000);                    /* the parent is blocked in the lock by now */
        abort();
    }
    if (!strcmp(how, "busy"))
        for (volatile unsigned long n = 0;; n++) { }
    if (!strcmp(how, "exec")) {
        char *argv[] = {self_path, "wait", 0};
        execv(self_path, argv);
        _exit(127);
    }
    for (;;) pause();
}

static int scenario(const char *how) {
    mu = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(mu, &a);
    pipe(ready);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        child(how);
        _exit(0);
    }
    char c;
    read(ready[0], &c, 1);                 /* the child holds the mutex now */
    if (!strcmp(how, "term") || !strcmp(how, "busy") || !strcmp(how, "thread")) {
        usleep(20000);                     /* the child is in pause() or its loop */
        kill(pid, SIGTERM);
    } else if (!strcmp(how, "kill")) {
        kill(pid, SIGKILL);
    }
    int r = pthread_mutex_lock(mu);
    printf("%s: the parent's lock gives %s\n", how, r == EOWNERDEAD ? "EOWNERDEAD" : strerror(r));
    if (r == EOWNERDEAD)
        printf("consistent: %d\n", pthread_mutex_consistent(mu));
    int u = pthread_mutex_unlock(mu);
    int again = pthread_mutex_lock(mu);
    printf("unlock: %d, lock again: %d\n", u, again);
    pthread_mutex_unlock(mu);
    if (!strcmp(how, "exec"))
        kill(pid, SIGTERM);                /* the program it exec'd still runs */
    int st;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st))
        printf("the child died of signal %d\n", WTERMSIG(st));
    else
        printf("the child exited %d\n", WEXITSTATUS(st));
    return 0;
}

int main(int argc, char **argv) {
    self_path = argv[0];
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "wait")) {
        for (;;) pause();
    }
    const char *all[] = {"term", "abort", "busy", "thread", "exec", "kill"};
    for (unsigned i = 0; i < sizeof all / sizeof *all; i++)
        if (!strcmp(what, all[i])) return scenario(what);
    fprintf(stderr, "usage: robustdeath term|abort|busy|thread|exec|kill\n");
    return 2;
}
