"""hamon.lib.devcheck on device nodes the kernel here cannot give (issue 11, items 4-5).

This host has no SCSI: what a SCSI disk, a device-mapper map, a partition, a virtio disk
look like is built as the kernel lays it out in sysfs (``/sys/dev/block/MAJ:MIN`` ->
the block device's directory; ``device`` -> the SCSI device, whose ``subsystem`` is
``/sys/bus/scsi`` and which has ``scsi_disk/``; ``dm/`` for a map; ``partition`` for a
partition), with real block special files (mknod, root) carrying those numbers. The
real /dev/loop0 and /dev/null are checked against the real /sys.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hamon.lib.devcheck import NoDevice, NotADisk, check_device


def in_dev(path: Path) -> str:
    """A name under /dev for a node made elsewhere (only /dev names are devices)."""
    return "/dev/.." + str(path)


@pytest.fixture
def fake(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    sysfs = tmp_path / "sys"
    (sysfs / "bus" / "scsi").mkdir(parents=True)
    (sysfs / "bus" / "virtio").mkdir(parents=True)
    devices = sysfs / "devices"
    dev = tmp_path / "dev"
    dev.mkdir()

    def node(name: str, major: int, minor: int, *, scsi: bool = False, dm: bool = False,
             partition: bool = False, bus: str | None = None) -> str:
        block = devices / name
        block.mkdir(parents=True)
        link = sysfs / "dev" / "block" / f"{major}:{minor}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(block)
        if scsi:  # the SCSI device H:C:T:L, as sd's "device" link points to it
            sdev = devices / "host0" / f"0:0:0:{minor}"
            (sdev / "scsi_disk").mkdir(parents=True)
            (sdev / "subsystem").symlink_to(sysfs / "bus" / "scsi")
            (block / "device").symlink_to(sdev)
        if bus:
            other = devices / f"{bus}{minor}"
            other.mkdir()
            (other / "subsystem").symlink_to(sysfs / "bus" / bus)
            (block / "device").symlink_to(other)
        if dm:
            (block / "dm").mkdir()
            (block / "dm" / "uuid").write_text("mpath-3600140512345\n")
        if partition:
            (block / "partition").write_text("1\n")
        path = dev / name
        os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(major, minor))
        return in_dev(path)

    return sysfs, node


def test_a_scsi_disk_and_a_multipath_map_pass(fake):
    sysfs, node = fake
    check_device(node("sdb", 8, 16, scsi=True), "node1", str(sysfs))
    check_device(node("dm-3", 253, 3, dm=True), "node1", str(sysfs))


@pytest.mark.parametrize(("kind", "words"), [
    ({"partition": True}, "a partition"),
    ({"bus": "virtio"}, "not a SCSI disk"),     # /dev/vda: no persistent reservations
    ({}, "not a SCSI disk"),                     # a virtual block device (md, nbd, zram)
])
def test_other_block_devices_are_not_shared_disks(fake, kind, words):
    sysfs, node = fake
    with pytest.raises(NotADisk, match=words):
        check_device(node("x", 252, 1, **kind), "node1", str(sysfs))


def test_a_scsi_generic_node_passes_and_other_char_devices_do_not(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    sg = tmp_path / "sg0"
    os.mknod(sg, stat.S_IFCHR | 0o600, os.makedev(21, 0))
    check_device(in_dev(sg), "node1")
    with pytest.raises(NotADisk, match="not a SCSI generic device"):
        check_device("/dev/null", "node1")


def test_the_real_loop_device_and_a_missing_name(tmp_path):
    assert Path("/dev/loop0").exists(), "the loop device the corpus uses"
    with pytest.raises(NotADisk, match="a loop device on node1"):
        check_device("/dev/loop0", "node1")
    with pytest.raises(NoDevice, match="no such device on node1"):
        check_device("/dev/hamon-no-such-disk", "node1")


def test_names_outside_dev_are_not_its_business():
    check_device("iscsi://127.0.0.1/iqn.2026-11.org.hamon:t/1", "node1")
