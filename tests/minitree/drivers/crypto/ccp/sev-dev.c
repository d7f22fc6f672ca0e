// SPDX-License-Identifier: GPL-2.0-only
/*
 * A miniature of the AMD Secure Encrypted Virtualization (SEV) interface.
 */

#include <linux/module.h>

static int __sev_snp_init_locked(int *error)
{
	struct sev_device *sev = psp_master->sev_data;

	if (sev->snp_initialized)
		return 0;

	sev->snp_initialized = true;
	dev_dbg(sev->dev, "SEV-SNP firmware initialized\n");

	return 0;
}

static int __sev_snp_shutdown_locked(int *error, bool panic)
{
	struct sev_device *sev = psp_master->sev_data;

	if (!sev->snp_initialized)
		return 0;

	memset(&data, 0, sizeof(data));
	sev->snp_initialized = false;
	dev_dbg(sev->dev, "SEV-SNP firmware shutdown\n");

	return 0;
}
