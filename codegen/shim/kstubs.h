/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Stand-ins for the kernel functions that the kernel's own out-of-line
 * helpers call around the instruction (psmash() and rmpupdate() of
 * arch/x86/virt/svm/sev.c), when `kgen compare --reference TREE` runs them.
 *
 * Each stub answers so that the instruction path runs: an SNP host, every
 * PFN valid, a direct map that needs no split.  What the helper does besides
 * the instruction (its error messages, dump_rmpentry(), dump_stack()) leaves
 * no line in the trace; its return value does.  Forced in after kshim.h, for
 * reference units only.
 */
#ifndef KSTUBS_H
#define KSTUBS_H

#define __packed		__attribute__((__packed__))
#define BIT(nr)			(1UL << (nr))

/* <linux/cc_platform.h>: the host runs SEV-SNP */
enum cc_attr {
	CC_ATTR_MEM_ENCRYPT,
	CC_ATTR_HOST_MEM_ENCRYPT,
	CC_ATTR_GUEST_MEM_ENCRYPT,
	CC_ATTR_GUEST_STATE_ENCRYPT,
	CC_ATTR_GUEST_UNROLL_STRING_IO,
	CC_ATTR_GUEST_SEV_SNP,
	CC_ATTR_HOST_SEV_SNP,
};

/* kshim.h answers cc_platform_has() per machine, for the specs that list it; here it is true */
#undef cc_platform_has
static inline bool cc_platform_has(enum cc_attr attr __always_unused)
{
	return true;
}

/* <linux/mmzone.h>: every PFN has a struct page */
static inline int pfn_valid(unsigned long pfn __always_unused)
{
	return 1;
}

/* <asm/pgtable_types.h> */
enum pg_level {
	PG_LEVEL_NONE,
	PG_LEVEL_4K,
	PG_LEVEL_2M,
	PG_LEVEL_1G,
	PG_LEVEL_512G,
	PG_LEVEL_256T,
	PG_LEVEL_NUM
};

/* arch/x86/virt/svm/sev.c: the direct map needs no split */
static inline int adjust_direct_map(u64 pfn __always_unused, int rmp_level __always_unused)
{
	return 0;
}

/* arch/x86/virt/svm/sev.c, <linux/printk.h>: reports that leave no trace line */
static inline void dump_rmpentry(u64 pfn __always_unused)
{
}

static inline void dump_stack(void)
{
}

/* the kernel's u64 is unsigned long long, this one uint64_t: formats are not checked here */
static inline int kstub_printk(const char *fmt __always_unused, ...)
{
	return 0;
}
#define pr_err(fmt, ...)	kstub_printk(fmt, ##__VA_ARGS__)
#define pr_warn(fmt, ...)	kstub_printk(fmt, ##__VA_ARGS__)

#endif /* KSTUBS_H */
