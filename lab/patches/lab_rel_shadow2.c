// SPDX-License-Identifier: GPL-2.0
/*
 * lab_rel_shadow2 - reads the shadow variable lab_rel_shadow1 attaches to init_task (shared_state)
 * (kernelops.livepatch lab, README.md "Relations").
 */

#include "lab_rel.h"
#include <linux/sched/task.h>

static int lab_rel_shadow2_new(void)
{
	int *count = klp_shadow_get(&init_task, LAB_REL_SHADOW_ID);

	return count ? 1000 + *count : 1000;
}

LAB_REL_PATCH(lab_rel_lib_shadow2, lab_rel_shadow2_new, do { } while (0));
MODULE_DESCRIPTION("kernelops lab: reads the shadow variable lab_rel_shadow1 attaches to init_task (shared_state)");
