// SPDX-License-Identifier: GPL-2.0
/*
 * lab_rel_same2 - replaces lab_rel_lib_same too (same_function with lab_rel_same1)
 * (kernelops.livepatch lab, README.md "Relations").
 */

#include "lab_rel.h"

static int lab_rel_same2_new(void)
{
	return 2;
}

LAB_REL_PATCH(lab_rel_lib_same, lab_rel_same2_new, do { } while (0));
MODULE_DESCRIPTION("kernelops lab: replaces lab_rel_lib_same too (same_function with lab_rel_same1)");
