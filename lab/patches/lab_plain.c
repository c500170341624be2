// SPDX-License-Identifier: GPL-2.0
/*
 * lab_plain - an ordinary module, not a livepatch, for the
 * kernelops.livepatch lab.  It does nothing; the collection must ignore it
 * when it reads the livepatch stack (no livepatch modinfo, no K taint, no
 * /sys/kernel/livepatch directory).
 */

#include <linux/module.h>
#include <linux/kernel.h>

static int __init lab_plain_init(void)
{
	return 0;
}

static void __exit lab_plain_exit(void)
{
}

module_init(lab_plain_init);
module_exit(lab_plain_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernelops lab: an ordinary module that is not a livepatch");
