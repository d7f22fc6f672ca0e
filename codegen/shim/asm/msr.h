/* SPDX-License-Identifier: GPL-2.0-only */
/* As in the kernel, the MSR numbers come with <asm/msr.h>. */
#include "../kshim.h"
#include <asm/msr-index.h>
