/* SPDX-License-Identifier: GPL-2.0 */
DEFINE_GUARD(mutex, struct mutex *, mutex_lock(_T), mutex_unlock(_T))
