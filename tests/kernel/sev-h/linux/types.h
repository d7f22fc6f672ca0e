/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The environment in which the kernel's own arch/x86/include/asm/sev.h is
 * compiled in userspace, beside kgen's generated helpers, to compare the
 * two through the trap harness.  sev.h is used unmodified; its first include
 * is <linux/types.h>, so this file also sets the kernel configuration the
 * comparison builds for (the kernel forces it in with autoconf.h) and the
 * few kernel macros the header's declarations use.  The other files here
 * stand in for sev.h's includes and declare only what it needs.
 */
#ifndef KGEN_SEV_H_TYPES
#define KGEN_SEV_H_TYPES

#include <kshim.h>	/* kgen's kernel-API shim, on the include path of every unit */

/* the helpers are real only in a kernel built with AMD memory encryption */
#define CONFIG_AMD_MEM_ENCRYPT	1

/* <asm/asm.h>: flag outputs, as compilers with __GCC_ASM_FLAG_OUTPUTS__ use them */
#define CC_SET(c)		"\n\t/* output condition code " #c "*/\n"
#define CC_OUT(c)		"=@cc" #c

#define __always_inline		inline __attribute__((__always_inline__))
#define __noreturn		__attribute__((__noreturn__))
#define __packed		__attribute__((__packed__))
#define BIT(nr)			(1UL << (nr))

typedef struct { unsigned long pgd; } pgd_t;

struct static_key_false {
	int enabled;
};

#define static_branch_unlikely(key)	__builtin_expect((key)->enabled, 0)

#endif
