#!/usr/bin/python3
"""PID 1 of one test-cluster node (see README.md in this directory).

pcmk.Cluster starts it as

    setpriv --pdeathsig KILL -- unshare --net --mount --uts --ipc --pid --fork \
        --mount-proc --propagation private --kill-child=KILL -- \
        /usr/bin/python3 node_init.py SPEC.json

so it runs in fresh network, mount, UTS, IPC and PID namespaces. It gives the node its own
hostname and its own view of the directories Pacemaker and corosync keep state in, writes
SPEC["ready_file"] and then only reaps orphans. Daemons are started from outside with
nsenter (they end up as its children when nsenter exits).

When this process dies, the kernel kills every process of the node at once (PID namespace
semantics) and the network namespace with its veth goes away: that is the node's power
switch. It dies when killed, when unshare dies (--kill-child) and when the process that
started unshare dies (--pdeathsig), so a crashed test run leaves no node behind.

Only the standard library; runs as /usr/bin/python3 before any daemon of the node.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys


def sh(*cmd):
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)


def setup(spec):
    socket.sethostname(spec["hostname"])
    for m in spec["mounts"]:
        kind, dst = m["kind"], m["dst"]
        if kind == "tmpfs":
            sh("mount", "-t", "tmpfs", "-o", m.get("options", "mode=0755"), "tmpfs", dst)
        elif kind == "bind":
            sh("mount", "--bind", m["src"], dst)
        elif kind == "overlay":
            opts = f"lowerdir={dst},upperdir={m['upper']},workdir={m['work']}"
            sh("mount", "-t", "overlay", "-o", opts, "overlay", dst)
        elif kind == "symlink":
            os.symlink(m["src"], dst)
        elif kind == "mkdir":
            os.makedirs(dst, exist_ok=True)
            os.chmod(dst, int(m.get("mode", "0755"), 8))
        else:
            raise ValueError(f"unknown mount kind {kind!r}")
    # Pacemaker's panic path writes 'b'/'c' to /proc/sysrq-trigger, which is global: inside
    # a node it must not reboot or crash the machine. (reboot(2) itself is safe: in a child
    # PID namespace it only kills this process, i.e. powers the node off.)
    if os.path.exists("/proc/sysrq-trigger"):
        sh("mount", "--bind", "/dev/null", "/proc/sysrq-trigger")


def reap_forever():
    # A PID-namespace init only receives signals it has handlers for; block them and take
    # them synchronously. Nothing is forked after this point, so the mask is not inherited.
    sigs = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    for s in sigs:
        signal.signal(s, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    while True:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        info = signal.sigtimedwait(sigs, 5)
        if info is not None and info.si_signo != signal.SIGCHLD:
            # Power off: everything else in the namespace, then ourselves.
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)
            os._exit(0)


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    try:
        setup(spec)
    except Exception as e:  # the parent reads this from the init log
        print(f"node_init: setup failed: {e!r}", file=sys.stderr, flush=True)
        sys.exit(1)
    tmp = spec["ready_file"] + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(tmp, spec["ready_file"])
    sys.stdout.flush()
    reap_forever()


if __name__ == "__main__":
    main()
