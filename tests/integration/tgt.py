"""A real tgtd (Debian ``tgt``) on loopback, for the integration and cluster tiers.

``Tgt`` starts ``tgtd -f`` with its management socket in a private directory
(``TGT_IPC_SOCKET``, read by both tgtd and tgtadm, plus ``-C`` for the socket suffix), so
any number of tgtds coexist with each other and with a system one; nothing under
/var/run is needed or touched. One target, LUN 0 is tgt's controller, data LUNs 1..n from
sparse files, ACL open to every initiator, and two portals (127.0.0.1:PORT and
127.0.0.2:PORT, both in target portal group 1) so that each LUN has two paths.

How a path is made to fail, as found on tgt 1.0.85 (bookworm):

* ``tgtadm --op delete --mode portal`` only closes the listening socket: sessions that
  came in through that portal keep working.
* ``tgtadm --op delete --mode conn --sid S --cid 0`` closes a session, but tgtadm's
  output does not say through which portal a session came (its "IP Address" is the
  initiator's), so it cannot pick "the sessions of path B".
* What works: delete the portal (no new login there), then cut tgtd's own TCP sockets
  whose local address is that portal. They are found from /proc/net/tcp(6) by inode,
  borrowed from tgtd with ``pidfd_getfd(2)`` and ``shutdown(2)``: the initiator sees the
  connection close, any re-login is refused, tgtd drops the session. No iptables, no
  namespace, and it works for initiators in any process. ``restore_portal`` undoes it.
* ``stop()``/``cont()`` SIGSTOP/SIGCONT the whole daemon: TCP still accepts (the kernel
  completes the handshake), nothing answers: the "hung target" case.
* tgtd ignores SIGTERM (its handler is empty); it is ended with SIGKILL. It is started
  through ``setpriv --pdeathsig KILL`` so that it dies with the thread that started it
  even if pytest itself is killed (start it from a thread that lives as long as it).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hamon.lib.reservation import LunStatus

DEFAULT_IQN = "iqn.2026-11.org.hamon:tgt"
DEFAULT_PORTALS = ("127.0.0.1", "127.0.0.2")
TGTD = "tgtd"
TGTADM = "tgtadm"
_SYS_PIDFD_GETFD = 438  # x86_64 and aarch64 share this number


class TgtError(RuntimeError):
    """tgtd did not start, or a tgtadm command failed."""


@dataclass(frozen=True)
class Session:
    """One I_T nexus as tgtadm shows it."""

    sid: int
    initiator: str
    address: str


def available() -> str | None:
    """Why tgt cannot run here, or None if it can (for pytest skips)."""
    for tool in (TGTD, TGTADM):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install tgt)"
    if os.geteuid() != 0:
        return "tgtd needs root"
    return None


def free_port(hosts: tuple[str, ...] = DEFAULT_PORTALS) -> int:
    """A TCP port that is free on every host (racy by nature; start() retries)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        try:
            for host in hosts[1:]:
                with _socket_for(host) as s:
                    s.bind((_bare(host), port))
        except OSError:
            continue
        return port
    raise TgtError("no free TCP port found")


def _bare(host: str) -> str:
    return host.strip("[]")


def _socket_for(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.socket(family, socket.SOCK_STREAM)


def _portal(host: str, port: int) -> str:
    return f"[{_bare(host)}]:{port}" if ":" in host else f"{host}:{port}"


def _pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL`` (util-linux): tgtd dies with the thread that started it.

    Done by exec'ing through setpriv rather than with a preexec_fn, which is unsafe in
    a process with threads (the transports' tests have many).
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL"] if setpriv else []


class Tgt:
    """One tgtd with one target and ``luns`` data LUNs, reachable through two portals.

    Use as a context manager or call ``start()``/``terminate()``. ``workdir`` holds the
    LUN files and tgtd's log; the management socket lives in a short private directory
    under /tmp because a unix socket path is limited to 107 bytes.
    """

    def __init__(self, workdir: Path | str, luns: int = 2, size_mb: int = 16,
                 target: str = DEFAULT_IQN, portals: tuple[str, ...] = DEFAULT_PORTALS,
                 start_timeout: float = 10.0) -> None:
        self.workdir = Path(workdir)
        self.luns = luns
        self.size_mb = size_mb
        self.target = target
        self.hosts = list(portals)
        self.start_timeout = start_timeout
        self.port = 0
        self.control_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._ipcdir: str | None = None
        self._log: Path = self.workdir / "tgtd.log"
        self._env: dict[str, str] = dict(os.environ)

    # -- life cycle --------------------------------------------------------------

    def start(self) -> Tgt:
        """Start tgtd and configure target, LUNs, ACL and portals; retry on port races."""
        why = available()
        if why:
            raise TgtError(why)
        self.workdir.mkdir(parents=True, exist_ok=True)
        last = ""
        for _ in range(5):
            self.port = free_port(tuple(self.hosts))
            self.control_port = self.port % 30000 + 1  # names the socket only
            try:
                self._spawn()
                self._configure()
                return self
            except TgtError as err:
                last = str(err)
                self.terminate()
        raise TgtError(f"tgtd did not come up: {last}")

    def _spawn(self) -> None:
        self._ipcdir = tempfile.mkdtemp(prefix="tgt", dir="/tmp")
        env = dict(os.environ, TGT_IPC_SOCKET=os.path.join(self._ipcdir, "s"))
        self._env = env
        log = open(self._log, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [*_pdeathsig_prefix(), TGTD, "-f", "-C", str(self.control_port),
                 "--iscsi", f"portal={_portal(self.hosts[0], self.port)}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TgtError(f"tgtd exited with {self.proc.returncode}: {self.log_tail()}")
            if self._adm_rc("--op", "show", "--mode", "system") == 0 and \
                    self._listening(self.hosts[0]):
                return
            time.sleep(0.02)
        raise TgtError(f"tgtd not ready within {self.start_timeout} s: {self.log_tail()}")

    def _configure(self) -> None:
        self.adm("--op", "new", "--mode", "target", "--tid", "1", "-T", self.target)
        for lun in range(1, self.luns + 1):
            img = self.workdir / f"lun{lun}.img"
            with open(img, "wb") as f:
                f.truncate(self.size_mb * 1024 * 1024)
            self.adm("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", str(lun),
                     "-b", str(img))
        self.adm("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")
        for host in self.hosts[1:]:
            self.adm("--op", "new", "--mode", "portal", "--param",
                     f"portal={_portal(host, self.port)}")
            if not self._listening(host):
                raise TgtError(f"portal {_portal(host, self.port)} is not listening")

    def terminate(self) -> None:
        """Kill tgtd (SIGKILL: it ignores SIGTERM) and remove its private socket dir."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)  # works on a stopped process too
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            self.proc = None
        if self._ipcdir:
            shutil.rmtree(self._ipcdir, ignore_errors=True)
            self._ipcdir = None

    def __enter__(self) -> Tgt:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise TgtError("tgtd is not running")
        return self.proc.pid

    # -- what tests use ----------------------------------------------------------

    def url(self, lun: int, portal: int = 0) -> str:
        """``iscsi://`` URL of ``lun`` through portal number ``portal``."""
        return f"iscsi://{_portal(self.hosts[portal], self.port)}/{self.target}/{lun}"

    def urls(self, lun: int) -> list[str]:
        """One URL per portal: the paths to ``lun``."""
        return [self.url(lun, n) for n in range(len(self.hosts))]

    def observe(self, luns: Iterable[int] = (1,), *, portal: int | None = None,
                timeout: float = 10.0) -> list[LunStatus]:
        """Keys, generation and holder of each LUN as a third initiator reads them: an
        observer registered nowhere (reading needs no registration), so what it sees is
        the target's state, not a node's view. ``portal``: through that portal only;
        default through any portal. Asserts that every LUN could be read."""
        from hamon.lib import reservation as rsv
        from hamon.lib.identity import default_initiator
        from hamon.lib.multipath.resolve import Resolver

        resolver = Resolver(initiator=default_initiator("observer"), timeout=timeout)
        disks = [d for lun in luns for d in resolver.resolve(
            self.urls(lun) if portal is None else [self.url(lun, portal)])]
        try:
            out = rsv.read_status(disks)
            assert out.ok, [(r.disk.name, r.error) for r in out.results if not r.ok]
            return [r.value for r in out.results]
        finally:
            for d in disks:
                d.close()

    def add_portal(self, host: str) -> int:
        """Listen on one more address (e.g. ``[::1]``) with the same port; its number."""
        self.adm("--op", "new", "--mode", "portal", "--param",
                 f"portal={_portal(host, self.port)}")
        self.hosts.append(host)
        return len(self.hosts) - 1

    def remove_portal(self, n: int) -> int:
        """Fail path ``n``: no new logins there, and its live connections are cut.

        Returns how many connections were cut.
        """
        host = self.hosts[n]
        self.adm("--op", "delete", "--mode", "portal", "--param",
                 f"portal={_portal(host, self.port)}")
        return self._cut_connections(host)

    def restore_portal(self, n: int) -> None:
        """Undo ``remove_portal``: logins through portal ``n`` work again."""
        host = self.hosts[n]
        self.adm("--op", "new", "--mode", "portal", "--param",
                 f"portal={_portal(host, self.port)}")

    def stop(self) -> None:
        """SIGSTOP tgtd: connections stay open, nothing answers (a hung target)."""
        os.kill(self.pid, signal.SIGSTOP)

    def cont(self) -> None:
        """SIGCONT tgtd."""
        os.kill(self.pid, signal.SIGCONT)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """tgtd SIGSTOPped for the block, continued whatever happens in it."""
        self.stop()
        try:
            yield
        finally:
            self.cont()

    def sessions(self) -> list[Session]:
        """The I_T nexuses tgtd has now (sid = TSIH), from ``tgtadm --op show``."""
        out = self.adm("--op", "show", "--mode", "target")  # "--tid 1" shows parameters
        out = out.split("LUN information:")[0]
        found = []
        pattern = (r"I_T nexus: (\d+)\s+Initiator: (\S+) alias: \S+"
                   r"(?:\s+Connection: \d+\s+IP Address: (\S+))?")
        for m in re.finditer(pattern, out):
            found.append(Session(int(m[1]), m[2], m[3] or ""))
        return found

    def set_debug(self, on: bool = True) -> None:
        """Switch tgtd's debug log on or off (needed by :meth:`created_sessions`)."""
        self.adm("--op", "update", "--mode", "system", "--name", "debug",
                 "--value", "on" if on else "off")

    def created_sessions(self) -> list[tuple[bytes, int]]:
        """(ISID, TSIH) of each session created while debug was on, oldest first.

        tgtadm never shows an ISID; tgtd's debug line ``session_create: 0x...`` prints
        sid64 = ISID bytes 0..5 little-endian in bits 0..47, TSIH in bits 48..63.
        """
        text = self._log.read_text(errors="replace") if self._log.exists() else ""
        found = []
        for m in re.finditer(r"session_create: 0x([0-9a-fA-F]+)", text):
            sid = int(m[1], 16)
            found.append(((sid & (1 << 48) - 1).to_bytes(6, "little"), sid >> 48))
        return found

    def adm(self, *args: str, timeout: float = 10.0) -> str:
        """Run ``tgtadm --lld iscsi ARGS`` against this tgtd; its output or TgtError."""
        r = self._adm(*args, timeout=timeout)
        if r.returncode != 0:
            raise TgtError(f"tgtadm {' '.join(args)}: {r.stderr.strip() or r.returncode}")
        return r.stdout

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- internals ---------------------------------------------------------------

    def _adm(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TGTADM, "-C", str(self.control_port), "--lld", "iscsi", *args],
                              capture_output=True, text=True, env=self._env, timeout=timeout,
                              check=False)

    def _adm_rc(self, *args: str) -> int:
        try:
            return self._adm(*args, timeout=2).returncode
        except subprocess.TimeoutExpired:
            return -1

    def _listening(self, host: str) -> bool:
        with _socket_for(host) as s:
            s.settimeout(1)
            return s.connect_ex((_bare(host), self.port)) == 0

    def _cut_connections(self, host: str) -> int:
        """shutdown() tgtd's established sockets whose local address is host:port."""
        inodes = _established_inodes(_bare(host), self.port)
        if not inodes:
            return 0
        libc = ctypes.CDLL(None, use_errno=True)
        cut = 0
        pidfd = os.pidfd_open(self.pid)
        try:
            fddir = f"/proc/{self.pid}/fd"
            for name in os.listdir(fddir):
                try:
                    link = os.readlink(f"{fddir}/{name}")
                except OSError:
                    continue
                m = re.fullmatch(r"socket:\[(\d+)\]", link)
                if not m or m[1] not in inodes:
                    continue
                fd = libc.syscall(_SYS_PIDFD_GETFD, pidfd, int(name), 0)
                if fd < 0:
                    raise TgtError(f"pidfd_getfd: {os.strerror(ctypes.get_errno())}")
                with socket.socket(fileno=fd) as s, contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                cut += 1
        finally:
            os.close(pidfd)
        return cut


def _established_inodes(ip: str, port: int) -> set[str]:
    """Socket inodes of ESTABLISHED TCP connections with local address ip:port."""
    import ipaddress

    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        table, want_ip = "/proc/net/tcp", addr.packed[::-1].hex().upper()
    else:
        # /proc/net/tcp6 prints the address as four host-order (little-endian) words.
        raw = addr.packed
        table = "/proc/net/tcp6"
        want_ip = "".join(raw[i:i + 4][::-1].hex().upper() for i in range(0, 16, 4))
    want = f"{want_ip}:{port:04X}"
    found = set()
    with open(table) as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == want and fields[3] == "01":  # 01 = ESTABLISHED
                found.add(fields[9])
    return found
