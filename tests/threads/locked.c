/* Each locked form the lifter makes a WebAssembly atomic (recompiler/x86_64/sem/locked.py), in
   one thread: the memory, register and flag results must be the native ones, including a
   misaligned locked add (x86 allows it; the lifter does it with a plain read and write). */
#include <stdio.h>
#include <stdint.h>
int main(void){
  volatile long x=5; volatile int y=7; volatile short z=9; volatile unsigned char c=200;
  long r=3; int fl;
  __atomic_fetch_add(&x, 10, __ATOMIC_SEQ_CST);
  r = __atomic_fetch_add(&x, 1, __ATOMIC_SEQ_CST);
  printf("%ld %ld\n", x, r);
  __atomic_fetch_sub(&y, 10, __ATOMIC_SEQ_CST); printf("%d\n", y);
  __atomic_fetch_or(&z, 0x100, __ATOMIC_SEQ_CST); printf("%d\n", z);
  __atomic_fetch_and(&c, 0x0f, __ATOMIC_SEQ_CST); printf("%d\n", c);
  int e=3; int ok=__atomic_compare_exchange_n(&y, &e, 42, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  printf("%d %d %d\n", ok, e, y);
  e=-3; ok=__atomic_compare_exchange_n(&y, &e, 42, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  printf("%d %d %d\n", ok, e, y);
  long old=__atomic_exchange_n(&x, 99, __ATOMIC_SEQ_CST); printf("%ld %ld\n", old, x);
  int b = __atomic_add_fetch(&y, -42, __ATOMIC_SEQ_CST)==0; printf("%d\n", b);
  __asm__ volatile("lock incl %0; setz %b1" : "+m"(y), "=q"(fl)); printf("%d %d\n", y, fl&1);
  __asm__ volatile("lock decl %0; setz %b1" : "+m"(y), "=q"(fl)); printf("%d %d\n", y, fl&1);
  __asm__ volatile("lock btsl $3, %0; setc %b1" : "+m"(y), "=q"(fl)); printf("%d %d\n", y, fl&1);
  __asm__ volatile("lock btsl $3, %0; setc %b1" : "+m"(y), "=q"(fl)); printf("%d %d\n", y, fl&1);
  __asm__ volatile("lock negl %0; sets %b1" : "+m"(y), "=q"(fl)); printf("%d %d\n", y, fl&1);
  __asm__ volatile("lock notl %0" : "+m"(y)); printf("%d\n", y);
  __asm__ volatile("mfence; lock orl $0, (%%rsp)" ::: "memory");
  char buf[16] __attribute__((aligned(8))); int *mis=(int*)(buf+2); *mis=5;
  __atomic_fetch_add(mis, 3, __ATOMIC_SEQ_CST); printf("mis %d\n", *mis);
  return 0;
}
