# Guest storage library of the hamon test VM. A scenario sources it:
#
#     . "$HAMON_GUEST/storage.sh"
#     lio_setup 2          # LIO iSCSI target, 2 LUNs, portals 127.0.0.1:3260 and 127.0.0.2:3260
#     node1_login          # initiator iface n1 (iqn...:node1) on both portals: 2 sdX per LUN
#     node2_login          # initiator iface n2 (iqn...:node2) on both portals: 2 sdX per LUN
#     multipath_setup      # dm-multipath over node1's paths: MP_L0=/dev/mapper/mpatha, ...
#
# Naming. After every login/multipath step `paths_refresh` rewrites /run/hamon/paths.tsv
# (node kind lun portal dev mpath; one line per SCSI disk of every iSCSI session, found
# from /sys/class/iscsi_session: the session's iface name gives the node, its connection's
# address:port gives the portal index, the SCSI LUN gives the LUN index) and
# /run/hamon/paths.env, and sources the latter. For the first target set up:
#     N1_L0_P0=/dev/sda  N1_L0_P1=/dev/sdb   node 1, LUN 0, portal 0/1
#     N2_L0_P0=/dev/sde  ...                 node 2 (plain sdX; never in a multipath map)
#     MP_L0=/dev/mapper/mpatha   WWID_L0=36001405...
# and the same prefixed with the target kind for every target (LIO_N1_L0_P0, TGT_MP_L1...).
# `path_of NODE LUN PORTAL [KIND]` and `mpath_of LUN [KIND]` print the same.
#
# Why node 2 has no multipath map: one kernel has one device-mapper namespace, and a map is
# keyed by WWID, so node 2's paths to the same LUN would join node 1's map. A udev rule
# (59-hamon-node.rules) tags node 2's disks with HAMON_NODE2=1 and multipath.conf
# blacklists that property. Node 2 uses its sdX paths directly (scsi_device style), which
# is what the other cluster node needs for registering, reserving and preempting.
#
# Faults: `fail_path DEV` / `restore_path DEV` set /sys/block/sdX/device/state to
# offline / running; `wait_path DEV STATE [SECONDS]` waits for multipathd's view of a path
# (STATE: active|failed, the dm state). Every helper fails loudly (`die`) on a timeout.
#
# Events: `step NAME` records NAME in /hamon/events (the host timestamps it) and in the
# kernel log; use it to time phases of a scenario.

HAMON_RUN=/run/hamon
IQN_BASE=iqn.2003-01.org.linux-iscsi.hamon
LIO_IQN=$IQN_BASE:lio
TGT_IQN=$IQN_BASE:tgt
N1_IQN=$IQN_BASE:node1
N2_IQN=$IQN_BASE:node2
LIO_PORTALS=${LIO_PORTALS:-"127.0.0.1:3260 127.0.0.2:3260"}
TGT_PORTALS=${TGT_PORTALS:-"127.0.0.1:3261 127.0.0.2:3261"}
LUN_SIZE_MB=${LUN_SIZE_MB:-64}
CFS=/sys/kernel/config/target
mkdir -p "$HAMON_RUN"
# HAMON_TRACE=1 (e.g. vm.py -e HAMON_TRACE=1): trace every command, with guest uptime, to
# /hamon/trace (costs a fork per traced line).
if [ "${HAMON_TRACE:-0}" = 1 ]; then
    PS4='+ $(read -r u _ < /proc/uptime; echo $u) '
    exec 2>> /hamon/trace
    set -x
fi

log() { read -r _lu _ < /proc/uptime; echo "[$_lu] $*" >&2; }
die() { log "FATAL: $*"; exit 1; }
# A scenario's verdicts, one line each on stdout (the host's test reads them):
# ok NAME; check NAME CMD...: ok if CMD succeeds, else die (the scenario exits 1).
ok() { echo "OK $*"; }
check() { _n=$1; shift; if "$@"; then ok "$_n"; else die "check failed: $_n"; fi; }
step() {
    read -r _up _ < /proc/uptime
    echo "$1 $_up" >> /hamon/events
    echo "hamon: step $1 at $_up" > /dev/kmsg
    log "== $1"
}
# wait_for SECONDS CMD...: run CMD every 0.2 s until it succeeds; 1 on timeout.
wait_for() {
    read -r _wu _ < /proc/uptime; _end=$(( ${_wu%.*} + $1 )); shift
    until "$@" >/dev/null 2>&1; do
        read -r _wu _ < /proc/uptime
        [ "${_wu%.*}" -lt "$_end" ] || return 1
        sleep 0.2
    done
}
# expect_fail CMD...: succeed only if CMD fails.
expect_fail() { if "$@"; then log "unexpectedly succeeded: $*"; return 1; fi; return 0; }

# ----------------------------------------------------------------------------- targets

_target_add() {  # kind iqn lunbase nluns portals...
    echo "$*" >> "$HAMON_RUN/targets"
}

# lio_setup N_LUNS: the kernel's LIO iSCSI target over configfs; fileio backstores on
# tmpfs (LUN_SIZE_MB each, sparse); one TPG on both LIO_PORTALS; demo mode
# (generate_node_acls=1, no auth, writable); PR state under $HAMON_RUN/lio-db (dbroot).
lio_setup() {
    _n=${1:-1}
    modprobe -a target_core_mod target_core_file iscsi_target_mod || die "LIO modules"
    mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config
    # LIO rewrites <dbroot>/pr/aptpl_<serial> on every PR OUT (emptied when APTPL is off);
    # without the pr/ directory the command takes effect but answers NOT READY, LOGICAL
    # UNIT COMMUNICATION FAILURE (02/08/00). dbroot can only be set while no backstore exists.
    mkdir -p "$HAMON_RUN/lio-db/pr" "$HAMON_RUN/lio-db/alua" "$HAMON_RUN/lio"
    echo "$HAMON_RUN/lio-db" > "$CFS/dbroot" || die "LIO dbroot"
    _tpg=$CFS/iscsi/$LIO_IQN/tpgt_1
    mkdir -p "$_tpg" || die "LIO target"
    _i=0
    while [ "$_i" -lt "$_n" ]; do
        _bs=$CFS/core/fileio_$_i/lun$_i
        mkdir -p "$_bs"
        echo "fd_dev_name=$HAMON_RUN/lio/lun$_i.img,fd_dev_size=$((LUN_SIZE_MB * 1048576))" \
            > "$_bs/control"
        echo 1 > "$_bs/enable" || die "LIO backstore $_i"
        # A unit serial makes LIO report VPD 0x80 and an NAA designator in 0x83 (the WWID
        # udev and multipath key on); deterministic: 68616d6f-6e ("hamon") + the LUN index.
        printf '68616d6f-6e%02x-4000-8000-000000000000\n' "$_i" > "$_bs/wwn/vpd_unit_serial" \
            || die "LIO unit serial $_i"
        mkdir "$_tpg/lun/lun_$_i"
        ln -s "$_bs" "$_tpg/lun/lun_$_i/hamon_$_i"
        _i=$((_i + 1))
    done
    for _p in $LIO_PORTALS; do mkdir "$_tpg/np/$_p" || die "LIO portal $_p"; done
    echo 0 > "$_tpg/attrib/authentication"
    echo 1 > "$_tpg/attrib/generate_node_acls"
    echo 1 > "$_tpg/attrib/cache_dynamic_acls"
    echo 0 > "$_tpg/attrib/demo_mode_write_protect"
    echo 1 > "$_tpg/enable" || die "LIO enable"
    _target_add lio "$LIO_IQN" 0 "$_n" $LIO_PORTALS
    log "LIO: $_n LUN(s) on $LIO_PORTALS"
}

# tgt_setup N_LUNS: the userspace tgtd (Debian tgt) on TGT_PORTALS; LUNs 1..N (LUN 0 is
# tgt's controller). Partial PR: no PREEMPT AND ABORT, READ FULL STATUS, APTPL, ALL_TG_PT.
tgt_setup() {
    _n=${1:-1}
    mkdir -p "$HAMON_RUN/tgt"
    _first=${TGT_PORTALS%% *}
    tgtd --iscsi "portal=$_first" > /hamon/tgtd.log 2>&1 || die "tgtd"
    wait_for 20 tgtadm --lld iscsi --op show --mode target || die "tgtd not answering"
    for _p in $TGT_PORTALS; do
        [ "$_p" = "$_first" ] && continue
        tgtadm --lld iscsi --op new --mode portal --param "portal=$_p" || die "tgt portal $_p"
    done
    tgtadm --lld iscsi --op new --mode target --tid 1 -T "$TGT_IQN" || die "tgt target"
    _i=0
    while [ "$_i" -lt "$_n" ]; do
        truncate -s "${LUN_SIZE_MB}M" "$HAMON_RUN/tgt/lun$_i.img"
        tgtadm --lld iscsi --op new --mode logicalunit --tid 1 --lun $((_i + 1)) \
            -b "$HAMON_RUN/tgt/lun$_i.img" || die "tgt LUN $_i"
        _i=$((_i + 1))
    done
    tgtadm --lld iscsi --op bind --mode target --tid 1 -I ALL || die "tgt bind"
    _target_add tgt "$TGT_IQN" 1 "$_n" $TGT_PORTALS
    log "tgt: $_n LUN(s) on $TGT_PORTALS"
}

# ------------------------------------------------------------------------- initiators

# udev_start: systemd-udevd with hamon's node-tagging rule; idempotent.
udev_start() {
    [ -e "$HAMON_RUN/udevd.started" ] && return 0
    mkdir -p /etc/udev/rules.d
    cat > /etc/udev/rules.d/59-hamon-node.rules <<EOF
# hamon test VM: which initiator (cluster node) a SCSI disk belongs to, from its iSCSI
# session's iface; node 2's disks are blacklisted from multipath by this property.
SUBSYSTEM=="block", KERNEL=="sd*[!0-9]", ACTION=="add|change", PROGRAM="/bin/sh $HAMON_GUEST/iscsi-iface %k", ENV{HAMON_ISCSI_IFACE}="%c"
SUBSYSTEM=="block", KERNEL=="sd*[!0-9]", ENV{HAMON_ISCSI_IFACE}=="n2", ENV{HAMON_NODE2}="1"
EOF
    /lib/systemd/systemd-udevd --daemon --resolve-names=never 2>> /hamon/udevd.log \
        || die "systemd-udevd"
    udevadm trigger --action=add --subsystem-match=block
    udevadm settle --timeout=60
    touch "$HAMON_RUN/udevd.started"
}

# iscsid_start: open-iscsi's iscsid without systemd; ifaces n1/n2; short timeouts so a
# dead session fails its I/O in seconds (replacement_timeout 5 s), not two minutes.
iscsid_start() {
    [ -e "$HAMON_RUN/iscsid.started" ] && return 0
    modprobe iscsi_tcp
    rm -rf /etc/iscsi/nodes /etc/iscsi/send_targets /etc/iscsi/ifaces /var/lib/iscsi
    mkdir -p /etc/iscsi/nodes /etc/iscsi/send_targets /etc/iscsi/ifaces /run/lock/iscsi
    echo "InitiatorName=$N1_IQN" > /etc/iscsi/initiatorname.iscsi
    sed -i -e 's|^iscsid.startup.*|iscsid.startup = /bin/true|' \
        -e 's|^node.session.timeo.replacement_timeout.*|node.session.timeo.replacement_timeout = 5|' \
        -e 's|^node.conn\[0\].timeo.noop_out_interval.*|node.conn[0].timeo.noop_out_interval = 2|' \
        -e 's|^node.conn\[0\].timeo.noop_out_timeout.*|node.conn[0].timeo.noop_out_timeout = 2|' \
        /etc/iscsi/iscsid.conf
    iscsid > /hamon/iscsid.log 2>&1 || die "iscsid"
    wait_for 20 test -s /run/iscsid.pid || die "iscsid did not start"
    for _if in n1 n2; do
        iscsiadm -m iface -I $_if -o new > /dev/null || die "iface $_if"
    done
    iscsiadm -m iface -I n1 -o update -n iface.initiatorname -v "$N1_IQN" > /dev/null
    iscsiadm -m iface -I n2 -o update -n iface.initiatorname -v "$N2_IQN" > /dev/null
    touch "$HAMON_RUN/iscsid.started"
}

_disks_of_iface() {  # iface -> count of SCSI disks in its sessions
    _c=0
    for _s in /sys/class/iscsi_session/session*; do
        [ -e "$_s" ] || continue
        read -r _ifn < "$_s/ifacename"
        [ "$_ifn" = "$1" ] || continue
        for _b in "$_s"/device/target*/*:*:*:*/block/*; do
            [ -e "$_b" ] && _c=$((_c + 1))
        done
    done
    echo "$_c"
}

_expected_disks() {  # number of disks one node sees: sum over targets of nluns * nportals
    _e=0
    while read -r _k _iqn _base _nl _ports; do
        set -- $_ports
        _e=$((_e + _nl * $#))
    done < "$HAMON_RUN/targets"
    echo "$_e"
}

# node_login IFACE: log IFACE in to every target on every portal, wait for its disks.
node_login() {
    _iface=$1
    [ -s "$HAMON_RUN/targets" ] || die "no target: call lio_setup or tgt_setup first"
    udev_start
    iscsid_start
    while read -r _k _iqn _base _nl _ports; do
        for _p in $_ports; do
            iscsiadm -m node -o new -T "$_iqn" -p "$_p" -I "$_iface" > /dev/null \
                || die "node record $_iqn $_p $_iface"
            iscsiadm -m node -T "$_iqn" -p "$_p" -I "$_iface" --login > /dev/null \
                || die "login $_iface to $_iqn at $_p"
        done
    done < "$HAMON_RUN/targets"
    _want=$(_expected_disks)
    # Bounds grow with the disk count (udev runs several programs per sd device, each a
    # fork costing tens of ms under TCG): 60 s for a few disks, ~5 min for 64.
    _bound=$((60 + _want * 4))
    _has_disks() { [ "$(_disks_of_iface "$_iface")" -ge "$_want" ]; }
    wait_for "$_bound" _has_disks || die "$_iface: $(_disks_of_iface "$_iface") of $_want disks"
    udevadm settle --timeout="$_bound"
    paths_refresh
    log "$_iface: $_want disk(s)"
}
node1_login() { node_login n1; }
node2_login() { node_login n2; }

# ------------------------------------------------------------------------------ multipath

# multipath_setup: multipathd (foreground, in the background of the scenario) over node 1's
# paths; find_multipaths no, no_path_retry fail (also over LIO's hwtable entry, which
# queues 12 checks); names mpatha, mpathb... in target/LUN order (pre-written bindings).
multipath_setup() {
    modprobe -a dm_mod dm_multipath scsi_dh_alua
    mkdir -p /etc/multipath
    cat > /etc/multipath.conf <<EOF
defaults {
    user_friendly_names yes
    find_multipaths no
    no_path_retry fail
    polling_interval 1
    max_polling_interval 4
    flush_on_last_del yes
}
overrides {
    no_path_retry fail
}
blacklist {
    devnode "^(vd|sr|loop|ram|zram)[a-z0-9]*"
    property "^HAMON_NODE2$"
}
EOF
    : > /etc/multipath/bindings
    : > /etc/multipath/wwids
    # mpatha..mpathz, then mpathaa, mpathab... (multipath's own scheme), for > 26 LUNs.
    _letters="a b c d e f g h i j k l m n o p q r s t u v w x y z"
    set -- $_letters
    _ix=0
    while read -r _node _k _lun _portal _dev _mp; do
        [ "$_node" = 1 ] && [ "$_portal" = 0 ] || continue
        _w=$(_wwid "$_dev"); [ -n "$_w" ] || die "no WWID (udev ID_SERIAL) for $_dev"
        grep -q " $_w\$" /etc/multipath/bindings && continue
        if [ "$_ix" -lt 26 ]; then eval "_nm=\${$((_ix + 1))}"
        else eval "_nm=\${$((_ix / 26))}\${$((_ix % 26 + 1))}"; fi
        echo "mpath$_nm $_w" >> /etc/multipath/bindings
        _ix=$((_ix + 1))
    done < "$HAMON_RUN/paths.tsv"
    multipathd -d -s ${HAMON_MULTIPATHD_ARGS:-} > /hamon/multipathd.log 2>&1 &
    echo $! > "$HAMON_RUN/multipathd.pid"
    _all_mapped() {
        _ok=0
        while read -r _node _k _lun _portal _dev _mp; do
            [ "$_node" = 1 ] || continue
            ls /sys/block/"${_dev#/dev/}"/holders/ 2>/dev/null | grep -q dm- || _ok=1
        done < "$HAMON_RUN/paths.tsv"
        return $_ok
    }
    _bound=$((90 + _ix * 6))
    wait_for "$_bound" _all_mapped || { multipath -ll >&2; die "multipath maps incomplete"; }
    udevadm settle --timeout="$_bound"
    paths_refresh
    log "multipath: $(multipathd show maps raw format '%n' | tr '\n' ' ')"
}

# ------------------------------------------------------------------------------- naming

_wwid() {  # DEV: the WWID multipath uses (udev's ID_SERIAL)
    udevadm info -q property -n "$1" 2>/dev/null | sed -n 's/^ID_SERIAL=//p'
}

# paths_refresh: rewrite $HAMON_RUN/paths.tsv and paths.env from sysfs; source paths.env.
# (Shell builtins only, apart from one udevadm per LUN: every fork costs ~50 ms under TCG.)
paths_refresh() {
    _tsv=$HAMON_RUN/paths.tsv
    _env=$HAMON_RUN/paths.env
    : > "$_tsv.new"; : > "$_env.new"
    read -r _primary _ < "$HAMON_RUN/targets"
    for _s in /sys/class/iscsi_session/session*; do
        [ -e "$_s" ] || continue
        _sn=${_s##*/session}
        read -r _ifn < "$_s/ifacename"; read -r _tn < "$_s/targetname"
        case "$_ifn" in n1) _node=1 ;; n2) _node=2 ;; *) continue ;; esac
        _c=/sys/class/iscsi_connection/connection$_sn:0
        read -r _a < "$_c/persistent_address"; read -r _pt < "$_c/persistent_port"
        _addr=$_a:$_pt
        _line=
        while read -r _l; do
            case "$_l" in *" $_tn "*) _line=$_l ;; esac
        done < "$HAMON_RUN/targets"
        [ -n "$_line" ] || continue
        set -- $_line
        _kind=$1; _base=$3; shift 4
        _pi=0; _portal=
        for _p in "$@"; do [ "$_p" = "$_addr" ] && _portal=$_pi; _pi=$((_pi + 1)); done
        [ -n "$_portal" ] || continue
        case "$_kind" in lio) _K=LIO ;; tgt) _K=TGT ;; *) _K=$_kind ;; esac
        for _b in "$_s"/device/target*/*:*:*:*/block/*; do
            [ -e "$_b" ] || continue
            _dev=${_b##*/}
            _hctl=${_b%/block/*}; _hctl=${_hctl##*/}
            _lun=$(( ${_hctl##*:} - _base ))
            _mp=-
            for _h in /sys/block/"$_dev"/holders/dm-*; do
                [ -e "$_h/dm/name" ] && read -r _mn < "$_h/dm/name" && _mp=/dev/mapper/$_mn
            done
            echo "$_node $_kind $_lun $_portal /dev/$_dev $_mp" >> "$_tsv.new"
            {
                echo "${_K}_N${_node}_L${_lun}_P${_portal}=/dev/$_dev"
                [ "$_kind" = "$_primary" ] && echo "N${_node}_L${_lun}_P${_portal}=/dev/$_dev"
                if [ "$_node" = 1 ] && [ "$_mp" != - ]; then
                    echo "${_K}_MP_L${_lun}=$_mp"
                    [ "$_kind" = "$_primary" ] && echo "MP_L${_lun}=$_mp"
                fi
                if [ "$_node" = 1 ] && [ "$_portal" = 0 ]; then
                    _w=$(_wwid "/dev/$_dev")
                    echo "${_K}_WWID_L${_lun}=$_w"
                    [ "$_kind" = "$_primary" ] && echo "WWID_L${_lun}=$_w"
                fi
            } >> "$_env.new"
        done
    done
    sort -k1,1n -k2,2 -k3,3n -k4,4n "$_tsv.new" > "$_tsv"
    sed 's/^/export /' "$_env.new" > "$_env"
    rm -f "$_tsv.new" "$_env.new"
    . "$_env"
    cp "$_tsv" /hamon/paths.tsv 2>/dev/null || true
}

path_of() {  # NODE LUN PORTAL [KIND]
    awk -v n="$1" -v l="$2" -v p="$3" -v k="${4:-}" \
        '$1==n && $3==l && $4==p && (k=="" || $2==k) {print $5; exit}' "$HAMON_RUN/paths.tsv"
}
mpath_of() {  # LUN [KIND]
    awk -v l="$1" -v k="${2:-}" \
        '$1==1 && $3==l && $6!="-" && (k=="" || $2==k) {print $6; exit}' "$HAMON_RUN/paths.tsv"
}

# --------------------------------------------------------------------------------- faults

fail_path() { echo offline > "/sys/block/${1#/dev/}/device/state" || die "fail_path $1"; }
restore_path() { echo running > "/sys/block/${1#/dev/}/device/state" || die "restore_path $1"; }

# path_state DEV: multipathd's "dm-state checker-state" for DEV, e.g. "active ready".
path_state() {
    multipathd show paths raw format "%d %t %T" 2>/dev/null \
        | awk -v d="${1#/dev/}" '$1==d {print $2, $3}'
}
# wait_path DEV active|failed [SECONDS]
wait_path() {
    _is() { path_state "$1" | grep -q "^$2 "; }
    wait_for "${3:-30}" _is "$1" "$2" || die "path $1 not $2 (now: $(path_state "$1"))"
}

# faultproxy_start PORTAL_INDEX [LISTEN]: tests/faultproxy.py (an iSCSI proxy that answers
# chosen SCSI commands abnormally; README.md "Fault-injecting paths") in front of portal
# PORTAL_INDEX of the target set up last, listening on LISTEN (default 127.0.0.<10+index>
# with that portal's port). It takes the portal's place in $HAMON_RUN/targets, so the
# logins that follow (node1_login, ...) go through it and paths_refresh still names its
# paths P<index>. Rules: fault_set; counters: $HAMON_RUN/faults/P<index>.stats.json.
faultproxy_start() {
    _fi=$1; _flisten=${2:-}
    [ -s "$HAMON_RUN/targets" ] || die "faultproxy_start: call lio_setup or tgt_setup first"
    set -- $(tail -n 1 "$HAMON_RUN/targets")
    _fhead="$1 $2 $3 $4"; shift 4
    [ "$_fi" -lt "$#" ] || die "faultproxy_start: no portal $_fi (portals: $*)"
    eval "_fport=\${$((_fi + 1))}"
    [ -n "$_flisten" ] || _flisten=127.0.0.$((10 + _fi)):${_fport##*:}
    _fd=$HAMON_RUN/faults
    mkdir -p "$_fd"
    : > "$_fd/P$_fi.json"
    python3 "$HAMON_REPO/tests/faultproxy.py" --listen "$_flisten" --target "$_fport" \
        --rules "$_fd/P$_fi.json" --stats "$_fd/P$_fi.stats.json" \
        --ready "$_fd/P$_fi.ready" 2>> /hamon/faultproxy.log &
    echo $! > "$_fd/P$_fi.pid"
    wait_for 60 test -e "$_fd/P$_fi.ready" || die "faultproxy P$_fi: not listening on $_flisten (/hamon/faultproxy.log)"
    wait_for 20 test -s "$_fd/P$_fi.stats.json" || die "faultproxy P$_fi: no counters file"
    _fnew=$_fhead; _fj=0
    for _p in "$@"; do
        if [ "$_fj" = "$_fi" ]; then _fnew="$_fnew $_flisten"; else _fnew="$_fnew $_p"; fi
        _fj=$((_fj + 1))
    done
    sed -i '$d' "$HAMON_RUN/targets"
    echo "$_fnew" >> "$HAMON_RUN/targets"
    log "faultproxy P$_fi: $_flisten -> $_fport"
}

# fault_set PORTAL_INDEX JSON: replace the rules of that portal's proxy (the rules-file
# format of tests/faultproxy.py, e.g. '[{"kind": "check-condition", "opcode": "0x5e"}]';
# '[]' clears) and wait until the proxy has loaded them.
fault_set() {
    _fs=$HAMON_RUN/faults/P$1.stats.json
    _reloads() { sed -n 's/^ *"reloads": \([0-9]*\).*/\1/p' "$_fs" 2>/dev/null; }
    _fr0=$(_reloads)
    printf '%s\n' "$2" > "$HAMON_RUN/faults/P$1.json.tmp"
    mv "$HAMON_RUN/faults/P$1.json.tmp" "$HAMON_RUN/faults/P$1.json"
    _fault_loaded() { _fr=$(_reloads); [ -n "$_fr" ] && [ "$_fr" != "${_fr0:-}" ]; }
    wait_for 20 _fault_loaded || die "fault_set P$1: rules not loaded (/hamon/faultproxy.log)"
}
