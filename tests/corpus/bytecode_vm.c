// KILN-CORPUS: a small stack-machine interpreter (switch dispatch) running loops, calls and a sieve
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum op { PUSH, POP, ADD, SUB, MUL, DIVM, MOD, DUP, SWAP, OVER, JMP, JZ, JNZ, LT, EQ, LOAD, STORE,
          CALL, RET, PRINT, HALT, NOT, AND, OR, SHL, SHR, INC, DEC };

static int64_t run(const int64_t *code, int64_t *mem, long *steps_out) {
    int64_t stack[256]; int sp = 0; int64_t rstack[64]; int rsp = 0; long pc = 0, steps = 0;
    for (;;) {
        steps++;
        switch ((enum op)code[pc++]) {
        case PUSH: stack[sp++] = code[pc++]; break;
        case POP: sp--; break;
        case ADD: sp--; stack[sp - 1] += stack[sp]; break;
        case SUB: sp--; stack[sp - 1] -= stack[sp]; break;
        case MUL: sp--; stack[sp - 1] = (int64_t)((uint64_t)stack[sp - 1] * (uint64_t)stack[sp]); break;
        case DIVM: sp--; stack[sp - 1] = stack[sp] ? stack[sp - 1] / stack[sp] : 0; break;
        case MOD: sp--; stack[sp - 1] = stack[sp] ? stack[sp - 1] % stack[sp] : 0; break;
        case DUP: stack[sp] = stack[sp - 1]; sp++; break;
        case SWAP: { int64_t t = stack[sp - 1]; stack[sp - 1] = stack[sp - 2]; stack[sp - 2] = t; } break;
        case OVER: stack[sp] = stack[sp - 2]; sp++; break;
        case JMP: pc = code[pc]; break;
        case JZ: pc = stack[--sp] == 0 ? code[pc] : pc + 1; break;
        case JNZ: pc = stack[--sp] != 0 ? code[pc] : pc + 1; break;
        case LT: sp--; stack[sp - 1] = stack[sp - 1] < stack[sp]; break;
        case EQ: sp--; stack[sp - 1] = stack[sp - 1] == stack[sp]; break;
        case LOAD: stack[sp - 1] = mem[stack[sp - 1]]; break;
        case STORE: sp -= 2; mem[stack[sp + 1]] = stack[sp]; break;
        case CALL: rstack[rsp++] = pc + 1; pc = code[pc]; break;
        case RET: pc = rstack[--rsp]; break;
        case PRINT: printf("vm: %lld\n", (long long)stack[--sp]); break;
        case HALT: *steps_out = steps; return sp ? stack[sp - 1] : 0;
        case NOT: stack[sp - 1] = !stack[sp - 1]; break;
        case AND: sp--; stack[sp - 1] &= stack[sp]; break;
        case OR: sp--; stack[sp - 1] |= stack[sp]; break;
        case SHL: sp--; stack[sp - 1] = (int64_t)((uint64_t)stack[sp - 1] << (stack[sp] & 63)); break;
        case SHR: sp--; stack[sp - 1] = (int64_t)((uint64_t)stack[sp - 1] >> (stack[sp] & 63)); break;
        case INC: stack[sp - 1]++; break;
        case DEC: stack[sp - 1]--; break;
        }
    }
}

int main(void) {
    /* sum of i*i mod 1000003 for i < 300000, then fib(60) iteratively via a subroutine */
    static const int64_t prog1[] = {
        PUSH, 0, PUSH, 0, STORE,            /* 0: mem[0] = acc = 0 */
        PUSH, 0, PUSH, 1, STORE,            /* 5: mem[1] = i = 0 */
        PUSH, 1, LOAD, PUSH, 300000, LT, JZ, 42,                                       /* 10: loop */
        PUSH, 1, LOAD, DUP, MUL, PUSH, 0, LOAD, ADD, PUSH, 1000003, MOD, PUSH, 0, STORE, /* 18 */
        PUSH, 1, LOAD, INC, PUSH, 1, STORE, JMP, 10,                                   /* 33 */
        PUSH, 0, LOAD, PRINT, CALL, 50, PRINT, HALT,                                   /* 42 */
        PUSH, 0, PUSH, 1, PUSH, 60,                                                    /* 50: fib(60) */
        DUP, JZ, 71, DEC, PUSH, 2, STORE, SWAP, OVER, ADD, PUSH, 2, LOAD, JMP, 56,     /* 56 */
        POP, POP, RET,                                                                 /* 71 */
    };
    int64_t mem[8192]; memset(mem, 0, sizeof mem);
    long steps;
    int64_t r = run(prog1, mem, &steps);
    printf("prog1 result %lld steps %ld\n", (long long)r, steps);
    /* sieve of Eratosthenes below 4000 in VM memory 100.. */
    static const int64_t sieve[] = {
        PUSH, 2, PUSH, 1, STORE,                                   /* 0: mem[1] = p = 2 */
        PUSH, 1, LOAD, DUP, MUL, PUSH, 4000, LT, JZ, 59,           /* 5: while p*p < 4000 */
        PUSH, 1, LOAD, PUSH, 100, ADD, LOAD, JNZ, 50,              /* 15: composite: next p */
        PUSH, 1, LOAD, DUP, MUL,                                   /* 24: m = p*p */
        DUP, PUSH, 4000, LT, JZ, 49,                               /* 29: while m < 4000 */
        DUP, PUSH, 100, ADD, PUSH, 1, SWAP, STORE,                 /* 35: mem[100+m] = 1 */
        PUSH, 1, LOAD, ADD, JMP, 29,                               /* 43: m += p */
        POP,                                                       /* 49 */
        PUSH, 1, LOAD, INC, PUSH, 1, STORE, JMP, 5,                /* 50: p++ */
        PUSH, 0, PUSH, 2,                                          /* 59: count, i = 2 */
        DUP, PUSH, 4000, LT, JZ, 87,                               /* 63: while i < 4000 */
        DUP, PUSH, 100, ADD, LOAD, NOT, PUSH, 3, STORE,            /* 69: mem[3] = prime? */
        SWAP, PUSH, 3, LOAD, ADD, SWAP, INC, JMP, 63,              /* 78: count += ; i++ */
        POP, PRINT, HALT,                                          /* 87 */
    };
    memset(mem, 0, sizeof mem);
    r = run(sieve, mem, &steps);
    printf("sieve steps %ld\n", steps);
    return 0;
}
