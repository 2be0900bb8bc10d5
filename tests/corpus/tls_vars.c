// KILN-CORPUS: __thread / _Thread_local variables: initialised, zeroed, arrays, addresses stable, in the main thread
#include <stdio.h>
#include <string.h>

static __thread int tls_counter = 41;
static __thread long tls_zero;
static __thread char tls_name[32] = "initial-tls-name";
_Thread_local double tls_array[64];
static __thread struct { int a; long b; } tls_struct = {7, -8};

__attribute__((noinline)) static int *counter_addr(void) { return &tls_counter; }

__attribute__((noinline)) static void bump(int n) {
    for (int i = 0; i < n; i++) { tls_counter++; tls_zero += i; tls_array[i % 64] += i * 0.5; }
}

int main(void) {
    printf("initial %d %ld %s %d %ld\n", tls_counter, tls_zero, tls_name, tls_struct.a, tls_struct.b);
    bump(1000);
    *counter_addr() += 1000;
    strcpy(tls_name, "changed");
    tls_struct.b *= 3;
    double s = 0;
    for (int i = 0; i < 64; i++) s += tls_array[i];
    printf("after %d %ld %s %d %ld sum=%.2f\n", tls_counter, tls_zero, tls_name, tls_struct.a, tls_struct.b, s);
    printf("address stable: %d\n", counter_addr() == &tls_counter);
    return 0;
}
