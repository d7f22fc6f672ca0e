/* SPDX-License-Identifier: GPL-2.0 */
#ifndef __ASM_ENCRYPTED_STATE_H
#define __ASM_ENCRYPTED_STATE_H

#include <linux/types.h>

/* Software defined (when rFlags.CF = 1) */
#define PVALIDATE_FAIL_NOUPDATE		255

/* RMPUPDATE found a 4K page inside a 2M one. */
#define RMPUPDATE_FAIL_OVERLAP		4

struct rmp_state {
	u64 gpa;
	u8 assigned;
	u8 pagesize;
} __packed;

#ifdef CONFIG_AMD_MEM_ENCRYPT
/* RMPADJUST changes the permissions of a lesser VMPL. */
static inline int rmpadjust(unsigned long vaddr, bool rmp_psize, unsigned long attrs)
{
	int rc;

	asm volatile(".byte 0xF3,0x0F,0x01,0xFE\n\t"
		     : "=a"(rc)
		     : "a"(vaddr), "c"(rmp_psize), "d"(attrs)
		     : "memory", "cc");

	return rc;
}
static inline int pvalidate(unsigned long vaddr, bool rmp_psize, bool validate)
{
	bool no_rmpupdate;
	int rc;

	asm volatile(".byte 0xF2, 0x0F, 0x01, 0xFF\n\t"
		     CC_SET(c)
		     : CC_OUT(c) (no_rmpupdate), "=a"(rc)
		     : "a"(vaddr), "c"(rmp_psize), "d"(validate)
		     : "memory", "cc");

	if (no_rmpupdate)
		return PVALIDATE_FAIL_NOUPDATE;

	return rc;
}

void setup_ghcb(void);
#else	/* !CONFIG_AMD_MEM_ENCRYPT */
static inline int pvalidate(unsigned long vaddr, bool rmp_psize, bool validate) { return 0; }
static inline int rmpadjust(unsigned long vaddr, bool rmp_psize, unsigned long attrs) { return 0; }
static inline void setup_ghcb(void) { }
#endif	/* CONFIG_AMD_MEM_ENCRYPT */

#ifdef CONFIG_KVM_AMD_SEV
int psmash(u64 pfn);
void snp_fixup_e820_tables(void);
#else
static inline int psmash(u64 pfn) { return -ENODEV; }
static inline void snp_fixup_e820_tables(void) {}
#endif

#endif
