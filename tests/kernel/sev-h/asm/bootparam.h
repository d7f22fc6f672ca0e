/* SPDX-License-Identifier: GPL-2.0-only */
/* Stand-in for <asm/bootparam.h>: sev.h only passes struct boot_params by pointer. */
struct boot_params;
