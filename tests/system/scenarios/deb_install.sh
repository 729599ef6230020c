#!/bin/sh
# The Debian package in a clean guest: apt-get install ./hamon_*.deb, pcs finds both
# agents (no cluster running: pcs reads the agents' metadata through crm_resource), the
# command and the package import from /usr/lib/hamon, then apt-get remove --purge leaves
# none of the files dpkg -L listed. The guest's root is the host's, read-only, under a
# tmpfs overlay: nothing here reaches the host.
#   HAMON_DEB=/path/to/hamon_<version>_all.deb
# Prints "OK <check>" per passed check; exits 1 at the first failed one.
set -u
# the harness points PYTHONPATH at the checkout; the installed package must do without
unset PYTHONPATH
deb=${HAMON_DEB:?HAMON_DEB not set}
ok() { echo "OK $*"; }
fail() { echo "FAILED $*"; exit 1; }
step() { read -r up _ < /proc/uptime; echo "$1 $up" >> /hamon/events; }

for f in /usr/sbin/fence_hamon_scsi /usr/sbin/hamon /usr/lib/ocf/resource.d/hamon \
         /usr/lib/hamon /usr/share/hamon /usr/lib/python3/dist-packages/hamon.pth; do
    [ -e "$f" ] && fail "$f exists before the install"
done
ok "nothing of hamon before the install"
dpkg-query -W hamon >/dev/null 2>&1 && fail "dpkg knows hamon before the install"

# man-db's trigger rebuilds the whole man index: minutes under TCG, and not what is tested
rm -f /var/lib/man-db/auto-update
step apt-install
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "$deb" > /hamon/apt-install.log 2>&1 || { tail -20 /hamon/apt-install.log; fail "apt-get install"; }
step installed
ok "apt-get install ./$(basename "$deb")"
[ "$(dpkg-query -W -f='${Status}' hamon)" = "install ok installed" ] || fail "dpkg status"
dpkg -L hamon > /hamon/dpkg-L.txt || fail "dpkg -L"
ok "dpkg -L hamon lists $(wc -l < /hamon/dpkg-L.txt) paths"

pcs stonith describe fence_hamon_scsi > /hamon/pcs-stonith.txt 2>&1 \
    || { cat /hamon/pcs-stonith.txt; fail "pcs stonith describe fence_hamon_scsi"; }
grep -q "^fence_hamon_scsi - " /hamon/pcs-stonith.txt && grep -q "devices" /hamon/pcs-stonith.txt \
    || fail "pcs stonith describe: no agent text"
ok "pcs stonith describe fence_hamon_scsi"
pcs resource describe ocf:hamon:hamon_disk > /hamon/pcs-resource.txt 2>&1 \
    || { cat /hamon/pcs-resource.txt; fail "pcs resource describe ocf:hamon:hamon_disk"; }
grep -q "^ocf:hamon:hamon_disk - " /hamon/pcs-resource.txt \
    && grep -q "dmmp_device" /hamon/pcs-resource.txt || fail "pcs resource describe: no agent text"
ok "pcs resource describe ocf:hamon:hamon_disk"
step pcs

cd / || fail "cd /"
hamon --help | grep -q check-disk || fail "hamon --help"
ok "hamon --help (lists check-disk)"
[ "$(/usr/bin/python3 -c 'import hamon; print(hamon.__file__)')" = /usr/lib/hamon/hamon/__init__.py ] \
    || fail "python3 imports hamon from /usr/lib/hamon"
ok "python3 imports hamon from /usr/lib/hamon (hamon.pth)"
ls /usr/lib/hamon/hamon/lib/__pycache__/*.pyc >/dev/null 2>&1 || fail "no byte-code compiled"
ok "postinst byte-compiled the package"

step purge
DEBIAN_FRONTEND=noninteractive apt-get remove --purge -y hamon > /hamon/apt-purge.log 2>&1 \
    || { tail -20 /hamon/apt-purge.log; fail "apt-get remove --purge"; }
dpkg-query -W -f='${Status}' hamon 2>/dev/null | grep -q installed && fail "still installed"
left=""
while read -r p; do
    [ -e "$p" ] && [ "$p" != "/." ] || continue  # dpkg -L starts with "/."
    # a directory other packages own too (/usr/sbin, /usr/share/man/man8, ...) stays
    [ -d "$p" ] && dpkg -S "$p" >/dev/null 2>&1 && continue
    left="$left $p"
done < /hamon/dpkg-L.txt
[ -z "$left" ] || fail "left after purge:$left"
for d in /usr/lib/hamon /usr/share/hamon /usr/lib/ocf/resource.d/hamon /usr/share/doc/hamon; do
    [ -e "$d" ] && fail "$d left after purge"
done
ok "apt-get remove --purge hamon leaves none of its files"
step done
