// SPDX-License-Identifier: GPL-2.0
/*
 * lab_rel_import - new code calls lab_rel_export_value, exported by the patch module lab_rel_export (uses_symbol)
 * (kernelops.livepatch lab, README.md "Relations").
 */

#include "lab_rel.h"

int lab_rel_export_value(void);	/* exported by lab_rel_export */

static int lab_rel_import_new(void)
{
	return lab_rel_export_value() + 1;
}

LAB_REL_PATCH(lab_rel_lib_importer, lab_rel_import_new, do { } while (0));
MODULE_DESCRIPTION("kernelops lab: new code calls lab_rel_export_value, exported by the patch module lab_rel_export (uses_symbol)");
