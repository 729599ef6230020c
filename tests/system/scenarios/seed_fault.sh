#!/bin/sh
# Issue 10's fault matrix at the system tier (tests/system/test_fault_matrix_vm.py): a path
# that *answers* with an error is a failed path. ocf:hamon:hamon_disk, run as
# pacemaker-execd runs it, holds node 1's /dev/mapper/mpatha (LIO, two paths); the iSCSI
# fault proxy (tests/faultproxy.py) sits in front of a portal from the login on, and just
# before the stop it starts answering PERSISTENT RESERVE IN and OUT with CHECK CONDITION,
# HARDWARE ERROR 44/00, as a failing array does. The paths stay up: TEST UNIT READY, READ
# and WRITE pass, open() works; only the stop's own PR commands meet the fault.
#
#   seed_fault.sh one     proxy on portal 0 only: mpatha's path P0 answers HARDWARE ERROR,
#                         P1 is clean. Expected: KAMN725-W for P0 (IO-ERR), stop 0, journal
#                         verdict continue, the OS keeps running, and node 2 (another
#                         initiator, its own session on the clean portal) reads neither
#                         node 1's key nor a reservation on the LUN.
#   seed_fault.sh every   proxies on both portals: every path answers HARDWARE ERROR.
#                         Expected: KAMN725-W x2, KAMN726-E, HAMN954-E, hamon terminates
#                         the OS (OS_TERMINATION, default reboot); the host reads the
#                         journal from the disk image.
#
# The journal lives on the extra disk (/dev/vda, ext4). Prints "OK <check>" per passed
# check; exits 1 at a failed one. Files for the host in /hamon: device, failed (the
# faulted sd paths), reader (node 2's clean path), stop.err, keys-*.txt, rsv-*.txt,
# faultproxy-P<n>.stats.json, journal (mode one).
. "$HAMON_GUEST/storage.sh"
set -u
mode=${1:?one|every}
HW='[{"kind": "check-condition", "opcode": "0x5e"}, {"kind": "check-condition", "opcode": "0x5f"}]'

contains() { printf '%s' "$1" | grep -qi -- "$2"; }

mkfs.ext4 -q -F -L hamon-journal "$HAMON_DISK" || die "mkfs"
mkdir -p /var/lib/hamon-disk && mount "$HAMON_DISK" /var/lib/hamon-disk || die "mount"
step setup-start
lio_setup 1
faultproxy_start 0
proxies=0
if [ "$mode" = every ]; then faultproxy_start 1; proxies="0 1"; fi
step proxy-done
node1_login
[ "$mode" = one ] && node2_login
multipath_setup
step setup-done

dev=$MP_L0
case $mode in
    one) fail=$N1_L0_P0; reader=$N2_L0_P1 ;;
    every) fail="$N1_L0_P0 $N1_L0_P1"; reader= ;;
    *) die "mode: one|every" ;;
esac
echo "$dev" > /hamon/device
echo "$fail" > /hamon/failed
echo "$reader" > /hamon/reader
log "map $dev, faulted paths: $fail, independent reader: ${reader:-none}"
check "both sd paths are in $dev" sh -c \
    "[ \"\$(ls /sys/block/\$(basename \$(readlink -f $dev))/slaves | wc -l)\" = 2 ]"

agent() {  # ACTION: hamon_disk as pacemaker-execd runs it; stderr kept per action
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin OCF_ROOT=/usr/lib/ocf \
        OCF_RESOURCE_INSTANCE=shared-disk OCF_RESOURCE_TYPE=hamon_disk \
        OCF_RESOURCE_PROVIDER=hamon OCF_RA_VERSION_MAJOR=1 OCF_RA_VERSION_MINOR=1 \
        OCF_RESKEY_CRM_meta_interval=0 OCF_RESKEY_CRM_meta_timeout=60000 \
        HAMON_NODE=node1 OCF_RESKEY_dmmp_device="$dev" OCF_RESKEY_alias=service1 \
        OCF_RESKEY_command_timeout=5 OCF_RESKEY_os_termination="${OS_TERMINATION:-reboot}" \
        OCF_RESKEY_journal=/var/lib/hamon-disk/journal \
        OCF_RESKEY_state_dir=/run/hamon-disk \
        /usr/bin/python3 "$HAMON_REPO/agents/ocf/hamon_disk" "$1" 2> "/hamon/$1.err"
    _rc=$?
    cat "/hamon/$1.err" >&2
    echo "hamon_disk $1 -> $_rc"
    return $_rc
}
read_lun() {  # TAG: node 2's independent read (own initiator, clean portal) -> files
    sg_persist --in --read-keys "$reader" > "/hamon/keys-$1.txt" 2>&1
    sg_persist --in --read-reservation "$reader" > "/hamon/rsv-$1.txt" 2>&1
    sed "s/^/  [$1] keys: /" "/hamon/keys-$1.txt" >&2
    sed "s/^/  [$1] reservation: /" "/hamon/rsv-$1.txt" >&2
}

check "start acquires the disk" agent start
check "monitor: running" agent monitor
if [ -n "$reader" ]; then
    read_lun before
    check "before the stop node 2 reads node 1's keys" grep -q 0x /hamon/keys-before.txt
    check "before the stop node 2 reads a reservation" expect_fail \
        grep -qi "NO reservation held" /hamon/rsv-before.txt
fi

step fault-paths
for i in $proxies; do fault_set "$i" "$HW"; done
for p in $fail; do
    out=$(sg_persist --in -k "$p" 2>&1); rc=$?
    check "PR IN on $p answers HARDWARE ERROR (sg_persist exit $rc)" \
        sh -c "[ $rc = 3 ] && printf '%s' \"\$1\" | grep -qi 'hardware error'" - "$out"
    check "the faulted path $p still passes TEST UNIT READY" sg_turs "$p"
done
for i in $proxies; do cp "$HAMON_RUN/faults/P$i.stats.json" "/hamon/faultproxy-P$i.before.json"; done
step stop
# A terminated OS never returns from this; if it does, the result is checked.
agent stop
rc=$?
step stop-returned
for i in $proxies; do cp "$HAMON_RUN/faults/P$i.stats.json" "/hamon/faultproxy-P$i.stats.json"; done
check "KAMN725-W logged" grep -q "KAMN725-W" /hamon/stop.err
if [ "$mode" = one ]; then
    check "stop succeeded" [ "$rc" = 0 ]
    check "no KAMN726-E" expect_fail grep -q "KAMN726-E" /hamon/stop.err
    cp /var/lib/hamon-disk/journal /hamon/journal
    check "journal entry on the extra disk says continue" grep -q '"verdict": *"continue"' \
        /var/lib/hamon-disk/journal
    read_lun after
    check "after the stop node 2 reads no registered key" \
        grep -qi "there are NO registered reservation keys" /hamon/keys-after.txt
    check "after the stop node 2 reads no reservation" \
        grep -qi "there is NO reservation held" /hamon/rsv-after.txt
    umount /var/lib/hamon-disk
    ok "the OS keeps running"
    exit 0
fi
# sysrq b (reboot) is carried out by a kernel worker: stop may return first. Give the
# termination time to land; if the OS is still up after that, hamon did not terminate it.
echo "stop returned $rc; waiting for the OS termination" >&2
sleep 60
echo "the OS is still running 60 s after stop returned $rc, although every path failed" >&2
exit 1
