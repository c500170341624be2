// SPDX-License-Identifier: GPL-2.0
/*
 * lab_rel_export - exports lab_rel_export_value, which lab_rel_import uses (uses_symbol)
 * (kernelops.livepatch lab, README.md "Relations").
 */

#include "lab_rel.h"

int lab_rel_export_value(void);

int lab_rel_export_value(void)
{
	return 20;
}
EXPORT_SYMBOL_GPL(lab_rel_export_value);

static int lab_rel_export_new(void)
{
	return lab_rel_export_value();
}

LAB_REL_PATCH(lab_rel_lib_exporter, lab_rel_export_new, do { } while (0));
MODULE_DESCRIPTION("kernelops lab: exports lab_rel_export_value, which lab_rel_import uses (uses_symbol)");
