// SPDX-License-Identifier: GPL-2.0
/*
 * lab_target_patch - test livepatch of a function in a module (object
 * "lab_target"), for the kernelops.livepatch lab.
 *
 * /proc/lab_target prints "lab_target: patched" while this patch is live
 * and lab_target is loaded.  The patch may be loaded before or after
 * lab_target: the kernel applies it when the module comes and reverts it
 * when the module goes (docs/developer.md §5.5).
 */

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/seq_file.h>

static int lab_target_patch_show(struct seq_file *m, void *v)
{
	seq_puts(m, "lab_target: patched\n");
	return 0;
}

static struct klp_func funcs[] = {
	{
		.old_name = "lab_target_show",
		.new_func = lab_target_patch_show,
	}, { }
};

static struct klp_object objs[] = {
	{
		.name = "lab_target",
		.funcs = funcs,
	}, { }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int __init lab_target_patch_init(void)
{
	return klp_enable_patch(&patch);
}

static void __exit lab_target_patch_exit(void)
{
}

module_init(lab_target_patch_init);
module_exit(lab_target_patch_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernelops lab: livepatch of lab_target_show (module lab_target)");
MODULE_INFO(livepatch, "Y");
