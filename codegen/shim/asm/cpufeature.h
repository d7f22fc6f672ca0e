/* SPDX-License-Identifier: GPL-2.0-only */
/* As in the kernel, the feature bits come with <asm/cpufeature.h>. */
#include "../kshim.h"
#include <asm/cpufeatures.h>
