// SPDX-License-Identifier: GPL-2.0-only
/*
 * The harness core: the kernel API of codegen/shim/kshim.h, a model of the
 * machine (CPUs, SMT topology, time) and of the hardware (the RMP and one
 * RMPOPT-style table per CPU), and the case runner.  Freestanding: no libc.
 *
 * Input: one line per case, whitespace-separated key=value tokens (see
 * codegen/compare.py, which writes them), preceded once by a "spec" line.
 * A case's actions=: setup, trigger, teardown (the worker's entry points), run (a
 * woken kthread runs until it sleeps), a:MS (time passes), teardown-at:N (teardown
 * arrives from another CPU at the Nth cond_resched() from then on), online:CPU and
 * offline:CPU (CPU hotplug between the others), online-at:N:CPU and offline-at:N:CPU (the
 * same, arriving at the Nth cond_resched() from then on: it waits while the hotplug lock is
 * held), online-during:CPU and offline-during:CPU (the same, arriving while the next setup,
 * request or teardown runs: it takes the hotplug lock the first time that entry point lets
 * it go, or when it returns), trigger-at:N (a request arrives from another CPU at the Nth
 * cond_resched() from then on), h:CPU:PA and r:CPU:ARGS (helper calls).
 * Output: one event per line, ending with "E <case id>":
 *
 *	L <ms> <text>			pr_info(), at simulated time <ms>
 *	R <cpu> <rax> <rcx> <cf>	an executed instruction (hex rax, rcx)
 *	S <cpu>				cond_resched()
 *	I <cpu> <cpu,cpu,...>		on_each_cpu_mask() and its online targets
 *	V <value>			a helper's return value
 *	M <cpu> <msr> <value>		wrmsr*_on_cpu() (hex msr, value)
 *	F <cpu> <rax> <rcx> <exc>	the instruction faulted: no feature, or the
 *					CPU's MSR does not enable it; the case stops
 *	B <text>			a bug the harness saw; the case stops here
 */
#include <stdarg.h>

#include "kharness.h"

#define MAX_CODES	16
#define MAX_INSN	15
#define MAX_ASSIGNED	64
#define TABLE_WORDS	(1UL << 18)
#define KT_STACK	(256 * 1024)

/* --- output ------------------------------------------------------------- */

char *kgen_out;
unsigned long kgen_out_len;
unsigned long kgen_out_cap;
static char *op, *oend;	/* write position and end of the usable space */
static bool out_full;

void kgen_set_output(char *buf, unsigned long cap)
{
	kgen_out = buf;
	kgen_out_cap = cap;
	kgen_out_len = 0;
	op = buf;
	oend = buf + cap - 256;	/* room for the closing lines of a case */
}

/* Reserve @n bytes; writes go to *op++ after a successful call. */
static bool room(unsigned long n)
{
	if ((unsigned long)(oend - op) >= n)
		return true;
	out_full = true;
	return false;
}

static void out_char(char c)
{
	if (room(1))
		*op++ = c;
}

static void out_str(const char *s)
{
	while (*s)
		out_char(*s++);
}

/*
 * Text is made a word at a time: the emulator pays for every store (each goes through its
 * check for code written to), so eight bytes go out in one store, not eight.
 */
typedef u64 __attribute__((may_alias, aligned(1))) unaligned_u64;
typedef u32 __attribute__((may_alias, aligned(1))) unaligned_u32;

static void store8(void *p, u64 v)
{
	*(unaligned_u64 *)p = v;
}

static u64 load8(const void *p)
{
	return *(const unaligned_u64 *)p;
}

static u32 load4(const void *p)
{
	return *(const unaligned_u32 *)p;
}

/* The 8 hex digits of the 4 bytes of @x, in memory order, as they lie in memory. */
static u64 hex8(u32 x)
{
	u64 y = (x & 0xffULL) | (x & 0xff00ULL) << 8 | (x & 0xff0000ULL) << 16 |
		(x & 0xff000000ULL) << 24;	/* byte k in bits 16k..16k+7 */
	u64 z = (y >> 4 & 0x000f000f000f000fULL) | (y & 0x000f000f000f000fULL) << 8;

	/* a nibble per byte, the high one first: '0'..'9', then 'a'..'f' (39 further) */
	return z + 0x3030303030303030ULL +
	       ((z + 0x0606060606060606ULL) >> 4 & 0x0101010101010101ULL) * 39;
}

/* Hex with "0x", at least @digits digits; needs 18 bytes of room (all of it written). */
static void put_hex(u64 v, int digits)
{
	int n = 1;

	while (n < 16 && (v >> (4 * n)))
		n++;
	if (n < digits)
		n = digits;
	*op++ = '0';
	*op++ = 'x';
	v <<= 4 * (16 - n);	/* the first digit on top */
	store8(op, hex8(__builtin_bswap32((u32)(v >> 32))));
	store8(op + 8, hex8(__builtin_bswap32((u32)v)));
	op += n;
}

/* Decimal; needs 20 bytes of room. */
static void put_dec(u64 v)
{
	char buf[20];
	int n = 0;

	do {
		buf[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*op++ = buf[--n];
}

static void out_hex(u64 v, int digits)
{
	if (room(18))
		put_hex(v, digits);
}

static void out_dec(u64 v)
{
	if (room(20))
		put_dec(v);
}

/* --- cases, events and their budget -------------------------------------- */

static void *case_jmp[5];
static unsigned long events, budget, steps;
static bool case_running;

/*
 * Calls into the kernel API count as steps; code that makes far more of them
 * than the case has events loops without doing anything the trace shows (a
 * kthread that never sleeps, say): the kernel's soft-lockup detector, sooner.
 */
static void step(void)
{
	if (budget && ++steps > 4 * budget + 4096)
		kgen_abort_case("soft lockup: the code loops without sleeping or doing any work");
}

static void event_begin(char kind)
{
	kgen_out_len = (unsigned long)(op - kgen_out);	/* complete events so far */
	if (budget && ++events > budget)
		kgen_abort_case("event budget exceeded: the code does far more than the mirror expects");
	out_char(kind);
}

/* End the running case after its last event, without a bug report. */
static void kgen_end_case(void)
{
	if (case_running)
		__builtin_longjmp(case_jmp, 1);
	for (;;)
		;
}

void kgen_abort_case(const char *why)
{
	oend += 128;	/* a bug report may use the reserve */
	out_str("B ");
	out_str(why);
	out_char('\n');
	oend -= 128;
	if (case_running)
		__builtin_longjmp(case_jmp, 1);
	for (;;)
		;
}

/* --- the spec (once per run) --------------------------------------------- */

static u8 insn[MAX_INSN];
static int insn_len;
static bool oracle;	/* model=oracle: outputs from a hash of the inputs (see below) */
static u64 region_size, region_entries;
static u64 code_value[MAX_CODES];
static char code_effect[MAX_CODES];	/* 's' scan-and-set, 'r' read */
static int ncodes;
/* the enabling MSR (msr=0: the spec has none, every CPU may execute) */
static u64 msr_number, msr_base_mask, feature_bit;
static int msr_enable_bit;
static bool msr_per_core;
static char fault_name[8] = "UD";
/* the prerequisites setup checks (prereqs=NAME,NAME: the checks' arguments) */
#define MAX_PREREQS	8
#define PREREQ_LEN	64
static char prereq[MAX_PREREQS][PREREQ_LEN];
static int nprereqs;

/* --- the machine (once per case) ----------------------------------------- */

unsigned long min_low_pfn, max_pfn;
struct cpumask __cpu_online_mask;
unsigned int nr_cpu_ids;
static unsigned int m_cores, m_threads;
static bool m_spread;
static unsigned int cur_cpu;
static unsigned int m_leader;	/* the CPU the entry points and the worker run on */
static int migrate_depth, in_ipi;
static unsigned long now;	/* simulated time in ms; timers count jiffies (HZ = 250) */
#define JIFFY_MS	4
static bool m_feature;		/* the CPUs have the instruction */
static bool m_absent[MAX_PREREQS];	/* "absent=NAME,...": prerequisites the machine lacks */
static u64 table_base;		/* the RMPOPT_BASE the CPUs' tables start at */
static u64 msr_val[NR_CPUS];	/* per core (or per CPU): the enabling MSR */
static unsigned int msr_used;	/* msr_val[] past this was not written since it was cleared */
static int mutexes_held, hotplug_depth;
static int in_hp_cb;	/* a CPU hotplug callback runs, with the hotplug lock held */
#define MAX_MUTEXES	4
static struct mutex *locked[MAX_MUTEXES];	/* to release after an aborted case */

static unsigned int core_of(unsigned int cpu)
{
	return m_spread ? cpu % m_cores : cpu / m_threads;
}

static unsigned int thread_of(unsigned int cpu)
{
	return m_spread ? cpu / m_cores : cpu % m_threads;
}

bool topology_is_primary_thread(unsigned int cpu)
{
	return thread_of(cpu) == 0;
}

static struct cpumask sibling_mask;

/*
 * As the kernel keeps it: the online threads of an online CPU's core (the CPU itself
 * included), and nothing for an offline CPU.
 */
static unsigned int sibling_core = ~0U;	/* whose siblings sibling_mask holds; ~0U: none */

const struct cpumask *topology_sibling_cpumask(unsigned int cpu)
{
	if (cpu >= nr_cpu_ids || !cpu_online(cpu)) {
		sibling_core = ~0U;
		cpumask_clear(&sibling_mask);
		return &sibling_mask;
	}
	if (core_of(cpu) == sibling_core)
		return &sibling_mask;
	sibling_core = core_of(cpu);
	cpumask_clear(&sibling_mask);
	for (unsigned int c = 0; c < nr_cpu_ids; c++)
		if (core_of(c) == core_of(cpu) && cpu_online(c))
			__cpumask_set_cpu(c, &sibling_mask);
	return &sibling_mask;
}

unsigned int kshim_smp_processor_id(void)
{
	if (!migrate_depth && !in_ipi && !in_hp_cb)
		kgen_abort_case("smp_processor_id() in preemptible code: the CPU may change under it");
	return cur_cpu;
}

void migrate_disable(void)
{
	migrate_depth++;
}

void migrate_enable(void)
{
	if (!migrate_depth)
		kgen_abort_case("migrate_enable() without migrate_disable()");
	migrate_depth--;
}

/* --- enabling: the feature, the MSR, and the locks around them ----------- */

static unsigned int msr_slot(unsigned int cpu)
{
	return msr_per_core ? core_of(cpu) : cpu;
}

static void set_msr(unsigned int cpu, u64 value)
{
	unsigned int slot = msr_slot(cpu);

	msr_val[slot] = value;
	if (slot >= msr_used)
		msr_used = slot + 1;	/* the next case clears it */
}

unsigned int cpumask_first_and(const struct cpumask *a, const struct cpumask *b)
{
	unsigned int cpu;

	for (cpu = 0; cpu < nr_cpu_ids; cpu++)
		if (cpumask_test_cpu(cpu, a) && cpumask_test_cpu(cpu, b))
			break;
	return cpu;
}

unsigned int cpumask_weight_and(const struct cpumask *a, const struct cpumask *b)
{
	unsigned int n = 0;

	for (unsigned int cpu = 0; cpu < nr_cpu_ids; cpu++)
		n += cpumask_test_cpu(cpu, a) && cpumask_test_cpu(cpu, b);
	return n;
}

bool kshim_cpu_feature_enabled(unsigned int bit)
{
	if (bit != feature_bit)
		kgen_abort_case("cpu_feature_enabled() asks for another feature bit than the spec's");
	return m_feature;
}

/* The index of the prerequisite named by the @len bytes at @s, or -1. */
static int find_prereq(const char *s, int len)
{
	for (int i = 0; i < nprereqs; i++) {
		int j = 0;

		while (j < len && prereq[i][j] && prereq[i][j] == s[j])
			j++;
		if (j == len && !prereq[i][j])
			return i;
	}
	return -1;
}

bool kshim_cc_platform_has(const char *attr)
{
	int len = 0, i;

	step();
	while (attr[len])
		len++;
	i = find_prereq(attr, len);
	if (i < 0)
		kgen_abort_case("cc_platform_has() asks for an attribute the spec does not list");
	return !m_absent[i];
}

static int in_work;	/* a kthread or a work item runs: not an entry point */
static bool order_mutex_hp, order_hp_mutex;	/* lock order seen: what lockdep records */

/* Lockdep: a mutex taken both outside and inside the hotplug lock can deadlock. */
static void lock_order(bool mutex_then_hp, bool hp_then_mutex)
{
	order_mutex_hp |= mutex_then_hp;
	order_hp_mutex |= hp_then_mutex;
	if (order_mutex_hp && order_hp_mutex)
		kgen_abort_case("possible circular locking dependency: a mutex is taken both "
				"around and inside the CPU hotplug lock (a hotplug callback)");
}

/* Setup, requests and teardown share state: each must hold the mutex. */
static void need_mutex(const char *why)
{
	if (msr_number && !mutexes_held && !in_work)
		kgen_abort_case(why);
}

static int wrmsr_on_cpu(unsigned int cpu, u32 msr_no, u64 q)
{
	step();
	if (!in_hp_cb)
		need_mutex("MSR written without the mutex: setup and teardown race");
	if (!hotplug_depth && !in_hp_cb)
		kgen_abort_case("wrmsr on other CPUs without cpus_read_lock(): a CPU may come or go");
	if (!m_feature)
		kgen_abort_case("#GP: WRMSR to an MSR this CPU does not have (the feature is absent)");
	if (!msr_number || msr_no != msr_number)
		kgen_abort_case("WRMSR to an MSR that is not the spec's");
	if (cpu >= nr_cpu_ids || !cpu_online(cpu))
		kgen_abort_case("wrmsr on an offline CPU");
	event_begin('M');
	out_char(' ');
	out_dec(cpu);
	out_char(' ');
	out_hex(msr_no, 0);
	out_char(' ');
	out_hex(q, 0);
	out_char('\n');
	set_msr(cpu, q);
	if (msr_base_mask && ((q >> msr_enable_bit) & 1))
		table_base = q & msr_base_mask;
	return 0;
}

int wrmsrq_on_cpu(unsigned int cpu, u32 msr_no, u64 q)
{
	return wrmsr_on_cpu(cpu, msr_no, q);
}

int wrmsrl_on_cpu(unsigned int cpu, u32 msr_no, u64 q)
{
	return wrmsr_on_cpu(cpu, msr_no, q);
}

static void might_sleep(void);

void kshim_wrmsr_local(u32 msr_no, u64 q)
{
	if (!in_hp_cb && !in_ipi && !migrate_depth)
		kgen_abort_case("wrmsr on this CPU in preemptible code: the CPU may change under it");
	wrmsr_on_cpu(cur_cpu, msr_no, q);
}

static void hotplug_lock_read(const char *who)
{
	step();
	might_sleep();
	if (hotplug_depth)
		kgen_abort_case(who);
	if (in_hp_cb)
		kgen_abort_case("the hotplug lock taken in a CPU hotplug callback: deadlock");
	lock_order(mutexes_held > 0, false);
}

void kshim_lockdep_assert_cpus_held(void)
{
	if (!hotplug_depth)
		kgen_abort_case("lockdep_assert_cpus_held(): cpus_read_lock() is not held");
}

void cpus_read_lock(void)
{
	hotplug_lock_read("cpus_read_lock() taken twice");
	hotplug_depth++;
}

static void hotplug_waiting(void);
static void async_flush(void);

void cpus_read_unlock(void)
{
	if (!hotplug_depth)
		kgen_abort_case("cpus_read_unlock() without cpus_read_lock()");
	async_flush();
	hotplug_depth--;
	if (!hotplug_depth)
		hotplug_waiting();
}

void mutex_lock(struct mutex *lock)
{
	step();
	might_sleep();
	if (lock->locked)
		kgen_abort_case("mutex_lock() of a mutex already held: deadlock");
	if (mutexes_held == MAX_MUTEXES)
		kgen_abort_case("more mutexes held than the harness tracks");
	lock_order(false, in_hp_cb || hotplug_depth);
	lock->locked = true;
	locked[mutexes_held++] = lock;
}

void mutex_unlock(struct mutex *lock)
{
	if (!lock->locked)
		kgen_abort_case("mutex_unlock() of a mutex that is not held");
	lock->locked = false;
	for (int i = 0; i < mutexes_held; i++)
		if (locked[i] == lock)
			locked[i] = locked[--mutexes_held];
}

void kshim_lockdep_assert_held(struct mutex *lock)
{
	if (!lock->locked)
		kgen_abort_case("lockdep_assert_held(): the mutex is not held");
}

static unsigned long teardown_at;	/* "teardown-at:N": cond_resched() calls until it arrives */
static void teardown_arrives(void);
static unsigned long trigger_at;	/* "trigger-at:N": the same for a request */
static void trigger_arrives(void);
/* "online-at:N:CPU", "offline-at:N:CPU": cond_resched() calls until it arrives, and what */
static unsigned long hp_at;
static unsigned int hp_at_cpu;
static bool hp_at_online, hp_due;
/*
 * "online-during:CPU", "offline-during:CPU": armed until the next entry point starts, then
 * due: it runs the first time the hotplug lock is free again (cpus_read_unlock(), the end of
 * cpuhp_setup_state() or cpuhp_remove_state(), which take it themselves) or when the entry
 * point returns.
 */
static unsigned int hp_during_cpu;
static bool hp_during_online, hp_during_armed, hp_during_due;

void kshim_cond_resched(void)
{
	might_sleep();
	event_begin('S');
	if (room(24)) {
		*op++ = ' ';
		put_dec(cur_cpu);
		*op++ = '\n';
	}
	if (teardown_at && !--teardown_at)
		teardown_arrives();
	if (trigger_at && !--trigger_at)
		trigger_arrives();
	if (hp_at && !--hp_at) {
		hp_due = true;	/* it waits for the hotplug lock */
		if (!hotplug_depth)
			hotplug_waiting();
	}
}

/*
 * on_each_cpu_mask() with @wait false returns before its targets run: they run "later", which
 * the harness makes as late as the kernel allows, when the caller next calls
 * on_each_cpu_mask() (the per-CPU call data is reused only once the last call is done), drops
 * the hotplug lock or returns to the harness.  What @info points to must still hold then.
 */
static smp_call_func_t async_func;
static void *async_info;
static struct cpumask async_mask;
static unsigned int async_caller;

static void run_targets(smp_call_func_t func, void *info, const struct cpumask *mask,
			unsigned int caller)
{
	for (unsigned int cpu = 0; cpu < nr_cpu_ids; cpu++) {
		if (!cpumask_test_cpu(cpu, mask))
			continue;
		cur_cpu = cpu;
		in_ipi++;
		func(info);
		in_ipi--;
	}
	cur_cpu = caller;
}

static void async_flush(void)
{
	smp_call_func_t func = async_func;

	if (!func)
		return;
	async_func = NULL;
	run_targets(func, async_info, &async_mask, async_caller);
}

void on_each_cpu_mask(const struct cpumask *mask, smp_call_func_t func, void *info, bool wait)
{
	unsigned int caller = cur_cpu, cpu;
	struct cpumask targets;
	bool first = true;

	async_flush();
	if (msr_number && !hotplug_depth)
		kgen_abort_case("on_each_cpu_mask() without cpus_read_lock(): a follower may go offline");
	cpumask_clear(&targets);
	event_begin('I');
	out_char(' ');
	out_dec(caller);
	out_char(' ');
	for (cpu = 0; cpu < nr_cpu_ids; cpu++) {
		if (!cpumask_test_cpu(cpu, mask) || !cpumask_test_cpu(cpu, cpu_online_mask))
			continue;
		if (!first)
			out_char(',');
		out_dec(cpu);
		first = false;
		__cpumask_set_cpu(cpu, &targets);
	}
	out_char('\n');
	if (wait) {
		run_targets(func, info, &targets, caller);
		return;
	}
	async_func = func;
	async_info = info;
	async_mask = targets;
	async_caller = caller;
}

void set_bit(long nr, volatile unsigned long *addr)
{
	addr[nr / BITS_PER_LONG] |= 1UL << (nr % BITS_PER_LONG);
}

bool test_bit(long nr, const volatile unsigned long *addr)
{
	step();
	return (addr[nr / BITS_PER_LONG] >> (nr % BITS_PER_LONG)) & 1;
}

void clear_bit(long nr, volatile unsigned long *addr)
{
	addr[nr / BITS_PER_LONG] &= ~(1UL << (nr % BITS_PER_LONG));
}

bool test_and_clear_bit(long nr, volatile unsigned long *addr)
{
	unsigned long bit = 1UL << (nr % BITS_PER_LONG);
	bool was = addr[nr / BITS_PER_LONG] & bit;

	step();
	addr[nr / BITS_PER_LONG] &= ~bit;
	return was;
}

/* pr_info(): the formats the generated code uses, %pa included */
void kshim_pr_info(const char *fmt, ...)
{
	va_list ap;
	const char *end = fmt;

	while (*end)
		end++;
	if (end > fmt && end[-1] == '\n')
		end--;
	event_begin('L');
	out_char(' ');
	out_dec(now);
	out_char(' ');
	va_start(ap, fmt);
	for (const char *p = fmt; p < end; p++) {
		if (*p != '%') {
			out_char(*p);
			continue;
		}
		p++;
		if (*p == 'p' && p[1] == 'a') {
			out_hex(*va_arg(ap, phys_addr_t *), 16);
			p++;
		} else if (*p == 's') {
			out_str(va_arg(ap, const char *));
		} else if (*p == 'u') {
			out_dec(va_arg(ap, unsigned int));
		} else if (*p == 'l' && p[1] == 'l' && p[2] == 'x') {
			out_hex(va_arg(ap, unsigned long long), 0);
			p += 2;
		} else if (*p == '%') {
			out_char('%');
		} else {
			va_end(ap);
			kgen_abort_case("pr_info() with a format the harness does not know");
		}
	}
	va_end(ap);
	out_char('\n');
}

/* --- the hardware: the RMP and one table per CPU -------------------------- */

static u64 assigned_start[MAX_ASSIGNED], assigned_end[MAX_ASSIGNED];
static int nassigned;
static unsigned long tables[TABLE_WORDS];
static unsigned long table_stride;	/* words per CPU */

static bool region_blocked(u64 start)
{
	for (int i = 0; i < nassigned; i++)
		if (assigned_start[i] < start + region_size && start < assigned_end[i])
			return true;
	return false;
}

/*
 * --- the oracle: instructions without a table model ------------------------
 *
 * For an instruction whose effect the mirror does not simulate (PVALIDATE,
 * RMPUPDATE, ...), the outputs are a fixed function of the inputs: a hash
 * of the input registers (a pointer operand counts by the bytes it points
 * to) and of how often the same inputs came in a row.  codegen/oracle.py
 * computes the same function.  The choice gives every path of a helper its
 * turn: success, each listed return code, arbitrary values in RAX, each
 * output flag, and retry codes at most three times in a row.
 */
#define MAX_REGS	3
#define MEM_BYTES	4096
#define RETRY_STREAK	3

static char in_reg[MAX_REGS];	/* 'a', 'c', 'd': input registers, in spec order */
static u64 in_mask[MAX_REGS];	/* the bits the C operand defines */
static int nin;
static char ptr_reg, ptr_access;	/* pointer operand: register and 'r', 'w' or 'b'oth */
static unsigned long ptr_bytes;
static bool rc_out;
static u64 flag_mask;
static u64 rc_value[MAX_CODES], retry_value[MAX_CODES];
static int nrc, nretry;
static u64 last_key, streak, last_rax;
static bool have_last;
static bool m_stuck;	/* "stuck=1": a retry code persists for the same inputs */
static u8 kgen_mem[MEM_BYTES] __attribute__((aligned(64)));

static u64 mix(u64 x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static u8 stream_byte(u64 seed, unsigned long i)
{
	return (u8)(mix(seed + i / 8) >> (8 * (i % 8)));
}

/* The pointer memory drawn from @seed: byte i is stream_byte(seed, i), eight at a time. */
static void fill_mem(u64 seed)
{
	unsigned long i = 0;

	for (; i + 8 <= ptr_bytes; i += 8)
		store8(kgen_mem + i, mix(seed + i / 8));
	for (; i < ptr_bytes; i++)
		kgen_mem[i] = stream_byte(seed, i);
}

void *kgen_pointer_arg(u64 seed)
{
	fill_mem(seed);
	return kgen_mem;
}

static u64 mem_hash(void)
{
	u64 h = 0;

	for (unsigned long i = 0; i < ptr_bytes; i += 8) {
		u64 chunk = 0;

		if (i + 8 <= ptr_bytes)
			chunk = load8(kgen_mem + i);
		else
			for (unsigned long j = 0; i + j < ptr_bytes; j++)
				chunk |= (u64)kgen_mem[i + j] << (8 * j);
		h = mix(h ^ chunk);
	}
	return h;
}

static u64 *reg_of(struct kgen_regs *regs, char r)
{
	return r == 'a' ? &regs->rax : r == 'c' ? &regs->rcx : &regs->rdx;
}

static void put_mem(void)
{
	unsigned long i;

	if (!room(2 * ptr_bytes + 2))
		kgen_abort_case("output buffer full");
	*op++ = ' ';
	*op++ = '@';
	for (i = 0; i + 4 <= ptr_bytes; i += 4, op += 8)
		store8(op, hex8(load4(kgen_mem + i)));
	for (; i < ptr_bytes; i++) {
		*op++ = "0123456789abcdef"[kgen_mem[i] >> 4];
		*op++ = "0123456789abcdef"[kgen_mem[i] & 15];
	}
}

static bool is_retry(u64 v)
{
	for (int i = 0; i < nretry; i++)
		if (retry_value[i] == v)
			return true;
	return false;
}

static void oracle_trap(struct kgen_regs *regs)
{
	u64 key = 0, h, rax = regs->rax, flags = 0;

	out_char(' ');
	out_dec(cur_cpu);
	for (int i = 0; i < nin; i++) {
		u64 v = *reg_of(regs, in_reg[i]) & in_mask[i];

		if (in_reg[i] == ptr_reg) {
			if (v != (u64)(unsigned long)kgen_mem) {
				out_str(" @?\n");
				kgen_abort_case("the pointer operand does not hold the pointer argument");
			}
			v = mem_hash();
			put_mem();
		} else {
			out_char(' ');
			out_hex(v, 0);
		}
		key = mix(key ^ v);
	}
	streak = have_last && key == last_key ? streak + 1 : 0;
	last_key = key;
	have_last = true;
	h = mix(key ^ mix(streak));
	if (rc_out) {
		switch (h % 8) {
		case 4: case 5:
			rax = nrc ? rc_value[mix(h) % (u64)nrc] : 0;
			break;
		case 6:
			rax = mix(h ^ 1);
			break;
		case 7:
			rax = (h >> 8) & 0xff;
			break;
		default:
			rax = 0;
		}
		if (m_stuck && streak && is_retry(last_rax))
			rax = last_rax;
		else if (is_retry(rax) && streak >= RETRY_STREAK && !m_stuck)
			rax = 0;
		last_rax = rax;
	}
	flags = flag_mask & mix(h ^ 2) & mix(h ^ 3);
	if (ptr_reg && ptr_access != 'r')
		fill_mem(h ^ 4);
	out_str(" =");
	if (rc_out) {
		out_char(' ');
		out_hex(rax, 0);
	}
	if (flag_mask) {
		out_str(" f=");
		out_hex(flags, 0);
	}
	if (ptr_reg && ptr_access != 'r')
		put_mem();
	out_char('\n');
	regs->rax = rax;
	regs->flags = (regs->flags & ~flag_mask) | flags;
	regs->rip += (u64)insn_len;
}

bool kgen_trap(struct kgen_regs *regs)
{
	const u8 *at = (const u8 *)regs->rip;
	u64 start, index;
	int cf = 0, code;

	for (int i = 0; i < insn_len; i++)
		if (at[i] != insn[i])
			return false;
	if (!oracle && msr_number &&
	    (!m_feature || !((msr_val[msr_slot(cur_cpu)] >> msr_enable_bit) & 1))) {
		/* no feature, or the MSR does not enable it: the CPU faults, the kernel oopses */
		event_begin('F');
		out_char(' ');
		out_dec(cur_cpu);
		out_char(' ');
		out_hex(regs->rax, 0);
		out_char(' ');
		out_hex(regs->rcx, 0);
		out_char(' ');
		out_str(fault_name);
		out_char('\n');
		kgen_end_case();
	}
	event_begin('R');
	if (oracle) {
		oracle_trap(regs);
		return true;
	}
	if (!room(64))
		kgen_abort_case("output buffer full");
	*op++ = ' ';
	put_dec(cur_cpu);
	*op++ = ' ';
	put_hex(regs->rax, 0);
	*op++ = ' ';
	put_hex(regs->rcx, 0);
	*op++ = ' ';
	for (code = 0; code < ncodes; code++)
		if (code_value[code] == regs->rcx)
			break;
	if (code == ncodes) {
		out_str("#GP\n");
		kgen_abort_case("undefined function code: the CPU raises #GP");
	}

	start = regs->rax - regs->rax % region_size;
	index = (start - table_base) / region_size;
	if (start >= table_base && index < region_entries) {
		unsigned long *word = &tables[cur_cpu * table_stride + index / 64];
		unsigned long bit = 1UL << (index % 64);

		if (code_effect[code] == 's' && !region_blocked(start))
			*word |= bit;
		cf = (*word & bit) != 0;
	}
	*op++ = (char)('0' + cf);
	*op++ = '\n';
	regs->flags = (regs->flags & ~1ULL) | (u64)cf;
	regs->rip += (u64)insn_len;
	return true;
}

/* --- one kthread, run as a coroutine -------------------------------------- */

struct task_struct {
	int (*fn)(void *data);
	void *data;
	long state;
	bool exists, runnable, should_stop, exited;
	int ret;
	void *sp;
};

static struct task_struct kt;
static struct task_struct *current_task;	/* NULL: the main context */

/* might_sleep(): a task that blocks or reschedules in another state than TASK_RUNNING
 * makes the kernel warn ("do not call blocking ops when !TASK_RUNNING"). */
static void might_sleep(void)
{
	if (current_task && current_task->state != TASK_RUNNING)
		kgen_abort_case("a call that may sleep while the task is not TASK_RUNNING");
}

static void *main_sp;
static unsigned char kt_stack[KT_STACK] __attribute__((aligned(16)));

void kgen_switch(void **save_sp, void *new_sp);
__asm__(".text\n"
	".globl kgen_switch\n"
	".type kgen_switch, @function\n"
	"kgen_switch:\n"
	"	pushq %rbp\n	pushq %rbx\n	pushq %r12\n"
	"	pushq %r13\n	pushq %r14\n	pushq %r15\n"
	"	movq %rsp, (%rdi)\n"
	"	movq %rsi, %rsp\n"
	"	popq %r15\n	popq %r14\n	popq %r13\n"
	"	popq %r12\n	popq %rbx\n	popq %rbp\n"
	"	ret\n"
	".size kgen_switch, .-kgen_switch\n");

static void kt_trampoline(void)
{
	kt.ret = kt.fn(kt.data);
	if (kt.state != TASK_RUNNING)
		kgen_abort_case("the kthread returns while not TASK_RUNNING");
	kt.exited = true;
	current_task = NULL;
	kgen_switch(&kt.sp, main_sp);
	kgen_abort_case("an exited kthread ran again");
}

struct task_struct *kthread_create(int (*threadfn)(void *data), void *data,
				   const char *name)
{
	u64 *sp = (u64 *)(kt_stack + KT_STACK);

	if (!name)
		kgen_abort_case("kthread_create() without a name: the kernel formats the task's name from it");

	need_mutex("kthread_create() without the mutex: setup races with itself");
	if (kt.exists && !kt.exited)
		kgen_abort_case("a second kthread: the harness runs one");
	kt = (struct task_struct){ .fn = threadfn, .data = data, .exists = true,
				   .state = TASK_INTERRUPTIBLE };
	*--sp = 0;				/* the trampoline's return address */
	*--sp = (u64)(unsigned long)kt_trampoline;
	for (int i = 0; i < 6; i++)
		*--sp = 0;			/* rbp rbx r12 r13 r14 r15 */
	kt.sp = sp;
	return &kt;
}

int wake_up_process(struct task_struct *task)
{
	need_mutex("wake_up_process() without the mutex: a request races with teardown");
	if (task->exited || (task->state == TASK_RUNNING && task->runnable))
		return 0;
	task->state = TASK_RUNNING;
	task->runnable = true;
	return 1;
}

static unsigned int m_nomem;	/* worker allocations that fail first: "nomem=N" */
/* The error a kernel call that failed returned in the entry point that runs (0: none): an
 * allocation (-ENOMEM), cpuhp_setup_state() (-ENOSPC); setup must return it. */
static int failed_now;

struct task_struct *kshim_kthread_run(int (*threadfn)(void *data), void *data, const char *name)
{
	struct task_struct *task;

	if (m_nomem) {
		m_nomem--;
		failed_now = -ENOMEM;
		return (struct task_struct *)(unsigned long)-ENOMEM;
	}
	task = kthread_create(threadfn, data, name);
	wake_up_process(task);
	return task;
}

/*
 * --- a teardown from another CPU, arriving while a pass runs ----------------
 *
 * "teardown-at:N" arms it: at the Nth cond_resched() from then on, the worker's
 * teardown entry point starts on a stack of its own, as another CPU would call it.
 * It runs until it has to wait for the running worker (kthread_stop() for the thread,
 * cancel_delayed_work_sync() for the work item); the worker then goes on, and when it is
 * done (the thread exits or sleeps, the work function returns) the teardown resumes and
 * finishes.  Each side has its own CPU state (locks held, migration, current task).
 */
#define TC_STACK	(64 * 1024)

enum { TC_IDLE, TC_RUNNING, TC_WAITING, TC_DONE };

struct cpu_ctx {
	int migrate_depth, in_ipi, in_work, hotplug_depth;
	unsigned int cur_cpu;
	struct task_struct *current_task;
	bool in_caller;
};

static const struct kgen_form *cur_form;
static int tc_state;
static bool in_caller;		/* this code runs in the arriving teardown */
static void *tc_sp, *tc_back;	/* its stack; where it returns when it waits or ends */
static const void *tc_waits_for;	/* the task or work it waits for */
static struct task_struct *tc_interrupted;	/* the kthread it arrived in, or NULL */
static struct cpu_ctx caller_ctx;
static unsigned char tc_stack[TC_STACK] __attribute__((aligned(16)));

static void ctx_save(struct cpu_ctx *c)
{
	*c = (struct cpu_ctx){ migrate_depth, in_ipi, in_work, hotplug_depth, cur_cpu,
			       current_task, in_caller };
}

static void ctx_load(const struct cpu_ctx *c)
{
	migrate_depth = c->migrate_depth;
	in_ipi = c->in_ipi;
	in_work = c->in_work;
	hotplug_depth = c->hotplug_depth;
	cur_cpu = c->cur_cpu;
	current_task = c->current_task;
	in_caller = c->in_caller;
}

static void tc_trampoline(void)
{
	cur_form->entry(2);
	tc_state = TC_DONE;
	kgen_switch(&tc_sp, tc_back);
	kgen_abort_case("a finished teardown ran again");
}

/* Run the teardown until it waits or ends, then come back here with this side's state. */
static void tc_enter(void)
{
	struct cpu_ctx here;

	ctx_save(&here);
	ctx_load(&caller_ctx);
	kgen_switch(&tc_back, tc_sp);
	ctx_save(&caller_ctx);
	ctx_load(&here);
	if (tc_state != TC_DONE)
		return;
	tc_state = TC_IDLE;
	if (caller_ctx.hotplug_depth)
		kgen_abort_case("cpus_read_lock() still held when teardown returns");
	if (mutexes_held)
		kgen_abort_case("a mutex is still held when setup, a request or teardown returns");
}

/*
 * A request from another CPU, while a pass runs: it runs to its end at once (it waits for
 * nothing but the mutex, which no pass holds), with that CPU's state, not the pass's.
 */
static void trigger_arrives(void)
{
	struct cpu_ctx here, other = { .cur_cpu = m_leader };

	if (!cur_form)
		kgen_abort_case("a worker action in a case without a worker form");
	ctx_save(&here);
	ctx_load(&other);
	cur_form->entry(1);
	if (mutexes_held)
		kgen_abort_case("a mutex is still held when setup, a request or teardown returns");
	if (hotplug_depth)
		kgen_abort_case("cpus_read_lock() still held when setup, a request or teardown returns");
	ctx_load(&here);
}

static void teardown_arrives(void)
{
	u64 *sp = (u64 *)(tc_stack + TC_STACK);

	if (!cur_form)
		kgen_abort_case("a worker action in a case without a worker form");
	if (tc_state != TC_IDLE)
		kgen_abort_case("a teardown arrives while another one runs");
	*--sp = 0;				/* the trampoline's return address */
	*--sp = (u64)(unsigned long)tc_trampoline;
	for (int i = 0; i < 6; i++)
		*--sp = 0;			/* rbp rbx r12 r13 r14 r15 */
	tc_sp = sp;
	tc_interrupted = current_task;
	tc_waits_for = NULL;
	caller_ctx = (struct cpu_ctx){ .cur_cpu = cur_cpu, .in_caller = true };
	tc_state = TC_RUNNING;
	tc_enter();
}

/* In the teardown: wait until @what, the kthread or work item that runs, is done. */
static void tc_wait(const void *what)
{
	tc_state = TC_WAITING;
	tc_waits_for = what;
	kgen_switch(&tc_sp, tc_back);
}

/* @what is done: a teardown waiting for it goes on. */
static void tc_resume(const void *what)
{
	if (tc_state != TC_WAITING || tc_waits_for != what)
		return;
	tc_state = TC_RUNNING;
	tc_enter();
	if (tc_state == TC_WAITING)
		kgen_abort_case("teardown waits again for a worker that is done");
}

static void run_until_idle(void)
{
	while (kt.exists && kt.runnable && !kt.exited) {
		current_task = &kt;
		in_work++;
		kgen_switch(&main_sp, kt.sp);
		in_work--;
		current_task = NULL;
		tc_resume(&kt);
	}
}

void kshim_set_current_state(long state)
{
	step();
	if (current_task)
		current_task->state = state;
}

void schedule(void)
{
	if (!current_task || current_task->state == TASK_RUNNING)
		return;
	current_task->runnable = false;
	kgen_switch(&current_task->sp, main_sp);
}

bool kthread_should_stop(void)
{
	step();
	return current_task && current_task->should_stop;
}

int kthread_stop(struct task_struct *task)
{
	need_mutex("kthread_stop() without the mutex: teardown races with setup");
	task->should_stop = true;
	wake_up_process(task);
	if (in_caller && task == tc_interrupted)
		tc_wait(task);	/* the thread is in a pass: it sees the stop after it */
	else
		run_until_idle();
	if (!task->exited)
		kgen_abort_case("kthread_stop(): the thread went back to sleep without exiting");
	return task->ret;
}

/*
 * --- delayed work on simulated time -----------------------------------------
 *
 * HZ = 250: a jiffy is 4 ms and msecs_to_jiffies() rounds up, so a delay given in
 * milliseconds where jiffies are due is four times too long.  A timer expires at a jiffy
 * boundary, and its work runs then (or at once, when that boundary has passed).
 */

struct workqueue_struct {
	bool alive;
};

static struct workqueue_struct wq_obj;
static struct delayed_work *works[8];
static int nworks;

/* As <linux/jiffies.h>: a negative value is an infinite timeout (MAX_JIFFY_OFFSET). */
unsigned long msecs_to_jiffies(unsigned int m)
{
	if ((int)m < 0)
		return (~0UL >> 2) - 1;	/* (LONG_MAX >> 1) - 1 */
	return m / JIFFY_MS + (m % JIFFY_MS != 0);
}

struct workqueue_struct *alloc_ordered_workqueue(const char *name __always_unused,
						 unsigned int flags)
{
	need_mutex("alloc_ordered_workqueue() without the mutex: setup races with itself");
	if (flags)
		kgen_abort_case("alloc_ordered_workqueue() with flags: the harness models a plain "
				"ordered workqueue (flags 0)");
	if (wq_obj.alive)
		kgen_abort_case("a workqueue allocated while the last one was never destroyed: it leaks");
	if (m_nomem) {
		m_nomem--;
		failed_now = -ENOMEM;
		return NULL;
	}
	wq_obj.alive = true;
	return &wq_obj;
}

static void track(struct workqueue_struct *wq, struct delayed_work *dwork)
{
	if (!wq || !wq->alive)
		kgen_abort_case("work queued on a workqueue that does not exist");
	for (int i = 0; i < nworks; i++)
		if (works[i] == dwork)
			return;
	if (nworks == 8)
		kgen_abort_case("more delayed works than the harness tracks");
	works[nworks++] = dwork;
}

bool queue_delayed_work(struct workqueue_struct *wq, struct delayed_work *dwork,
			unsigned long delay)
{
	need_mutex("queue_delayed_work() without the mutex");
	track(wq, dwork);
	if (dwork->pending)
		return false;
	dwork->pending = true;
	dwork->expires = now / JIFFY_MS + delay;	/* in jiffies */
	return true;
}

bool mod_delayed_work(struct workqueue_struct *wq, struct delayed_work *dwork,
		      unsigned long delay)
{
	bool was = dwork->pending;

	need_mutex("mod_delayed_work() without the mutex: a request races with teardown");
	track(wq, dwork);
	dwork->pending = true;
	dwork->expires = now / JIFFY_MS + delay;
	return was;
}

static struct delayed_work *running_work;	/* the work item whose function runs */

bool cancel_delayed_work_sync(struct delayed_work *dwork)
{
	bool was = dwork->pending;

	need_mutex("cancel_delayed_work_sync() without the mutex");
	dwork->pending = false;
	if (in_caller && running_work == dwork)
		tc_wait(dwork);	/* it runs: wait until it returns */
	return was;
}

void destroy_workqueue(struct workqueue_struct *wq)
{
	need_mutex("destroy_workqueue() without the mutex: teardown races with a request");
	for (int i = 0; i < nworks; i++)
		if (works[i]->pending)
			kgen_abort_case("destroy_workqueue() with work still pending");
	wq->alive = false;
}

static void advance(unsigned long ms)
{
	unsigned long target = now + ms;

	for (;;) {
		struct delayed_work *next = NULL;

		for (int i = 0; i < nworks; i++)
			if (works[i]->pending && works[i]->expires <= target / JIFFY_MS &&
			    (!next || works[i]->expires < next->expires))
				next = works[i];
		if (!next)
			break;
		if (next->expires * JIFFY_MS > now)
			now = next->expires * JIFFY_MS;
		next->pending = false;
		in_work++;
		running_work = next;
		next->work.func(&next->work);
		running_work = NULL;
		in_work--;
		tc_resume(next);
	}
	now = target;
}

/*
 * --- CPU hotplug, as <linux/cpuhotplug.h> documents it -----------------------
 *
 * A CPU comes online or goes offline between the actions of a case ("online:CPU",
 * "offline:CPU"), or arrives from another CPU at a cond_resched() ("online-at:N:CPU"): it
 * takes the hotplug lock for writing, so it waits until no cpus_read_lock() is held, then
 * runs.  A CPU that comes online runs the startup callback of every state set up, on
 * itself, after it is in cpu_online_mask; one that goes offline runs the teardown
 * callbacks, last state first, while still online.  A core that was wholly offline comes
 * back with its MSRs as they were: the INIT and SIPIs that bring a CPU back leave MSRs
 * unchanged (Intel SDM Vol. 3A, 9.1), and nothing documents a reset on AMD, so the worse
 * case for the code is modelled: whatever it left enabled there is enabled again.
 */
#define MAX_HP_STATES	4

struct hp_state {
	int (*startup)(unsigned int cpu);
	int (*teardown)(unsigned int cpu);
	bool used;
};

static struct hp_state hp_states[MAX_HP_STATES];
static unsigned int m_hpfail;	/* cpuhp_setup_state() calls that fail first: "hpfail=N" */

static void hp_callback(int (*fn)(unsigned int cpu), unsigned int cpu)
{
	unsigned int caller = cur_cpu;
	int ret;

	if (!fn)
		return;
	cur_cpu = cpu;
	in_hp_cb++;
	ret = fn(cpu);
	in_hp_cb--;
	cur_cpu = caller;
	if (ret)
		kgen_abort_case("a CPU hotplug callback failed: the harness does not model the rollback");
}

static void hotplug(unsigned int cpu, bool online)
{
	if (cpu >= nr_cpu_ids)
		kgen_abort_case("hotplug of a CPU the machine does not have");
	if (online == cpu_online(cpu))
		return;
	sibling_core = ~0U;	/* the online threads of a core change */
	if (online) {
		__cpumask_set_cpu(cpu, &__cpu_online_mask);
		for (int i = 0; i < MAX_HP_STATES; i++)
			if (hp_states[i].used)
				hp_callback(hp_states[i].startup, cpu);
		return;
	}
	if (cpu == m_leader)
		kgen_abort_case("the case offlines the CPU the worker runs on: the harness keeps it online");
	for (int i = MAX_HP_STATES - 1; i >= 0; i--)
		if (hp_states[i].used)
			hp_callback(hp_states[i].teardown, cpu);
	__cpu_online_mask.bits[cpu / BITS_PER_LONG] &= ~(1UL << (cpu % BITS_PER_LONG));
	sibling_core = ~0U;
}

/* A hotplug operation that arrived runs once no cpus_read_lock() holds it off. */
static void hotplug_waiting(void)
{
	if (hotplug_depth || in_hp_cb)
		return;
	if (hp_due) {
		hp_due = false;
		hotplug(hp_at_cpu, hp_at_online);
	}
	if (hp_during_due) {
		hp_during_due = false;
		hotplug(hp_during_cpu, hp_during_online);
	}
}

int kshim_cpuhp_setup_state(int state, const char *name, int (*startup)(unsigned int cpu),
			    int (*teardown)(unsigned int cpu), bool invoke)
{
	int slot;

	need_mutex("cpuhp_setup_state() without the mutex: setup races with itself");
	hotplug_lock_read("cpuhp_setup_state() with cpus_read_lock() held: it takes the hotplug lock itself");
	if (state != CPUHP_AP_ONLINE_DYN)
		kgen_abort_case("cpuhp_setup_state() of a state the harness does not model (CPUHP_AP_ONLINE_DYN)");
	if (!name || !*name)
		kgen_abort_case("cpuhp_setup_state() without a name");
	if (m_hpfail) {
		m_hpfail--;
		failed_now = -ENOSPC;
		hotplug_waiting();
		return -ENOSPC;	/* every dynamic state is taken */
	}
	for (slot = 0; slot < MAX_HP_STATES && hp_states[slot].used; slot++)
		;
	if (slot == MAX_HP_STATES)
		kgen_abort_case("more CPU hotplug states than the harness tracks: a state is never removed");
	hp_states[slot] = (struct hp_state){ startup, teardown, true };
	for (unsigned int cpu = 0; invoke && cpu < nr_cpu_ids; cpu++)
		if (cpu_online(cpu))
			hp_callback(startup, cpu);
	hotplug_waiting();	/* it lets the hotplug lock go */
	return CPUHP_AP_ONLINE_DYN + slot;
}

void kshim_cpuhp_remove_state(int state, bool invoke, bool cpuslocked)
{
	int slot = state - CPUHP_AP_ONLINE_DYN;

	need_mutex("cpuhp_remove_state() without the mutex: teardown races with setup");
	if (!cpuslocked)
		hotplug_lock_read("cpuhp_remove_state() with cpus_read_lock() held: it takes the hotplug lock itself");
	else if (!hotplug_depth)
		kgen_abort_case("cpuhp_remove_state_cpuslocked() without cpus_read_lock()");
	if (slot < 0 || slot >= MAX_HP_STATES || !hp_states[slot].used)
		kgen_abort_case("cpuhp_remove_state() of a state that is not set up");
	for (unsigned int cpu = 0; invoke && cpu < nr_cpu_ids; cpu++)
		if (cpu_online(cpu))
			hp_callback(hp_states[slot].teardown, cpu);
	hp_states[slot].used = false;
	if (!hotplug_depth)
		hotplug_waiting();	/* cpuhp_remove_state() lets the hotplug lock go */
}

/* --- parsing ------------------------------------------------------------- */

struct cursor {
	const char *p, *end;
};

static bool token(struct cursor *c, const char **key, int *klen, const char **val, int *vlen)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
		c->p++;
	if (c->p >= c->end || *c->p == '\n')
		return false;
	*key = c->p;
	while (c->p < c->end && *c->p != '=' && *c->p != ' ' && *c->p != '\n')
		c->p++;
	*klen = (int)(c->p - *key);
	*val = c->p;
	*vlen = 0;
	if (c->p < c->end && *c->p == '=') {
		*val = ++c->p;
		while (c->p < c->end && *c->p != ' ' && *c->p != '\n')
			c->p++;
		*vlen = (int)(c->p - *val);
	}
	return true;
}

static bool is(const char *s, int len, const char *word)
{
	int i = 0;

	for (; i < len && word[i]; i++)
		if (s[i] != word[i])
			return false;
	return i == len && !word[i];
}

/* Parse one hex (0x...) or decimal number; advance *s. */
static u64 number(const char **s, const char *end)
{
	const char *p = *s;
	u64 v = 0;

	if (end - p > 2 && p[0] == '0' && p[1] == 'x') {
		for (p += 2; p < end; p++) {
			int d = *p >= '0' && *p <= '9' ? *p - '0' :
				*p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
			if (d < 0)
				break;
			v = v * 16 + (u64)d;
		}
	} else {
		for (; p < end && *p >= '0' && *p <= '9'; p++)
			v = v * 10 + (u64)(*p - '0');
	}
	*s = p;
	return v;
}

static u64 num(const char *s, int len)
{
	return number(&s, s + len);
}

static void parse_spec(struct cursor *c)
{
	const char *k, *v;
	int kl, vl;

	oracle = rc_out = false;
	msr_number = msr_base_mask = 0;
	msr_enable_bit = 0;
	msr_per_core = false;
	feature_bit = ~0ULL;
	nin = nrc = nretry = 0;
	nprereqs = 0;
	ptr_reg = 0;
	flag_mask = 0;
	while (token(c, &k, &kl, &v, &vl)) {
		const char *p = v, *end = v + vl;

		if (is(k, kl, "insn")) {
			for (insn_len = 0; p < end && insn_len < MAX_INSN; p++) {
				insn[insn_len++] = (u8)number(&p, end);
				if (p >= end)
					break;
			}
		} else if (is(k, kl, "region")) {
			region_size = num(v, vl);
		} else if (is(k, kl, "msr")) {
			msr_number = num(v, vl);
		} else if (is(k, kl, "msrscope")) {
			msr_per_core = is(v, vl, "core");
		} else if (is(k, kl, "enbit")) {
			msr_enable_bit = (int)num(v, vl);
		} else if (is(k, kl, "basemask")) {
			msr_base_mask = num(v, vl);
		} else if (is(k, kl, "feature")) {
			feature_bit = num(v, vl);
		} else if (is(k, kl, "fault")) {
			for (int i = 0; i < vl && i < (int)sizeof(fault_name) - 1; i++)
				fault_name[i] = v[i];
			fault_name[vl < (int)sizeof(fault_name) - 1 ? vl : (int)sizeof(fault_name) - 1] = 0;
		} else if (is(k, kl, "prereqs")) {
			while (p < end && nprereqs < MAX_PREREQS) {
				int n = 0;

				while (p < end && *p != ',' && n < PREREQ_LEN - 1)
					prereq[nprereqs][n++] = *p++;
				prereq[nprereqs++][n] = 0;
				while (p < end && *p != ',')
					p++;
				p++;
			}
		} else if (is(k, kl, "entries")) {
			region_entries = num(v, vl);
		} else if (is(k, kl, "model")) {
			oracle = is(v, vl, "oracle");
		} else if (is(k, kl, "in")) {	/* in=a64,c8,...: register and defined bits */
			for (nin = 0; p < end && nin < MAX_REGS; p++) {
				u64 bits;

				in_reg[nin] = *p++;
				bits = number(&p, end);
				in_mask[nin++] = bits >= 64 ? ~0ULL : (1ULL << bits) - 1;
				if (p >= end)
					break;
			}
		} else if (is(k, kl, "ptr")) {
			ptr_reg = p[0];
			p += 2;
			ptr_bytes = (unsigned long)number(&p, end);
			ptr_access = p + 1 < end ? p[1] : 'r';
			if (ptr_bytes > MEM_BYTES)
				ptr_bytes = MEM_BYTES;
		} else if (is(k, kl, "rc")) {
			rc_out = true;
			for (nrc = 0; p < end && nrc < MAX_CODES; p++) {
				rc_value[nrc++] = number(&p, end);
				if (p >= end)
					break;
			}
		} else if (is(k, kl, "retry")) {
			for (nretry = 0; p < end && nretry < MAX_CODES; p++) {
				retry_value[nretry++] = number(&p, end);
				if (p >= end)
					break;
			}
		} else if (is(k, kl, "flags")) {
			flag_mask = num(v, vl);
		} else if (is(k, kl, "codes")) {
			for (ncodes = 0; p < end && ncodes < MAX_CODES; p++) {
				code_value[ncodes] = number(&p, end);
				code_effect[ncodes++] = p + 1 < end ? p[1] : 's';
				p += 2;
				if (p >= end)
					break;
			}
		}
	}
}

static void reset_case(void)
{
	min_low_pfn = max_pfn = 0;
	cpumask_clear(&__cpu_online_mask);
	nr_cpu_ids = m_cores = m_threads = 1;
	sibling_core = ~0U;
	m_spread = true;
	cur_cpu = 0;
	migrate_depth = in_ipi = 0;
	now = 0;
	table_base = 0;
	nassigned = 0;
	kt = (struct task_struct){ 0 };
	current_task = NULL;
	wq_obj.alive = false;
	for (int i = 0; i < nworks; i++)
		works[i]->pending = false;
	nworks = 0;
	events = budget = steps = 0;
	m_feature = true;
	for (int i = 0; i < MAX_PREREQS; i++)
		m_absent[i] = false;
	for (unsigned int i = 0; i < msr_used; i++)
		msr_val[i] = 0;
	msr_used = 0;
	for (int i = 0; i < mutexes_held; i++)
		locked[i]->locked = false;	/* held by a case that stopped midway */
	mutexes_held = hotplug_depth = in_work = 0;
	out_full = false;
	have_last = false;
	streak = last_rax = 0;
	m_nomem = 0;
	m_stuck = false;
	teardown_at = 0;
	trigger_at = 0;
	hp_at = 0;
	hp_due = false;
	hp_during_armed = hp_during_due = false;
	async_func = NULL;
	in_hp_cb = 0;
	order_mutex_hp = order_hp_mutex = false;
	m_hpfail = 0;
	for (int i = 0; i < MAX_HP_STATES; i++)
		hp_states[i].used = false;
	tc_state = TC_IDLE;
	in_caller = false;
	tc_interrupted = NULL;
	running_work = NULL;
}

static const struct kgen_form *find_form(const char *s, int len)
{
	for (int i = 0; i < kgen_nforms; i++)
		if (is(s, len, kgen_forms[i].kind))
			return &kgen_forms[i];
	return NULL;
}

static void run_action(const struct kgen_form *form, const char *a, const char *end)
{
	const char *p;
	int ret;

	cur_form = form;
	if ((end - a > 10 && is(a, 10, "online-at:")) || (end - a > 11 && is(a, 11, "offline-at:"))) {
		hp_at_online = a[1] == 'n';
		p = a + (hp_at_online ? 10 : 11);
		hp_at = (unsigned long)number(&p, end);
		if (p >= end || *p != ':')
			kgen_abort_case("a hotplug action without its CPU");
		p++;
		hp_at_cpu = (unsigned int)number(&p, end);
		hp_due = false;
	} else if ((end - a > 14 && is(a, 14, "online-during:")) ||
		   (end - a > 15 && is(a, 15, "offline-during:"))) {
		hp_during_online = a[1] == 'n';
		p = a + (hp_during_online ? 14 : 15);
		hp_during_cpu = (unsigned int)number(&p, end);
		hp_during_armed = true;
		hp_during_due = false;
	} else if ((end - a > 7 && is(a, 7, "online:")) || (end - a > 8 && is(a, 8, "offline:"))) {
		p = a + (a[1] == 'n' ? 7 : 8);
		hotplug((unsigned int)number(&p, end), a[1] == 'n');
	} else if (end - a > 11 && is(a, 11, "trigger-at:")) {
		if (!form)
			kgen_abort_case("a worker action in a case without a worker form");
		p = a + 11;
		trigger_at = (unsigned long)number(&p, end);
	} else if (end - a > 12 && is(a, 12, "teardown-at:")) {
		if (!form)
			kgen_abort_case("a worker action in a case without a worker form");
		p = a + 12;
		teardown_at = (unsigned long)number(&p, end);
	} else if (is(a, (int)(end - a), "setup") || is(a, (int)(end - a), "trigger") ||
	    is(a, (int)(end - a), "teardown")) {
		if (!form)
			kgen_abort_case("a worker action in a case without a worker form");
		failed_now = 0;
		hp_during_due = hp_during_armed;	/* it waits for the hotplug lock */
		hp_during_armed = false;
		ret = form->entry(*a == 's' ? 0 : *a == 't' && a[1] == 'r' ? 1 : 2);
		hotplug_waiting();	/* not held off by then: it runs now */
		if (ret != failed_now)
			kgen_abort_case("setup returns other than 0, or than the error of the kernel call that failed");
		if (migrate_depth)
			kgen_abort_case("migration still disabled when setup, a request or teardown returns");
		if (mutexes_held)
			kgen_abort_case("a mutex is still held when setup, a request or teardown returns");
		if (hotplug_depth)
			kgen_abort_case("cpus_read_lock() still held when setup, a request or teardown returns");
	} else if (is(a, (int)(end - a), "run")) {
		run_until_idle();
		if (tc_state != TC_IDLE)
			kgen_abort_case("teardown still waits when the worker sleeps");
		if (hotplug_depth || mutexes_held)
			kgen_abort_case("a lock is still held when the worker sleeps");
		if (migrate_depth)
			kgen_abort_case("migration still disabled when the worker sleeps");
	} else if (a[0] == 'a' && a[1] == ':') {
		p = a + 2;
		advance(number(&p, end));
		if (tc_state != TC_IDLE)
			kgen_abort_case("teardown still waits when the work item returns");
		if (hotplug_depth || mutexes_held)
			kgen_abort_case("a lock is still held when the work item returns");
		if (migrate_depth)
			kgen_abort_case("migration still disabled when the work item returns");
	} else if ((a[0] == 'h' || a[0] == 'r') && a[1] == ':') {
		u64 args[8], ret;
		int n = 0;

		p = a + 2;
		cur_cpu = (unsigned int)number(&p, end);
		while (p < end && *p == ':' && n < 8) {
			p++;
			args[n++] = number(&p, end);
		}
		in_ipi++;	/* a helper call runs pinned, like the IPI callbacks */
		ret = a[0] == 'h' ? kgen_call_helper(args[0]) : kgen_call_raw(args);
		in_ipi--;
		event_begin('V');
		out_char(' ');
		out_hex(ret, 0);
		out_char('\n');
	} else {
		kgen_abort_case("unknown action");
	}
}

static void run_case(struct cursor *c)
{
	const char *k, *v, *id = "?", *actions = NULL, *offline = NULL;
	int kl, vl, idlen = 1, alen = 0, offlen = 0;
	const struct kgen_form *form = NULL;
	unsigned int leader = 0;
	bool msr_on = false;

	reset_case();
	while (token(c, &k, &kl, &v, &vl)) {
		const char *p = v, *end = v + vl;

		if (is(k, kl, "id")) {
			id = v;
			idlen = vl;
		} else if (is(k, kl, "form")) {
			form = find_form(v, vl);
		} else if (is(k, kl, "min")) {
			min_low_pfn = (unsigned long)num(v, vl);
		} else if (is(k, kl, "max")) {
			max_pfn = (unsigned long)num(v, vl);
		} else if (is(k, kl, "cores")) {
			m_cores = (unsigned int)num(v, vl);
		} else if (is(k, kl, "threads")) {
			m_threads = (unsigned int)num(v, vl);
		} else if (is(k, kl, "numbering")) {
			m_spread = is(v, vl, "spread");
		} else if (is(k, kl, "leader")) {
			leader = (unsigned int)num(v, vl);
		} else if (is(k, kl, "base")) {
			table_base = num(v, vl);
		} else if (is(k, kl, "feature")) {
			m_feature = num(v, vl) != 0;
		} else if (is(k, kl, "absent")) {
			while (p < end) {
				const char *name = p;
				int i;

				while (p < end && *p != ',')
					p++;
				i = find_prereq(name, (int)(p - name));
				if (i < 0) {
					out_str("B absent= names no prerequisite of the spec\n");
					goto end;
				}
				m_absent[i] = true;
				p++;
			}
		} else if (is(k, kl, "nomem")) {
			m_nomem = (unsigned int)num(v, vl);
		} else if (is(k, kl, "hpfail")) {
			m_hpfail = (unsigned int)num(v, vl);
		} else if (is(k, kl, "stuck")) {
			m_stuck = num(v, vl) != 0;
		} else if (is(k, kl, "msron")) {
			msr_on = num(v, vl) != 0;
		} else if (is(k, kl, "budget")) {
			budget = num(v, vl);
		} else if (is(k, kl, "offline")) {
			offline = v;	/* a comma-separated list, applied below */
			offlen = vl;
		} else if (is(k, kl, "assigned")) {
			while (p < end && nassigned < MAX_ASSIGNED) {
				assigned_start[nassigned] = number(&p, end);
				p++;
				assigned_end[nassigned++] = number(&p, end);
				if (p < end && *p == ',')
					p++;
				else
					break;
			}
		} else if (is(k, kl, "actions")) {
			actions = v;
			alen = vl;
		}
	}
	nr_cpu_ids = m_cores * m_threads;
	table_stride = (unsigned long)((region_entries + 63) / 64);
	if (nr_cpu_ids > NR_CPUS || table_stride * nr_cpu_ids > TABLE_WORDS) {
		out_str("B machine too large for the harness\n");
		goto end;
	}
	for (unsigned long i = 0; i < table_stride * nr_cpu_ids; i++)
		tables[i] = 0;
	for (unsigned int i = 0; i < nr_cpu_ids / BITS_PER_LONG; i++)	/* a word at a time */
		__cpu_online_mask.bits[i] = ~0UL;
	if (nr_cpu_ids % BITS_PER_LONG)
		__cpu_online_mask.bits[nr_cpu_ids / BITS_PER_LONG] = (1UL << nr_cpu_ids % BITS_PER_LONG) - 1;
	for (const char *p = offline, *end = offline + offlen; p && p < end; p++) {
		u64 cpu = number(&p, end);

		if (cpu < nr_cpu_ids)
			__cpu_online_mask.bits[cpu / BITS_PER_LONG] &= ~(1UL << (cpu % BITS_PER_LONG));
	}
	cur_cpu = m_leader = leader;
	for (unsigned int cpu = 0; msr_on && cpu < nr_cpu_ids; cpu++)
		set_msr(cpu, table_base | (1ULL << msr_enable_bit));

	case_running = true;
	if (__builtin_setjmp(case_jmp) == 0) {
		const char *a = actions, *end = actions + alen;

		while (a && a < end) {
			const char *stop = a;

			while (stop < end && *stop != ',')
				stop++;
			run_action(form, a, stop);
			async_flush();
			a = stop + 1;
		}
	}
	case_running = false;
	current_task = NULL;
	if (out_full)
		out_str("B output buffer full\n");
end:
	oend += 256;	/* the closing lines may use the reserve */
	out_str("E ");
	for (int i = 0; i < idlen; i++)
		out_char(id[i]);
	out_char('\n');
	oend -= 256;
	kgen_out_len = (unsigned long)(op - kgen_out);
}

void kgen_run(const char *in, unsigned long len)
{
	struct cursor c = { in, in + len };
	const char *k, *v;
	int kl, vl;

	while (c.p < c.end) {
		const char *eol = c.p;

		while (eol < c.end && *eol != '\n')
			eol++;
		c.end = eol;
		if (token(&c, &k, &kl, &v, &vl)) {
			if (is(k, kl, "spec"))
				parse_spec(&c);
			else if (is(k, kl, "case"))
				run_case(&c);
		}
		c.p = eol + 1;
		c.end = in + len;
	}
}
