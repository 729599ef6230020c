#!/bin/sh
# The node again after hamon terminated its OS (tests/system/test_scenarios_seed.py): a
# second boot on the first boot's journal disk. Mounting it replays ext4's own journal, as
# any boot does; then `hamon recover` walks through HA Monitor's recovery procedure for
# the failure recorded just before the termination. No storage is set up: the disk's
# paths are not back yet (steps 2-4 say what is still to do).
#   /hamon/recover.txt   the procedure as an administrator reads it
#   /hamon/recover.json  the same as data (--json)
#   /hamon/ext4.txt      the kernel's lines about mounting the journal disk
set -u
mkdir -p /var/lib/hamon-disk
mount "$HAMON_DISK" /var/lib/hamon-disk || { echo "mount $HAMON_DISK failed" >&2; exit 1; }
dmesg | grep "EXT4-fs (vda)" > /hamon/ext4.txt
hamon() { /usr/bin/python3 -m hamon "$@"; }
hamon recover --journal /var/lib/hamon-disk/journal --node node1 > /hamon/recover.txt \
    || { echo "hamon recover failed" >&2; exit 1; }
hamon recover --journal /var/lib/hamon-disk/journal --node node1 --json > /hamon/recover.json \
    || { echo "hamon recover --json failed" >&2; exit 1; }
umount /var/lib/hamon-disk
