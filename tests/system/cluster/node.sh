#!/bin/sh
# Guest side of one node of the VM cluster (tests/system/vmcluster.py boots it as the
# scenario of guest/init.sh). In order: name and addresses from the host's env; the
# journal disk (/dev/vda) at /var/lib/hamon; udevd, iscsid, one session per path NIC
# (path 0 = 10.0.2.2, path 1 = 10.0.3.2: two QEMU user networks, so the host can cut one
# node's path with QMP set_link), multipathd with maps luna/lunb; hamon with `make
# install`; corosync + pacemakerd without systemd; the fence_hamon_scsi_check loop (our
# watchdog: no watchdog daemon here); then a command loop: the host drops NAME.sh files
# in /hamon/cmd, names them on the hamon.cmd port and reads NAME.out/.err/.rc back.
set -u
# Settings: /hamon/env (written by the host, exported by guest/init.sh).
log() { read -r _u _ < /proc/uptime; echo "[$_u] $*" >&2; }
die() { log "FATAL: $*"; step "node-failed"; exit 1; }
step() {
    read -r _up _ < /proc/uptime
    echo "$1 $_up" >> /hamon/events
    echo "hamon: step $1 at $_up" > /dev/kmsg
    log "== $1"
}
wait_for() {  # SECONDS CMD...
    read -r _wu _ < /proc/uptime; _end=$(( ${_wu%.*} + $1 )); shift
    until "$@" >/dev/null 2>&1; do
        read -r _wu _ < /proc/uptime
        [ "${_wu%.*}" -lt "$_end" ] || return 1
        sleep 0.3
    done
}

hostname "$NODE_NAME"
echo "$NODE_NAME" > /etc/hostname
{ echo "127.0.0.1 localhost"; echo "$HOSTS_LINES" | tr ';' '\n'; } > /etc/hosts

# ---------------------------------------------------------------- network, by MAC address
for _n in /sys/class/net/eth*; do
    read -r _mac < "$_n/address"; _if=${_n##*/}
    case "$_mac" in
        "$CL_MAC") ip addr add "$CL_ADDR/24" dev "$_if" ;;
        "$P0_MAC") ip addr add 10.0.2.15/24 dev "$_if" ;;
        "$P1_MAC") ip addr add 10.0.3.15/24 dev "$_if" ;;
        *) continue ;;
    esac
    ip link set "$_if" up
done
step net-up

# ------------------------------------------------------------------- the journal disk
mkdir -p /var/lib/hamon
mount -t ext4 /dev/vda /var/lib/hamon || die "journal disk /dev/vda"

# ------------------------------------------------------------------------- hamon, agents
# install-dev: the agents where Pacemaker looks (/usr/sbin, /usr/lib/ocf/resource.d/hamon,
# /usr/share/hamon), importing hamon from this checkout (a full `make install` copies every
# module with one fork each: ~20 s more under TCG).
make -s -C "$HAMON_REPO" install-dev > /hamon/make-install.log 2>&1 || die "make install-dev"
# The agent zygote (cluster/zygote.py; a TEST-HARNESS ACCELERATOR, not part of hamon): one
# Python process imports fencing.py, ocf.py and hamon's agents once; the agents Pacemaker
# runs become zygote_client, which hands it argv, env and its fds and exits with the
# status of a forked child running the real agent (<path>.real) unchanged. No zygote: the
# client execs the real agent. Started (and waited for) before pacemakerd.
for _a in /usr/sbin/fence_hamon_scsi /usr/lib/ocf/resource.d/hamon/hamon_disk; do
    mv "$_a" "$_a.real" && cp "$CLUSTER_DIR/zygote_client" "$_a" && chmod 755 "$_a" \
        || die "zygote client for $_a"
done
ZYGOTE_SOCK=/run/hamon-zygote.sock
if [ "${HAMON_ZYGOTE_OFF:-0}" != 1 ]; then
    setsid /usr/bin/python3 "$CLUSTER_DIR/zygote.py" "$ZYGOTE_SOCK" \
        +/usr/share/fence +/usr/lib/ocf/lib/heartbeat "+$HAMON_REPO" \
        fencing hamon.agents.fence.agent hamon.agents.fence.actions hamon.agents.fence.state \
        hamon.lib.cluster hamon.lib.transport.sgio hamon.lib.transport.iscsi \
        hamon.lib.transport.fds hamon.lib.transport.loop hamon.lib.multipath.sysfs \
        hamon.agents.disk.agent ocf >> /hamon/zygote.log 2>&1 < /dev/null &
fi
mkdir -p /usr/lib/ocf/resource.d/hamontest
ln -sf "$CLUSTER_DIR/writer_ocf" /usr/lib/ocf/resource.d/hamontest/writer
mkdir -p /mnt/lunb

# ------------------------------------------------------------------------ storage
# Before the cluster: the zygote imports (~30 s of one vCPU under TCG) while udev and the
# iSCSI logins run; Pacemaker must not start before the zygote is ready (fenced's 5 s
# meta-data limit), and nothing of the cluster needs the paths before multipath below.
/lib/systemd/systemd-udevd --daemon --resolve-names=never 2>> /hamon/udevd.log || die udevd
udevadm trigger --action=add --subsystem-match=block --subsystem-match=scsi
rm -rf /etc/iscsi/nodes /etc/iscsi/send_targets /var/lib/iscsi
mkdir -p /etc/iscsi/nodes /run/lock/iscsi
echo "InitiatorName=$INITIATOR" > /etc/iscsi/initiatorname.iscsi
sed -i -e 's|^iscsid.startup.*|iscsid.startup = /bin/true|' \
    -e 's|^node.session.timeo.replacement_timeout.*|node.session.timeo.replacement_timeout = 5|' \
    -e 's|^node.conn\[0\].timeo.noop_out_interval.*|node.conn[0].timeo.noop_out_interval = 5|' \
    -e 's|^node.conn\[0\].timeo.noop_out_timeout.*|node.conn[0].timeo.noop_out_timeout = 10|' \
    /etc/iscsi/iscsid.conf
iscsid > /hamon/iscsid.log 2>&1 || die iscsid
wait_for 120 test -s /run/iscsid.pid || die "iscsid did not start"
step iscsid-up
for _p in "10.0.2.2:$P0_PORT" "10.0.3.2:$P1_PORT"; do
    iscsiadm -m node -o new -T "$TGT_IQN" -p "$_p" > /dev/null || die "node record $_p"
    iscsiadm -m node -T "$TGT_IQN" -p "$_p" --login > /dev/null || die "login $_p"
done
_sd_count() { set -- /sys/class/scsi_disk/*; [ -e "$1" ] && echo $# || echo 0; }
_four() { [ "$(_sd_count)" -ge 4 ]; }
wait_for 300 _four || die "$(_sd_count) of 4 iSCSI disks"
step disks-seen
udevadm settle --timeout=60
step iscsi-up

# ------------------------------------------------------------------- corosync, pacemaker
mkdir -p /etc/corosync /var/lib/corosync /var/log/corosync /var/log/cluster \
    /var/lib/pacemaker/cib /var/lib/pacemaker/pengine /var/lib/pacemaker/blackbox \
    /var/lib/pacemaker/cores /var/log/pacemaker/bundles
cp /hamon/corosync.conf /etc/corosync/corosync.conf
if [ -s /hamon/cib.xml ]; then
    cp /hamon/cib.xml /var/lib/pacemaker/cib/cib.xml
    chmod 600 /var/lib/pacemaker/cib/cib.xml
fi
chown -R hacluster:haclient /var/lib/pacemaker /var/log/pacemaker
touch /hamon/pacemaker.log; chmod 666 /hamon/pacemaker.log
if [ "${HAMON_ZYGOTE_OFF:-0}" != 1 ]; then
    wait_for 180 test -S "$ZYGOTE_SOCK" || log "the agent zygote is not ready: agents fall back"
    step zygote-ready
    # what a client costs here: an empty -SI start, and the fence agent's meta-data
    read -r _z0 _ < /proc/uptime; /usr/bin/python3 -SI -c pass
    read -r _z1 _ < /proc/uptime; /usr/sbin/fence_hamon_scsi -o metadata > /dev/null
    read -r _z2 _ < /proc/uptime; /usr/lib/ocf/resource.d/hamon/hamon_disk meta-data > /dev/null
    read -r _z3 _ < /proc/uptime
    echo "python3 -SI -c pass: $_z0 -> $_z1; fence_hamon_scsi -o metadata via zygote:" \
        "$_z1 -> $_z2; hamon_disk meta-data via zygote: $_z2 -> $_z3" >> /hamon/zygote-timing
fi
setsid corosync -f > /hamon/corosync.out 2>&1 < /dev/null &
wait_for 120 corosync-cfgtool -s || die "corosync did not start"
PCMK_logfile=/hamon/pacemaker.log PCMK_logfacility=none PCMK_debug=no \
    setsid pacemakerd > /hamon/pacemakerd.out 2>&1 < /dev/null &
step cluster-started

# multipath: LUN 1 = luna (fence_scsi's model), LUN 2 = lunb (HA Monitor's model)
{
    cat <<CONF
defaults {
    user_friendly_names no
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
}
multipaths {
CONF
    for _d in /sys/class/scsi_disk/*; do
        _lun=${_d##*:}
        for _b in "$_d"/device/block/*; do _dev=${_b##*/}; done
        _w=$(udevadm info -q property -n "/dev/$_dev" | sed -n 's/^ID_SERIAL=//p')
        case "$_lun" in 1) _alias=luna ;; 2) _alias=lunb ;; *) continue ;; esac
        grep -q "$_w" /run/mp-seen 2>/dev/null && continue
        echo "$_w" >> /run/mp-seen
        printf '    multipath {\n        wwid %s\n        alias %s\n    }\n' "$_w" "$_alias"
    done
    echo "}"
} > /etc/multipath.conf
mkdir -p /etc/multipath; : > /etc/multipath/wwids; : > /etc/multipath/bindings
multipathd -d -s > /hamon/multipathd.log 2>&1 &
_maps() {
    for _m in luna lunb; do
        [ -e /dev/mapper/$_m ] || return 1
        [ "$(multipathd show paths raw format '%m %t' | grep -c "^$_m active")" -ge 2 ] || return 1
    done
}
wait_for 400 _maps || { multipath -ll >&2; die "multipath maps luna/lunb with 2 paths"; }
udevadm settle --timeout=30
step multipath-up

# ----------------------------------------- the watchdog hook, as a loop (no watchdog daemon)
setsid /usr/bin/python3 "$CLUSTER_DIR/watchdog_loop.py" "${CHECK_INTERVAL:-2}" \
    >> /hamon/watchdog.log 2>&1 < /dev/null &

# Under TCG the CIB manager can take >20 s to validate the seeded CIB; pacemaker-fenced
# gives up connecting to it after ~23 s and then runs with no fence device ("No fence
# device" for every unfencing). If that happened, kill it: pacemakerd starts it again.
wait_for 400 cibadmin -Q --scope crm_config || die "the CIB manager did not start"
if grep -q "pacemaker-fenced.*setup_cib.*Could not connect" /hamon/pacemaker.log; then
    log "pacemaker-fenced started without the CIB: restarting it"
    kill -KILL $(pidof pacemaker-fenced)
fi
step cib-up
step node-ready
# ------------------------------------------------------------------- the command loop
# The host names each command (/hamon/cmd/NAME.sh) on the hamon.cmd virtio-serial port; a
# read there blocks, so the loop costs nothing while idle (it used to glob the command
# directory and fork `sleep` three times a second: ~10% of the vCPU under TCG). A read
# returns EOF while the host is not connected: then wait a second and read again.
_cmdport=
for _p in /sys/class/virtio-ports/*; do
    read -r _pn < "$_p/name" && [ "$_pn" = hamon.cmd ] && _cmdport=/dev/${_p##*/}
done
[ -n "$_cmdport" ] || die "no virtio-serial port hamon.cmd"
mkdir -p /hamon/cmd
exec 3< "$_cmdport"
while :; do
    while read -r _name <&3; do
        _b=/hamon/cmd/$_name
        [ -e "$_b.sh" ] || continue
        ( sh "$_b.sh" > "$_b.out" 2> "$_b.err" < /dev/null; echo $? > "$_b.rct"; mv "$_b.rct" "$_b.rc" ) &
    done
    sleep 1
done
