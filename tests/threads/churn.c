/* Thread churn: many short-lived threads, then a large allocation.
 *
 * churn THREADS MIB: create THREADS threads, at most 8 alive at a time, each
 * adding its number to a shared sum under a mutex; join every one; then map
 * MIB MiB and touch every page. Prints the sum, then "mapped MIB MiB".
 * Run with a memory limit, it checks that an ended thread gives back what it
 * had: a runtime that kept a few MiB per ended thread would fail the mmap (or
 * be killed) long before the end.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long sum;

static void *work(void *arg)
{
    pthread_mutex_lock(&lock);
    sum += (long)arg;
    pthread_mutex_unlock(&lock);
    return arg;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    long mib = argc > 2 ? atol(argv[2]) : 64;
    long joined = 0;
    pthread_t t[8];
    for (long i = 0; i < n; i += 8) {
        int k = 0;
        for (; k < 8 && i + k < n; k++)
            if (pthread_create(&t[k], NULL, work, (void *)(i + k + 1)) != 0) {
                printf("pthread_create failed after %ld threads\n", i + k);
                return 1;
            }
        for (int j = 0; j < k; j++) {
            void *r;
            pthread_join(t[j], &r);
            joined += (long)r;
        }
    }
    printf("sum %ld joined %ld\n", sum, joined);
    size_t len = (size_t)mib << 20;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    for (size_t off = 0; off < len; off += 4096)
        p[off] = (char)off;
    printf("mapped %ld MiB\n", mib);
    return 0;
}
