"""The Debian package installed into the VM tier's guest (scenarios/deb_install.sh).

The .deb is built once per session (tests/debpkg.py, shared with the integration tier's
lintian test). The guest runs the host's root read-only under a tmpfs overlay, so
installing and purging there leaves the host as it was.
"""
from __future__ import annotations

import pytest
from vm import SCENARIOS

from tests import debpkg

pytestmark = pytest.mark.system

CHECKS = [
    "nothing of hamon before the install",
    "pcs stonith describe fence_hamon_scsi",
    "pcs resource describe ocf:hamon:hamon_disk",
    "hamon --help (lists check-disk)",
    "python3 imports hamon from /usr/lib/hamon (hamon.pth)",
    "postinst byte-compiled the package",
    "apt-get remove --purge hamon leaves none of its files",
]


def test_deb_installs_is_found_by_pcs_and_purges_clean(vm):
    missing = debpkg.missing_tools()
    assert not missing, f"{missing} not installed: run tools/bootstrap package"
    deb = debpkg.deb()
    r = vm(SCENARIOS / "deb_install.sh", env={"HAMON_DEB": str(deb)}, timeout=900)
    r.check()
    got = {line[3:] for line in r.stdout.splitlines() if line.startswith("OK ")}
    assert not set(CHECKS) - got, sorted(set(CHECKS) - got)
    assert f"apt-get install ./{deb.name}" in got
    listed = r.file("dpkg-L.txt").split()
    assert "/usr/sbin/fence_hamon_scsi" in listed
    assert "/usr/lib/ocf/resource.d/hamon/hamon_disk" in listed
    assert "/usr/share/man/man8/hamon.8.gz" in listed
    assert "fence_hamon_scsi" in r.file("pcs-stonith.txt")
