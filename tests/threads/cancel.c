/* pthread_cancel as a user sees it, one scenario per argument: run natively and recompiled, the
   output and exit status must be the same. Deferred cancellation reaches a thread blocked at a
   cancellation point (read on a pipe, pthread_cond_wait, sleep, nanosleep) or at
   pthread_testcancel once it enables cancellation again; asynchronous cancellation reaches a
   thread spinning in a loop. Cleanup handlers run, last pushed first, and pthread_join gives
   PTHREAD_CANCELED. Every line is printed by the main thread after the joins. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ready;                          /* set (atomically) when a thread is about to block */
static char order[16];                     /* the cleanup handlers' letters, in running order */
static int norder;

static void note(void *letter) { order[norder++] = *(const char *)letter; }
static void unlock_mu(void *arg) { (void)arg; note("u"); pthread_mutex_unlock(&mu); }

static void arrive(void) { __atomic_store_n(&ready, 1, __ATOMIC_SEQ_CST); }
static void await_arrival(void) {
    while (!__atomic_load_n(&ready, __ATOMIC_SEQ_CST)) sched_yield();
    usleep(30000);                         /* let it reach the blocking call */
}

static int pipe_fds[2];
static void *in_read(void *arg) {
    (void)arg;
    char c;
    pthread_cleanup_push(note, "a");
    pthread_cleanup_push(note, "b");
    arrive();
    read(pipe_fds[0], &c, 1);              /* nobody writes */
    pthread_cleanup_pop(0);
    pthread_cleanup_pop(0);
    return (void *)1L;
}
static void *in_cond_wait(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    pthread_cleanup_push(unlock_mu, 0);
    arrive();
    for (;;) pthread_cond_wait(&cv, &mu);  /* nobody signals */
    pthread_cleanup_pop(1);
    return (void *)1L;
}
static void *in_sleep(void *arg) {
    (void)arg;
    pthread_cleanup_push(note, "s");
    arrive();
    sleep(100);
    pthread_cleanup_pop(0);
    return (void *)1L;
}
static void *in_nanosleep(void *arg) {
    (void)arg;
    pthread_cleanup_push(note, "n");
    arrive();
    struct timespec ts = {100, 0};
    nanosleep(&ts, 0);
    pthread_cleanup_pop(0);
    return (void *)1L;
}
static int go;
static void *disabled_then_test(void *arg) {
    (void)arg;
    int old;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    pthread_cleanup_push(note, "t");
    arrive();
    while (!__atomic_load_n(&go, __ATOMIC_SEQ_CST)) usleep(1000);   /* not cancelled here */
    note("d");
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
    pthread_testcancel();
    pthread_cleanup_pop(0);
    return (void *)1L;
}
static void *popped(void *arg) {
    (void)arg;
    pthread_cleanup_push(note, "p");
    pthread_cleanup_push(note, "q");
    pthread_cleanup_pop(0);                /* q: removed, not run */
    pthread_cleanup_pop(1);                /* p: run */
    return (void *)5L;
}

static void run(const char *name, void *(*fn)(void *), int cancel) {
    pthread_t t;
    void *r;
    norder = 0;
    memset(order, 0, sizeof order);
    __atomic_store_n(&ready, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&go, 0, __ATOMIC_SEQ_CST);
    pthread_create(&t, 0, fn, 0);
    if (cancel) {
        await_arrival();
        int c = pthread_cancel(t);
        __atomic_store_n(&go, 1, __ATOMIC_SEQ_CST);
        if (c) printf("%s: pthread_cancel: %s\n", name, strerror(c));
    }
    pthread_join(t, &r);
    printf("%s: %s, cleanup ran \"%s\"\n", name,
           r == PTHREAD_CANCELED ? "PTHREAD_CANCELED" : r == (void *)5L ? "returned 5" : "other",
           order);
}

static int deferred(void) {
    pipe(pipe_fds);
    run("read on a pipe", in_read, 1);
    run("pthread_cond_wait", in_cond_wait, 1);
    printf("the mutex is free again: %d\n", pthread_mutex_trylock(&mu) == 0);
    pthread_mutex_unlock(&mu);
    run("sleep", in_sleep, 1);
    run("nanosleep", in_nanosleep, 1);
    run("disabled, then pthread_testcancel", disabled_then_test, 1);
    run("not cancelled, pop(1) and pop(0)", popped, 0);
    return 0;
}

/* asynchronous cancellation: the thread never reaches a cancellation point */
static volatile unsigned long spins;
static void *spinner(void *arg) {
    (void)arg;
    int old;
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &old);
    pthread_cleanup_push(note, "x");
    arrive();
    for (;;) spins++;
    pthread_cleanup_pop(0);
    return (void *)1L;
}

static int asynchronous(void) {
    run("spinning, asynchronous", spinner, 1);
    printf("it had spun: %d\n", spins > 0);
    return 0;
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "deferred")) return deferred();
    if (!strcmp(what, "async")) return asynchronous();
    fprintf(stderr, "usage: cancel deferred|async\n");
    return 2;
}
