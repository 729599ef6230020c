"""The bad-input corpus (issue 11, items 4-6): every bad parameter of both agents and every
bad argument of ``hamon`` gives one clear error line and the right exit code, never a
traceback, and never gets as far as a transport.

Run as processes, as users meet them: ``hamon_disk validate-all``/``start`` with
``OCF_RESKEY_*`` under Debian's python3 (resource-agents' ocf.py), ``fence_hamon_scsi``
with options and with Pacemaker's ``key=value`` stdin, ``python -m hamon``.

Exit codes: hamon_disk follows OCF: a value that cannot work anywhere is
OCF_ERR_CONFIGURED (6); a device that is missing on this node, or is something else here
(a directory, a FIFO, a regular file, /dev/null, a loop device) is OCF_ERR_INSTALLED (5),
as resource-agents' Filesystem answers for "not a block device": another node may have the
disk under that name. fence_hamon_scsi follows fencing.py: 1 with a one-line error.
``hamon``: 2 for bad input.

The special files are made under /dev (the agents accept only /dev names as devices), so
this needs root, as ./run-tests is.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OCF_AGENT = REPO / "agents" / "ocf" / "hamon_disk"
FENCE_AGENT = REPO / "agents" / "fence_hamon_scsi"
PYTHON = "/usr/bin/python3"  # Debian's: resource-agents' ocf.py and fencing.py are its
URL = "iscsi://127.0.0.1:3260/iqn.2026-11.org.hamon:tgt/1"
LOOP = "/dev/loop0"


@pytest.fixture(scope="module")
def dev() -> dict[str, str]:
    """A directory, a FIFO and a regular file under /dev, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("making special files under /dev needs root")
    base = f"/dev/hamon-test-{os.getpid()}"
    made = {"dir": base + "-dir", "fifo": base + "-fifo", "file": base + "-file"}
    os.mkdir(made["dir"])
    os.mkfifo(made["fifo"])
    Path(made["file"]).write_bytes(b"\0" * 4096)
    yield made
    shutil.rmtree(made["dir"], ignore_errors=True)
    for p in (made["fifo"], made["file"]):
        Path(p).unlink(missing_ok=True)


def _resolve(value: str, dev: dict[str, str]) -> str:
    return value.format(**dev, url=URL, loop=LOOP)


def _no_traceback(p: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert "internal error" not in p.stderr, p.stderr


# -- hamon_disk --------------------------------------------------------------------------------
def ocf(action: str, params: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
           "HAMON_NODE": "node1", "HAMON_STATE_DIR": str(tmp / "state"),
           "HAMON_JOURNAL": str(tmp / "journal"), "OCF_RESOURCE_INSTANCE": "shared-disk",
           "HAMON_OS_TERMINATION_DRY_RUN": str(tmp / "terminate"),
           **{f"OCF_RESKEY_{k}": v for k, v in params.items()}}
    return subprocess.run([PYTHON, str(OCF_AGENT), action], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def one_reason(p: subprocess.CompletedProcess[str]) -> str:
    """ocf.py prints the exit reason as ``ocf-exit-reason:TEXT`` and logs TEXT again:
    one reason, and nothing else on stderr."""
    _no_traceback(p)
    reasons = {ln.removeprefix("ocf-exit-reason:") for ln in p.stderr.splitlines() if ln}
    assert len(reasons) == 1, p.stderr
    assert "ocf-exit-reason:" in p.stderr, p.stderr
    return reasons.pop()


CONFIGURED = 6  # OCF_ERR_CONFIGURED: no value like this can work on any node
INSTALLED = 5   # OCF_ERR_INSTALLED: not a shared disk on this node

OCF_CASES = [
    # (parameters, expected exit, words in the reason)
    ({}, CONFIGURED, "neither is set"),
    ({"scsi_device": URL, "dmmp_device": URL}, CONFIGURED, "both are set"),
    ({"scsi_device": ","}, CONFIGURED, "names no device"),
    ({"scsi_device": " , ,"}, CONFIGURED, "names no device"),
    ({"dmmp_device": ",,"}, CONFIGURED, "names no device"),
    ({"scsi_device": "sdb"}, CONFIGURED, "is not a device"),
    ({"scsi_device": "/tmp/disk"}, CONFIGURED, "is not a device"),
    ({"scsi_device": "/dev/mapper/mpatha"}, CONFIGURED, "give it as dmmp_device"),
    ({"dmmp_device": "/dev/sdb"}, CONFIGURED, "give it as scsi_device"),
    ({"scsi_device": f"{URL},{URL}"}, CONFIGURED, "listed twice"),
    ({"scsi_device": URL, "reservation_type": "9"}, CONFIGURED, "reservation_type"),
    ({"scsi_device": URL, "reservation_type": "WE-XX"}, CONFIGURED, "reservation_type"),
    ({"dmmp_device": URL, "reservation_type": "WE"}, CONFIGURED, "WE-RO"),
    ({"scsi_device": URL, "os_termination": "halt"}, CONFIGURED, "os_termination"),
    ({"scsi_device": URL, "reservation_key": "0"}, CONFIGURED, "not allowed"),
    ({"scsi_device": URL, "reservation_key": "xyz"}, CONFIGURED, "reservation_key"),
    ({"scsi_device": URL, "reservation_key": "1" * 17}, CONFIGURED, "reservation_key"),
    *[({"scsi_device": URL, "command_timeout": t}, CONFIGURED, "command_timeout")
      for t in ("0", "-1", "nan", "inf", "-inf", "1e300", "abc", "0.5", "301")],
    *[({"scsi_device": URL, "iscsi_initiator": i}, CONFIGURED, "iscsi_initiator")
      for i in ("iqn.2026-11.org.hamon:no de", "iqn.x", "iqn.2026-13.org.x:a",
                "eui.123", "naa.xyz", "iqn.2026-11.org.hamon:a\nb",
                "iqn.2026-11.org.hamon:" + "a" * 230)],
    ({"scsi_device": URL, "alias": "svc\nKAMN954-E forged"}, CONFIGURED, "control"),
    ({"scsi_device": URL, "journal": "journal"}, CONFIGURED, "absolute path"),
    ({"scsi_device": URL, "state_dir": "run/hamon"}, CONFIGURED, "absolute path"),
    # a name that is not a shared disk on this node
    ({"scsi_device": "/dev/hamon-no-such-disk"}, INSTALLED, "no such device on node1"),
    ({"scsi_device": "{dir}"}, INSTALLED, "a directory on node1"),
    ({"scsi_device": "{fifo}"}, INSTALLED, "a FIFO on node1"),
    ({"scsi_device": "{file}"}, INSTALLED, "a regular file on node1"),
    ({"scsi_device": "/dev/null"}, INSTALLED, "not a SCSI generic device"),
    ({"scsi_device": "{loop}"}, INSTALLED, "a loop device on node1"),
    ({"scsi_device": f"{URL} /dev/null"}, INSTALLED, "/dev/null"),
]


@pytest.mark.parametrize(("params", "code", "words"), OCF_CASES,
                         ids=[f"ocf{i}" for i in range(len(OCF_CASES))])
def test_hamon_disk_validate_all(dev, tmp_path, params, code, words):
    p = ocf("validate-all", {k: _resolve(v, dev) for k, v in params.items()}, tmp_path)
    assert p.returncode == code, p.stderr
    assert words in one_reason(p)


@pytest.mark.parametrize("device", ["{dir}", "{fifo}", "{file}", "/dev/null", "{loop}"])
def test_hamon_disk_start_on_a_non_disk_is_not_retried(dev, tmp_path, device):
    """start on something that is no shared disk here: OCF_ERR_INSTALLED (Pacemaker bans
    the node) instead of 1 (Pacemaker retries), and no journal entry of a start."""
    p = ocf("start", {"scsi_device": _resolve(device, dev)}, tmp_path)
    assert p.returncode == INSTALLED, p.stderr
    assert "not" in one_reason(p)
    assert not (tmp_path / "journal").exists()


def test_hamon_disk_start_with_no_operand_starts_nothing(tmp_path):
    p = ocf("start", {"scsi_device": ","}, tmp_path)
    assert p.returncode == CONFIGURED and "names no device" in one_reason(p)
    assert not (tmp_path / "journal").exists()


def test_hamon_disk_accepts_every_good_initiator_form(tmp_path):
    for name in ("iqn.2026-11.org.hamon:node1", "iqn.2001-04.com.example",
                 "iqn.2003-01.org.linux-iscsi.hamon:node-1.x", "eui.02004567A425678D",
                 "naa.52004567BA64678D", "naa.52004567BA64678D52004567BA64678D"):
        p = ocf("validate-all", {"scsi_device": URL, "iscsi_initiator": name}, tmp_path)
        assert p.returncode == 0, (name, p.stderr)


# -- fence_hamon_scsi --------------------------------------------------------------------------
def fence(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HAMON_NODE": "node1"}
    return subprocess.run([PYTHON, str(FENCE_AGENT), *argv], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def fence_error(p: subprocess.CompletedProcess[str]) -> str:
    """fencing.py's convention: exit 1, the error on stderr as logging's ERROR line(s)
    (its own option checks add "Please use '-h' for usage"), nothing on stdout."""
    _no_traceback(p)
    assert p.returncode == 1, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if "ERROR:" in ln]
    assert errors and len([e for e in errors if "Please use '-h'" not in e]) == 1, p.stderr
    return errors[0]


FENCE_CASES = [
    ([], "devices is required"),
    (["-d", ","], "devices is required"),
    (["-d", "sdb"], "not a device path"),
    (["-d", "ftp://host/x"], "unknown URL scheme"),
    (["-d", "/dev/hamon-no-such-disk"], "no such device on node1"),
    (["-d", "{dir}"], "a directory on node1"),
    (["-d", "{fifo}"], "a FIFO on node1"),
    (["-d", "{file}"], "a regular file on node1"),
    (["-d", "/dev/null"], "not a SCSI generic device"),
    (["-d", "{loop}"], "a loop device on node1"),
    (["-d", "{url}", "--reservation-type", "XX"], "reservation_type"),
    (["-d", "{url}", "-k", "0"], "not allowed"),
    (["-d", "{url}", "-k", "xyz"], "hex digits"),
    (["-d", "{url}", "--node-keys", "node1"], "node_keys"),
    (["-d", "{url}", "--node-keys", "node1=0x5,node2=0x5"], "same reservation key"),
    *[(["-d", "{url}", "--scsi-timeout", t], "scsi-timeout" if t in
       ("nan", "inf", "1e300", "abc", "0.5") else "scsi_timeout")
      for t in ("0", "-1", "nan", "inf", "1e300", "abc", "0.5", "301")],
    *[(["-d", "{url}", "--iscsi-initiator", i], "iscsi_initiator")
      for i in ("iqn.2026-11.org.hamon:no de", "iqn.x", "eui.1", "node2=iqn.bad name",
                "node2=naa.zz")],
]


@pytest.mark.parametrize(("argv", "words"), FENCE_CASES,
                         ids=[f"fence{i}" for i in range(len(FENCE_CASES))])
def test_fence_agent_validate_all(dev, argv, words):
    p = fence("-o", "validate-all", "-n", "node2", "--local-node", "node1",
              *[_resolve(a, dev) for a in argv])
    assert words in fence_error(p)
    assert p.stdout == ""


@pytest.mark.parametrize("device", ["{fifo}", "/dev/null", "{loop}"])
def test_fence_agent_stdin_protocol_refuses_a_non_disk(dev, device):
    stdin = (f"action=validate-all\ndevices={_resolve(device, dev)}\nplug=node2\n"
             "local_node=node1\n")
    assert "on node1" in fence_error(fence(stdin=stdin))


# -- hamon -------------------------------------------------------------------------------------
def hamon(*argv: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HAMON_NODE": "node1", "HAMON_JOURNAL": str(tmp / "journal"),
           "HAMON_DISKS_FILE": str(tmp / "disks"), "PYTHONPATH": str(REPO)}
    env.pop("HAMON_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "hamon", *argv], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=60, check=False)


def cli_error(p: subprocess.CompletedProcess[str], code: int = 2) -> str:
    _no_traceback(p)
    assert p.returncode == code, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hamon"), p.stderr  # "hamon paths:"
    return lines[0]


CLI_CASES = [
    ([], "required"),
    (["bogus"], "invalid choice"),
    (["paths"], "required"),
    (["paths", ","], "no device named"),
    (["keys", "sdb"], "not a device path"),
    (["keys", "ftp://x/y"], "unknown URL scheme"),
    (["paths", "/dev/hamon-no-such-disk"], "no such device"),
    (["paths", "{dir}"], "a directory"),
    (["paths", "{fifo}"], "a FIFO"),
    (["keys", "{file}"], "a regular file"),
    (["reservation", "/dev/null"], "not a SCSI generic device"),
    (["paths", "{loop}"], "a loop device"),
    *[(["--timeout", t, "paths", "{url}"], "--timeout")
      for t in ("0", "-5", "nan", "inf", "1e300", "abc", "0.5", "301")],
    *[(["paths", "{url}", "--timeout", t], "--timeout") for t in ("nan", "0")],
    *[(["--initiator", i, "paths", "{url}"], "--initiator")
      for i in ("iqn.2026-11.org.hamon:no de", "iqn.x", "", "eui.1")],
    (["key", "--key", "0"], "not allowed"),
    (["key", "--key", "zz"], "hex digits"),
    (["reservation", "show", "{url}", "--force"], "belong to"),
    (["reservation", "cancel"], "name at least one device"),
    (["status", "--no-cib", "--disks-file", "/dev/zero"], "not a regular file"),
    (["status", "--no-cib", "--disks-file", "{fifo}"], "not a regular file"),
    (["status", "--no-cib", "--disks-file", "{dir}"], "not a regular file"),
    (["status", "--no-cib", "--disks-file", "/nonexistent/disks"], "no such file"),
    (["recover", "--journal", "/dev/zero"], "not a regular file"),
    (["recover", "--journal", "{fifo}"], "not a regular file"),
    (["recover", "--journal", "{dir}"], "not a regular file"),
    (["status", "{url}", "--journal", "/dev/zero"], "not a regular file"),
]


@pytest.mark.parametrize(("argv", "words"), CLI_CASES,
                         ids=[f"cli{i}" for i in range(len(CLI_CASES))])
def test_hamon_bad_arguments(dev, tmp_path, argv, words):
    p = hamon(*[_resolve(a, dev) for a in argv], tmp=tmp_path)
    assert words in cli_error(p)


def test_hamon_refuses_an_oversized_disks_file(tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(2 * 1024 * 1024)  # sparse: 2 MB of NULs
    assert "not a disks file" in cli_error(hamon("status", "--no-cib", "--disks-file",
                                                 str(big), tmp=tmp_path))
