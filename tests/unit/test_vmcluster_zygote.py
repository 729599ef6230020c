"""The VM cluster's agent zygote (tests/system/cluster/zygote.py + zygote_client), as
processes on the host: a client must behave as the agent it stands for (argv, env,
cwd, stdin, stdout, stderr, exit status, death by signal), a killed client must take
its child with it, each run must start from the zygote's pristine state, and with no
zygote the client must run the real agent itself."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CLUSTER = Path(__file__).resolve().parents[1] / "system" / "cluster"
REPO = Path(__file__).resolve().parents[2]

FAKE_AGENT = r'''#!/usr/bin/python3
import json, os, sys, time
out = {"argv": sys.argv[1:], "x": os.environ.get("X"), "cwd": os.getcwd(),
       "stdin": sys.stdin.read(), "pid": os.getpid(), "mark": hasattr(json, "MARK"),
       "umask": oct(os.umask(0o22))}
json.MARK = 1  # must never be seen by a later run
if os.environ.get("PIDFILE"):
    with open(os.environ["PIDFILE"], "w") as f:
        f.write(str(os.getpid()))
print(json.dumps(out))
print("to stderr", file=sys.stderr)
if os.environ.get("SLEEP"):
    time.sleep(float(os.environ["SLEEP"]))
if os.environ.get("SIG"):
    sys.stdout.flush()
    os.kill(os.getpid(), int(os.environ["SIG"]))
sys.exit(int(os.environ.get("RC", "0")))
'''


def _wait_for(pred, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def _start_zygote(sock: Path, python: str, *preload: str) -> subprocess.Popen:
    proc = subprocess.Popen([python, str(CLUSTER / "zygote.py"), str(sock), *preload],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert _wait_for(lambda: sock.exists() or proc.poll() is not None, 60), "zygote not ready"
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(10)


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    """tmp/agent = the client, tmp/agent.real = a fake agent that reports what it got."""
    client = tmp_path / "agent"
    shutil.copy(CLUSTER / "zygote_client", client)
    real = tmp_path / "agent.real"
    real.write_text(FAKE_AGENT)
    client.chmod(0o755)
    real.chmod(0o755)
    return client


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[Path]:
    sock = tmp_path / "z.sock"
    proc = _start_zygote(sock, sys.executable, "json")
    yield sock
    _stop(proc)


def _run(client: Path, sock: Path, *args: str, stdin: str = "", **env: str):
    full = {"PATH": os.environ["PATH"], "HAMON_ZYGOTE": str(sock), **env}
    return subprocess.run([str(client), *args], input=stdin, capture_output=True,
                          text=True, env=full, cwd="/", timeout=60)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _report(stdout: str) -> dict:
    import json
    return json.loads(stdout.splitlines()[0])


def test_client_is_the_agent(agent: Path, zygote: Path) -> None:
    res = _run(agent, zygote, "monitor", "--x=1 2", stdin="port=node1\n", X="é", RC="3")
    assert res.returncode == 3
    got = _report(res.stdout)
    assert got["argv"] == ["monitor", "--x=1 2"]
    assert got["x"] == "é"
    assert got["cwd"] == "/"
    assert got["stdin"] == "port=node1\n"
    assert res.stderr == "to stderr\n"
    assert got["pid"] != os.getpid()


def test_child_runs_from_pristine_state(agent: Path, zygote: Path) -> None:
    first = _report(_run(agent, zygote).stdout)
    second = _report(_run(agent, zygote).stdout)
    assert first["mark"] is False and second["mark"] is False
    assert first["pid"] != second["pid"]


def test_child_killed_by_signal_kills_client(agent: Path, zygote: Path) -> None:
    res = _run(agent, zygote, SIG=str(int(signal.SIGTERM)))
    assert res.returncode == -signal.SIGTERM
    assert _report(res.stdout)["argv"] == []


def test_killed_client_kills_its_child(agent: Path, zygote: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    env = {"PATH": os.environ["PATH"], "HAMON_ZYGOTE": str(zygote), "SLEEP": "60",
           "PIDFILE": str(pidfile)}
    client = subprocess.Popen([str(agent)], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: pidfile.exists() and pidfile.read_text() != "")
    child = int(pidfile.read_text())
    assert child != client.pid
    os.kill(child, 0)  # running
    client.kill()
    client.wait(10)
    assert _wait_for(lambda: _gone(child), 10), f"child {child} outlived its killed client"


def test_no_zygote_execs_the_real_agent(agent: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([str(agent), "start"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"PATH": os.environ["PATH"], "RC": "7",
                                 "HAMON_ZYGOTE": str(tmp_path / "none.sock")})
    out, err = proc.communicate("in\n", timeout=60)
    assert proc.returncode == 7
    got = _report(out)
    assert got["pid"] == proc.pid  # exec'd in the client's own process
    assert got["argv"] == ["start"] and got["stdin"] == "in\n"
    assert err == "to stderr\n"


def test_zygote_dying_mid_run_is_a_failure(agent: Path, tmp_path: Path) -> None:
    sock = tmp_path / "z.sock"
    proc = _start_zygote(sock, sys.executable)
    pidfile = tmp_path / "child.pid"
    client = subprocess.Popen([str(agent)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={"PATH": os.environ["PATH"], "HAMON_ZYGOTE": str(sock),
                                   "SLEEP": "60", "PIDFILE": str(pidfile)})
    assert _wait_for(lambda: pidfile.exists() and pidfile.read_text() != "")
    child = int(pidfile.read_text())
    _stop(proc)
    _, err = client.communicate(timeout=30)
    assert client.returncode == 1
    assert "outcome unknown" in err
    assert _wait_for(lambda: _gone(child), 10), f"child {child} outlived its zygote"


def test_real_fence_agent_metadata_through_the_zygote(tmp_path: Path) -> None:
    """The real fence_hamon_scsi, pre-imported with fencing.py by Debian's python3 as in
    the guests, prints the same meta-data through a client as when run directly."""
    client = tmp_path / "fence_hamon_scsi"
    shutil.copy(CLUSTER / "zygote_client", client)
    client.chmod(0o755)
    real = tmp_path / "fence_hamon_scsi.real"
    real.write_text((REPO / "agents" / "fence_hamon_scsi").read_text()
                    .replace("@HAMON_PYTHONPATH@", str(REPO)))
    real.chmod(0o755)
    sock = tmp_path / "z.sock"
    proc = _start_zygote(sock, "/usr/bin/python3", "+/usr/share/fence", f"+{REPO}",
                         "fencing", "hamon.agents.fence.agent", "hamon.agents.fence.actions")
    try:
        via = _run(client, sock, stdin="action=metadata\n")
    finally:
        _stop(proc)
    direct = subprocess.run([str(real), "-o", "metadata"], capture_output=True, text=True,
                            timeout=60)
    assert via.returncode == direct.returncode == 0
    assert "<resource-agent" in direct.stdout
    assert via.stdout == direct.stdout


def test_child_runs_as_its_client_user() -> None:
    """Pacemaker's controller runs meta-data as hacluster: the child must get the
    client's uid/gid, not the zygote's root."""
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="zygote-uid-"))
    try:
        d.chmod(0o755)
        client = d / "agent"
        shutil.copy(CLUSTER / "zygote_client", client)
        real = d / "agent.real"
        real.write_text("#!/usr/bin/python3\nimport os\nprint(os.getuid(), os.getgid())\n")
        client.chmod(0o755)
        real.chmod(0o755)
        sock = d / "z.sock"
        proc = _start_zygote(sock, sys.executable)
        try:
            res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534",
                                  "--clear-groups", str(client)], capture_output=True,
                                 text=True, timeout=60, cwd="/",
                                 env={"PATH": os.environ["PATH"], "HAMON_ZYGOTE": str(sock)})
            as_root = _run(client, sock)
        finally:
            _stop(proc)
        assert (res.returncode, res.stdout) == (0, "65534 65534\n"), res.stderr
        assert as_root.stdout == f"{os.getuid()} {os.getgid()}\n"
    finally:
        shutil.rmtree(d)
