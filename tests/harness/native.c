// SPDX-License-Identifier: GPL-2.0-only
/*
 * Native front end: the generated code runs on this CPU and its instruction
 * traps into a signal handler.  On Intel the bytes raise SIGILL.  On AMD
 * CPUs with CLZERO they decode as CLZERO (the prefix ignored), which user
 * mode may execute: it would zero 64 bytes at RAX.  With --guard TOP the
 * harness first reserves [64 KiB, TOP) with no access, so that every such
 * execution at an address below TOP faults instead (SIGSEGV), and the
 * handler treats the fault exactly like the trap.
 *
 * Reads cases from stdin, one per line; writes their events to stdout.  A
 * case that runs longer than --timeout seconds (code that loops without a
 * trace event, which the event budget cannot stop) is aborted by SIGALRM.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "kharness.h"

#define GUARD_LOW	0x10000UL
#define OUT_CAP		(1UL << 30)

static void on_trap(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	greg_t *g = uc->uc_mcontext.gregs;
	struct kgen_regs r = {
		.rax = (u64)g[REG_RAX], .rcx = (u64)g[REG_RCX], .rdx = (u64)g[REG_RDX],
		.rip = (u64)g[REG_RIP], .flags = (u64)g[REG_EFL],
	};

	if (sig != SIGILL && si->si_addr == (void *)(unsigned long)r.rip)
		kgen_abort_case("jumped to an address that holds no code");
	if (!kgen_trap(&r))
		kgen_abort_case(sig == SIGILL ? "SIGILL on bytes that are not the spec's instruction" :
				"a memory fault in the generated code, not at the spec's instruction");
	g[REG_RAX] = (greg_t)r.rax;
	g[REG_RCX] = (greg_t)r.rcx;
	g[REG_RDX] = (greg_t)r.rdx;
	g[REG_RIP] = (greg_t)r.rip;
	g[REG_EFL] = (greg_t)r.flags;
}

static void on_alarm(int sig __always_unused)
{
	kgen_abort_case("timed out: the code ran far longer than the mirror expects");
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_sigaction = on_trap, .sa_flags = SA_SIGINFO | SA_NODEFER };
	struct sigaction alarm_sa = { .sa_handler = on_alarm, .sa_flags = SA_NODEFER };
	unsigned int timeout = 20;
	char *line = NULL, *out;
	size_t cap = 0;
	ssize_t len;

	if (argc >= 3 && !strcmp(argv[1], "--timeout")) {
		timeout = (unsigned int)strtoul(argv[2], NULL, 0);
		argc -= 2;
		argv += 2;
	}
	if (argc == 3 && !strcmp(argv[1], "--guard")) {
		unsigned long top = strtoul(argv[2], NULL, 0);
		void *p = mmap((void *)GUARD_LOW, top - GUARD_LOW, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);

		if (p != (void *)GUARD_LOW) {
			printf("G fail\n");
			return 3;
		}
		printf("G ok %#lx %#lx\n", GUARD_LOW, top);
	} else {
		printf("G none\n");
	}
	fflush(stdout);
	out = mmap(NULL, OUT_CAP, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (out == MAP_FAILED)
		return 4;
	sigaction(SIGILL, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGALRM, &alarm_sa, NULL);
	while ((len = getline(&line, &cap, stdin)) > 0) {
		kgen_set_output(out, OUT_CAP);
		alarm(timeout);
		kgen_run(line, (unsigned long)len);
		alarm(0);
		fwrite(kgen_out, 1, kgen_out_len, stdout);
		fflush(stdout);
	}
	free(line);
	return 0;
}
