/* SPDX-License-Identifier: GPL-2.0-only */
/* As in the kernel: <linux/cpufeature.h> brings <asm/cpufeature.h>. */
#pragma once
#include <asm/cpufeature.h>
