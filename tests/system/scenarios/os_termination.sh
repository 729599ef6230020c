#!/bin/sh
# Terminates the guest OS the way hamon may: sysrq b (immediate reset, the default), c
# (crash -> kernel panic) or o (immediate power off); $1 picks it. Before that it writes a
# marker (HAMON_MARKER) to the extra disk with O_DIRECT and an fsync, so the host can check
# that what was durable before the termination is on the disk image afterwards.
set -eu
how=${1:-b}
printf 'HAMON-MARKER %s\n' "${HAMON_MARKER:-none}" |
    dd of="$HAMON_DISK" bs=512 conv=sync,fsync oflag=direct status=none
sync
echo "marker written; sysrq $how"
read -r up _ < /proc/uptime; echo "terminate $up" >> /hamon/events
echo "$how" > /proc/sysrq-trigger
sleep 60
echo "still alive after sysrq $how" >&2
exit 3
