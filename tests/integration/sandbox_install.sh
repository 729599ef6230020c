#!/bin/sh
# Install hamon's .deb into a throw-away copy of this machine's root, run what the test
# asks, purge it, and check nothing is left: run by tests/integration/test_deb_package.py
# under `unshare --mount --fork`, so every mount below is private to it and vanishes with
# it. The root is the host's own, as the lower layer of an overlay whose upper layer is a
# tmpfs: apt-get and dpkg write only there (the VM tier's guest does the same over 9p).
#   sandbox_install.sh DEB OUTDIR
# Prints "OK <check>" per passed check into stdout; exits 1 at the first failed one.
set -u
deb=$1 out=$2
fail() { echo "FAILED $*"; exit 1; }
w=$(mktemp -d "${TMPDIR:-/tmp}/hamon-sandbox.XXXXXX")
mount -t tmpfs tmpfs "$w" || fail "tmpfs"
mkdir "$w/upper" "$w/work" "$w/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$w/upper,workdir=$w/work" "$w/root" \
    || fail "overlay of /"
mount -t proc proc "$w/root/proc"
mount --rbind /dev "$w/root/dev"
mount -t tmpfs tmpfs "$w/root/tmp"
mount -t tmpfs tmpfs "$w/root/run"
mkdir "$w/root/tmp/pkg"
cp "$deb" "$w/root/tmp/pkg/"
cp "$(dirname "$0")/../system/scenarios/deb_install.sh" "$w/root/tmp/pkg/check.sh"
mkdir -p "$w/root/hamon"
chroot "$w/root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    HAMON_DEB="/tmp/pkg/$(basename "$deb")" sh /tmp/pkg/check.sh
rc=$?
cp "$w/root/hamon/"* "$out/" 2>/dev/null
exit $rc
