/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_X86_CPUFEATURES_H
#define _ASM_X86_CPUFEATURES_H

#define NCAPINTS			22	   /* N 32-bit words worth of info */

/* Other features, Linux-defined mapping, word 3 */
#define X86_FEATURE_K8			( 3*32+ 4) /* Opteron, Athlon64 */
#define X86_FEATURE_P3			( 3*32+ 6) /* P3 */
#define X86_FEATURE_P4			( 3*32+ 7) /* P4 */
#define X86_FEATURE_APERFMPERF		( 3*32+28) /* APERF/MPERF MSRs */

/* Extended auxiliary flags: Linux defined, word 21 */
#define X86_FEATURE_CLEAR_BHB_LOOP	(21*32+ 1) /* Clear branch history at syscall entry */
#define X86_FEATURE_FAST_CPPC		(21*32 + 5) /* AMD Fast CPPC */

#define X86_FEATURE_TSA_SQ_NO		(21*32+11) /* AMD CPU not vulnerable to TSA-SQ */

#endif /* _ASM_X86_CPUFEATURES_H */
