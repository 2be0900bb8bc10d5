// KILN-CORPUS: constructor/destructor priorities, atexit ordering (LIFO), output flushed at exit, stderr lines
#include <stdio.h>
#include <stdlib.h>

static int order;

__attribute__((constructor(200))) static void ctor_late(void) { printf("ctor 200 (order %d)\n", order++); }
__attribute__((constructor(101))) static void ctor_early(void) { printf("ctor 101 (order %d)\n", order++); }
__attribute__((constructor)) static void ctor_default(void) { printf("ctor default (order %d)\n", order++); }
__attribute__((destructor(101))) static void dtor_101(void) { printf("dtor 101\n"); }
__attribute__((destructor(200))) static void dtor_200(void) { printf("dtor 200\n"); }
__attribute__((destructor)) static void dtor_default(void) { printf("dtor default\n"); }

static void at1(void) { printf("atexit 1 (registered first)\n"); }
static void at2(void) { printf("atexit 2\n"); fprintf(stderr, "atexit 2 on stderr\n"); }
static void at3(void) { printf("atexit 3 (registered last)\n"); }

int main(void) {
    printf("main start, order=%d\n", order);
    atexit(at1); atexit(at2); atexit(at3);
    fprintf(stderr, "main on stderr\n");
    printf("main returns 0 (pending buffered output)");
    return 0;
}
