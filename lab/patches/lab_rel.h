/* SPDX-License-Identifier: GPL-2.0 */
/*
 * lab_rel.h - the livepatch boilerplate shared by the lab_rel_* patches.
 *
 * Every lab_rel_* patch replaces exactly one function of the ordinary module
 * lab_rel_lib (object "lab_rel_lib"), so none of them touches vmlinux and
 * each pair is related only by what its sources say on purpose (README.md,
 * "Relations"). A patch may be loaded before or after lab_rel_lib: livepatch
 * applies a module object when the module comes (docs/developer.md §5.5).
 */
#ifndef LAB_REL_H
#define LAB_REL_H

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>

/* The shadow variable id (include/linux/livepatch.h klp_shadow_*) of lab_rel_shadow1/2. */
#define LAB_REL_SHADOW_ID	0x6c72

/* Patch lab_rel_lib's OLD with NEW; EXIT runs at module unload (after the patch is gone). */
#define LAB_REL_PATCH(OLD, NEW, EXIT)						\
static struct klp_func funcs[] = {						\
	{									\
		.old_name = #OLD,						\
		.new_func = NEW,						\
	}, { }									\
};										\
static struct klp_object objs[] = {						\
	{									\
		.name = "lab_rel_lib",						\
		.funcs = funcs,							\
	}, { }									\
};										\
static struct klp_patch patch = {						\
	.mod = THIS_MODULE,							\
	.objs = objs,								\
};										\
static int __init lab_rel_init(void)						\
{										\
	return klp_enable_patch(&patch);					\
}										\
static void __exit lab_rel_exit(void)						\
{										\
	EXIT;									\
}										\
module_init(lab_rel_init);							\
module_exit(lab_rel_exit);							\
MODULE_LICENSE("GPL");								\
MODULE_INFO(livepatch, "Y")

#endif
