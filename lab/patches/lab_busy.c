// SPDX-License-Identifier: GPL-2.0
/*
 * lab_busy - target module (not a livepatch) that can hold up a livepatch
 * transition on demand, for the kernelops.livepatch lab.
 *
 * A kthread calls lab_busy_sleep() in a loop.  While the parameter "block"
 * (/sys/module/lab_busy/parameters/block) is set, the thread sleeps *inside*
 * that function; when it is clear, the function returns at once and the
 * thread naps in lab_busy_thread() instead.  lab_block patches
 * lab_busy_sleep(), so:
 *
 *   block=1: the kthread always has lab_busy_sleep() on its stack, the
 *            kernel can never switch it, and lab_block's transition stays
 *            at 1 (the thread's patch_state stays 0) until it is reversed;
 *   block=0: the thread is found outside the function and switches.
 *
 * Why the thread must not leave lab_busy_sleep() while blocking
 * (docs/developer.md §5.1, §5.2):
 *  - a task switches when the stack check finds no patched function on its
 *    stack: in the periodic retry (~1 s), in the idle loop, and since 6.4
 *    also in cond_resched() (klp_sched_try_switch()).  Any of these that
 *    catches the thread outside the function ends the stall, so the loop
 *    never leaves it, not even briefly;
 *  - every 15 s the kernel wakes interruptibly sleeping kthreads (the "fake
 *    signal").  A kthread gets no signal pending, only a wake-up, so the nap
 *    just ends early; the loop re-checks "block" and naps again, still
 *    inside.  Sleeping interruptibly also keeps the hung-task detector
 *    quiet, and short naps make a cleared "block" take effect within
 *    LAB_BUSY_NAP; kthread_stop() at rmmod wakes the thread at once.
 *
 * noinline + __noclone: the function must exist under its own name (so
 * klp can find it in this module's symbols and the stack check can see it),
 * and GCC must not move its body into a .part/.isra clone, where the thread
 * would sleep outside the patched function's address range.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/kthread.h>
#include <linux/sched.h>
#include <linux/err.h>

/* One nap: short enough for a prompt reaction to "block" and rmmod. */
#define LAB_BUSY_NAP	(HZ / 10)

static bool block;
module_param(block, bool, 0644);
MODULE_PARM_DESC(block, "While set, the kthread sleeps inside lab_busy_sleep() and so blocks a livepatch transition of it");

static struct task_struct *lab_busy_task;

static noinline __noclone void lab_busy_sleep(void)
{
	while (READ_ONCE(block) && !kthread_should_stop())
		schedule_timeout_interruptible(LAB_BUSY_NAP);
}

static int lab_busy_thread(void *data)
{
	while (!kthread_should_stop()) {
		lab_busy_sleep();
		/* Outside lab_busy_sleep(): a transition can switch us here. */
		schedule_timeout_interruptible(LAB_BUSY_NAP);
	}
	return 0;
}

static int __init lab_busy_init(void)
{
	lab_busy_task = kthread_run(lab_busy_thread, NULL, "lab_busy");
	if (IS_ERR(lab_busy_task))
		return PTR_ERR(lab_busy_task);
	pr_info("kthread %d started, block=%d\n", task_pid_nr(lab_busy_task), block);
	return 0;
}

static void __exit lab_busy_exit(void)
{
	/* Wakes the thread; both loops check kthread_should_stop(). */
	kthread_stop(lab_busy_task);
}

module_init(lab_busy_init);
module_exit(lab_busy_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernelops lab: target module whose kthread can block a livepatch transition");
