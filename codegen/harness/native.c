// SPDX-License-Identifier: GPL-2.0-only
/*
 * Native front end: the generated code runs on this CPU and its instruction
 * traps into a signal handler.  On Intel the bytes raise SIGILL.  On AMD
 * CPUs with CLZERO they decode as CLZERO (the prefix ignored), which user
 * mode may execute: it would zero 64 bytes at RAX.  With --guard TOP the
 * harness first reserves [64 KiB, TOP) with no access, so that every such
 * execution at an address below TOP faults instead (SIGSEGV), and the
 * handler treats the fault exactly like the trap.  Before the first case it
 * proves that: nothing else is mapped below TOP, and CLZERO faults at the
 * edges of the range; otherwise it prints "G fail" and why, and exits.
 *
 * Reads cases from stdin, one per line; writes their events to stdout.  A
 * case that runs longer than its "timeout=N" token says, or --timeout
 * seconds without one (code that loops without a trace event, which the
 * event budget cannot stop), is aborted by SIGALRM, and the harness stops
 * after it: its state may be anywhere.
 *
 * The generated code under test may do anything a process can, so before
 * the first case the harness confines itself: it dies with its parent, may
 * write no file larger than 1 MiB, use no more than --cpu seconds of CPU
 * time, and may not create processes or run programs (a seccomp filter,
 * since RLIMIT_NPROC does not hold for root).  Dying with the parent and
 * the CPU limit hold from before any constructor runs (confine_early()).
 * Its caller also runs it in a process group of its own and kills the group
 * when done.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "kharness.h"

#define GUARD_LOW	0x10000UL
#define OUT_CAP		(1UL << 30)
#define FILE_CAP	(1UL << 20)

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

static sigjmp_buf probe_env;

static void on_probe(int sig)
{
	siglongjmp(probe_env, sig);
}

/* Whether CLZERO (0F 01 FC) at @addr traps instead of zeroing the line there. */
static int clzero_traps(unsigned long addr)
{
	struct sigaction sa = { .sa_handler = on_probe }, segv, ill;
	int trapped;

	sigaction(SIGSEGV, &sa, &segv);
	sigaction(SIGILL, &sa, &ill);
	trapped = sigsetjmp(probe_env, 1);
	if (!trapped)
		asm volatile(".byte 0x0f, 0x01, 0xfc" : : "a"(addr) : "memory");
	sigaction(SIGSEGV, &segv, NULL);
	sigaction(SIGILL, &ill, NULL);
	return trapped != 0;
}

/*
 * The start-up self-test of the guard: nothing but the reservation is mapped
 * below @top (so nothing can be mapped there later either: the kernel places no
 * mapping below mmap_min_addr or over another), and CLZERO traps at the edges of
 * both the page-zero gap and the reservation.  NULL when it holds, else why not.
 */
static const char *guard_fails(unsigned long top)
{
	const unsigned long probes[] = { 0, GUARD_LOW - 64, GUARD_LOW, top - 64 };
	unsigned long start, end;
	char line[512];
	FILE *maps = fopen("/proc/self/maps", "r");
	unsigned int i;

	if (!maps)
		return "cannot read /proc/self/maps";
	while (fgets(line, sizeof(line), maps)) {
		if (sscanf(line, "%lx-%lx", &start, &end) == 2 && start < top &&
		    (start != GUARD_LOW || end != top)) {
			fclose(maps);
			return "a mapping lies below the guard's top";
		}
	}
	fclose(maps);
	for (i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
		if (!clzero_traps(probes[i]))
			return "CLZERO ran below the guard's top without a fault";
	return NULL;
}

static char timeout_why[96];
static volatile sig_atomic_t timed_out;

static void on_alarm(int sig __always_unused)
{
	timed_out = 1;
	kgen_abort_case(timeout_why);
}

/* The seconds a case may run: its timeout=N token, or @fallback. */
static unsigned int case_timeout(const char *line, unsigned int fallback)
{
	const char *t = strstr(line, " timeout=");

	return t ? (unsigned int)strtoul(t + 9, NULL, 0) : fallback;
}

static void set_limit(int resource, rlim_t value)
{
	struct rlimit rl = { value, value };

	setrlimit(resource, &rl);
}

/* Refuse every way of making a process or running a program: EPERM. */
static void forbid_processes(void)
{
#define DENY(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
		 BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM)
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		/* the x32 numbers alias the same calls */
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		DENY(__NR_fork), DENY(__NR_vfork), DENY(__NR_clone), DENY(__NR_clone3),
		DENY(__NR_execve), DENY(__NR_execveat),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
#undef DENY
	struct sock_fprog prog = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };

	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/*
 * First of all the executable's initialisers (.preinit_array, which glibc calls with argc and
 * argv), before any constructor of the code under test runs (one in a --reference header,
 * which main() would come too late to confine): die with the parent that --parent names,
 * now if it is gone already, and take --cpu's limit.
 */
static void confine_early(int argc, char **argv, char **envp __always_unused)
{
	int i;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (i = 1; i + 1 < argc; i++) {
		if (!strcmp(argv[i], "--parent") && getppid() != (pid_t)strtol(argv[i + 1], NULL, 0))
			_exit(127);
		if (!strcmp(argv[i], "--cpu"))
			set_limit(RLIMIT_CPU, strtoul(argv[i + 1], NULL, 0));
	}
}

__attribute__((used, section(".preinit_array")))
static void (*const early_confinement)(int, char **, char **) = confine_early;

/* The rest of the confinement: --cpu's limit is confine_early()'s. */
static void confine(void)
{
	set_limit(RLIMIT_FSIZE, FILE_CAP);
	set_limit(RLIMIT_CORE, 0);
	set_limit(RLIMIT_NPROC, 0);
	forbid_processes();
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_sigaction = on_trap, .sa_flags = SA_SIGINFO | SA_NODEFER };
	struct sigaction alarm_sa = { .sa_handler = on_alarm, .sa_flags = SA_NODEFER };
	unsigned int timeout = 20, seconds;
	char *line = NULL, *out;
	size_t cap = 0;
	ssize_t len;

	if (argc >= 3 && !strcmp(argv[1], "--parent")) { /* taken by confine_early() */
		argc -= 2;
		argv += 2;
	}
	if (argc >= 3 && !strcmp(argv[1], "--timeout")) {
		timeout = (unsigned int)strtoul(argv[2], NULL, 0);
		argc -= 2;
		argv += 2;
	}
	if (argc >= 3 && !strcmp(argv[1], "--cpu")) {
		argc -= 2; /* the limit is taken by confine_early() */
		argv += 2;
	}
	if (argc == 3 && !strcmp(argv[1], "--guard")) {
		unsigned long top = strtoul(argv[2], NULL, 0);
		void *p = mmap((void *)GUARD_LOW, top - GUARD_LOW, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);

		const char *why = p == (void *)GUARD_LOW ? guard_fails(top) :
				  "the address space below the guard's top is not free";

		if (why) {
			printf("G fail\n");
			fprintf(stderr, "%s\n", why);
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
	confine();
	while (!timed_out && (len = getline(&line, &cap, stdin)) > 0) {
		seconds = case_timeout(line, timeout);
		snprintf(timeout_why, sizeof(timeout_why),
			 "timed out after %u s: the code ran far longer than the mirror expects", seconds);
		kgen_set_output(out, OUT_CAP);
		alarm(seconds);
		kgen_run(line, (unsigned long)len);
		alarm(0);
		fwrite(kgen_out, 1, kgen_out_len, stdout);
		fflush(stdout);
	}
	free(line);
	return 0;
}
