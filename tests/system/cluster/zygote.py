#!/usr/bin/python3
"""A pre-imported agent server ("zygote") for the VM cluster's node guests: a TEST-HARNESS
ACCELERATOR, not a part of hamon and not a change to its agents.

Why: under TCG every Python start in a node guest costs 1 s and importing fencing.py,
ocf.py and hamon another 2-5 s of the single vCPU, and Pacemaker runs every probe,
unfencing, start and monitor as a new agent process (run 5 of the cluster tier: 17 min
from QEMU start to the group running). Here one long-lived process imports all of that
once; the agents Pacemaker runs are tiny clients (``zygote_client``) that hand this
server their argv, environment, working directory, umask and their stdin/stdout/stderr
file descriptors over a unix socket (SCM_RIGHTS). For each request the server forks a
child that runs the REAL agent script (``<client path>.real``) as ``__main__`` with them,
so the agent's code runs unchanged and entirely; only the interpreter's start and the
imports were done before. The client exits with the child's status.

Rules it keeps:
* fork per request, never reuse: every child starts from the server's pristine state
  (the server itself never runs agent code);
* a client that goes away (Pacemaker's timeout, SIGTERM, SIGKILL) closes its connection:
  the server then kills the child's whole process group (SIGKILL);
* resource-agents' ocf.py reads argv, the environment and isatty(stdout) when it is
  imported, so the server imports it once (warming the caches) and drops it again: each
  child imports it afresh, with its own request's environment;
* a child runs with its client's uid, gid and groups (SO_PEERCRED): Pacemaker's
  controller runs meta-data as hacluster, and the socket is open to every user;
* no server (not started, or dead): the client execs the real agent itself; a server
  that dies during a run takes its children with it (PR_SET_PDEATHSIG) and the client
  exits 1 ("outcome unknown"), never 0.

Usage: ``zygote.py SOCKET [MODULE ...]`` (the modules to pre-import; a path entry
``+DIR`` is appended to sys.path first). It binds SOCKET only after the imports, so the
socket's existence means "ready".

Protocol (SOCK_SEQPACKET, one request per connection): the client sends one message,
NUL-separated: script, cwd, umask (octal), argc, argv..., then the environment's
``KEY=VALUE`` entries; with it exactly three descriptors (stdin, stdout, stderr). The
server answers one message, ``exit N`` or ``signal N``, when the child has ended.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import logging
import os
import pwd
import runpy
import selectors
import signal
import socket
import struct
import sys
import traceback

MAX_REQUEST = 1 << 20
#: modules whose import reads the calling process's argv/environment/streams: imported
#: once to warm the file caches, then dropped so that each child imports them afresh
FRESH_MODULES = ("ocf",)


class Request:
    """One agent run asked for by a client."""

    def __init__(self, payload: bytes, fds: list[int]) -> None:
        fields = payload.split(b"\0")
        if len(fds) != 3 or len(fields) < 5:
            raise ValueError(f"malformed request ({len(fields)} fields, {len(fds)} fds)")
        self.script = os.fsdecode(fields[0])
        self.cwd = os.fsdecode(fields[1])
        self.umask = int(fields[2], 8)
        argc = int(fields[3])
        self.argv = [os.fsdecode(a) for a in fields[4:4 + argc]]
        self.env: dict[str, str] = {}
        for entry in fields[4 + argc:]:
            key, sep, value = entry.partition(b"=")
            if sep:
                self.env[os.fsdecode(key)] = os.fsdecode(value)
        self.fds = fds
        self.uid = self.gid = 0

    def credentials(self, conn: socket.socket) -> None:
        """The client's uid and gid, as the kernel tells them (not as it says)."""
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, self.uid, self.gid = struct.unpack("3i", raw)


def _become(uid: int, gid: int) -> None:
    """Drop to the client's user: its groups, gid and uid (a root client: nothing)."""
    if uid == 0 and gid == 0:
        return
    try:
        groups = os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)
    except KeyError:
        groups = [gid]
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)


def preload(names: list[str]) -> None:
    """Import every module named (``+DIR`` entries extend sys.path), then drop the ones
    whose import depends on the caller (:data:`FRESH_MODULES`) and their loggers."""
    for name in names:
        if name.startswith("+"):
            if name[1:] not in sys.path:
                sys.path.append(name[1:])
            continue
        try:
            importlib.import_module(name)
        except Exception as err:  # not fatal: a child imports it itself (and fails there)
            print(f"zygote: cannot pre-import {name}: {err!r}", file=sys.stderr, flush=True)
    if "threading" in sys.modules and sys.modules["threading"].active_count() > 1:
        print("zygote: WARNING: a pre-imported module started a thread; a fork copies "
              "only the forking thread", file=sys.stderr, flush=True)
    for name in FRESH_MODULES:
        sys.modules.pop(name, None)
    # ocf.py names its logger after argv[0]: the server's own name must not linger
    logging.Logger.manager.loggerDict.pop(os.path.basename(sys.argv[0]), None)


def _exit_code(err: SystemExit) -> int:
    if err.code is None:
        return 0
    if isinstance(err.code, int):
        return err.code
    print(err.code, file=sys.stderr)
    return 1


def _die_with(parent: int) -> None:
    """PR_SET_PDEATHSIG: a child whose zygote died is killed, not left running an agent
    whose client already reported "outcome unknown" (Pacemaker may run it again)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def run_child(req: Request, parent: int) -> None:
    """In the forked child: become the agent's process and run the real script. Does not
    return."""
    code = 1
    try:
        _die_with(parent)
        _become(req.uid, req.gid)
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        for target, fd in enumerate(req.fds):
            os.dup2(fd, target)  # inheritable, like a fresh process's std streams
        for name in os.listdir("/proc/self/fd"):  # the server's sockets, other clients'
            if int(name) > 2:
                with contextlib.suppress(OSError):
                    os.close(int(name))
        # the process's own streams for the rest of its life, as a fresh interpreter's
        sys.stdin = open(0, encoding="utf-8", errors="surrogateescape",  # noqa: SIM115
                         closefd=False)
        sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1,  # noqa: SIM115
                          encoding="utf-8", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8",  # noqa: SIM115
                          errors="backslashreplace", closefd=False)
        os.chdir(req.cwd)
        os.umask(req.umask)
        os.environ.clear()
        os.environ.update(req.env)
        sys.argv = list(req.argv)
        try:
            runpy.run_path(req.script, run_name="__main__")
            code = 0
        except SystemExit as err:
            code = _exit_code(err)
        except BaseException:  # an agent's crash, as the interpreter would report it
            traceback.print_exc()
            code = 1
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
    except BaseException:  # the server's side of the child failed: say so on its stderr
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(code)


class Zygote:
    """The server's loop: accept, fork, watch the client and the child, answer."""

    def __init__(self, path: str) -> None:
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        # every user may connect (Pacemaker's controller runs meta-data as hacluster):
        # each child runs with its client's uid/gid (SO_PEERCRED), never more
        old = os.umask(0)
        try:
            self.listener.bind(path)
        finally:
            os.umask(old)
        self.listener.listen(64)
        self.sel.register(self.listener, selectors.EVENT_READ, ("accept", None))

    def serve(self) -> None:
        while True:
            for key, _ in self.sel.select():
                kind, data = key.data
                if kind == "accept":
                    self.accept()
                elif kind == "client":
                    self.client_event(*data)
                else:
                    self.child_ended(*data)

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            conn.settimeout(10)
            payload, fds, _flags, _addr = socket.recv_fds(conn, MAX_REQUEST, 3)
            try:
                req = Request(payload, fds)
                req.credentials(conn)
            except ValueError as err:
                for fd in fds:
                    os.close(fd)
                print(f"zygote: {err}", file=sys.stderr, flush=True)
                conn.close()
                return
        except OSError as err:
            print(f"zygote: request: {err}", file=sys.stderr, flush=True)
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            run_child(req, parent)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        state = {"conn": conn, "pid": pid, "pidfd": pidfd}
        conn.setblocking(False)
        self.sel.register(conn, selectors.EVENT_READ, ("client", (state,)))
        self.sel.register(pidfd, selectors.EVENT_READ, ("child", (state,)))

    def client_event(self, state: dict) -> None:
        """Readable client connection: the client sends nothing more, so this is its end
        (EOF or an error): kill the child's process group."""
        conn = state["conn"]
        try:
            data = conn.recv(16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return
        self.sel.unregister(conn)
        conn.close()
        state["conn"] = None
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(OSError):
                kill(state["pid"], signal.SIGKILL)

    def child_ended(self, state: dict) -> None:
        self.sel.unregister(state["pidfd"])
        os.close(state["pidfd"])
        _, status = os.waitpid(state["pid"], 0)
        conn = state["conn"]
        if conn is None:
            return
        self.sel.unregister(conn)
        if os.WIFSIGNALED(status):
            answer = f"signal {os.WTERMSIG(status)}"
        else:
            answer = f"exit {os.waitstatus_to_exitcode(status)}"
        with contextlib.suppress(OSError):
            conn.setblocking(True)
            conn.settimeout(5)
            conn.send(answer.encode())
        conn.close()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: zygote.py SOCKET [MODULE|+DIR ...]", file=sys.stderr)
        return 2
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # the harness's own modules (checker, records) are no agent's
    preload(argv[2:])
    server = Zygote(argv[1])
    print(f"zygote: ready on {argv[1]} (pid {os.getpid()})", file=sys.stderr, flush=True)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
