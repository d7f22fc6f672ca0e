/* SPDX-License-Identifier: GPL-2.0-only */
/* Stand-in for <linux/sev-guest.h>: sev.h uses none of its definitions in what is compared. */
