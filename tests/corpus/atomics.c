// KILN-CORPUS: __atomic builtins and <stdatomic.h>, single-threaded: fetch-ops, CAS loops, exchange, fences
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

static _Atomic long counter;
static _Atomic uint32_t flags32;
static atomic_flag spin = ATOMIC_FLAG_INIT;
static uint64_t raw64;
static uint16_t raw16;
static uint8_t raw8;

int main(void) {
    for (int i = 0; i < 100000; i++) {
        atomic_fetch_add(&counter, i);
        atomic_fetch_sub_explicit(&counter, i / 2, memory_order_relaxed);
        atomic_fetch_or(&flags32, 1u << (i % 32));
        if (i % 3 == 0) atomic_fetch_and(&flags32, ~(1u << ((i * 7) % 32)));
        atomic_fetch_xor(&flags32, (uint32_t)i);
    }
    printf("counter=%ld flags32=%08x\n", atomic_load(&counter), atomic_load(&flags32));
    long expected = atomic_load(&counter);
    int ok = atomic_compare_exchange_strong(&counter, &expected, 7);
    long wrong = 5;
    int ok2 = atomic_compare_exchange_strong(&counter, &wrong, 9);
    printf("cas ok=%d ok2=%d counter=%ld wrong-now=%ld\n", ok, ok2, atomic_load(&counter), wrong);
    printf("exchange old=%ld\n", atomic_exchange(&counter, 100));
    printf("flag: %d %d ", atomic_flag_test_and_set(&spin), atomic_flag_test_and_set(&spin));
    atomic_flag_clear(&spin);
    printf("%d\n", atomic_flag_test_and_set(&spin));
    for (uint64_t i = 0; i < 50000; i++) {
        uint64_t old = __atomic_load_n(&raw64, __ATOMIC_ACQUIRE), new;
        do new = old * 3 + i; while (!__atomic_compare_exchange_n(&raw64, &old, new, 1, __ATOMIC_SEQ_CST,
                                                                    __ATOMIC_RELAXED));
        __atomic_add_fetch(&raw16, (uint16_t)i, __ATOMIC_SEQ_CST);
        __atomic_fetch_nand(&raw8, (uint8_t)i, __ATOMIC_SEQ_CST);
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    printf("raw64=%llu raw16=%u raw8=%u\n", (unsigned long long)raw64, raw16, raw8);
    printf("xchg8=%u test_and_set=%d\n", __atomic_exchange_n(&raw8, 0x42, __ATOMIC_SEQ_CST),
           (int)__atomic_test_and_set(&raw16, __ATOMIC_SEQ_CST));
    printf("lock free 8: %d\n", (int)__atomic_always_lock_free(8, 0));
    return 0;
}
