/* SPDX-License-Identifier: GPL-2.0-only */
/* Stand-in for <asm/insn.h>: sev.h embeds a struct insn by value. */
struct insn {
	unsigned char bytes[16];
};
