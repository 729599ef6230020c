"""Failback (step 3 of HA Monitor's recovery): the multipath software's own commands.

hamon never fails a path back by itself: it works out *which* command the multipath
software in use needs, for *which* path, shows it, and runs it only when the administrator
confirms. Commands are the vendors' documented ones:

* DMMP: ``multipathd reinstate path sdX`` (multipathd strips a ``/dev/`` prefix, but the
  bare kernel name is what ``multipathd show paths`` prints, so that is what is given);
* HDLM: ``dlnkmgr online -pathid N -s`` (``-s``: no interactive confirmation, since hamon
  asked already).

A path is offered for failback only when the multipath software still has it failed *and*
hamon's own check (TEST UNIT READY through that very path) says it answers: the seed says
to fail back "the path that has been recovered", and failing back a path that still does
not answer would only make the multipath software fail it again, with more I/O errors.

Every command runs with a time bound; a hung multipathd must not hang the recovery.
"""
from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

COMMAND_TIMEOUT = 30.0


class PathView(Protocol):
    """What failback needs to know of a path (``hamon.lib.recovery.observed.PathNow`` fits)."""

    name: str
    os_state: str | None
    os_failed: bool
    path_id: str | None          # the multipath software's own id (HDLM PathID)

    @property
    def answers(self) -> bool: ...


@dataclass(frozen=True)
class Command:
    """One failback command for one path."""

    disk: str
    path: str
    argv: tuple[str, ...]
    why: str

    @property
    def shell(self) -> str:
        return shlex.join(self.argv)

    def as_dict(self) -> dict[str, object]:
        return {"disk": self.disk, "path": self.path, "command": self.shell, "why": self.why}


@dataclass(frozen=True)
class Result:
    command: Command
    ok: bool
    exit_code: int | None
    output: str

    def as_dict(self) -> dict[str, object]:
        return {**self.command.as_dict(), "ok": self.ok, "exit_code": self.exit_code,
                "output": self.output}


def dmmp_reinstate(path: str) -> tuple[str, ...]:
    return ("multipathd", "reinstate", "path", path.rsplit("/", 1)[-1])


def hdlm_online(path_id: str, dlnkmgr: str = "dlnkmgr") -> tuple[str, ...]:
    return (dlnkmgr, "online", "-pathid", path_id, "-s")


@dataclass(frozen=True)
class Assessment:
    """Per path of a multipath disk: fail it back now, fix it first, or nothing to do."""

    commands: tuple[Command, ...]
    not_yet: tuple[str, ...]       # failed and still not answering: step 2 first
    active: tuple[str, ...]        # the multipath software uses it already
    unknown: tuple[str, ...]       # answers, failed, but no command can be built (why)


def assess(disk: str, kind: str, paths: Iterable[PathView],
           dlnkmgr: str = "dlnkmgr") -> Assessment:
    """Which paths of ``disk`` to fail back, and with which command (``kind``: dmmp|hdlm)."""
    commands, not_yet, active, unknown = [], [], [], []
    for p in paths:
        if not p.os_failed:
            if p.answers:
                active.append(p.name)
            else:
                not_yet.append(p.name)
            continue
        if not p.answers:
            not_yet.append(p.name)
            continue
        if kind == "dmmp":
            commands.append(Command(disk, p.name, dmmp_reinstate(p.name),
                                    f"answers again, multipathd has it {p.os_state}"))
        elif kind == "hdlm":
            pid = p.path_id      # as dlnkmgr view -path listed it (multipath/hdlm.py)
            if pid is None:
                unknown.append(f"{p.name}: HDLM PathID unknown; find it with "
                               "dlnkmgr view -path, then dlnkmgr online -pathid N")
            else:
                commands.append(Command(disk, p.name, hdlm_online(pid, dlnkmgr),
                                        f"answers again, HDLM has it {p.os_state}"))
        else:
            unknown.append(f"{p.name}: no multipath software to fail back with ({kind})")
    return Assessment(tuple(commands), tuple(not_yet), tuple(active), tuple(unknown))


#: Replaceable in tests: (argv, timeout) -> CompletedProcess-like (returncode, stdout, stderr).
Executor = Callable[..., "subprocess.CompletedProcess[str]"]


def run(commands: Iterable[Command], timeout: float = COMMAND_TIMEOUT,
        executor: Executor | None = None) -> list[Result]:
    """Run each command, one after the other (failback order is the administrator's
    order), each bounded; a failure is reported and the next still runs."""
    execute = executor or subprocess.run
    results = []
    for c in commands:
        try:
            p = execute(list(c.argv), capture_output=True, text=True, timeout=timeout,
                        check=False)
        except subprocess.TimeoutExpired:
            results.append(Result(c, False, None, f"no answer within {timeout:g} s"))
            continue
        except OSError as err:
            results.append(Result(c, False, None, f"{c.argv[0]}: {err.strerror}"))
            continue
        out = " ".join((p.stdout + " " + p.stderr).split())
        # multipathd answers "fail" with exit 0 in some versions: read the answer too
        ok = p.returncode == 0 and out.strip().lower() not in ("fail", "fail.")
        results.append(Result(c, ok, p.returncode, out))
    return results
