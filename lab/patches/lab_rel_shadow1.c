// SPDX-License-Identifier: GPL-2.0
/*
 * lab_rel_shadow1 - counts its calls in a shadow variable of init_task (shared_state with lab_rel_shadow2)
 * (kernelops.livepatch lab, README.md "Relations").
 */

#include "lab_rel.h"
#include <linux/sched/task.h>

static int lab_rel_shadow1_new(void)
{
	int *count = klp_shadow_get_or_alloc(&init_task, LAB_REL_SHADOW_ID, sizeof(*count), GFP_KERNEL, NULL, NULL);

	return count ? ++*count : -1;
}

LAB_REL_PATCH(lab_rel_lib_shadow1, lab_rel_shadow1_new, klp_shadow_free_all(LAB_REL_SHADOW_ID, NULL));
MODULE_DESCRIPTION("kernelops lab: counts its calls in a shadow variable of init_task (shared_state with lab_rel_shadow2)");
