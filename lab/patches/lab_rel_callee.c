// SPDX-License-Identifier: GPL-2.0
/*
 * lab_rel_callee - replaces lab_rel_lib_called, which lab_rel_caller calls (calls_patched)
 * (kernelops.livepatch lab, README.md "Relations").
 */

#include "lab_rel.h"

static int lab_rel_callee_new(void)
{
	return 10;
}

LAB_REL_PATCH(lab_rel_lib_called, lab_rel_callee_new, do { } while (0));
MODULE_DESCRIPTION("kernelops lab: replaces lab_rel_lib_called, which lab_rel_caller calls (calls_patched)");
