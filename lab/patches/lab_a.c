// SPDX-License-Identifier: GPL-2.0
/*
 * lab_a - test livepatch for the kernelops.livepatch lab.
 *
 * Replaces cmdline_proc_show(), so that /proc/cmdline prints the single
 * line "lab_a: live" while this patch is live. The original text is not
 * reproduced: a livepatch cannot call the function it replaces (ftrace
 * would redirect the call back to the new function). The guest's boot
 * reads /proc/cmdline before any patch is loaded; later readers that split
 * it into words just see two unknown words.
 *
 * Each of lab_a .. lab_e patches a different function, so all five can be
 * live at once and lab/klab/effects.py can tell exactly which ones are.
 * The function is registered with proc_create_single(), so its address is
 * taken and it exists out of line, under this name, in kallsyms on 6.1,
 * 6.12 and 7.x (checked in the running kernels' /proc/kallsyms).
 */

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/seq_file.h>

static int lab_a_show(struct seq_file *m, void *v)
{
	seq_puts(m, "lab_a: live\n");
	return 0;
}

static struct klp_func funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = lab_a_show,
	}, { }
};

static struct klp_object objs[] = {
	{
		/* .name == NULL: the object is vmlinux */
		.funcs = funcs,
	}, { }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int __init lab_a_init(void)
{
	return klp_enable_patch(&patch);
}

static void __exit lab_a_exit(void)
{
}

module_init(lab_a_init);
module_exit(lab_a_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernelops lab: livepatch of cmdline_proc_show (/proc/cmdline)");
MODULE_INFO(livepatch, "Y");
