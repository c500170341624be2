// SPDX-License-Identifier: GPL-2.0
/*
 * lab_fail_pre - test livepatch whose pre-patch callback fails, for the
 * kernelops.livepatch lab.
 *
 * klp_enable_patch() runs the vmlinux object's pre-patch callback before any
 * code is patched; its error is returned from module init, so insmod fails
 * with "No such device" (-ENODEV), the patch is unwound and no
 * /sys/kernel/livepatch/lab_fail_pre directory remains (docs/developer.md
 * §2.5).
 *
 * The callback API (struct klp_callbacks in klp_object.callbacks) is the
 * same in 6.1, 6.12 and 7.2: 7.x only moved the struct definition into
 * <linux/livepatch_external.h>, which <linux/livepatch.h> includes, so no
 * version test is needed here.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>

static int lab_fail_pre_patch(struct klp_object *obj)
{
	pr_info("pre-patch callback: refusing with -ENODEV\n");
	return -ENODEV;
}

/* No function needs patching: the callback alone decides the outcome. */
static struct klp_func no_funcs[] = {
	{ }
};

static struct klp_object objs[] = {
	{
		/* .name == NULL: the object is vmlinux */
		.funcs = no_funcs,
		.callbacks = {
			.pre_patch = lab_fail_pre_patch,
		},
	}, { }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int __init lab_fail_pre_init(void)
{
	return klp_enable_patch(&patch);
}

static void __exit lab_fail_pre_exit(void)
{
}

module_init(lab_fail_pre_init);
module_exit(lab_fail_pre_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernelops lab: livepatch whose pre-patch callback fails with -ENODEV");
MODULE_INFO(livepatch, "Y");
