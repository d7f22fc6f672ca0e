// SPDX-License-Identifier: GPL-2.0-only
/*
 * Emulator front end: a bare ELF with no libc that a CPU emulator runs.
 * The emulator calls kgen_emu_run() with cases in kgen_emu_in, runs it until
 * it returns, and reads kgen_emu_out back.  It stops at each instruction it cannot execute (the
 * spec's, among others), pushes its address and continues at
 * kgen_emu_trap_stub, which saves every register, calls kgen_trap() and
 * returns past the instruction: the same path a signal takes natively.
 * The code is built with -mno-red-zone, as the kernel is, so the pushes
 * cannot clobber a leaf function's locals.
 */
#include "kharness.h"

#define IN_CAP		(1UL << 20)
#define OUT_CAP		(48UL << 20)

char kgen_emu_in[IN_CAP];
char kgen_emu_out[OUT_CAP];

void kgen_emu_run(unsigned long len);
void kgen_emu_run(unsigned long len)
{
	kgen_set_output(kgen_emu_out, OUT_CAP);
	kgen_run(kgen_emu_in, len);
}

void kgen_emu_trap(struct kgen_regs *regs);
void kgen_emu_trap(struct kgen_regs *regs)
{
	if (!kgen_trap(regs))
		kgen_abort_case("an instruction the emulator cannot run, and not the spec's");
}

/* [rsp] = address of the trapped instruction, pushed by the emulator. */
__asm__(".text\n"
	".globl kgen_emu_trap_stub\n"
	".type kgen_emu_trap_stub, @function\n"
	"kgen_emu_trap_stub:\n"
	"	pushfq\n"
	"	pushq %rax\n	pushq %rcx\n	pushq %rdx\n	pushq %rsi\n"
	"	pushq %rdi\n	pushq %r8\n	pushq %r9\n	pushq %r10\n"
	"	pushq %r11\n	pushq %rbx\n	pushq %rbp\n"
	"	movq %rsp, %rbx\n"
	"	subq $48, %rsp\n"
	"	andq $-16, %rsp\n"
	"	movq 80(%rbx), %rax\n	movq %rax, 0(%rsp)\n"	/* rax */
	"	movq 72(%rbx), %rax\n	movq %rax, 8(%rsp)\n"	/* rcx */
	"	movq 64(%rbx), %rax\n	movq %rax, 16(%rsp)\n"	/* rdx */
	"	movq 96(%rbx), %rax\n	movq %rax, 24(%rsp)\n"	/* rip */
	"	movq 88(%rbx), %rax\n	movq %rax, 32(%rsp)\n"	/* flags */
	"	movq %rsp, %rdi\n"
	"	call kgen_emu_trap\n"
	"	movq 0(%rsp), %rax\n	movq %rax, 80(%rbx)\n"
	"	movq 8(%rsp), %rax\n	movq %rax, 72(%rbx)\n"
	"	movq 16(%rsp), %rax\n	movq %rax, 64(%rbx)\n"
	"	movq 24(%rsp), %rax\n	movq %rax, 96(%rbx)\n"
	"	movq 32(%rsp), %rax\n	movq %rax, 88(%rbx)\n"
	"	movq %rbx, %rsp\n"
	"	popq %rbp\n	popq %rbx\n	popq %r11\n	popq %r10\n"
	"	popq %r9\n	popq %r8\n	popq %rdi\n	popq %rsi\n"
	"	popq %rdx\n	popq %rcx\n	popq %rax\n"
	"	popfq\n"
	"	ret\n"
	".size kgen_emu_trap_stub, .-kgen_emu_trap_stub\n");

/* What a compiler may call even in freestanding code. */
void *memset(void *s, int c, unsigned long n)
{
	/* volatile: never turned back into a memset() call; words where aligned */
	volatile unsigned char *p = s;
	unsigned long word = 0x0101010101010101UL * (unsigned char)c;

	while (n && ((unsigned long)p & 7)) {
		*p++ = (unsigned char)c;
		n--;
	}
	for (; n >= 8; n -= 8, p += 8)
		*(volatile unsigned long *)p = word;
	while (n--)
		*p++ = (unsigned char)c;
	return s;
}

void *memcpy(void *d, const void *s, unsigned long n)
{
	volatile unsigned char *dp = d;
	const unsigned char *sp = s;

	while (n--)
		*dp++ = *sp++;
	return d;
}

void *memmove(void *d, const void *s, unsigned long n)
{
	volatile unsigned char *dp = d;
	const unsigned char *sp = s;

	if (dp < sp)
		while (n--)
			*dp++ = *sp++;
	else
		while (n--)
			dp[n] = sp[n];
	return d;
}
