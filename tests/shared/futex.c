/* futex(2) and process-shared synchronisation across fork, compared between Linux and vkernel:
   the futex word lives in MAP_SHARED memory; waits are made certain by generous sleeps before
   each wake, so nothing depends on timing beyond that margin. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHOW(label, x) do { long r_ = (long)(x); int e_ = errno; \
    printf("%s: %ld%s%s\n", label, r_, r_ < 0 ? " " : "", r_ < 0 ? strerror(e_) : ""); } while (0)

/* linux/futex.h's numbers (musl-gcc has no kernel headers) */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_REQUEUE 3
#define FUTEX_CMP_REQUEUE 4
#define FUTEX_WAKE_OP 5
#define FUTEX_WAIT_BITSET 9
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_WAIT_PRIVATE (FUTEX_WAIT | FUTEX_PRIVATE_FLAG)
#define FUTEX_WAKE_PRIVATE (FUTEX_WAKE | FUTEX_PRIVATE_FLAG)
#define FUTEX_OP_ADD 1
#define FUTEX_OP_CMP_GT 4
#define FUTEX_OP(op, oparg, cmp, cmparg) \
    (((op & 0xf) << 28) | ((cmp & 0xf) << 24) | ((oparg & 0xfff) << 12) | (cmparg & 0xfff))

static long futex(uint32_t *a, int op, uint32_t v, const struct timespec *t, uint32_t *a2, uint32_t v3) {
    return syscall(SYS_futex, a, op, v, t, a2, v3);
}

static void on_alarm(int s) { (void)s; }

struct shared {
    uint32_t word, word2;
    sem_t sem;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;
};

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct shared *s = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct timespec short_wait = {0, 50 * 1000 * 1000};

    SHOW("wait, word differs", futex(&s->word, FUTEX_WAIT, 1, NULL, NULL, 0));
    SHOW("wait, relative timeout", futex(&s->word, FUTEX_WAIT, 0, &short_wait, NULL, 0));
    struct timespec abs; clock_gettime(CLOCK_MONOTONIC, &abs); abs.tv_nsec += 50000000;
    if (abs.tv_nsec >= 1000000000) { abs.tv_sec++; abs.tv_nsec -= 1000000000; }
    SHOW("wait_bitset, absolute timeout", futex(&s->word, FUTEX_WAIT_BITSET, 0, &abs, NULL, 0xff));
    SHOW("wait_bitset, empty bitset", futex(&s->word, FUTEX_WAIT_BITSET, 0, &abs, NULL, 0));
    SHOW("misaligned", futex((uint32_t *)((char *)&s->word + 1), FUTEX_WAKE, 1, NULL, NULL, 0));
    SHOW("wake, nobody waits", futex(&s->word, FUTEX_WAKE, 1, NULL, NULL, 0));
    SHOW("cmp_requeue, word differs", futex(&s->word, FUTEX_CMP_REQUEUE, 1, (void *)1, &s->word2, 5));
    s->word2 = 3;
    /* WAKE_OP: word2 = word2 + 4 (old 3 > 2: also wake on word) */
    SHOW("wake_op", futex(&s->word, FUTEX_WAKE_OP, 1, (void *)1, &s->word2,
                          FUTEX_OP(FUTEX_OP_ADD, 4, FUTEX_OP_CMP_GT, 2)));
    printf("word2 after wake_op: %u\n", s->word2);

    /* A signal with a handler (no SA_RESTART) ends a wait with EINTR. */
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {.it_value = {0, 100000}};
    setitimer(ITIMER_REAL, &it, NULL);
    SHOW("wait interrupted by SIGALRM", futex(&s->word, FUTEX_WAIT, 0, NULL, NULL, 0));

    /* Another process wakes a shared (not private) futex. */
    pid_t c = fork();
    if (c == 0) {
        long r = futex(&s->word, FUTEX_WAIT, 0, NULL, NULL, 0);
        printf("child woken: %ld, word %u\n", r, s->word);
        _exit(0);
    }
    usleep(300000);
    s->word = 1;
    long woke = futex(&s->word, FUTEX_WAKE, 1, NULL, NULL, 0);
    waitpid(c, NULL, 0);
    SHOW("parent woke the child", woke);

    /* A private futex is the process's own: the child's wake reaches nobody here. */
    s->word = 0;
    c = fork();
    if (c == 0) {
        usleep(200000);
        printf("child's private wake: %ld\n", futex(&s->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0));
        _exit(0);
    }
    struct timespec half = {0, 500 * 1000 * 1000};
    SHOW("private wait times out", futex(&s->word, FUTEX_WAIT_PRIVATE, 0, &half, NULL, 0));
    waitpid(c, NULL, 0);

    /* REQUEUE: a waiter on word moves to word2 and is woken there. */
    s->word = 0; s->word2 = 0;
    c = fork();
    if (c == 0) {
        long r = futex(&s->word, FUTEX_WAIT, 0, NULL, NULL, 0);
        printf("requeued child woken: %ld\n", r);
        _exit(0);
    }
    usleep(300000);
    SHOW("cmp_requeue moves it", futex(&s->word, FUTEX_CMP_REQUEUE, 0, (void *)1, &s->word2, 0));
    usleep(100000);
    woke = futex(&s->word2, FUTEX_WAKE, 1, NULL, NULL, 0);
    waitpid(c, NULL, 0);
    SHOW("woke it on word2", woke);

    /* libc's process-shared semaphore, mutex and condition variable across fork. */
    sem_init(&s->sem, 1, 0);
    pthread_mutexattr_t ma; pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&s->mu, &ma);
    pthread_condattr_t ca; pthread_condattr_init(&ca);
    pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
    pthread_cond_init(&s->cv, &ca);
    c = fork();
    if (c == 0) {
        usleep(300000);
        sem_post(&s->sem);
        usleep(300000);
        pthread_mutex_lock(&s->mu);
        s->ready = 42;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        _exit(0);
    }
    SHOW("sem_wait until the child posts", sem_wait(&s->sem));
    pthread_mutex_lock(&s->mu);
    while (!s->ready) pthread_cond_wait(&s->cv, &s->mu);
    printf("condition variable saw %d\n", s->ready);
    pthread_mutex_unlock(&s->mu);
    waitpid(c, NULL, 0);
    return 0;
}
