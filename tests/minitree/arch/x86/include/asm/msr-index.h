/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_X86_MSR_INDEX_H
#define _ASM_X86_MSR_INDEX_H

#define MSR_AMD64_SEV			0xc0010131

#define MSR_AMD64_RMP_BASE		0xc0010132
#define MSR_AMD64_RMP_END		0xc0010133

#define MSR_SVSM_CAA			0xc001f000

#endif /* _ASM_X86_MSR_INDEX_H */
