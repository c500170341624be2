#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# /init of the lab's per-kernel initramfs (busybox-static).
# Loads that kernel's virtio and ext4 modules in dependency order (listed in
# /modules.order at build time), mounts the guest disk read-write and hands over
# to its systemd. With klab.probe=1 on the command line it only proves the kernel
# reached userspace (the KVM probe) and powers off.

/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

while read -r mod; do
    insmod "/lib/modules/$mod" || echo "klab-init: insmod $mod failed"
done < /modules.order

if grep -q 'klab.probe=1' /proc/cmdline; then
    echo "KLAB-PROBE-OK"
    poweroff -f
fi

# wait for the disk the way functions.sh's loop_until does: poll the state, bounded
tries=0
while [ ! -b /dev/vda ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 1000 ]; then
        echo "klab-init: /dev/vda did not appear; modules loaded:"
        cat /proc/modules
        poweroff -f
    fi
    sleep 0.01
done

mkdir -p /newroot
if ! mount -t ext4 -o rw /dev/vda /newroot; then
    echo "klab-init: cannot mount /dev/vda"
    poweroff -f
fi
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /sbin/init
