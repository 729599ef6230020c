#!/bin/sh
# Guest init of the hamon test VM (PID 1 after switch_root; see tests/system/vm.py).
# Mounts the API filesystems, binds the extracted kernel modules, loads the storage
# modules, runs the scenario named in /hamon/env with its output in /hamon, records its
# exit status and powers off. Events (name + guest uptime) go to /hamon/events and to the
# kernel log; "harness-poweroff" is recorded only here, just before the harness's own
# poweroff, so that any other end of the VM (the scenario rebooting, panicking or powering
# off the OS itself) is distinguishable from the host.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb

event() {
    read -r up _ < /proc/uptime
    echo "$1 $up" >> /hamon/events
    echo "hamon: event $1 at $up" > /dev/kmsg
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
# /tmp stays the overlay's: scenarios under the host's /tmp (pytest tmp_path) stay visible.
mount -t configfs configfs /sys/kernel/config 2>/dev/null
mkdir -p /run/lock /run/hamon /root
event init-start

. /hamon/env
mkdir -p "/lib/modules/$HAMON_KVER"
mount --bind "$HAMON_KMOD_DIR" "/lib/modules/$HAMON_KVER"
# shellcheck disable=SC2086
modprobe -a $HAMON_MODULES_BASE ${HAMON_MODULES:-} || echo "hamon: modprobe failed" > /dev/kmsg
mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config
ip link set lo up 2>/dev/null || busybox ip link set lo up
hostname hamon-guest 2>/dev/null || busybox hostname hamon-guest
export PYTHONPATH="$HAMON_REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1
event scenario-start

cd /hamon || exit 1
# shellcheck disable=SC2086
if [ -x "$HAMON_SCENARIO" ]; then
    eval "set -- $HAMON_ARGS"; "$HAMON_SCENARIO" "$@" > /hamon/stdout 2> /hamon/stderr < /dev/null
else
    eval "set -- $HAMON_ARGS"; /bin/sh "$HAMON_SCENARIO" "$@" > /hamon/stdout 2> /hamon/stderr < /dev/null
fi
rc=$?
echo "$rc" > /hamon/status
event scenario-end
dmesg > /hamon/dmesg 2>/dev/null
sync
event harness-poweroff
busybox poweroff -f
echo o > /proc/sysrq-trigger
sleep 60
