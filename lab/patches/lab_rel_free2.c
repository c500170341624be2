// SPDX-License-Identifier: GPL-2.0
/*
 * lab_rel_free2 - replaces lab_rel_lib_free2; related to no other patch
 * (kernelops.livepatch lab, README.md "Relations").
 */

#include "lab_rel.h"

static int lab_rel_free2_new(void)
{
	return 32;
}

LAB_REL_PATCH(lab_rel_lib_free2, lab_rel_free2_new, do { } while (0));
MODULE_DESCRIPTION("kernelops lab: replaces lab_rel_lib_free2; related to no other patch");
