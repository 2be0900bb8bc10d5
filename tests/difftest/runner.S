/* Enter and leave one test instruction: load the whole test state, jump to it, save the state after it.
 *
 * void kiln_enter(struct kiln_state *st)   (layout: runner.c, struct kiln_state)
 *
 * The instruction sits at KILN_INSN_ADDR followed by a stub `jmp [rip+0]; .quad kiln_exit`
 * (written by runner.c). Between popfq and the instruction only `mov`s run, so the
 * flags the instruction sees are exactly the state's; the same holds on the way out
 * until pushfq. The x87/MMX registers, tag word and TOP come and go through fxrstor/fxsave
 * (the host's x87 state is reset with fninit after). rsp is the state's from the
 * instruction's point of view: the host stack pointer is kept in memory, never on the test stack.
 */
    .intel_syntax noprefix

#define ST_GPR      0
#define ST_RFLAGS   128
#define ST_MXCSR    144
#define ST_XMM      160
#define ST_FX       (416 + 2 * 4096)

    .bss
    .balign 16
kiln_state_ptr: .quad 0
kiln_host_rsp:  .quad 0
kiln_tmp_rax:   .quad 0
kiln_host_mxcsr: .long 0

    .data
    .balign 8
kiln_insn_target: .quad KILN_INSN_ADDR

    .text
    .globl kiln_enter
    .type kiln_enter, @function
kiln_enter:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov [rip + kiln_host_rsp], rsp
    mov [rip + kiln_state_ptr], rdi
    stmxcsr [rip + kiln_host_mxcsr]
    fxrstor [rdi + ST_FX]
    ldmxcsr [rdi + ST_MXCSR]
    movdqu xmm0,  [rdi + ST_XMM + 0*16]
    movdqu xmm1,  [rdi + ST_XMM + 1*16]
    movdqu xmm2,  [rdi + ST_XMM + 2*16]
    movdqu xmm3,  [rdi + ST_XMM + 3*16]
    movdqu xmm4,  [rdi + ST_XMM + 4*16]
    movdqu xmm5,  [rdi + ST_XMM + 5*16]
    movdqu xmm6,  [rdi + ST_XMM + 6*16]
    movdqu xmm7,  [rdi + ST_XMM + 7*16]
    movdqu xmm8,  [rdi + ST_XMM + 8*16]
    movdqu xmm9,  [rdi + ST_XMM + 9*16]
    movdqu xmm10, [rdi + ST_XMM + 10*16]
    movdqu xmm11, [rdi + ST_XMM + 11*16]
    movdqu xmm12, [rdi + ST_XMM + 12*16]
    movdqu xmm13, [rdi + ST_XMM + 13*16]
    movdqu xmm14, [rdi + ST_XMM + 14*16]
    movdqu xmm15, [rdi + ST_XMM + 15*16]
    push qword ptr [rdi + ST_RFLAGS]
    popfq
    mov rax, rdi
    mov rcx, [rax + ST_GPR + 1*8]
    mov rdx, [rax + ST_GPR + 2*8]
    mov rbx, [rax + ST_GPR + 3*8]
    mov rsp, [rax + ST_GPR + 4*8]
    mov rbp, [rax + ST_GPR + 5*8]
    mov rsi, [rax + ST_GPR + 6*8]
    mov rdi, [rax + ST_GPR + 7*8]
    mov r8,  [rax + ST_GPR + 8*8]
    mov r9,  [rax + ST_GPR + 9*8]
    mov r10, [rax + ST_GPR + 10*8]
    mov r11, [rax + ST_GPR + 11*8]
    mov r12, [rax + ST_GPR + 12*8]
    mov r13, [rax + ST_GPR + 13*8]
    mov r14, [rax + ST_GPR + 14*8]
    mov r15, [rax + ST_GPR + 15*8]
    mov rax, [rax + ST_GPR + 0*8]
    jmp qword ptr [rip + kiln_insn_target]
    .size kiln_enter, .-kiln_enter

    .globl kiln_exit
    .type kiln_exit, @function
kiln_exit:
    mov [rip + kiln_tmp_rax], rax
    mov rax, [rip + kiln_state_ptr]
    mov [rax + ST_GPR + 1*8], rcx
    mov [rax + ST_GPR + 2*8], rdx
    mov [rax + ST_GPR + 3*8], rbx
    mov [rax + ST_GPR + 4*8], rsp
    mov [rax + ST_GPR + 5*8], rbp
    mov [rax + ST_GPR + 6*8], rsi
    mov [rax + ST_GPR + 7*8], rdi
    mov [rax + ST_GPR + 8*8], r8
    mov [rax + ST_GPR + 9*8], r9
    mov [rax + ST_GPR + 10*8], r10
    mov [rax + ST_GPR + 11*8], r11
    mov [rax + ST_GPR + 12*8], r12
    mov [rax + ST_GPR + 13*8], r13
    mov [rax + ST_GPR + 14*8], r14
    mov [rax + ST_GPR + 15*8], r15
    mov rcx, [rip + kiln_tmp_rax]
    mov [rax + ST_GPR + 0*8], rcx
    mov rsp, [rip + kiln_host_rsp]
    fxsave [rax + ST_FX]
    fninit
    pushfq
    pop qword ptr [rax + ST_RFLAGS]
    cld
    movdqu [rax + ST_XMM + 0*16], xmm0
    movdqu [rax + ST_XMM + 1*16], xmm1
    movdqu [rax + ST_XMM + 2*16], xmm2
    movdqu [rax + ST_XMM + 3*16], xmm3
    movdqu [rax + ST_XMM + 4*16], xmm4
    movdqu [rax + ST_XMM + 5*16], xmm5
    movdqu [rax + ST_XMM + 6*16], xmm6
    movdqu [rax + ST_XMM + 7*16], xmm7
    movdqu [rax + ST_XMM + 8*16], xmm8
    movdqu [rax + ST_XMM + 9*16], xmm9
    movdqu [rax + ST_XMM + 10*16], xmm10
    movdqu [rax + ST_XMM + 11*16], xmm11
    movdqu [rax + ST_XMM + 12*16], xmm12
    movdqu [rax + ST_XMM + 13*16], xmm13
    movdqu [rax + ST_XMM + 14*16], xmm14
    movdqu [rax + ST_XMM + 15*16], xmm15
    stmxcsr [rax + ST_MXCSR]
    ldmxcsr [rip + kiln_host_mxcsr]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
    .size kiln_exit, .-kiln_exit

    .section .note.GNU-stack, "", @progbits
