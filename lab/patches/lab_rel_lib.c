// SPDX-License-Identifier: GPL-2.0
/*
 * lab_rel_lib - the ordinary module whose functions the lab_rel_* patches
 * replace (kernelops.livepatch lab, README.md "Relations").
 *
 * /proc/lab_rel_lib prints one line "NAME: VALUE" per function below. Each
 * returns 0 unpatched; each patch makes its function return its own number,
 * so the lab can see which patch is live for which function.
 *
 * __noipa: GCC must neither inline these calls nor propagate the constant
 * return value into the caller, or the patched function would never be seen.
 * lab_rel_lib_called is exported: lab_rel_caller's new code calls it.
 */

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>

#define LAB_REL_FN(NAME) int NAME(void); __attribute__((__noipa__)) int NAME(void) { return 0; }

LAB_REL_FN(lab_rel_lib_same)
LAB_REL_FN(lab_rel_lib_called)
EXPORT_SYMBOL_GPL(lab_rel_lib_called);
LAB_REL_FN(lab_rel_lib_caller)
LAB_REL_FN(lab_rel_lib_exporter)
LAB_REL_FN(lab_rel_lib_importer)
LAB_REL_FN(lab_rel_lib_shadow1)
LAB_REL_FN(lab_rel_lib_shadow2)
LAB_REL_FN(lab_rel_lib_free1)
LAB_REL_FN(lab_rel_lib_free2)

static int lab_rel_lib_show(struct seq_file *m, void *v)
{
	seq_printf(m, "same: %d\n", lab_rel_lib_same());
	seq_printf(m, "called: %d\n", lab_rel_lib_called());
	seq_printf(m, "caller: %d\n", lab_rel_lib_caller());
	seq_printf(m, "exporter: %d\n", lab_rel_lib_exporter());
	seq_printf(m, "importer: %d\n", lab_rel_lib_importer());
	seq_printf(m, "shadow1: %d\n", lab_rel_lib_shadow1());
	seq_printf(m, "shadow2: %d\n", lab_rel_lib_shadow2());
	seq_printf(m, "free1: %d\n", lab_rel_lib_free1());
	seq_printf(m, "free2: %d\n", lab_rel_lib_free2());
	return 0;
}

static int __init lab_rel_lib_init(void)
{
	return proc_create_single("lab_rel_lib", 0444, NULL, lab_rel_lib_show) ? 0 : -ENOMEM;
}

static void __exit lab_rel_lib_exit(void)
{
	remove_proc_entry("lab_rel_lib", NULL);
}

module_init(lab_rel_lib_init);
module_exit(lab_rel_lib_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernelops lab: functions for the lab_rel_* patches (/proc/lab_rel_lib)");
