#!/bin/sh
# The seed in a real kernel (tests/system/test_scenarios_seed.py): ocf:hamon:hamon_disk,
# run as pacemaker-execd runs it, holds a LIO LUN; paths fail while the active server
# terminates (stop).
#
#   seed_stop.sh partial   dmmp_device=/dev/mapper/mpatha (2 paths), one path fails:
#                          KAMN725-W, the stop succeeds, the OS keeps running
#   seed_stop.sh total     the same disk, both paths fail: KAMN725-W + KAMN726-E, the
#                          journal entry is made durable, hamon terminates the OS
#   seed_stop.sh cut       as partial, but path 1's network is cut (blackhole route to
#                          its portal) just before the stop: the device is still open-able
#                          and the stop's own commands meet the failure
#   seed_stop.sh single    scsi_device=/dev/sdX (one path, node 2's plain sd), it fails:
#                          KAMN725-W + KAMN726-E, OS termination
#
# The journal lives on the extra disk (/dev/vda, ext4), which the host reads after the VM
# is gone. OS_TERMINATION (env, default reboot) is the agent's os_termination: the real
# action, no dry run. HAMON_STRACE=1: each action under strace (openat, ioctl) into
# /hamon/ACTION.strace. Prints "OK <check>" per passed check; exits 1 at a failed one.
. "$HAMON_GUEST/storage.sh"
set -u
mode=${1:?partial|total|single}


mkfs.ext4 -q -F -L hamon-journal "$HAMON_DISK" || die "mkfs"
mkdir -p /var/lib/hamon-disk && mount "$HAMON_DISK" /var/lib/hamon-disk || die "mount"
step setup-start
lio_setup 1
node1_login
if [ "$mode" = single ]; then node2_login; fi
multipath_setup
step setup-done

if [ "$mode" = single ]; then
    node=node2; param=scsi_device; dev=$N2_L0_P0; fail=$N2_L0_P0
else
    node=node1; param=dmmp_device; dev=$MP_L0
    case $mode in
        partial|cut) fail=$N1_L0_P1 ;;
        *) fail="$N1_L0_P0 $N1_L0_P1" ;;
    esac
fi
echo "$dev" > /hamon/device       # for the host: the operand and the paths that fail
echo "$fail" > /hamon/failed

agent() {  # ACTION: hamon_disk as pacemaker-execd runs it; stderr kept per action
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin OCF_ROOT=/usr/lib/ocf \
        OCF_RESOURCE_INSTANCE=shared-disk OCF_RESOURCE_TYPE=hamon_disk \
        OCF_RESOURCE_PROVIDER=hamon OCF_RA_VERSION_MAJOR=1 OCF_RA_VERSION_MINOR=1 \
        OCF_RESKEY_CRM_meta_interval=0 OCF_RESKEY_CRM_meta_timeout=60000 \
        HAMON_NODE=$node OCF_RESKEY_$param="$dev" OCF_RESKEY_alias=service1 \
        OCF_RESKEY_command_timeout=5 OCF_RESKEY_os_termination="${OS_TERMINATION:-reboot}" \
        OCF_RESKEY_journal=/var/lib/hamon-disk/journal \
        OCF_RESKEY_state_dir=/run/hamon-disk \
        ${HAMON_STRACE:+strace -f -tt -T -e trace=openat,ioctl -o "/hamon/$1.strace"} \
        /usr/bin/python3 "$HAMON_REPO/agents/ocf/hamon_disk" "$1" 2> "/hamon/$1.err"
    _rc=$?
    cat "/hamon/$1.err" >&2
    echo "hamon_disk $1 -> $_rc"
    return $_rc
}

check "start acquires the disk" agent start
check "monitor: running" agent monitor
sg_persist --in --read-reservation "$dev" >&2

step fail-paths
if [ "$mode" = cut ]; then
    # The network under path 1 (portal 127.0.0.2) goes away just before the stop: the
    # kernel still has the device running and open() works, so the failure is met by
    # the stop's own SCSI commands (iSCSI NOP-out timeout, session recovery,
    # replacement_timeout -> the commands fail), as with a pulled cable.
    ip route add blackhole 127.0.0.2/32 table local || die "blackhole"
else
    for p in $fail; do fail_path "$p"; done
    if [ "$mode" != single ]; then for p in $fail; do wait_path "$p" failed 30; done; fi
fi
step stop
# A terminated OS never returns from this; if it does, the result is checked.
agent stop
rc=$?
step stop-returned
check "KAMN725-W logged" grep -q "KAMN725-W" /hamon/stop.err
if [ "$mode" = partial ] || [ "$mode" = cut ]; then
    check "stop succeeded" [ "$rc" = 0 ]
    check "no KAMN726-E" expect_fail grep -q "KAMN726-E" /hamon/stop.err
    check "journal entry on the extra disk" grep -q '"verdict": *"continue"' \
        /var/lib/hamon-disk/journal
    umount /var/lib/hamon-disk
    ok "the OS keeps running"
    exit 0
fi
# sysrq o (poweroff) is carried out by a kernel worker: stop may return first (exit 1,
# "the OS is being terminated"). Give the termination time to land; if the OS is still
# up after that, hamon did not terminate it.
echo "stop returned $rc; waiting for the OS termination" >&2
sleep 60
echo "the OS is still running 60 s after stop returned $rc, although every path failed" >&2
exit 1
