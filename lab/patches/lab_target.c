// SPDX-License-Identifier: GPL-2.0
/*
 * lab_target - target module (not a livepatch) for the kernelops.livepatch
 * lab.  /proc/lab_target prints "lab_target: original"; lab_target_patch
 * replaces lab_target_show() so that it prints "lab_target: patched".
 *
 * lab_target_show() is noinline and __noclone so that it keeps its own name
 * in this module's symbols, where klp looks it up (object "lab_target").
 */

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>

static noinline __noclone int lab_target_show(struct seq_file *m, void *v)
{
	seq_puts(m, "lab_target: original\n");
	return 0;
}

static int __init lab_target_init(void)
{
	if (!proc_create_single("lab_target", 0444, NULL, lab_target_show))
		return -ENOMEM;
	return 0;
}

static void __exit lab_target_exit(void)
{
	remove_proc_entry("lab_target", NULL);
}

module_init(lab_target_init);
module_exit(lab_target_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernelops lab: target module providing /proc/lab_target");
