"""The Debian package: built outside the checkout, the files `make install` puts, the
Depends the code needs, lintian without errors or warnings.

Installing it (apt-get install, pcs finds the agents, purge leaves nothing) runs the
install scenario (tests/system/scenarios/deb_install.sh) in an overlay of this host's
root, a chroot of its own; the same scenario runs in the VM guest by hand (~5 min).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests import debpkg

pytestmark = pytest.mark.integration

#: What the code loads or runs unconditionally: fencing.py (fence-agents), ocf.py
#: (resource-agents), lxml and pyudev, libiscsi.so.7 through ctypes, sg_persist for the
#: manual cancel procedure the docs give.
DEPENDS = {"python3", "python3-lxml", "python3-pyudev", "fence-agents", "resource-agents",
           "libiscsi7", "sg3-utils"}


@pytest.fixture(scope="module")
def deb() -> Path:
    missing = debpkg.missing_tools()
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (tools/bootstrap package)")
    return debpkg.deb()


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()


def contents(deb: Path) -> set[str]:
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    return {line.split()[5].removeprefix(".") for line in out.splitlines()
            if not line.startswith("d")}


def test_package_name_version_and_depends(deb):
    v = debpkg.version()
    assert deb.name == f"hamon_{v}_all.deb"
    assert field(deb, "Version") == v and field(deb, "Architecture") == "all"
    depends = {d.split()[0].split(":")[0] for d in field(deb, "Depends").split(",")}
    assert depends >= DEPENDS


def test_package_holds_what_make_install_puts(deb, tmp_path):
    stage = tmp_path / "stage"
    subprocess.run(["make", "-s", "-C", str(debpkg.REPO), "install", f"DESTDIR={stage}"],
                   check=True, capture_output=True, timeout=120)
    installed = {"/" + str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file()}
    man = {p for p in installed if p.startswith("/usr/share/man/")}
    got = contents(deb)
    assert installed - man <= got
    assert {p + ".gz" for p in man} <= got  # dh_compress
    extra = got - installed - {p + ".gz" for p in man}
    assert all(p.startswith(("/usr/share/doc/hamon/", "/usr/share/python3/runtime.d/"))
               for p in extra), sorted(extra)
    assert "/usr/share/doc/hamon/check-disk.md.gz" in got


def test_agents_in_the_package_import_from_usr_lib_hamon(deb, tmp_path):
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True, timeout=60)
    for agent in ("usr/sbin/fence_hamon_scsi", "usr/sbin/hamon",
                  "usr/lib/ocf/resource.d/hamon/hamon_disk"):
        text = (tmp_path / agent).read_text()
        assert '"/usr/lib/hamon"' in text and "@HAMON_PYTHONPATH@" not in text
    pth = tmp_path / "usr/lib/python3/dist-packages/hamon.pth"
    assert pth.read_text().strip() == "/usr/lib/hamon"


def test_lintian_finds_no_error_and_no_warning(deb):
    p = subprocess.run(["lintian", "--fail-on", "error,warning", str(deb)],
                       capture_output=True, text=True, timeout=300, check=False)
    tags = [ln for ln in p.stdout.splitlines() if ln[:2] in ("E:", "W:")]
    assert p.returncode == 0 and tags == [], p.stdout + p.stderr


def test_the_build_leaves_the_checkout_alone(deb):
    for left in ("debian/hamon", "debian/.debhelper", "debian/files",
                 "debian/hamon.substvars", "debian/debhelper-build-stamp"):
        assert not (debpkg.REPO / left).exists(), left
    assert not list(debpkg.REPO.parent.glob("hamon_*.deb"))


def test_deb_installs_in_a_sandbox_is_found_by_pcs_and_purges_clean(deb, tmp_path):
    """The VM tier's scenario (scenarios/deb_install.sh) in an overlay of this machine's
    root (sandbox_install.sh): apt-get install ./hamon_*.deb, `pcs stonith describe` and
    `pcs resource describe` with no cluster running, purge leaves nothing. ~15 s here,
    against minutes under QEMU TCG; the host's files are the overlay's read-only lower
    layer and stay as they were."""
    for tool in ("unshare", "chroot", "pcs"):
        assert shutil.which(tool), f"{tool} not installed (tools/bootstrap cluster)"
    before = [p for p in ("/usr/sbin/hamon", "/usr/lib/hamon") if Path(p).exists()]
    p = subprocess.run(["unshare", "--mount", "--fork",
                        str(Path(__file__).with_name("sandbox_install.sh")), str(deb),
                        str(tmp_path)], capture_output=True, text=True, timeout=300,
                       check=False)
    got = {ln[3:] for ln in p.stdout.splitlines() if ln.startswith("OK ")}
    assert p.returncode == 0, p.stdout + p.stderr
    assert {"nothing of hamon before the install", f"apt-get install ./{deb.name}",
            "pcs stonith describe fence_hamon_scsi",
            "pcs resource describe ocf:hamon:hamon_disk", "hamon --help (lists check-disk)",
            "python3 imports hamon from /usr/lib/hamon (hamon.pth)",
            "postinst byte-compiled the package",
            "apt-get remove --purge hamon leaves none of its files"} <= got
    assert "fence_hamon_scsi - " in (tmp_path / "pcs-stonith.txt").read_text()
    assert "/usr/sbin/fence_hamon_scsi" in (tmp_path / "dpkg-L.txt").read_text().split()
    assert [p for p in ("/usr/sbin/hamon", "/usr/lib/hamon") if Path(p).exists()] == before
