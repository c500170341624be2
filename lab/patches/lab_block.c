// SPDX-License-Identifier: GPL-2.0
/*
 * lab_block - test livepatch of lab_busy_sleep() in module lab_busy, for the
 * kernelops.livepatch lab.
 *
 * With lab_busy's parameter block=1, lab_busy's kthread sleeps inside
 * lab_busy_sleep() indefinitely, so loading this patch leaves
 * /sys/kernel/livepatch/lab_block/transition at 1 until the transition is
 * reversed (echo 0 > enabled) or block is cleared (docs/developer.md §2.3,
 * §5.2).  With block=0 the transition completes normally.
 *
 * The replacement returns at once: a thread that has switched to the new
 * code never sleeps in it, so disabling this patch is never blocked by it.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>

static void lab_block_busy_sleep(void)
{
	pr_info_once("lab_busy_sleep() now runs the patched version\n");
}

static struct klp_func funcs[] = {
	{
		.old_name = "lab_busy_sleep",
		.new_func = lab_block_busy_sleep,
	}, { }
};

static struct klp_object objs[] = {
	{
		.name = "lab_busy",
		.funcs = funcs,
	}, { }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int __init lab_block_init(void)
{
	return klp_enable_patch(&patch);
}

static void __exit lab_block_exit(void)
{
}

module_init(lab_block_init);
module_exit(lab_block_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernelops lab: livepatch of lab_busy_sleep (module lab_busy)");
MODULE_INFO(livepatch, "Y");
