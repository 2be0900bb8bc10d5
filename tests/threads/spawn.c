/* Starting programs from a thread that is not the main one, while the main thread keeps working:
   posix_spawn (clone with CLONE_VM|CLONE_VFORK in both libcs), vfork + exec and fork + exec, each
   followed by waitpid in that thread. Run natively and recompiled, the output and exit status
   must be the same. The children print one line each; the main thread prints after the joins. */
#define _GNU_SOURCE
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static char *self_path;
static int done;

static int status_of(pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void *spawner(void *arg) {
    const char *how = arg;
    char parent[32];
    snprintf(parent, sizeof parent, "%d", (int)getpid());
    char *argv[] = {self_path, "child", (char *)how, parent, 0};
    pid_t pid = -1;
    fflush(stdout);
    if (!strcmp(how, "posix_spawn")) {
        if (posix_spawn(&pid, self_path, 0, 0, argv, environ)) pid = -1;
    } else if (!strcmp(how, "vfork")) {
        pid = vfork();
        if (pid == 0) {
            execv(self_path, argv);
            _exit(127);
        }
    } else {
        pid = fork();
        if (pid == 0) {
            execv(self_path, argv);
            _exit(127);
        }
    }
    long st = pid < 0 ? -1 : status_of(pid);
    __atomic_store_n(&done, 1, __ATOMIC_SEQ_CST);
    return (void *)st;
}

static int from_thread(const char *how) {
    pthread_t t;
    unsigned long work = 0;
    __atomic_store_n(&done, 0, __ATOMIC_SEQ_CST);
    pthread_create(&t, 0, spawner, (void *)how);
    while (!__atomic_load_n(&done, __ATOMIC_SEQ_CST)) work++;   /* the main thread works on */
    void *r;
    pthread_join(t, &r);
    printf("%s from a thread: the child exited %ld, the main thread kept working: %d\n", how,
           (long)r, work > 0);
    return 0;
}

static int child(const char *how, const char *parent) {
    printf("child started by %s, its parent is the spawning process: %d\n", how,
           getppid() == atoi(parent));
    return (int)strlen(how);
}

int main(int argc, char **argv) {
    self_path = argv[0];
    setvbuf(stdout, 0, _IOLBF, 0);
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "child") && argc > 3) return child(argv[2], argv[3]);
    if (!strcmp(what, "posix_spawn") || !strcmp(what, "vfork") || !strcmp(what, "fork"))
        return from_thread(what);
    if (!strcmp(what, "all")) {
        from_thread("posix_spawn");
        from_thread("vfork");
        return from_thread("fork");
    }
    fprintf(stderr, "usage: spawn posix_spawn|vfork|fork|all\n");
    return 2;
}
