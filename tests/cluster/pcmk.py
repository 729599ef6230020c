"""A real two-node Pacemaker cluster on one machine, for the cluster test tier.

Each node is a set of Linux namespaces (network, mount, UTS, IPC, PID) whose PID 1 is
node_init.py. The node has its own hostname, its own eth0 on a private bridge, and private
copies of everything corosync and Pacemaker keep state in (/etc/corosync, /var/lib/pacemaker,
/var/lib/corosync, /var/log/pacemaker, /var/log/corosync, /var/lib/pcsd, /run, /dev/shm,
/etc/hosts). /usr/sbin, /usr/lib/ocf/resource.d and Python's /usr/local site directory are
overlays, so agents installed for a test are visible to the node only and vanish with the
cluster. Everything else (/usr, /tmp, the repository) is the host's.

Commands run on a node through `nsenter` into its namespaces. libqb IPC uses abstract unix
sockets, which are per network namespace, and ring buffers in /dev/shm, which is a tmpfs per
node, so the tools (crm_mon, pcs, stonith_admin, cibadmin ...) talk to that node's daemons.

See README.md next to this file. Run `/usr/bin/python3 tests/cluster/pcmk.py up` as root to
get a cluster to poke at by hand.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHON = "/usr/bin/python3"  # Debian's: fencing.py and ocf.py are installed for it
NODE_INIT = HERE / "node_init.py"

PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb"}

FENCE_DIR = "/usr/sbin"  # pacemaker-fenced lists /usr/sbin/fence_*
OCF_DIR = "/usr/lib/ocf/resource.d"

# Cluster properties every test starts from (tests change them with `pcs property set`;
# Cluster.reset() puts these back).
BASELINE_PROPERTIES = {
    # Tests that fence turn it on after creating their device.
    "stonith-enabled": "false",
    "no-quorum-policy": "stop",
    # How long a starting controller waits for a DC before holding an election. The default
    # (20s) is most of the ~30s a stock start takes.
    "dc-deadtime": "2s",
    "cluster-recheck-interval": "30s",
    "stonith-timeout": "30s",
    "shutdown-escalation": "60s",
}
BASELINE_RSC_DEFAULTS = {"resource-stickiness": "1"}

# Host commands this module needs; checked by preflight().
REQUIRED_COMMANDS = (
    "corosync", "corosync-cfgtool", "pacemakerd", "crm_mon", "cibadmin", "crm_resource",
    "crm_attribute", "stonith_admin", "attrd_updater", "pcs", "ip", "nsenter", "unshare",
    "setpriv", "mount",
)


class ClusterError(RuntimeError):
    pass


class CommandError(ClusterError):
    def __init__(self, node: str, cmd: list[str], result: subprocess.CompletedProcess):
        self.node, self.cmd, self.result = node, cmd, result
        self.returncode = result.returncode
        super().__init__(
            f"[{node}] {shlex.join(cmd)} -> rc={result.returncode}\n"
            f"stdout:\n{_tail(result.stdout)}\nstderr:\n{_tail(result.stderr)}"
        )


class ClusterTimeout(ClusterError, TimeoutError):
    pass


def _tail(text: str | None, lines: int = 40) -> str:
    if not text:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _host(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, check=check, timeout=timeout, capture_output=True, text=True, env=BASE_ENV,
        stdin=subprocess.DEVNULL,
    )


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def preflight() -> str | None:
    """Why the cluster tier cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (namespaces, mounts, veth)"
    missing = [c for c in REQUIRED_COMMANDS if not shutil.which(c, path=PATH)]
    if missing:
        return "missing commands: " + " ".join(missing) + " (tools/bootstrap cluster)"
    if not Path(PYTHON).exists():
        return f"missing {PYTHON}"
    return None


# --------------------------------------------------------------------------- status


@dataclass
class Resource:
    id: str
    agent: str
    role: str  # of the first instance: Started, Stopped, Promoted, ...
    nodes: list[str]  # where instances are active
    failed: bool
    blocked: bool
    managed: bool
    pending: bool = False  # a start/stop/promote is still running (record-pending)


#: Roles crm_mon reports while an operation is in flight: the resource is not there yet.
PENDING_ROLES = frozenset({"Starting", "Stopping", "Migrating", "Promoting", "Demoting"})


@dataclass
class Status:
    """`crm_mon --output-as=xml` as seen from one node."""

    xml: ET.Element
    dc: str | None
    quorate: bool
    nodes: dict[str, dict[str, str]]  # node name -> <node> attributes
    resources: dict[str, Resource]
    attributes: dict[str, dict[str, str]]  # node name -> node attribute (crm_mon -A)
    failures: list[dict[str, str]]  # <failure> attributes (failed actions)

    @classmethod
    def parse(cls, text: str) -> Status:
        root = ET.fromstring(text)
        dc_el = root.find("./summary/current_dc")
        dc = None
        quorate = False
        if dc_el is not None and dc_el.get("present") == "true":
            dc = dc_el.get("name")
            quorate = dc_el.get("with_quorum") == "true"
        nodes = {n.get("name"): dict(n.attrib) for n in root.findall("./nodes/node")}
        resources: dict[str, Resource] = {}
        for r in root.iter("resource"):
            rid = r.get("id")
            on = [n.get("name") for n in r.findall("node")] if r.get("active") == "true" else []
            prev = resources.get(rid)
            if prev is None:
                resources[rid] = Resource(
                    id=rid, agent=r.get("resource_agent", ""), role=r.get("role", ""),
                    nodes=on, failed=r.get("failed") == "true",
                    blocked=r.get("blocked") == "true", managed=r.get("managed") != "false",
                    pending=bool(r.get("pending")) or r.get("role", "") in PENDING_ROLES,
                )
            else:  # clone instances share the id
                prev.nodes += on
                prev.failed |= r.get("failed") == "true"
                prev.blocked |= r.get("blocked") == "true"
                prev.pending |= bool(r.get("pending")) or r.get("role", "") in PENDING_ROLES
        attributes = {
            n.get("name"): {a.get("name"): a.get("value") for a in n.findall("attribute")}
            for n in root.findall("./node_attributes/node")
        }
        failures = [dict(f.attrib) for f in root.findall("./failures/failure")]
        return cls(root, dc, quorate, nodes, resources, attributes, failures)

    @property
    def online(self) -> set[str]:
        return {n for n, a in self.nodes.items() if a.get("online") == "true"}

    def node_ok(self, name: str) -> bool:
        a = self.nodes.get(name, {})
        return (
            a.get("online") == "true"
            and a.get("pending") != "true"
            and a.get("unclean") != "true"
            and a.get("shutdown") != "true"
        )


# --------------------------------------------------------------------------- nodes


@dataclass
class Node:
    name: str
    nodeid: int
    addr: str
    dir: Path  # host directory with this node's private state
    init: subprocess.Popen | None = None  # setpriv/unshare; its child is the node's PID 1
    pid: int | None = None  # host PID of the node's PID 1 (nsenter --target)
    daemons: dict[str, subprocess.Popen] = field(default_factory=dict)
    boots: int = 0

    @property
    def up(self) -> bool:
        """The node's namespaces exist ("powered on"); daemons may or may not run."""
        return self.init is not None and self.init.poll() is None and _alive(self.pid)

    def daemon_running(self, name: str) -> bool:
        p = self.daemons.get(name)
        return p is not None and p.poll() is None

    def daemon_pid(self, name: str) -> int | None:
        """Host PID of a daemon started through nsenter (nsenter's only child)."""
        p = self.daemons.get(name)
        if p is None or p.poll() is not None:
            return None
        kids = _children(p.pid)
        return kids[0] if kids else None


class Cluster:
    """A real corosync + Pacemaker cluster whose nodes are namespaces on this host.

    Usage:  with Cluster() as c: c.pcs("node1", "resource", "create", ...)
    """

    def __init__(
        self,
        nodes: Iterable[str] = ("node1", "node2"),
        cluster_name: str = "hamon-test",
        python_packages: dict[str, str | Path] | None = None,
        env: dict[str, str] | None = None,
        workdir: str | Path | None = None,
        keep: bool | None = None,
        net_prefix: str | None = None,
        properties: dict[str, str] | None = None,
    ):
        """
        nodes: node names (= hostnames = corosync nodelist names); nodeids 1, 2, ...
        python_packages: {"hamon": "/work/main/hamon"} makes `import hamon` work for every
            /usr/bin/python3 run on a node (agents, pcs, stonith_admin --metadata): symlinks
            in the node's /usr/local/lib/python3.X/dist-packages overlay.
        env: extra environment for the daemons (hence for the agents they run).
        keep: keep the work directory (logs, CIBs) after stop(); default $HAMON_CLUSTER_KEEP.
        net_prefix: first two octets of the node networks, default $HAMON_CLUSTER_NET or 10.213.
        """
        self.node_names = list(nodes)
        self.cluster_name = cluster_name
        self.python_packages = {k: Path(v) for k, v in (python_packages or {}).items()}
        self.extra_env = dict(env or {})
        self._workdir_base = Path(workdir or os.environ.get("HAMON_CLUSTER_WORKDIR") or "/tmp")
        self.keep = bool(os.environ.get("HAMON_CLUSTER_KEEP")) if keep is None else keep
        self.net_prefix = net_prefix or os.environ.get("HAMON_CLUSTER_NET", "10.213")
        self.properties = {**BASELINE_PROPERTIES, **(properties or {})}
        self.nodes: dict[str, Node] = {}
        self.workdir: Path | None = None
        self.index: int | None = None
        self.bridge: str | None = None
        self.host_addr: str | None = None  # the host's address on the nodes' network
        self.startup_seconds: float | None = None
        self._lock = None
        self._baseline_config: str | None = None
        self._agents: list[tuple[str, str, str]] = []  # (path in node, scope, kind)
        self._blocked: set[frozenset[str]] = set()
        self._stopped = True

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> None:
        why = preflight()
        if why:
            raise ClusterError(why)
        if not self._stopped:
            raise ClusterError("already started")
        t0 = time.monotonic()
        self._stopped = False
        self.nodes, self._agents, self._blocked = {}, [], set()
        self._baseline_config = None
        atexit.register(self.stop)
        try:
            self._allocate()
            for i, name in enumerate(self.node_names, 1):
                self.nodes[name] = Node(
                    name, i, f"{self.net_prefix}.{self.index}.{i}", self.workdir / name
                )
            for n in self.nodes.values():
                self._prepare_node_dir(n)
            for n in self.nodes.values():
                self._power_on(n)
            for n in self.nodes.values():
                self._start_corosync(n)
            for n in self.nodes.values():
                self._wait_corosync(n)
                self._start_pacemaker(n)
            self.wait_online(timeout=timeout)
            self.wait_idle(timeout=timeout)

            def dc_wrote_its_properties():
                conf = self.run(self.node_names[0], "cibadmin", "--query", "--scope",
                                "configuration").stdout
                return 'name="dc-version"' in conf and 'name="cluster-name"' in conf and conf

            self._baseline_config = self.wait_until(
                dc_wrote_its_properties, 30, what="dc-version and cluster-name in the CIB")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0

    def stop(self, timeout: float = 60) -> None:
        """Stop Pacemaker and corosync everywhere, then remove every trace. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            running = [n for n in self.nodes.values() if n.up]
            self._stop_daemons(running, timeout)
        finally:
            for n in self.nodes.values():
                self._power_off(n)
            if self.bridge:
                _host("ip", "link", "del", self.bridge, check=False)
            if self.workdir and self.workdir.exists():
                if self.keep:
                    print(f"hamon cluster: kept {self.workdir}", file=sys.stderr)
                else:
                    shutil.rmtree(self.workdir, ignore_errors=True)
            if self._lock:
                self._lock.close()
                self._lock = None
            with contextlib.suppress(Exception):
                atexit.unregister(self.stop)

    def _allocate(self) -> None:
        """Pick a free cluster index: bridge hmnbrN, network PREFIX.N.0/24, a lock file."""
        lock_dir = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
        for idx in range(100):
            f = open(lock_dir / f"hamon-cluster-{idx}.lock", "a+")  # noqa: SIM115
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            # We own index idx; anything left under it is from a run that died.
            bridge = f"hmnbr{idx}"
            _host("ip", "link", "del", bridge, check=False)
            f.seek(0)
            stale = f.read().strip()
            if ("/hamon-cluster" in stale and Path(stale).is_dir()
                    and not (Path(stale) / "KEPT").exists()):
                shutil.rmtree(stale, ignore_errors=True)
            net = f"{self.net_prefix}.{idx}."
            addrs = _host("ip", "-o", "addr", "show").stdout
            routes = _host("ip", "route", "show", "table", "all").stdout
            if f" {net}" in addrs or net in routes:  # someone else's network
                f.close()
                continue
            self.index, self.bridge, self._lock = idx, bridge, f
            break
        else:
            raise ClusterError("no free cluster index (100 in use?)")
        self.workdir = Path(
            tempfile.mkdtemp(prefix=f"hamon-cluster{self.index}-", dir=self._workdir_base)
        )
        os.chmod(self.workdir, 0o755)
        self.shared_dir.mkdir(mode=0o1777)
        os.chmod(self.shared_dir, 0o1777)
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"{self.workdir}\n")
        self._lock.flush()
        self.host_addr = f"{self.net_prefix}.{self.index}.254"
        _host("ip", "link", "add", self.bridge, "type", "bridge")
        _host("ip", "addr", "add", f"{self.host_addr}/24", "dev", self.bridge)
        _host("ip", "link", "set", self.bridge, "up")

    @property
    def shared_dir(self) -> Path:
        """A directory (mode 1777) that the host and every node see at the same path."""
        return self.workdir / "shared"

    # ------------------------------------------------------------------ node directories

    _BINDS = (  # (node path, host subdir, owner group mode)
        ("/etc/corosync", "etc/corosync", None),
        ("/var/lib/corosync", "lib/corosync", None),
        ("/var/lib/pacemaker", "lib/pacemaker", None),
        ("/var/log/pacemaker", "log/pacemaker", ("hacluster", "haclient", 0o2770)),
        ("/var/log/corosync", "log/corosync", None),
        ("/var/log/cluster", "log/cluster", None),
        ("/var/lib/pcsd", "lib/pcsd", ("root", "root", 0o700)),
    )

    def _overlay_dirs(self) -> list[str]:
        dirs = [FENCE_DIR, OCF_DIR]
        if self.python_packages:
            dirs.append(self._site_dir())
        return dirs

    _site: str | None = None

    def _site_dir(self) -> str:
        """/usr/local/lib/python3.X/dist-packages of /usr/bin/python3: first on its path
        after the standard library, so packages there win over Debian's."""
        if self._site is None:
            out = subprocess.run(
                [PYTHON, "-c", "import site; print(site.getsitepackages()[0])"],
                capture_output=True, text=True, check=True, env=BASE_ENV,
            ).stdout.strip()
            if not (out.startswith("/usr/local/") and Path(out).is_dir()):
                raise ClusterError(f"unexpected first site directory {out!r} of {PYTHON}")
            self._site = out
        return self._site

    def _upper(self, node: Node, path: str) -> Path:
        return node.dir / "overlay" / path.strip("/").replace("/", "_") / "upper"

    def _prepare_node_dir(self, n: Node) -> None:
        d = n.dir
        for _, sub, own in self._BINDS:
            p = d / sub
            p.mkdir(parents=True, exist_ok=True)
            if own:
                shutil.chown(p, own[0], own[1])
                os.chmod(p, own[2])
        pcmk = d / "lib/pacemaker"
        for sub in ("cib", "pengine", "blackbox", "cores"):
            (pcmk / sub).mkdir(exist_ok=True)
            shutil.chown(pcmk / sub, "hacluster", "haclient")
            os.chmod(pcmk / sub, 0o750)
        (d / "log/pacemaker/bundles").mkdir(exist_ok=True)
        shutil.chown(d / "log/pacemaker/bundles", "hacluster", "haclient")
        uidgid = Path("/etc/corosync/uidgid.d")
        if uidgid.is_dir():
            shutil.copytree(uidgid, d / "etc/corosync/uidgid.d", dirs_exist_ok=True)
        (d / "etc/corosync/corosync.conf").write_text(self._corosync_conf())
        (d / "hosts").write_text(self._hosts())
        cib = pcmk / "cib/cib.xml"
        cib.write_text(self._seed_cib())
        shutil.chown(cib, "hacluster", "haclient")
        os.chmod(cib, 0o600)
        for path in self._overlay_dirs():
            upper = self._upper(n, path)
            upper.mkdir(parents=True)
            (upper.parent / "work").mkdir()
        if self.python_packages:
            upper = self._upper(n, self._site_dir())
            for name, src in self.python_packages.items():
                (upper / name).symlink_to(src.resolve())
        (d / "log").mkdir(exist_ok=True)

    def _corosync_conf(self) -> str:
        nodes = "".join(
            f"    node {{\n        name: {n.name}\n        nodeid: {n.nodeid}\n"
            f"        ring0_addr: {n.addr}\n    }}\n"
            for n in self.nodes.values()
        )
        two = "    two_node: 1\n" if len(self.nodes) == 2 else ""
        return (
            "# written by tests/cluster/pcmk.py\n"
            "totem {\n    version: 2\n"
            f"    cluster_name: {self.cluster_name}\n"
            "    transport: knet\n    crypto_cipher: none\n    crypto_hash: none\n"
            "    token: 1000\n    join: 50\n}\n"
            "logging {\n    to_logfile: yes\n    logfile: /var/log/corosync/corosync.log\n"
            "    to_syslog: no\n    to_stderr: no\n    timestamp: on\n}\n"
            "quorum {\n    provider: corosync_votequorum\n" + two + "}\n"
            "nodelist {\n" + nodes + "}\n"
        )

    def _hosts(self) -> str:
        lines = ["127.0.0.1 localhost", f"{self.host_addr} host"]
        lines += [f"{n.addr} {n.name}" for n in self.nodes.values()]
        return "\n".join(lines) + "\n"

    def _seed_cib(self) -> str:
        """An initial CIB with the test properties, so the very first election already uses
        the short dc-deadtime (a stock start waits 20 s for it)."""
        root = ET.fromstring(_host("cibadmin", "--empty").stdout)
        conf = root.find("configuration")
        crm = conf.find("crm_config")
        ps = ET.SubElement(crm, "cluster_property_set", id="cib-bootstrap-options")
        for k, v in self.properties.items():
            ET.SubElement(ps, "nvpair", id=f"cib-bootstrap-options-{k}", name=k, value=v)
        rd = conf.find("rsc_defaults")
        if rd is None:
            rd = ET.SubElement(conf, "rsc_defaults")
        ma = ET.SubElement(rd, "meta_attributes", id="rsc_defaults-meta_attributes")
        for k, v in BASELINE_RSC_DEFAULTS.items():
            ET.SubElement(ma, "nvpair", id=f"rsc_defaults-meta_attributes-{k}", name=k, value=v)
        return ET.tostring(root, encoding="unicode")

    def _node_spec(self, n: Node) -> dict[str, Any]:
        mounts: list[dict[str, str]] = [
            {"kind": "tmpfs", "dst": "/run", "options": "mode=0755"},
            {"kind": "mkdir", "dst": "/run/lock", "mode": "1777"},
            {"kind": "symlink", "src": "/dev/shm", "dst": "/run/shm"},
            {"kind": "tmpfs", "dst": "/dev/shm", "options": "mode=1777"},
            {"kind": "bind", "src": str(n.dir / "hosts"), "dst": "/etc/hosts"},
        ]
        for dst, sub, _ in self._BINDS:
            if Path(dst).is_dir():  # never create mount points on the host
                mounts.append({"kind": "bind", "src": str(n.dir / sub), "dst": dst})
        for path in self._overlay_dirs():
            upper = self._upper(n, path)
            mounts.append({
                "kind": "overlay", "dst": path, "upper": str(upper),
                "work": str(upper.parent / "work"),
            })
        return {"hostname": n.name, "mounts": mounts, "ready_file": str(n.dir / "ready")}

    # ------------------------------------------------------------------ power

    def _power_on(self, n: Node, timeout: float = 20) -> None:
        """Create the node's namespaces (PID 1 = node_init.py) and plug in its network."""
        spec = n.dir / "spec.json"
        spec.write_text(json.dumps(self._node_spec(n), indent=1))
        ready = n.dir / "ready"
        ready.unlink(missing_ok=True)
        n.boots += 1
        log = open(n.dir / "log" / "init.log", "ab")  # noqa: SIM115
        n.init = subprocess.Popen(
            [
                "setpriv", "--pdeathsig", "KILL", "--",
                "unshare", "--net", "--mount", "--uts", "--ipc", "--pid", "--fork",
                "--mount-proc", "--propagation", "private", "--kill-child=KILL", "--",
                PYTHON, str(NODE_INIT), str(spec),
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=BASE_ENV,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not (n.pid and ready.exists()):
            if n.init.poll() is not None:
                raise ClusterError(
                    f"{n.name}: node init exited rc={n.init.returncode}:\n"
                    + _tail((n.dir / "log/init.log").read_text())
                )
            if time.monotonic() > deadline:
                raise ClusterTimeout(f"{n.name}: node init not ready after {timeout}s")
            if not n.pid:
                kids = _children(n.init.pid)
                n.pid = kids[0] if kids else None
            time.sleep(0.02)
        self._plug(n)

    def _plug(self, n: Node) -> None:
        host_end, node_end = f"hmn{self.index}n{n.nodeid}", f"hmn{self.index}p{n.nodeid}"
        _host("ip", "link", "del", host_end, check=False)
        _host("ip", "link", "add", host_end, "type", "veth", "peer", "name", node_end)
        _host("ip", "link", "set", node_end, "netns", str(n.pid))
        _host("ip", "link", "set", host_end, "master", self.bridge, "up")
        self._ns_ip(n, "link", "set", "lo", "up")
        self._ns_ip(n, "link", "set", node_end, "name", "eth0")
        self._ns_ip(n, "addr", "add", f"{n.addr}/24", "dev", "eth0")
        self._ns_ip(n, "link", "set", "eth0", "up")
        for pair in self._blocked:
            if n.name in pair:
                (other,) = pair - {n.name}
                self._ns_ip(n, "route", "add", "blackhole", f"{self.nodes[other].addr}/32")

    def _ns_ip(self, n: Node, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _host("nsenter", f"--target={n.pid}", "--net", "--", "ip", *args, check=check)

    def _power_off(self, n: Node, timeout: float = 10) -> None:
        """Pull the plug: SIGKILL to unshare; --kill-child kills the node's PID 1 and the
        kernel kills every other process of the node with it."""
        if n.init is not None and n.init.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                n.init.kill()
        if n.init is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                n.init.wait(timeout)
        if n.pid:
            deadline = time.monotonic() + timeout
            while _alive(n.pid) and time.monotonic() < deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(n.pid, signal.SIGKILL)
                time.sleep(0.05)
        for name, p in list(n.daemons.items()):
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
            del n.daemons[name]
        n.pid = None
        n.init = None

    # ------------------------------------------------------------------ daemons

    def daemon_env(self) -> dict[str, str]:
        return {
            **BASE_ENV,
            "PCMK_logfile": "/var/log/pacemaker/pacemaker.log",
            "PCMK_logfacility": "none",
            **self.extra_env,
        }

    def _spawn_daemon(self, n: Node, name: str, *argv: str) -> None:
        log = open(n.dir / "log" / f"{name}.out", "ab")  # noqa: SIM115
        n.daemons[name] = subprocess.Popen(
            ["nsenter", f"--target={n.pid}", "--net", "--mount", "--uts", "--ipc", "--pid",
             "--wd=/", "--", *argv],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.daemon_env(),
            start_new_session=True,
        )
        log.close()

    def _start_corosync(self, n: Node) -> None:
        if not n.daemon_running("corosync"):
            self._spawn_daemon(n, "corosync", "corosync", "-f")

    def _wait_corosync(self, n: Node, timeout: float = 30) -> None:
        def ready():
            if not n.daemon_running("corosync"):
                raise ClusterError(
                    f"{n.name}: corosync exited:\n"
                    + _tail((n.dir / "log/corosync.out").read_text())
                    + _tail((n.dir / "log/corosync/corosync.log").read_text())
                )
            return self.run(n.name, "corosync-cfgtool", "-s", check=False, timeout=5).ok

        self.wait_until(ready, timeout, what=f"corosync on {n.name}", snapshot=False)

    def _start_pacemaker(self, n: Node) -> None:
        if not n.daemon_running("pacemakerd"):
            self._spawn_daemon(n, "pacemakerd", "pacemakerd")

    def _signal_daemon(self, n: Node, name: str, sig: int) -> None:
        pid = n.daemon_pid(name)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _stop_daemons(self, nodes: list[Node], timeout: float) -> bool:
        """SIGTERM pacemakerd on all `nodes` at once, then corosync. True if clean."""
        clean = True
        for name, t in (("pacemakerd", timeout), ("corosync", 15)):
            for n in nodes:
                self._signal_daemon(n, name, signal.SIGTERM)
            deadline = time.monotonic() + t
            for n in nodes:
                p = n.daemons.get(name)
                if p is None:
                    continue
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    clean = False
                    print(f"hamon cluster: {n.name}: {name} did not stop in {t}s",
                          file=sys.stderr)
                    self._signal_daemon(n, name, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(5)
                n.daemons.pop(name, None)
        return clean

    # ------------------------------------------------------------------ node control

    def start_node(self, node: str, wait: bool = True, timeout: float = 60) -> None:
        """Power the node on if needed and start corosync + Pacemaker (like a boot)."""
        n = self._node(node)
        if not n.up:
            self._power_off(n)  # reap what is left of a previous life
            self._power_on(n)
        # Like a boot: both daemons start fresh. (pacemakerd that stopped after being
        # fenced asks corosync to exit, which may still be under way.)
        if n.daemon_running("pacemakerd") != n.daemon_running("corosync"):
            self._stop_daemons([n], 30)
        self._start_corosync(n)
        self._wait_corosync(n)
        self._start_pacemaker(n)
        if wait:
            self.wait_online([node], timeout=timeout)

    def stop_node(self, node: str, timeout: float = 60) -> bool:
        """Clean shutdown of Pacemaker then corosync on one node (its resources move or
        stop first); the namespaces stay. False if something had to be killed."""
        n = self._node(node)
        return self._stop_daemons([n], timeout) if n.up else True

    def wait_pacemaker_exit(self, node: str, timeout: float = 60) -> int | None:
        """Until pacemakerd and corosync of `node` have exited by themselves (as after the
        node learnt it was fenced); returns pacemakerd's exit status (100 = fatal, stay
        down) or None if it was not started through this Cluster."""
        n = self._node(node)
        self.wait_until(
            lambda: not (n.daemon_running("pacemakerd") or n.daemon_running("corosync")),
            timeout, what=f"pacemakerd and corosync on {node} to exit",
        )
        p = n.daemons.pop("pacemakerd", None)
        n.daemons.pop("corosync", None)
        return None if p is None else p.returncode

    def kill_node(self, node: str) -> None:
        """Power the node off at once: every process of the node dies together."""
        self._power_off(self._node(node))

    def crash_pacemaker(self, node: str) -> None:
        """SIGKILL corosync and pacemakerd (its children die with corosync's loss)."""
        n = self._node(node)
        for name in ("corosync", "pacemakerd"):
            self._signal_daemon(n, name, signal.SIGKILL)

    def is_running(self, node: str) -> bool:
        """Namespaces exist and pacemakerd + corosync run."""
        n = self._node(node)
        return n.up and n.daemon_running("pacemakerd") and n.daemon_running("corosync")

    def disconnect(self, a: str, b: str) -> None:
        """Cut the cluster network between two nodes (blackhole routes both ways); the host
        (e.g. an iSCSI target on host_addr) stays reachable from both."""
        self._blocked.add(frozenset((a, b)))
        for x, y in ((a, b), (b, a)):
            nx = self._node(x)
            if nx.up:
                self._ns_ip(nx, "route", "replace", "blackhole", f"{self._node(y).addr}/32")

    def reconnect(self, a: str | None = None, b: str | None = None) -> None:
        """Undo disconnect(a, b); without arguments, every disconnect."""
        pairs = [frozenset((a, b))] if a and b else list(self._blocked)
        for pair in pairs:
            self._blocked.discard(pair)
            for x in pair:
                (y,) = pair - {x}
                nx = self._node(x)
                if nx.up:
                    self._ns_ip(nx, "route", "del", "blackhole", f"{self._node(y).addr}/32",
                                check=False)

    def _node(self, node: str) -> Node:
        try:
            return self.nodes[node]
        except KeyError:
            raise ClusterError(f"no node {node!r}; nodes: {self.node_names}") from None

    def running_nodes(self) -> list[str]:
        return [name for name in self.node_names if self.is_running(name)]

    def log_file(self, node: str, which: str = "pacemaker") -> Path:
        """Host path of a node's log: pacemaker, corosync, or init / corosync.out /
        pacemakerd.out (daemon stdout+stderr)."""
        d = self._node(node).dir / "log"
        return {"pacemaker": d / "pacemaker/pacemaker.log",
                "corosync": d / "corosync/corosync.log"}.get(which, d / which)

    # ------------------------------------------------------------------ commands

    def run(
        self,
        node: str,
        *cmd: str | os.PathLike,
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike = "/",
    ) -> Result:
        """Run a command on a node (in its namespaces). Environment: BASE_ENV + env.
        On timeout the whole process group is killed and ClusterTimeout raised."""
        n = self._node(node)
        if not n.up:
            raise ClusterError(f"{node} is powered off")
        argv = [str(c) for c in cmd]
        full = ["nsenter", f"--target={n.pid}", "--net", "--mount", "--uts", "--ipc",
                "--pid", f"--wd={cwd}", "--", *argv]
        p = subprocess.Popen(
            full, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**BASE_ENV, **(env or {})}, start_new_session=True,
        )
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            raise ClusterTimeout(
                f"[{node}] {shlex.join(argv)} timed out after {timeout}s\n"
                f"stdout:\n{_tail(out)}\nstderr:\n{_tail(err)}"
            ) from None
        res = Result(argv, p.returncode, out, err)
        if check and p.returncode != 0:
            raise CommandError(node, argv, res)
        return res

    def popen(self, node: str, *cmd: str | os.PathLike,
              env: dict[str, str] | None = None) -> subprocess.Popen:
        """A long-lived process on a node (in its namespaces), stdin/stdout as text pipes,
        for a conversation (:meth:`run` waits for the end). The caller ends it; it is
        in a process group of its own, so killpg(p.pid) reaches its children."""
        n = self._node(node)
        if not n.up:
            raise ClusterError(f"{node} is powered off")
        full = ["nsenter", f"--target={n.pid}", "--net", "--mount", "--uts", "--ipc",
                "--pid", "--wd=/", "--", *[str(c) for c in cmd]]
        return subprocess.Popen(full, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1,
                                env={**BASE_ENV, **(env or {})}, start_new_session=True)

    def pcs(self, node: str, *args: str, **kw) -> Result:
        return self.run(node, "pcs", *args, **kw)

    def crm_mon(self, node: str | None = None) -> str:
        return self.run(node or self._any_node(), "crm_mon", "-1", "-A", "-r").stdout

    def status(self, node: str | None = None) -> Status:
        out = self.run(
            node or self._any_node(), "crm_mon", "-1", "-A", "-r", "--output-as=xml",
            timeout=30,
        ).stdout
        return Status.parse(out)

    def dc(self, node: str | None = None) -> str | None:
        return self.status(node).dc

    def _any_node(self) -> str:
        for name in self.node_names:
            if self.is_running(name):
                return name
        raise ClusterError("no node is running")

    def fence(self, target: str, action: str = "off", via: str | None = None,
              timeout: int = 60, check: bool = True) -> Result:
        """`stonith_admin --fence/--reboot/--unfence TARGET` run on `via` (default: another
        running node). action: off | reboot | on."""
        flag = {"off": "--fence", "reboot": "--reboot", "on": "--unfence"}[action]
        if via is None:
            others = [n for n in self.running_nodes() if n != target]
            via = others[0] if others else target
        return self.run(via, "stonith_admin", flag, target, "--timeout", str(timeout),
                        timeout=timeout + 15, check=check)

    # ------------------------------------------------------------------ waiting

    def wait_until(
        self,
        predicate: Callable[[], Any],
        timeout: float = 60,
        interval: float = 0.5,
        what: str | None = None,
        snapshot: bool = True,
    ) -> Any:
        """Call predicate until it returns something truthy (returned). CommandError and
        ClusterTimeout from the predicate count as "not yet". On timeout raise
        ClusterTimeout with the last error and a crm_mon snapshot."""
        deadline = time.monotonic() + timeout
        last_exc: BaseException | None = None
        while True:
            try:
                v = predicate()
                if v:
                    return v
            except (CommandError, ClusterTimeout, ET.ParseError) as e:
                last_exc = e
            if time.monotonic() >= deadline:
                break
            time.sleep(interval)
        msg = f"timed out after {timeout}s waiting for {what or predicate!r}"
        if last_exc:
            msg += f"\nlast error: {last_exc}"
        if snapshot:
            msg += "\n" + self.snapshot()
        raise ClusterTimeout(msg)

    def snapshot(self) -> str:
        """crm_mon of every running node, for error messages."""
        parts = []
        for name in self.node_names:
            if not self.is_running(name):
                n = self._node(name)
                parts.append(f"--- {name}: {'up' if n.up else 'powered off'}, daemons "
                             f"{[d for d in n.daemons if n.daemon_running(d)]}")
                continue
            try:
                parts.append(f"--- crm_mon on {name}\n" + self.run(
                    name, "crm_mon", "-1", "-A", "-r", "-f", check=False, timeout=15).stdout)
            except ClusterError as e:
                parts.append(f"--- crm_mon on {name}: {e}")
        return "\n".join(parts)

    def wait_online(self, nodes: Iterable[str] | None = None, timeout: float = 60) -> None:
        """Until every node in `nodes` (default: all running) runs, sees a quorate DC and
        sees all of `nodes` online and joined."""
        names = list(nodes) if nodes is not None else self.running_nodes()
        if not names:
            raise ClusterError("no nodes to wait for")

        def ok():
            for name in names:
                if not self.is_running(name):
                    n = self._node(name)
                    raise ClusterError(
                        f"{name} is not running; pacemakerd.out:\n"
                        + _tail((n.dir / "log/pacemakerd.out").read_text(), 10)
                    )
                s = self.status(name)
                if not (s.dc and s.quorate and all(s.node_ok(x) for x in names)):
                    return False
            return True

        self.wait_until(ok, timeout, what=f"{names} online with quorum")

    def wait_idle(self, node: str | None = None, timeout: float = 60,
                  strict: bool = False) -> None:
        """Until the cluster has nothing to do: the DC's controller is in S_IDLE on two
        polls 0.3 s apart. strict=True uses `crm_resource --wait` instead (also computes
        the transition; takes at least 2 s)."""
        if strict:
            t = max(1, int(timeout))
            self.wait_until(
                lambda: self.run(node or self._any_node(), "crm_resource", "--wait",
                                 f"--timeout={t}s", timeout=t + 10).ok,
                timeout, what="cluster idle (crm_resource --wait)",
            )
            return
        time.sleep(0.3)  # let the DC notice a change made just before
        seen = [0]

        def idle():
            via = node or self._any_node()
            dc = self.run(via, "crmadmin", "-q", "-D", timeout=15).stdout.strip()
            r = self.run(via, "crmadmin", "-q", "-S", dc, check=False, timeout=15)
            if "S_IDLE" in r.stdout + r.stderr:
                seen[0] += 1
            else:
                seen[0] = 0
            return seen[0] >= 2

        self.wait_until(idle, timeout, interval=0.3, what="DC in S_IDLE")

    def wait_started(self, resource: str, node: str | None = None, timeout: float = 60,
                     via: str | None = None) -> str:
        """Until `resource` is active and not failed (on `node` if given); returns the
        node it runs on."""

        def started():
            r = self.status(via).resources.get(resource)
            if r is None or r.failed or r.pending or not r.nodes:
                return None
            if node is None:
                return r.nodes[0]
            return node if node in r.nodes else None

        return self.wait_until(started, timeout, what=f"{resource} started on {node or 'any'}")

    def wait_stopped(self, resource: str, timeout: float = 60, via: str | None = None) -> None:
        def stopped():
            r = self.status(via).resources.get(resource)
            return r is None or not r.nodes

        self.wait_until(stopped, timeout, what=f"{resource} stopped")

    def wait_offline(self, node: str, via: str | None = None, timeout: float = 60) -> None:
        """Until `via` (default: another running node) sees `node` offline and clean
        (i.e. fenced or cleanly left)."""

        def offline():
            v = via or next(n for n in self.running_nodes() if n != node)
            a = self.status(v).nodes.get(node, {})
            return a.get("online") == "false" and a.get("unclean") != "true"

        self.wait_until(offline, timeout, what=f"{node} offline and clean")

    # ------------------------------------------------------------------ agents

    def install_agent(
        self,
        fence: str | os.PathLike | None = None,
        ocf: str | os.PathLike | None = None,
        name: str | None = None,
        provider: str = "hamon",
        scope: str = "test",
        link: bool = False,
        substitute: dict[str, str] | None = None,
    ) -> list[str]:
        """Install an agent executable where Pacemaker looks, on every node:
        fence -> /usr/sbin/NAME (NAME must start with fence_), ocf ->
        /usr/lib/ocf/resource.d/PROVIDER/NAME. NAME defaults to the file's name.
        Only the nodes see it (overlay); the host's /usr is untouched. link=True installs a
        symlink to the file instead of a copy. scope="test": removed by reset() (the `cluster`
        fixture's teardown); "session": kept until stop(). A copy gets `substitute`
        applied, by default @HAMON_PYTHONPATH@ -> this checkout, as `make install-dev`
        does. Returns the installed paths."""
        if (fence is None) == (ocf is None):
            raise ValueError("give exactly one of fence= and ocf=")
        src = Path(fence or ocf).resolve()
        if not src.is_file():
            raise ClusterError(f"no agent file {src}")
        nm = name or src.name
        if fence is not None:
            if not nm.startswith("fence_"):
                raise ValueError(f"fence agent name must start with fence_: {nm}")
            dest, base, kind = f"{FENCE_DIR}/{nm}", FENCE_DIR, "fence"
        else:
            dest, base, kind = f"{OCF_DIR}/{provider}/{nm}", OCF_DIR, "ocf"
        copy = src
        if not link:
            subs = {"@HAMON_PYTHONPATH@": str(REPO)} if substitute is None else substitute
            data = src.read_bytes()
            for k, v in subs.items():
                data = data.replace(k.encode(), v.encode())
            copy = self.workdir / "agents" / f"{kind}-{provider}-{nm}"
            copy.parent.mkdir(exist_ok=True)
            copy.write_bytes(data)
            os.chmod(copy, 0o755)
        for n in self.nodes.values():
            if n.up:  # through the mounted overlay
                if link:
                    self.run(n.name, "mkdir", "-p", str(Path(dest).parent))
                    self.run(n.name, "ln", "-sfn", str(src), dest)
                else:
                    self.run(n.name, "install", "-D", "-m", "0755", str(copy), dest)
            else:  # not mounted: write the overlay's upper directory directly
                target = self._upper(n, base) / Path(dest).relative_to(base)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)
                if link:
                    target.symlink_to(src)
                else:
                    shutil.copyfile(copy, target)
                    os.chmod(target, 0o755)
        self._agents.append((dest, scope, kind))
        return [dest]

    def uninstall_agents(self, scope: str | None = "test") -> None:
        """Remove installed agents of a scope (None: all) from every node."""
        keep = []
        for dest, sc, kind in self._agents:
            if scope is not None and sc != scope:
                keep.append((dest, sc, kind))
                continue
            base = FENCE_DIR if kind == "fence" else OCF_DIR
            for n in self.nodes.values():
                if n.up:
                    self.run(n.name, "rm", "-f", dest, check=False)
                    if kind == "ocf":  # the provider directory, if now empty
                        self.run(n.name, "rmdir", "--ignore-fail-on-non-empty",
                                 str(Path(dest).parent), check=False)
                else:
                    (self._upper(n, base) / Path(dest).relative_to(base)).unlink(
                        missing_ok=True)
        self._agents = keep

    # ------------------------------------------------------------------ reset

    def reset(self, timeout: float = 90) -> None:
        """Back to the state right after start(): all nodes running and online, network
        healed, configuration = baseline (no resources, constraints, fencing topology; the
        baseline properties), failures, resource history, fence history and custom
        transient node attributes cleared, test-scope agents removed (after their resources
        stopped). Cheap when there is nothing to undo."""
        changed = bool(self._blocked)
        self.reconnect()
        for attempt in range(3):
            for name in self.node_names:
                if attempt == 2 and self.is_running(name) and not self._joined(name):
                    self.kill_node(name)  # last resort: power-cycle a stuck node
                if not self.is_running(name):
                    self.start_node(name, wait=False)
                    changed = True
            try:
                self.wait_online(self.node_names, timeout=timeout / 3)
                break
            except ClusterError:
                # e.g. after a healed partition both halves learn they were fenced and
                # stop; nodes may stop while we wait. Start them again.
                changed = True
                if attempt == 2:
                    raise
        node = self.node_names[0]
        current = self.run(node, "cibadmin", "--query", "--scope", "configuration").stdout
        if _canon(current) != _canon(self._baseline_config):
            self.run(node, "cibadmin", "--replace", "--scope", "configuration",
                     "--xml-pipe", input=self._baseline_config)
            changed = True
        if changed:
            self.wait_idle(node, timeout=timeout)
        status = ET.fromstring(
            self.run(node, "cibadmin", "--query", "--scope", "status").stdout)
        if status.find(".//lrm_resource") is not None:  # history, failures, orphans
            self.run(node, "crm_resource", "--cleanup", check=False)
            changed = True
        changed |= self._clear_transient_attributes(node, status)
        self.run(node, "stonith_admin", "--history", "*", "--cleanup", "--broadcast",
                 check=False, timeout=30)
        if any(sc == "test" for _, sc, _ in self._agents):
            self.uninstall_agents("test")
        if changed:
            self.wait_idle(node, timeout=timeout)

    def _joined(self, node: str) -> bool:
        try:
            s = self.status(node)
        except ClusterError:
            return False
        return bool(s.dc and s.quorate and all(s.node_ok(x) for x in self.node_names))

    _INTERNAL_ATTRS = ("#", "fail-count", "last-failure", "shutdown", "terminate",
                       "probe_complete")

    def _clear_transient_attributes(self, node: str, status: ET.Element) -> bool:
        found = False
        for ns in status.findall("node_state"):
            uname = ns.get("uname")
            for nv in ns.findall("./transient_attributes//nvpair"):
                nm = nv.get("name", "")
                if not nm.startswith(self._INTERNAL_ATTRS):
                    self.run(node, "attrd_updater", "-D", "-n", nm, "-N", uname, check=False)
                    found = True
        return found


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _canon(xml: str | None) -> str:
    if not xml:
        return ""
    root = ET.fromstring(xml)
    for el in root.iter():
        el.tail = None
        if el.text is not None and not el.text.strip():
            el.text = None
    return ET.tostring(root, encoding="unicode")


# --------------------------------------------------------------------------- CLI


def main(argv: list[str]) -> int:
    """`pcmk.py up`: start a cluster, print how to reach it, keep it until Ctrl-C."""
    if argv[1:2] != ["up"]:
        print(__doc__)
        print("usage: /usr/bin/python3 tests/cluster/pcmk.py up", file=sys.stderr)
        return 2
    c = Cluster(python_packages={"hamon": REPO / "hamon"})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with c:
        print(f"cluster up in {c.startup_seconds:.1f}s; workdir {c.workdir}")
        for n in c.nodes.values():
            print(f"  {n.name} {n.addr}: nsenter -t {n.pid} -n -m -u -i -p -- bash")
        print(c.crm_mon())
        print("Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
