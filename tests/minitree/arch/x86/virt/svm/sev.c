// SPDX-License-Identifier: GPL-2.0-only
/*
 * A miniature of the SEV-SNP host support file.
 */

#include <linux/cc_platform.h>
#include <linux/printk.h>
#include <linux/memblock.h>

#include <asm/sev.h>
#include <asm/processor.h>

/*
 * PSMASH a 2MB aligned page into 4K pages.
 */
int psmash(u64 pfn)
{
	unsigned long paddr = pfn << PAGE_SHIFT;
	int ret;

	if (!cc_platform_has(CC_ATTR_HOST_SEV_SNP))
		return -ENODEV;

	/* Binutils version 2.36 supports the PSMASH mnemonic. */
	asm volatile(".byte 0xF3, 0x0F, 0x01, 0xFF"
		      : "=a" (ret)
		      : "a" (paddr)
		      : "memory", "cc");

	return ret;
}
EXPORT_SYMBOL_GPL(psmash);

static int rmpupdate(u64 pfn, struct rmp_state *state)
{
	unsigned long paddr = pfn << PAGE_SHIFT;
	int ret;

	do {
		/* Binutils version 2.36 supports the RMPUPDATE mnemonic. */
		asm volatile(".byte 0xF2, 0x0F, 0x01, 0xFE"
			     : "=a" (ret)
			     : "a" (paddr), "c" ((unsigned long)state)
			     : "memory", "cc");
	} while (ret == RMPUPDATE_FAIL_OVERLAP);

	if (ret)
		return -EFAULT;

	return 0;
}

int rmp_make_shared(u64 pfn)
{
	struct rmp_state state = {};

	return rmpupdate(pfn, &state);
}
