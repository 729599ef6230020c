"""The VM tier's engine: boot a Debian kernel under QEMU TCG and run one scenario in it.

The guest has no disk image of its own. It boots a small busybox initramfs that mounts the
host's root filesystem read-only over 9p under a tmpfs overlay and switches root to
``guest/init.sh``, so everything installed on the host (open-iscsi, multipath-tools, LIO's
configfs tools, sg3-utils, fence-agents, python3, this repository and its .venv) is there
in the guest at the same path. Each run gets:

* a run directory on the host (``workdir``), shared writable over 9p and mounted at
  ``/hamon`` in the guest: ``env`` (written by the host before the boot), ``stdout``,
  ``stderr``, ``status``, ``events``, ``dmesg`` (written by the guest); the scenario's
  working directory, so it can leave further files for the host there;
* one extra raw disk (virtio-blk, ``/dev/vda`` in the guest, serial ``hamon-disk``) that
  the host creates before the boot and reads after QEMU has exited;
* a serial console log (``console.log``) and QEMU's own log (``qemu.log``);
* a QMP socket (in a short temp dir) from which the host learns how the guest ended.

``run()`` always tears QEMU down within ``timeout`` seconds (SIGTERM, then SIGKILL).

Use as a library (``run(...)`` returns a :class:`VMResult`) or by hand::

    python3 tests/system/vm.py [-t SECONDS] [-e NAME=VALUE] [-w DIR] SCENARIO [ARG ...]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GUEST = HERE / "guest"
SCENARIOS = HERE / "scenarios"
CACHE = Path(os.environ.get("HAMON_VM_CACHE", HERE / ".cache"))

QEMU = os.environ.get("HAMON_QEMU", "qemu-system-x86_64")
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
# The kernel's meta package; its dependency names the versioned image package to download.
KERNEL_META = "linux-image-amd64"
# Modules the initramfs loads (with their dependencies, from modules.dep) to reach the host's
# root filesystem: virtio PCI transport, 9p over virtio, overlayfs.
INITRAMFS_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
# Modules the guest init loads once the root is switched (modprobe, from the bind-mounted
# tree). Scenarios can load more with modprobe or name them in HAMON_MODULES.
GUEST_MODULES = (
    "virtio_blk",
    "pvpanic_mmio",
    "sd_mod",
    "sg",
    "dm_mod",
    "dm_multipath",
    "scsi_dh_alua",
    "iscsi_tcp",
    "target_core_mod",
    "target_core_file",
    "iscsi_target_mod",
)
DISK_SIZE = 16 * 1024 * 1024
NINEP_OPTS = "trans=virtio,version=9p2000.L,msize=262144"


class VMError(RuntimeError):
    """The harness itself could not do its job (no QEMU, no kernel package, ...)."""


# --------------------------------------------------------------------------- the kernel


@dataclass(frozen=True)
class Kernel:
    version: str  # e.g. "6.1.0-56-amd64"
    root: Path  # the extracted package
    vmlinuz: Path
    moddir: Path  # <root>/lib/modules/<version>, after depmod -b


@contextlib.contextmanager
def _cache_lock():
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _kernel_package() -> str:
    """The versioned image package to use: $HAMON_VM_KERNEL, else what linux-image-amd64
    depends on in the apt cache, else the newest one already extracted in the cache."""
    want = os.environ.get("HAMON_VM_KERNEL")
    if want:
        return want if want.startswith("linux-image-") else f"linux-image-{want}"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["apt-cache", "depends", KERNEL_META], capture_output=True, text=True, timeout=60
        ).stdout
        m = re.search(r"Depends:\s*(linux-image-\S+-amd64)\b", out)
        if m:
            return m.group(1)
    done = sorted((CACHE / "kernel").glob("*/.complete"))
    if done:
        return "linux-image-" + done[-1].parent.name
    raise VMError(
        f"cannot tell which kernel to boot: `apt-cache depends {KERNEL_META}` names none "
        "(run apt-get update) and none is cached; or set HAMON_VM_KERNEL=6.1.0-NN-amd64"
    )


def kernel() -> Kernel:
    """Download (apt-get download), extract (dpkg-deb -x) and depmod -b the guest kernel,
    once; cached under tests/system/.cache/kernel/<version>/."""
    pkg = _kernel_package()
    version = pkg.removeprefix("linux-image-")
    root = CACHE / "kernel" / version
    with _cache_lock():
        if not (root / ".complete").exists():
            debs = CACHE / "debs"
            debs.mkdir(parents=True, exist_ok=True)
            found = sorted(debs.glob(f"{pkg}_*.deb"))
            if not found:
                r = subprocess.run(
                    ["apt-get", "download", "-q", pkg],
                    cwd=debs,
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                found = sorted(debs.glob(f"{pkg}_*.deb"))
                if r.returncode != 0 or not found:
                    raise VMError(f"apt-get download {pkg} failed:\n{r.stdout}{r.stderr}")
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(root)], check=True)
            # bookworm ships /lib/modules; later releases /usr/lib/modules.
            if not (root / "lib/modules" / version).is_dir():
                (root / "lib").mkdir(exist_ok=True)
                (root / "lib/modules").symlink_to("../usr/lib/modules")
            subprocess.run(["depmod", "-b", str(root), version], check=True)
            (root / ".complete").write_text(found[-1].name + "\n")
            # Keep one kernel: drop other versions' trees, packages and initramfs images.
            for other in (CACHE / "kernel").iterdir():
                if other != root:
                    shutil.rmtree(other, ignore_errors=True)
            for deb in debs.glob("linux-image-*.deb"):
                if deb != found[-1]:
                    deb.unlink(missing_ok=True)
            for rd in CACHE.glob("initramfs-*.cpio"):
                if not rd.name.startswith(f"initramfs-{version}-"):
                    rd.unlink(missing_ok=True)
    k = Kernel(
        version,
        root,
        root / "boot" / f"vmlinuz-{version}",
        (root / "lib/modules" / version).resolve(),
    )
    if not k.vmlinuz.exists():
        raise VMError(f"{k.vmlinuz} missing; remove {root} and retry")
    return k


# ------------------------------------------------------------------------- the initramfs


def _module_closure(moddir: Path, names) -> list[str]:
    """Paths (relative to moddir) of `names` and their dependencies, in load order."""
    deps: dict[str, list[str]] = {}
    byname: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        byname[Path(path).name.split(".ko")[0].replace("-", "_")] = path
    builtin = {
        Path(p).name.split(".ko")[0].replace("-", "_")
        for p in (moddir / "modules.builtin").read_text().split()
    }
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for d in deps[path]:
            visit(d)
        order.append(path)

    for n in names:
        n = n.replace("-", "_")
        if n in builtin:
            continue
        if n not in byname:
            raise VMError(f"module {n} not found in {moddir}/modules.dep")
        visit(byname[n])
    return order


def _cpio_newc(entries) -> bytes:
    """A newc cpio archive from (name, mode, data, rdev_major, rdev_minor) entries.
    Written here so that device nodes need no root and the result is reproducible."""
    out = bytearray()
    for ino, (name, mode, data, major, minor) in enumerate(
        [*entries, ("TRAILER!!!", 0, b"", 0, 0)], start=1
    ):
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(
            f"{v:08x}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, major, minor, len(nb), 0)
        )
        out += hdr.encode() + nb
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def _busybox() -> Path:
    for c in BUSYBOX_CANDIDATES:
        p = Path(c)
        if p.exists():
            return p
    raise VMError("busybox not found: apt-get install busybox-static (tools/bootstrap system)")


def initramfs(k: Kernel) -> Path:
    """Build (or reuse) the initramfs for kernel `k`; rebuilt when its inputs change."""
    bb = _busybox()
    init = (GUEST / "initramfs-init").read_bytes()
    mods = _module_closure(k.moddir, INITRAMFS_MODULES)
    h = hashlib.sha256()
    h.update(init)
    h.update(bb.read_bytes())
    h.update(k.version.encode())
    h.update("\n".join(mods).encode())
    h.update(Path(__file__).read_bytes())  # the builder itself
    out = CACHE / f"initramfs-{k.version}-{h.hexdigest()[:16]}.cpio"
    with _cache_lock():
        if out.exists():
            return out
        d, f, c = stat.S_IFDIR | 0o755, stat.S_IFREG, stat.S_IFCHR | 0o600
        entries = [
            (n, d, b"", 0, 0)
            for n in ("bin", "dev", "proc", "sys", "mnt", "newroot", "lib", "lib/modules")
        ]
        entries += [("dev/console", c, b"", 5, 1), ("dev/null", stat.S_IFCHR | 0o666, b"", 1, 3)]
        entries.append(("bin/busybox", f | 0o755, bb.read_bytes(), 0, 0))
        entries.append(("init", f | 0o755, init, 0, 0))
        names = []
        for m in mods:
            names.append(Path(m).name)
            entries.append(
                (f"lib/modules/{Path(m).name}", f | 0o644, (k.moddir / m).read_bytes(), 0, 0)
            )
        entries.append(("lib/modules/order", f | 0o644, ("\n".join(names) + "\n").encode(), 0, 0))
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(_cpio_newc(entries))
        tmp.rename(out)
        for old in CACHE.glob(f"initramfs-{k.version}-*.cpio"):
            if old != out:
                old.unlink(missing_ok=True)
    return out


# ------------------------------------------------------------------------------- a run


@dataclass
class VMResult:
    """What one boot produced. `how` is one of:

    poweroff  the guest powered off (normally the harness's own poweroff after the
              scenario: then `harness_poweroff` is True and `status` is set)
    reboot    the guest reset itself (reboot -f, sysrq b, a triple fault); -no-reboot
              turns a reset into QEMU's exit
    panic     a kernel panic (pvpanic, or "Kernel panic" on the console and a reset)
    timeout   the host killed QEMU after `timeout` seconds
    crash     QEMU exited on its own with an error and no guest shutdown event
    """

    status: int | None  # the scenario's exit status; None if it never finished
    stdout: str
    stderr: str
    console: str
    how: str
    exited_by_itself: bool  # False only when the host had to kill QEMU
    harness_poweroff: bool  # the guest init reached its own poweroff after the scenario
    disk: bytes  # the extra disk's bytes after QEMU exited
    qemu_returncode: int | None
    shutdown_reason: str | None  # QMP SHUTDOWN reason, e.g. guest-shutdown, guest-reset
    events: list[tuple[str, float, float | None]]  # (name, host seconds, guest uptime)
    seconds: float  # QEMU start to QEMU gone
    workdir: Path  # run directory: console.log, qemu.log, disk.img, guest files
    dmesg: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def event(self, name: str) -> tuple[float, float | None] | None:
        for n, host, guest in self.events:
            if n == name:
                return host, guest
        return None

    def file(self, name: str) -> str:
        """A file the scenario left in its working directory (/hamon in the guest)."""
        return (self.workdir / "share" / name).read_text(errors="replace")

    def summary(self) -> str:
        tail = "\n".join(self.console.splitlines()[-40:])
        t = ", ".join(f"{k}={v:.1f}s" for k, v in self.timings.items())
        return (
            f"how={self.how} status={self.status} harness_poweroff={self.harness_poweroff} "
            f"qemu_rc={self.qemu_returncode} reason={self.shutdown_reason} {t}\n"
            f"workdir: {self.workdir}\n"
            f"--- stdout (tail)\n{self.stdout[-3000:]}\n--- stderr (tail)\n{self.stderr[-3000:]}"
            f"\n--- console (tail)\n{tail}"
        )

    def check(self) -> VMResult:
        """Raise AssertionError (with the useful logs) unless the scenario exited 0 and the
        guest powered off through the harness."""
        if not (self.status == 0 and self.harness_poweroff and self.how == "poweroff"):
            raise AssertionError("scenario failed\n" + self.summary())
        return self


class _QMP(threading.Thread):
    """Collect QMP events (SHUTDOWN's reason tells poweroff from reset from panic)."""

    def __init__(self, path: Path, t0: float):
        super().__init__(daemon=True)
        self.path, self.t0 = path, t0
        self.events: list[tuple[float, dict]] = []
        self.connected = threading.Event()
        self._sock: socket.socket | None = None

    def run(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        for _ in range(300):
            try:
                s.connect(str(self.path))
                break
            except OSError:
                time.sleep(0.05)
        else:
            return
        self._sock = s
        f = s.makefile("rwb", buffering=0)
        try:
            f.readline()  # greeting
            f.write(b'{"execute": "qmp_capabilities"}\n')
            self.connected.set()
            for line in f:
                with contextlib.suppress(ValueError):
                    msg = json.loads(line)
                    if "event" in msg:
                        self.events.append((time.monotonic() - self.t0, msg))
        except OSError:
            pass

    def shutdown_reason(self) -> str | None:
        for _, e in self.events:
            if e["event"] == "SHUTDOWN":
                return e.get("data", {}).get("reason")
        return None

    def panicked(self) -> bool:
        return any(e["event"] == "GUEST_PANICKED" for _, e in self.events)


def _write_env(path: Path, env: dict[str, str]) -> None:
    lines = [f"export {k}={shlex.quote(str(v))}" for k, v in env.items()]
    path.write_text("\n".join(lines) + "\n")


def _read_events(path: Path) -> list[tuple[str, float | None]]:
    out = []
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if parts:
                up = None
                with contextlib.suppress(IndexError, ValueError):
                    up = float(parts[1])
                out.append((parts[0], up))
    return out


def run(
    scenario: str | os.PathLike,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    workdir: str | os.PathLike | None = None,
    disk: bytes | str | os.PathLike | None = None,
    disk_size: int = DISK_SIZE,
    memory_mb: int = 1024,
    cpus: int = 2,
    cmdline: str = "",
) -> VMResult:
    """Boot a fresh VM, run `scenario` (a file; run directly if executable, else with
    /bin/sh) with `args` and `env` in it, and return what happened.

    disk: initial contents of the extra disk (bytes, or a path to an image to copy, e.g. the
    `workdir/disk.img` of an earlier run); default `disk_size` zero bytes.
    """
    if shutil.which(QEMU) is None:
        raise VMError(
            f"{QEMU} not found: the VM tier needs QEMU; run `tools/bootstrap system` "
            "(installs tools/apt/system.txt)"
        )
    scenario = Path(scenario).resolve()
    if not scenario.is_file():
        raise VMError(f"no scenario file {scenario}")
    k = kernel()
    rd = initramfs(k)

    wd = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="hamon-vm-"))
    wd.mkdir(parents=True, exist_ok=True)
    share = wd / "share"
    if share.exists():
        shutil.rmtree(share)
    share.mkdir()
    img = wd / "disk.img"
    if isinstance(disk, bytes):
        img.write_bytes(disk)
        if len(disk) < disk_size:
            os.truncate(img, disk_size)
    elif disk is not None:
        if Path(disk).resolve() != img.resolve():
            shutil.copyfile(disk, img)
    else:
        img.write_bytes(b"")
        os.truncate(img, disk_size)
    console, qemulog = wd / "console.log", wd / "qemu.log"
    for p in (console, qemulog):
        p.unlink(missing_ok=True)
    # A unix socket path must stay short (108 bytes): not under a deep workdir.
    sockdir = Path(tempfile.mkdtemp(prefix="hvm-"))
    qmp_path = sockdir / "qmp"

    genv = {
        "HAMON_KVER": k.version,
        "HAMON_KMOD_DIR": str(k.moddir),
        "HAMON_REPO": str(REPO),
        "HAMON_GUEST": str(GUEST),
        "HAMON_SCENARIO": str(scenario),
        "HAMON_ARGS": shlex.join(args),
        "HAMON_DISK": "/dev/vda",
        "HAMON_MODULES_BASE": " ".join(GUEST_MODULES),
    }
    genv.update(env or {})
    _write_env(share / "env", genv)

    append = " ".join(
        [
            "console=ttyS0,115200",
            "panic=1",
            "rdinit=/init",
            "loglevel=6",
            "mitigations=off",
            "random.trust_cpu=on",
            "net.ifnames=0",
            f"hamon.init={GUEST / 'init.sh'}",
            cmdline,
        ]
    ).strip()
    argv = [
        QEMU,
        "-accel",
        "tcg",
        "-nodefaults",
        "-no-user-config",
        "-no-reboot",
        "-machine",
        "pc",
        "-cpu",
        "max",
        "-smp",
        str(cpus),
        "-m",
        str(memory_mb),
        "-display",
        "none",
        "-vga",
        "none",
        "-net",
        "none",
        "-kernel",
        str(k.vmlinuz),
        "-initrd",
        str(rd),
        "-append",
        append,
        "-serial",
        f"file:{console}",
        "-qmp",
        f"unix:{qmp_path},server=on,wait=off",
        "-device",
        "pvpanic",
        "-action",
        "panic=shutdown",
        "-virtfs",
        "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs",
        f"local,path={share},mount_tag=hamonrun,security_model=none,multidevs=remap",
        "-drive",
        f"file={img},format=raw,if=none,id=hd0,cache=writeback",
        "-device",
        "virtio-blk-pci,drive=hd0,serial=hamon-disk",
    ]

    t0 = time.monotonic()
    seen: dict[str, float] = {}
    timed_out = False
    with open(qemulog, "wb") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        qmp = _QMP(qmp_path, t0)
        qmp.start()
        try:
            while True:
                try:
                    proc.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic() - t0
                for name, _ in _read_events(share / "events"):
                    seen.setdefault(name, now)
                if now > timeout:
                    timed_out = True
                    break
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
    seconds = time.monotonic() - t0
    qmp.join(timeout=2)
    shutil.rmtree(sockdir, ignore_errors=True)

    def text(p: Path) -> str:
        try:
            return p.read_text(errors="replace")
        except OSError:
            return ""

    con = text(console)
    events = []
    for name, up in _read_events(share / "events"):
        events.append((name, seen.get(name, seconds), up))
    status = None
    st = text(share / "status").strip()
    if st.lstrip("-").isdigit():
        status = int(st)
    reason = qmp.shutdown_reason()
    harness = any(n == "harness-poweroff" for n, _, _ in events)
    if timed_out:
        how = "timeout"
    elif reason == "guest-panic" or qmp.panicked() or "Kernel panic - not syncing" in con:
        how = "panic"
    elif reason == "guest-shutdown":
        how = "poweroff"
    elif reason == "guest-reset":
        how = "reboot"
    else:
        how = "crash"
    res = VMResult(
        status=status,
        stdout=text(share / "stdout"),
        stderr=text(share / "stderr"),
        console=con,
        how=how,
        exited_by_itself=not timed_out,
        harness_poweroff=harness,
        disk=img.read_bytes(),
        qemu_returncode=proc.returncode,
        shutdown_reason=reason,
        events=events,
        seconds=seconds,
        workdir=wd,
        dmesg=text(share / "dmesg"),
    )
    res.timings["total"] = seconds
    start = res.event("scenario-start")
    if start:
        res.timings["boot_host"] = start[0]  # QEMU start -> scenario start, host clock
        if start[1] is not None:
            res.timings["boot_guest_uptime"] = start[1]
    end = res.event("scenario-end")
    if start and end and start[1] is not None and end[1] is not None:
        res.timings["scenario"] = end[1] - start[1]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run one scenario in a fresh hamon test VM.")
    ap.add_argument("scenario")
    ap.add_argument("args", nargs="*")
    ap.add_argument("-t", "--timeout", type=float, default=600)
    ap.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("-w", "--workdir", help="run directory (kept); default a new temp dir")
    ap.add_argument("--disk", help="initial image for the extra disk")
    ns = ap.parse_args(argv)
    env = dict(e.split("=", 1) for e in ns.env)
    r = run(ns.scenario, *ns.args, env=env, timeout=ns.timeout, workdir=ns.workdir, disk=ns.disk)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    print(
        f"\n[vm] how={r.how} status={r.status} harness_poweroff={r.harness_poweroff} "
        f"reason={r.shutdown_reason}",
        file=sys.stderr,
    )
    for name, host, up in r.events:
        print(f"[vm] event {name:24s} host {host:7.1f}s  guest uptime {up}", file=sys.stderr)
    print(f"[vm] workdir {r.workdir} (console.log, qemu.log, disk.img, share/)", file=sys.stderr)
    return r.status if r.status is not None else 125


if __name__ == "__main__":
    sys.exit(main())
