// SPDX-License-Identifier: GPL-2.0
/*
 * lab_replace - a replace (cumulative) test livepatch for the
 * kernelops.livepatch lab.
 *
 * .replace = true: when its patching transition completes, the kernel
 * unpatches every patch that was live below it and frees them; their sysfs
 * directories vanish and their modules stay loaded with refcnt 0, ready for
 * rmmod (docs/developer.md §3.4).  Its own effect: /proc/dma prints
 * "lab_replace: live".  It patches proc_dma_show(), a function no other lab
 * patch touches, so its marker is visible iff this patch is live.
 *
 * It declares no klp_state, so the kernel refuses it (EINVAL) while
 * lab_state_v1 or lab_state_v2 is live: a cumulative patch must handle every
 * state already in use (docs/developer.md §3.3).
 */

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/seq_file.h>

static int lab_replace_show(struct seq_file *m, void *v)
{
	seq_puts(m, "lab_replace: live\n");
	return 0;
}

static struct klp_func funcs[] = {
	{
		.old_name = "proc_dma_show",
		.new_func = lab_replace_show,
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
	.replace = true,
};

static int __init lab_replace_init(void)
{
	return klp_enable_patch(&patch);
}

static void __exit lab_replace_exit(void)
{
}

module_init(lab_replace_init);
module_exit(lab_replace_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernelops lab: replace livepatch of proc_dma_show (/proc/dma)");
MODULE_INFO(livepatch, "Y");
