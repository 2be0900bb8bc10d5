/* Native half of Kiln's instruction differential tests: run test instructions on the host CPU.
 *
 * stdin:  a stream of records  { u8 code_len; u8 code[15]; struct kiln_state in; }
 * stdout: one struct kiln_state per record, the state after the instruction.
 * All little-endian, no padding; the Python side is tests/difftest/native.py.
 * The fixed addresses (KILN_CODE_BASE, KILN_INSN_ADDR, KILN_DATA_ADDR, KILN_STACK_BASE)
 * come from tests/difftest/case.py as -D flags. Exit status: 0 at end of input,
 * 3 when the fixed pages cannot be mapped, 4 on a short record.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define PAGE 4096
#define FLAGS_STATE 0xCD5u          /* CF PF AF ZF SF DF OF */

struct kiln_state {
    uint64_t gpr[16];               /* x86 encoding order: rax rcx rdx rbx rsp rbp rsi rdi r8..r15 */
    uint64_t rflags;
    uint64_t rip;
    uint32_t mxcsr;
    int32_t signal;
    uint64_t fault_addr;
    uint8_t xmm[16][16];
    uint8_t data[PAGE];
    uint8_t stack[PAGE];
    _Alignas(16) uint8_t fx[512];   /* FXSAVE area: x87 and MMX registers, tag word, TOP */
};
_Static_assert(offsetof(struct kiln_state, rflags) == 128, "layout");
_Static_assert(offsetof(struct kiln_state, mxcsr) == 144, "layout");
_Static_assert(offsetof(struct kiln_state, xmm) == 160, "layout");
_Static_assert(offsetof(struct kiln_state, fx) == 416 + 2 * PAGE, "layout");
_Static_assert(sizeof(struct kiln_state) == 416 + 2 * PAGE + 512, "layout");

struct kiln_input { uint8_t code_len; uint8_t code[15]; struct kiln_state st; };
_Static_assert(sizeof(struct kiln_input) == 16 + sizeof(struct kiln_state), "layout");
_Static_assert(offsetof(struct kiln_input, st) % 16 == 0, "fxrstor needs the area 16-byte aligned");

void kiln_enter(struct kiln_state *st);
void kiln_exit(void);

static struct kiln_input in;
static struct kiln_state st;
static sigjmp_buf back;
static volatile sig_atomic_t in_case;
static uint8_t *code_page, *data_page, *stack_page;

static uint8_t *map_fixed(uintptr_t addr, int prot) {
    void *p = mmap((void *)addr, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != (void *)addr) {
        fprintf(stderr, "runner: cannot map the test page at %#lx\n", (unsigned long)addr);
        exit(3);
    }
    return p;
}

static void on_signal(int sig, siginfo_t *si, void *ctx) {
    if (!in_case) {                 /* a fault in the runner itself: die of it */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    in_case = 0;
    ucontext_t *uc = ctx;
    greg_t *g = uc->uc_mcontext.gregs;
    static const int order[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
                                  REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};
    for (int i = 0; i < 16; i++) st.gpr[i] = (uint64_t)g[order[i]];
    st.rflags = (uint64_t)g[REG_EFL];
    st.rip = (uint64_t)g[REG_RIP];
    if (uc->uc_mcontext.fpregs) {
        memcpy(st.xmm, uc->uc_mcontext.fpregs->_xmm, sizeof st.xmm);
        st.mxcsr = uc->uc_mcontext.fpregs->mxcsr;
        memcpy(st.fx, uc->uc_mcontext.fpregs, sizeof st.fx);
    }
    uintptr_t at = (uintptr_t)st.rip - 1;
    int trap_in_filler = sig == SIGTRAP && at >= KILN_CODE_BASE && at < KILN_CODE_BASE + PAGE &&
                         (at < KILN_INSN_ADDR || at >= KILN_INSN_ADDR + in.code_len) && code_page[at - KILN_CODE_BASE] == 0xCC;
    if (trap_in_filler) {           /* a branch landed on the int3 filler: a normal stop at its target */
        st.rip = at;
        st.signal = 0;
    } else {
        st.signal = sig;
        st.fault_addr = (uint64_t)(uintptr_t)si->si_addr;
    }
    siglongjmp(back, 1);
}

static int read_full(void *buf, size_t n) {
    size_t got = fread(buf, 1, n, stdin);
    if (got == 0 && feof(stdin)) return 0;
    if (got != n) { fprintf(stderr, "runner: short record (%zu of %zu bytes)\n", got, n); exit(4); }
    return 1;
}

int main(void) {
    code_page = map_fixed(KILN_CODE_BASE, PROT_READ | PROT_WRITE | PROT_EXEC);
    data_page = map_fixed(KILN_DATA_ADDR, PROT_READ | PROT_WRITE);
    stack_page = map_fixed(KILN_STACK_BASE, PROT_READ | PROT_WRITE);
    static uint8_t altstack[1 << 16];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigfillset(&sa.sa_mask);
    int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGALRM};
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);

    uintptr_t exit_addr = (uintptr_t)&kiln_exit;
    while (read_full(&in, sizeof in)) {
        if (in.code_len == 0 || in.code_len > 15) { fprintf(stderr, "runner: bad code length %u\n", in.code_len); return 4; }
        st = in.st;
        st.rflags &= FLAGS_STATE;
        st.mxcsr &= 0xFFFF;
        st.signal = 0;
        st.fault_addr = 0;
        memset(code_page, 0xCC, PAGE);
        uint8_t *p = code_page + (KILN_INSN_ADDR - KILN_CODE_BASE);
        memcpy(p, in.code, in.code_len);
        p += in.code_len;
        static const uint8_t jmp_rip0[6] = {0xFF, 0x25, 0, 0, 0, 0};   /* jmp qword ptr [rip+0] */
        memcpy(p, jmp_rip0, 6);
        memcpy(p + 6, &exit_addr, 8);
        memcpy(data_page, in.st.data, PAGE);
        memcpy(stack_page, in.st.stack, PAGE);
        if (sigsetjmp(back, 1) == 0) {
            alarm(1);
            in_case = 1;
            kiln_enter(&st);
            in_case = 0;
            st.rip = KILN_INSN_ADDR + in.code_len;
        }
        alarm(0);
        __asm__ volatile("cld; fninit");
        unsigned mx = 0x1F80;
        __asm__ volatile("ldmxcsr %0" : : "m"(mx));
        st.rflags &= FLAGS_STATE;
        memcpy(st.data, data_page, PAGE);
        memcpy(st.stack, stack_page, PAGE);
        if (fwrite(&st, sizeof st, 1, stdout) != 1) return 5;
    }
    return fflush(stdout) == 0 ? 0 : 5;
}
