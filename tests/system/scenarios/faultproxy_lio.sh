#!/bin/sh
# The fault proxy in the VM (tests/system/test_faultproxy_vm.py): LIO with one LUN, node 1
# logged in with open-iscsi on portal 0 through tests/faultproxy.py (127.0.0.10:3260 ->
# 127.0.0.1:3260) and on portal 1 directly. The kernel (sd, SG_IO) meets an injected
# CHECK CONDITION / HARDWARE ERROR 44/00 on PR IN and on PR OUT on the proxied path while
# the other path stays clean; a faulted PR OUT changes nothing on LIO; with the rules
# cleared the same session works again. Prints "OK <check>"; exits non-zero at the first
# failed check.
. "$HAMON_GUEST/storage.sh"
set -u

STATS=$HAMON_RUN/faults/P0.stats.json
HW='[{"kind": "check-condition", "opcode": "0x5e"}]'
HW_OUT='[{"kind": "check-condition", "opcode": "0x5f", "sense_key": 4, "asc": "0x44"}]'

step setup-start
lio_setup 1;            step lio-done
faultproxy_start 0;     step proxy-done
node1_login;            step login-done
cat "$HAMON_RUN/paths.tsv"
P0=$N1_L0_P0
P1=$N1_L0_P1
log "proxied path $P0, direct path $P1"

session_of() {  # DEV -> its iSCSI session's connection address:port
    for _s in /sys/class/iscsi_session/session*; do
        for _b in "$_s"/device/target*/*:*:*:*/block/*; do
            [ "${_b##*/}" = "${1#/dev/}" ] || continue
            _c=/sys/class/iscsi_connection/connection${_s##*/session}:0
            echo "$(cat "$_c/persistent_address"):$(cat "$_c/persistent_port") ${_s##*/}"
        done
    done
}
S0=$(session_of "$P0")
log "session of $P0: $S0"
check "path 0 logs in through the proxy" [ "${S0% *}" = 127.0.0.10:3260 ]
check "the proxy saw the kernel's INQUIRY" grep -q '"opcode": 18,' "$STATS"
check "clean: READ KEYS on the proxied path" sg_persist --in -k "$P0"
check "clean: READ KEYS on the direct path" sg_persist --in -k "$P1"

step fault-pr-in
fault_set 0 "$HW"
out=$(sg_persist -v --in -k "$P0" 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/  sg_persist P0: /'
echo "sg_persist --in -k on the proxied path: exit $rc"
check "PR IN on the proxied path fails" [ "$rc" -ne 0 ]
check "sg_persist exit status 3 (medium or hardware error)" [ "$rc" = 3 ]
check "the kernel passes HARDWARE ERROR up" sh -c "printf '%s' \"\$1\" | grep -qi 'hardware error'" - "$out"
check "with ASC/ASCQ 44/00 (internal target failure)" sh -c "printf '%s' \"\$1\" | grep -qi 'internal target failure'" - "$out"
check "the direct path is clean meanwhile" sg_persist --in -k "$P1"
check "TEST UNIT READY still passes on the proxied path (rule is PR IN only)" sg_turs "$P0"

step fault-pr-out
fault_set 0 "$HW_OUT"
out=$(sg_persist -v --out --register --param-sark=0x1 "$P0" 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/  sg_persist P0: /'
check "PR OUT REGISTER on the proxied path fails with HARDWARE ERROR" \
    sh -c "[ $rc = 3 ] && printf '%s' \"\$1\" | grep -qi 'hardware error'" - "$out"
keys=$(sg_persist --in -k "$P1" 2>&1)
printf '%s\n' "$keys" | sed 's/^/  keys via P1: /'
check "the faulted REGISTER changed nothing on LIO (read on the direct path)" \
    sh -c "printf '%s' \"\$1\" | grep -qi 'no registered reservation keys'" - "$keys"

step fault-clear
fault_set 0 '[]'
check "with the rules cleared, REGISTER through the proxied path works" \
    sg_persist --out --register --param-sark=0x1 "$P0"
keys=$(sg_persist --in -k "$P1" 2>&1)
check "the key is on LIO (read on the direct path)" \
    sh -c "printf '%s' \"\$1\" | grep -q '0x1'" - "$keys"
check "the same iSCSI session throughout (no relogin)" [ "$(session_of "$P0")" = "$S0" ]
cp "$STATS" /hamon/faultproxy-P0.stats.json
check "the proxy counted two applied HARDWARE ERRORs" \
    grep -q '"check-condition": 2' "$STATS"
step done
