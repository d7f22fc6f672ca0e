/* SPDX-License-Identifier: GPL-2.0 */
#ifndef __LINUX_SIZES_H__
#define __LINUX_SIZES_H__
#define SZ_4K				0x00001000
#define SZ_2M				0x00200000
#define SZ_1G				0x40000000
#define SZ_2T				_AC(0x20000000000, ULL)
#endif /* __LINUX_SIZES_H__ */
