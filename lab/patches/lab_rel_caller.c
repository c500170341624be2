// SPDX-License-Identifier: GPL-2.0
/*
 * lab_rel_caller - new code calls lab_rel_lib_called, which lab_rel_callee replaces (calls_patched)
 * (kernelops.livepatch lab, README.md "Relations").
 */

#include "lab_rel.h"

int lab_rel_lib_called(void);	/* exported by lab_rel_lib */

static int lab_rel_caller_new(void)
{
	return 100 + lab_rel_lib_called();
}

LAB_REL_PATCH(lab_rel_lib_caller, lab_rel_caller_new, do { } while (0));
MODULE_DESCRIPTION("kernelops lab: new code calls lab_rel_lib_called, which lab_rel_callee replaces (calls_patched)");
