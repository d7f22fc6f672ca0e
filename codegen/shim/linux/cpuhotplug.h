/* SPDX-License-Identifier: GPL-2.0-only */
/* Everything the generated code needs is declared in kshim.h. */
#include "../kshim.h"
