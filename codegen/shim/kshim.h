/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A userspace stand-in for the kernel API that kgen's generated code uses.
 *
 * Generated files are compiled unmodified against this header (passed with
 * -include); the functions declared here are implemented by the trap harness,
 * which records every call as an event.  Types and macros follow the kernel's
 * definitions closely enough that code which compiles here compiles there.
 */
#ifndef KSHIM_H
#define KSHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef u64 phys_addr_t;

#define __always_unused		__attribute__((__unused__))
#define __maybe_unused		__attribute__((__unused__))
#define __init
#define __printf(a, b)		__attribute__((__format__(printf, a, b)))

/* <linux/align.h> */
#define __ALIGN_MASK(x, mask)	(((x) + (mask)) & ~(mask))
#define ALIGN(x, a)		__ALIGN_MASK(x, (__typeof__(x))(a) - 1)
#define ALIGN_DOWN(x, a)	ALIGN((x) - ((a) - 1), (a))

/* <linux/sizes.h>: every power of two the kernel names */
#define SZ_1			0x00000001
#define SZ_2			0x00000002
#define SZ_4			0x00000004
#define SZ_8			0x00000008
#define SZ_16			0x00000010
#define SZ_32			0x00000020
#define SZ_64			0x00000040
#define SZ_128			0x00000080
#define SZ_256			0x00000100
#define SZ_512			0x00000200
#define SZ_1K			0x00000400
#define SZ_2K			0x00000800
#define SZ_4K			0x00001000
#define SZ_8K			0x00002000
#define SZ_16K			0x00004000
#define SZ_32K			0x00008000
#define SZ_64K			0x00010000
#define SZ_128K			0x00020000
#define SZ_256K			0x00040000
#define SZ_512K			0x00080000
#define SZ_1M			0x00100000
#define SZ_2M			0x00200000
#define SZ_4M			0x00400000
#define SZ_8M			0x00800000
#define SZ_16M			0x01000000
#define SZ_32M			0x02000000
#define SZ_64M			0x04000000
#define SZ_128M			0x08000000
#define SZ_256M			0x10000000
#define SZ_512M			0x20000000
#define SZ_1G			0x40000000
#define SZ_2G			0x80000000ULL
#define SZ_4G			0x100000000ULL
#define SZ_8G			0x200000000ULL
#define SZ_16G			0x400000000ULL
#define SZ_32G			0x800000000ULL
#define SZ_64G			0x1000000000ULL
#define SZ_128G			0x2000000000ULL
#define SZ_256G			0x4000000000ULL
#define SZ_512G			0x8000000000ULL
#define SZ_1T			0x10000000000ULL
#define SZ_2T			0x20000000000ULL
#define SZ_4T			0x40000000000ULL
#define SZ_8T			0x80000000000ULL
#define SZ_16T			0x100000000000ULL
#define SZ_32T			0x200000000000ULL
#define SZ_64T			0x400000000000ULL

/* <linux/pfn.h>, <linux/memblock.h> */
#define PAGE_SHIFT		12
#define PFN_PHYS(x)		((phys_addr_t)(x) << PAGE_SHIFT)
extern unsigned long min_low_pfn;
extern unsigned long max_pfn;

/* <linux/err.h>, <linux/errno.h> */
#define ENOMEM			12
#define ENOSPC			28
#define MAX_ERRNO		4095
#define IS_ERR(ptr)		((unsigned long)(ptr) >= (unsigned long)-MAX_ERRNO)
#define PTR_ERR(ptr)		((long)(ptr))

/* <linux/bitops.h> */
void set_bit(long nr, volatile unsigned long *addr);
bool test_and_clear_bit(long nr, volatile unsigned long *addr);
bool test_bit(long nr, const volatile unsigned long *addr);
void clear_bit(long nr, volatile unsigned long *addr);

/* <linux/cpumask.h> */
#define NR_CPUS			512	/* the largest machine compare runs: 256 cores x 2 */
#define BITS_PER_LONG		64
struct cpumask {
	unsigned long bits[NR_CPUS / BITS_PER_LONG];
};
typedef struct cpumask cpumask_t;

static inline void cpumask_clear(struct cpumask *mask)
{
	for (unsigned int i = 0; i < NR_CPUS / BITS_PER_LONG; i++)
		mask->bits[i] = 0;
}

static inline void __cpumask_set_cpu(unsigned int cpu, struct cpumask *mask)
{
	mask->bits[cpu / BITS_PER_LONG] |= 1UL << (cpu % BITS_PER_LONG);
}

static inline bool cpumask_test_cpu(int cpu, const struct cpumask *mask)
{
	return (mask->bits[cpu / BITS_PER_LONG] >> (cpu % BITS_PER_LONG)) & 1;
}

static inline bool cpumask_empty(const struct cpumask *mask)
{
	for (unsigned int i = 0; i < NR_CPUS / BITS_PER_LONG; i++)
		if (mask->bits[i])
			return false;
	return true;
}

extern struct cpumask __cpu_online_mask;
extern unsigned int nr_cpu_ids;
#define cpu_online_mask		((const struct cpumask *)&__cpu_online_mask)
#define cpu_online(cpu)		cpumask_test_cpu((cpu), cpu_online_mask)
#define for_each_online_cpu(cpu)					\
	for ((cpu) = 0; (cpu) < nr_cpu_ids; (cpu)++)			\
		if (cpumask_test_cpu((cpu), cpu_online_mask))

/* <linux/topology.h> */
bool topology_is_primary_thread(unsigned int cpu);
const struct cpumask *topology_sibling_cpumask(unsigned int cpu);

/* <linux/smp.h>, <linux/preempt.h>, <linux/sched.h> */
typedef void (*smp_call_func_t)(void *info);
unsigned int kshim_smp_processor_id(void);
#define smp_processor_id()	kshim_smp_processor_id()
void on_each_cpu_mask(const struct cpumask *mask, smp_call_func_t func, void *info, bool wait);
void migrate_disable(void);
void migrate_enable(void);
void kshim_cond_resched(void);
#define cond_resched()		kshim_cond_resched()

struct task_struct;
#define TASK_RUNNING		0x00000000
#define TASK_INTERRUPTIBLE	0x00000001
void kshim_set_current_state(long state);
#define set_current_state(state)	kshim_set_current_state(state)
#define __set_current_state(state)	kshim_set_current_state(state)
void schedule(void);
int wake_up_process(struct task_struct *task);

/* <linux/kthread.h> */
struct task_struct *kthread_create(int (*threadfn)(void *data), void *data, const char *name);
struct task_struct *kshim_kthread_run(int (*threadfn)(void *data), void *data, const char *name);
#define kthread_run(threadfn, data, name)	kshim_kthread_run(threadfn, data, name)
bool kthread_should_stop(void);
int kthread_stop(struct task_struct *task);

/* <linux/workqueue.h>, <linux/jiffies.h> */
struct workqueue_struct;
struct work_struct;
typedef void (*work_func_t)(struct work_struct *work);
struct work_struct {
	work_func_t func;
};
struct delayed_work {
	struct work_struct work;
	unsigned long expires;
	bool pending;
};
#define DECLARE_DELAYED_WORK(n, f)	struct delayed_work n = { .work = { .func = (f) } }
unsigned long msecs_to_jiffies(unsigned int m);
struct workqueue_struct *alloc_ordered_workqueue(const char *name, unsigned int flags);
bool queue_delayed_work(struct workqueue_struct *wq, struct delayed_work *dwork,
			unsigned long delay);
bool mod_delayed_work(struct workqueue_struct *wq, struct delayed_work *dwork,
		      unsigned long delay);
bool cancel_delayed_work_sync(struct delayed_work *dwork);
void destroy_workqueue(struct workqueue_struct *wq);

/* <linux/printk.h>: %pa prints a phys_addr_t through a pointer, as in the kernel */
__printf(1, 2) void kshim_pr_info(const char *fmt, ...);
#define pr_info(fmt, ...)	kshim_pr_info(fmt, ##__VA_ARGS__)

/* <linux/bits.h> */
#define BIT_ULL(nr)		(1ULL << (nr))

/* <linux/cpumask.h>: the first CPU in both masks, or nr_cpu_ids; how many are in both */
unsigned int cpumask_first_and(const struct cpumask *a, const struct cpumask *b);
unsigned int cpumask_weight_and(const struct cpumask *a, const struct cpumask *b);

/* <asm/cpufeature.h>: answers from the case's machine */
bool kshim_cpu_feature_enabled(unsigned int bit);
#define cpu_feature_enabled(bit)	kshim_cpu_feature_enabled(bit)

/*
 * <linux/cc_platform.h>: answers from the case's machine.  The attribute is passed by name,
 * so any of the kernel's enum cc_attr constants compiles; the harness answers only those the
 * spec lists as prerequisites.
 */
bool kshim_cc_platform_has(const char *attr);
#define cc_platform_has(attr)		kshim_cc_platform_has(#attr)

/*
 * <asm/msr.h>: recorded as "M cpu msr value"; both spellings.  wrmsrq()/wrmsrl() write the
 * MSR of the CPU the code runs on, which must not change under it (a hotplug callback, an IPI).
 */
int wrmsrq_on_cpu(unsigned int cpu, u32 msr_no, u64 q);
int wrmsrl_on_cpu(unsigned int cpu, u32 msr_no, u64 q);
void kshim_wrmsr_local(u32 msr_no, u64 q);
#define wrmsrq(msr, val)	kshim_wrmsr_local((msr), (val))
#define wrmsrl(msr, val)	kshim_wrmsr_local((msr), (val))

/* <linux/cpu.h> */
void cpus_read_lock(void);
void cpus_read_unlock(void);
void kshim_lockdep_assert_cpus_held(void);
#define lockdep_assert_cpus_held()	kshim_lockdep_assert_cpus_held()

/*
 * <linux/cpuhotplug.h>: dynamic AP states.  cpuhp_setup_state() takes the hotplug lock, runs
 * @startup on every online CPU and returns the state it allocated (> 0) or an error;
 * afterwards @startup runs on each CPU that comes online, @teardown on each that goes offline,
 * on that CPU, until cpuhp_remove_state() runs @teardown on every online CPU (the _nocalls
 * forms run no callback; _cpuslocked: the caller holds cpus_read_lock()).
 */
enum cpuhp_state {
	CPUHP_INVALID = -1,
	CPUHP_AP_ONLINE_DYN = 200,
	CPUHP_AP_ONLINE_DYN_END = CPUHP_AP_ONLINE_DYN + 40,
};
int kshim_cpuhp_setup_state(int state, const char *name, int (*startup)(unsigned int cpu),
			    int (*teardown)(unsigned int cpu), bool invoke);
void kshim_cpuhp_remove_state(int state, bool invoke, bool cpuslocked);
#define cpuhp_setup_state(state, name, startup, teardown)			\
	kshim_cpuhp_setup_state((state), (name), (startup), (teardown), true)
#define cpuhp_setup_state_nocalls(state, name, startup, teardown)		\
	kshim_cpuhp_setup_state((state), (name), (startup), (teardown), false)
#define cpuhp_remove_state(state)		kshim_cpuhp_remove_state((state), true, false)
#define cpuhp_remove_state_nocalls(state)	kshim_cpuhp_remove_state((state), false, false)
#define cpuhp_remove_state_nocalls_cpuslocked(state)				\
	kshim_cpuhp_remove_state((state), false, true)

/* <linux/mutex.h>, <linux/lockdep.h>, <linux/cleanup.h>: guard(mutex)(&lock) as in the kernel */
struct mutex {
	bool locked;
};
#define DEFINE_MUTEX(m)		struct mutex m = { false }
void mutex_lock(struct mutex *lock);
void mutex_unlock(struct mutex *lock);
void kshim_lockdep_assert_held(struct mutex *lock);
#define lockdep_assert_held(lock)	kshim_lockdep_assert_held(lock)
static inline struct mutex *kshim_guard_mutex_enter(struct mutex *lock)
{
	mutex_lock(lock);
	return lock;
}

static inline void kshim_guard_mutex_exit(struct mutex **lock)
{
	mutex_unlock(*lock);
}
#define KSHIM_CAT2(a, b)	a##b
#define KSHIM_CAT(a, b)		KSHIM_CAT2(a, b)
#define guard(type)		kshim_guard_##type
#define kshim_guard_mutex(lock)							\
	struct mutex *KSHIM_CAT(kshim_guard_, __COUNTER__)			\
		__attribute__((cleanup(kshim_guard_mutex_exit))) = kshim_guard_mutex_enter(lock)

/* <linux/export.h>: nothing to link against here */
#define EXPORT_SYMBOL_GPL(sym)			extern int kshim_exported_##sym
#define EXPORT_SYMBOL_FOR_MODULES(sym, mods)	extern int kshim_exported_##sym

/*
 * <asm/asm.h>: a flag leaves an asm statement as the kernel spells it for
 * compilers with and without flag outputs (GCC < 6)
 */
#ifdef __GCC_ASM_FLAG_OUTPUTS__
# define CC_SET(c) "\n\t/* output condition code " #c "*/\n"
# define CC_OUT(c) "=@cc" #c
#else
# define CC_SET(c) "\n\tset" #c " %[_cc_" #c "]\n"
# define CC_OUT(c) [_cc_ ## c] "=qm"
#endif

#endif /* KSHIM_H */
