// SPDX-License-Identifier: GPL-2.0
/*
 * lab_state_v2 - test livepatch declaring system state id 1, version 2, for
 * the kernelops.livepatch lab.
 *
 * The kernel (5.5+) refuses a patch that declares a state at a lower version
 * than a patch already on its list: loading lab_state_v1 while lab_state_v2
 * is live fails with EINVAL and "... is not compatible with the already
 * installed livepatches." in dmesg; v1 then v2 works (docs/developer.md
 * §3.3).  Both are non-replace patches and patch different functions, so
 * each has its own effect: /proc/net/psched prints "lab_state_v2: live" while this
 * patch is live (psched_show()).
 *
 * No state callbacks and no state data: only the id/version check matters.
 */

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/seq_file.h>

#define LAB_STATE_ID		1
#define LAB_STATE_VERSION	2

static int lab_state_v2_show(struct seq_file *m, void *v)
{
	seq_puts(m, "lab_state_v2: live\n");
	return 0;
}

static struct klp_func funcs[] = {
	{
		.old_name = "psched_show",
		.new_func = lab_state_v2_show,
	}, { }
};

static struct klp_object objs[] = {
	{
		/* .name == NULL: the object is vmlinux */
		.funcs = funcs,
	}, { }
};

static struct klp_state states[] = {
	{
		.id = LAB_STATE_ID,
		.version = LAB_STATE_VERSION,
	}, { }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
	.states = states,
};

static int __init lab_state_v2_init(void)
{
	return klp_enable_patch(&patch);
}

static void __exit lab_state_v2_exit(void)
{
}

module_init(lab_state_v2_init);
module_exit(lab_state_v2_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernelops lab: livepatch with klp_state id 1 version 2 (/proc/net/psched)");
MODULE_INFO(livepatch, "Y");
