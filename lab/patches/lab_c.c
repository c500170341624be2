// SPDX-License-Identifier: GPL-2.0
/*
 * lab_c - test livepatch for the kernelops.livepatch lab.
 *
 * Replaces loadavg_proc_show(), so that /proc/loadavg prints the single
 * line "lab_c: live" while this patch is live. The original text is not
 * reproduced: a livepatch cannot call the function it replaces (ftrace
 * would redirect the call back to the new function). Only getloadavg(3)
 * users (uptime, top) read /proc/loadavg; none of them is needed by
 * the lab.
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

static int lab_c_show(struct seq_file *m, void *v)
{
	seq_puts(m, "lab_c: live\n");
	return 0;
}

static struct klp_func funcs[] = {
	{
		.old_name = "loadavg_proc_show",
		.new_func = lab_c_show,
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

static int __init lab_c_init(void)
{
	return klp_enable_patch(&patch);
}

static void __exit lab_c_exit(void)
{
}

module_init(lab_c_init);
module_exit(lab_c_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernelops lab: livepatch of loadavg_proc_show (/proc/loadavg)");
MODULE_INFO(livepatch, "Y");
