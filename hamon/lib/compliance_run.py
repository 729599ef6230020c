"""``hamon check-disk``'s runner: the commands, in order, through two nexuses of this node.

Nexus A is this node (every path hamon would register through); nexus B is "someone
else": a second I_T nexus that plays the other node. For ``iscsi://`` disks B is a second
initiator identity on the first path (this node's initiator name with ``.check``
appended, or ``second_initiator``); A logs in with its own ISID role ``check`` so that it
never reinstates (closes) a live agent's session on targets that do so (LIO). For
``/dev`` disks A is every path of the map but the last and B the last path: both are
this node's initiator, so a target that decides write access per initiator rather than
per I_T nexus (LIO) lets B write; that row is then *unproven*, not failed.

What it changes and how it restores it: only the check's own keys (``KEY_A``/``KEY_B``,
see :mod:`hamon.lib.compliance`) are registered, the only reservation is the check's own,
and the finally-block unregisters every nexus it used (REGISTER AND IGNORE EXISTING KEY
with key 0, APTPL off), then removes what is left of its keys (CLEAR when no other key is
registered, PREEMPT otherwise), then reads the LUN again to say whether it is restored.
The one write goes to one block (``lba``, default 0) and carries the bytes just read from
that block: user data is never changed (the block is compared again at the end).

Read-only mode sends TEST UNIT READY, INQUIRY and PERSISTENT RESERVE IN only.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hamon.lib.compliance import (
    CHECK_KEYS,
    KEY_A,
    KEY_B,
    NEEDS_TWO_NEXUSES,
    OPS_BY_ID,
    Judgement,
    Observation,
    Outcome,
    Verdict,
    decide,
    expected_write,
)
from hamon.lib.disk import Disk, DiskKind
from hamon.lib.scsi import command
from hamon.lib.scsi import pr as prm
from hamon.lib.scsi.errors import IllegalRequest, ReservationConflict, ScsiError
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.pr import ReservationType
from hamon.lib.transport.base import PathError, Transport

#: ISID role of the check's own sessions (see hamon.lib.transport.iscsi.derive_isid).
ISCSI_ROLE = "check"
SECOND_INITIATOR_SUFFIX = ".check"
READ_CAPACITY_10 = 0x25


class Refused(Exception):
    """The check will not run on this disk (registrations held, one nexus): why and fix."""


@dataclass
class Nexus:
    """One I_T nexus the check sends through; ``name`` is what the table calls it."""

    name: str
    transport: Transport


@dataclass
class Setup:
    disk: str
    a: list[Nexus]
    b: Nexus | None
    same_initiator: bool
    wwid: str | None = None

    def everyone(self) -> list[Nexus]:
        return self.a + ([self.b] if self.b else [])

    def close(self) -> None:
        for n in self.everyone():
            with contextlib.suppress(Exception):  # closing is best effort
                n.transport.close()


@dataclass
class DiskReport:
    disk: str
    nexuses: list[str]
    judgement: Judgement | None = None
    refused: str = ""
    restored: bool | None = None  # None: nothing was changed
    restore_detail: str = ""
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """What the administrator must read on stderr: a refusal, a failed restore."""
        out = [self.refused] if self.refused else []
        if self.restored is False:
            out.append(f"{self.disk}: NOT restored: {self.restore_detail}")
        return out

    def failed(self, read_only: bool) -> bool:
        """Exit 1: unfit, not restored, a path without answer, or (default mode) not
        shown to work. Read-only mode is incomplete by design; that alone is no failure."""
        j = self.judgement
        if self.restored is False or (j is None and not self.refused):
            return True
        if j is None:
            return False
        if j.verdict is Verdict.UNFIT or any(r.outcome is Outcome.NO_ANSWER for r in j.rows):
            return True
        return j.verdict is Verdict.INCOMPLETE and not read_only

    def as_dict(self) -> dict[str, Any]:
        j = self.judgement
        return {"disk": self.disk, "nexuses": self.nexuses,
                "verdict": str(j.verdict) if j else None, "why": j.why if j else None,
                "refused": self.refused or None, "restored": self.restored,
                "restore_detail": self.restore_detail or None,
                "before": self.before, "after": self.after,
                "rows": [r.as_dict() for r in j.rows] if j else []}


# -- building the two nexuses ---------------------------------------------------------
def setup_for(disk: Disk, *, initiator: str | None, second_initiator: str | None,
              timeout: float,
              iscsi_opener: Callable[[str, str, str, float], Transport] | None = None,
              ) -> Setup:
    """Nexus A and B for one resolved disk (its paths are not opened yet)."""
    if disk.kind is DiskKind.ISCSI:
        if not initiator:
            raise Refused(f"{disk.name}: an iSCSI initiator name is needed (--initiator)")
        second = second_initiator or initiator + SECOND_INITIATOR_SUFFIX
        opener = iscsi_opener or _open_iscsi
        a = [Nexus(f"{p.name} ({initiator})", opener(p.name, initiator, ISCSI_ROLE, timeout))
             for p in disk.paths]
        first = disk.paths[0].name
        b = Nexus(f"{first} ({second})", opener(first, second, ISCSI_ROLE, timeout))
        return Setup(disk.name, a, b, same_initiator=False, wwid=disk.wwid)
    nexuses = [Nexus(p.name, p.transport()) for p in disk.paths]
    if len(nexuses) < 2:
        return Setup(disk.name, nexuses, None, same_initiator=True, wwid=disk.wwid)
    return Setup(disk.name, nexuses[:-1], nexuses[-1], same_initiator=True, wwid=disk.wwid)


def _open_iscsi(url: str, initiator: str, role: str, timeout: float) -> Transport:
    from hamon.lib.transport.iscsi import IscsiTransport
    return IscsiTransport(path=url, initiator=initiator, role=role, timeout=timeout)


# -- the run ----------------------------------------------------------------------------
def _hex(keys: tuple[int, ...] | list[int]) -> str:
    return ", ".join(prm.format_key(k) for k in keys) or "none"


def _state(t: Transport) -> dict[str, Any]:
    k = command.read_keys(t)
    r = command.read_reservation(t)
    return {"generation": k.generation, "keys": [prm.format_key(x) for x in k.keys],
            "reservation": None if not r.held else
            {"key": prm.format_key(r.key or 0), "type": r.type.short if r.type else None}}


def block_size(t: Transport) -> int:
    """READ CAPACITY(10)'s block length; 512 where the command is refused."""
    try:
        data = command.run(t, bytes([READ_CAPACITY_10]) + bytes(9), data_in_len=8,
                           what=f"{t.path}: READ CAPACITY(10)").data
    except IllegalRequest:
        return 512
    size = int.from_bytes(data[4:8], "big") if len(data) >= 8 else 0
    return size if 512 <= size <= 65536 else 512


class _Run:
    """One disk's check; ``obs`` collects what was seen, op by op."""

    def __init__(self, s: Setup, rtype: ReservationType, lba: int) -> None:
        self.s, self.rtype, self.lba = s, rtype, lba
        self.obs: dict[str, Observation] = {}
        self.a0 = s.a[0].transport
        self.changed = False

    def see(self, op: str, outcome: Outcome, detail: str = "", **kw: bool) -> None:
        assert op in OPS_BY_ID, op
        self.obs[op] = Observation(op, outcome, detail, **kw)

    def probe(self, op: str, fn: Callable[[], str]) -> bool:
        """Run ``fn``: its string is SUPPORTED's detail; a refusal, a conflict or no
        answer is recorded as such. True when supported."""
        try:
            detail = fn()
        except _Wrong as w:
            self.see(op, Outcome.WRONG, str(w), caveat=w.caveat, unproven=w.unproven)
            return False
        except IllegalRequest as err:
            self.see(op, Outcome.REFUSED, _sense(err))
            return False
        except ReservationConflict:
            self.see(op, Outcome.WRONG, "RESERVATION CONFLICT")
            return False
        except ScsiError as err:
            self.see(op, Outcome.REFUSED, str(err).split(": ")[-1])
            return False
        except prm.ResponseError as err:
            self.see(op, Outcome.WRONG, f"malformed answer: {err}")
            return False
        except PathError as err:
            self.see(op, Outcome.NO_ANSWER, f"{err.path}: {err.reason}")
            raise
        self.see(op, Outcome.SUPPORTED, detail)
        return True

    # -- read-only part ---------------------------------------------------------------
    def reads(self) -> prm.Keys:
        every = self.s.everyone()

        def tur() -> str:
            for n in every:
                command.test_unit_ready(n.transport)
            return f"{len(every)} nexuses"
        self.probe("tur", tur)

        def ident() -> str:
            ids = {n.name: command.lun_identity(n.transport) for n in every}
            if len(set(ids.values())) != 1:
                raise _Wrong("nexuses lead to different LUNs: " + ", ".join(
                    f"{k}={v}" for k, v in ids.items()))
            return next(iter(ids.values())) or "no identity"
        if not self.probe("identity", ident):
            raise _Stop("the nexuses do not show one LUN; nothing was sent to change it")

        def caps() -> str:
            c = command.report_capabilities(self.a0)
            types = ",".join(sorted(t.short for t in c.types)) if c.type_mask_valid else "?"
            return (f"types {types}; ALL_TG_PT_C={int(c.all_tg_pt_capable)} "
                    f"PTPL_C={int(c.ptpl_capable)} PTPL_A={int(c.ptpl_active)}")
        self.probe("report_capabilities", caps)
        got: list[prm.Keys] = []

        def read_keys() -> str:
            got.append(command.read_keys(self.a0))
            return f"generation {got[0].generation}, keys {_hex(got[0].keys)}"
        if not self.probe("read_keys", read_keys):
            raise _Stop("READ KEYS is not answered: nothing was sent to change the disk")
        self.probe("read_reservation", lambda: _res_text(command.read_reservation(self.a0)))

        def full() -> str:
            fs = command.read_full_status(self.a0)
            return f"{len(fs.entries)} registrations with initiator names"
        self.probe("read_full_status", full)
        return got[0]

    # -- the full check ---------------------------------------------------------------
    def full(self) -> None:
        s, a0, rt = self.s, self.a0, self.rtype
        b = s.b.transport if s.b else None
        assert b is not None
        self.changed = True

        def register() -> str:
            for n in s.a:
                command.pr_out(n.transport, Out.REGISTER, 0, KEY_A)
            return f"{len(s.a)} nexuses registered {prm.format_key(KEY_A)}"
        if not self.probe("register", register):
            return

        def every_path() -> str:
            counts = {n.name: command.read_keys(n.transport).keys.count(KEY_A)
                      for n in s.everyone()}
            text = ", ".join(f"{k}: {v}" for k, v in counts.items())
            if not all(counts.values()):
                raise _Wrong(f"key not seen through every nexus ({text})")
            if set(counts.values()) != {len(s.a)}:
                raise _Wrong(f"{len(s.a)} registrations expected, seen {text}: the target "
                             "counts registrations per initiator", caveat=True)
            return f"{len(s.a)} registration(s) seen through each of {len(counts)} nexuses"
        self.probe("register_every_path", every_path)

        def reserve() -> str:
            command.pr_out(a0, Out.RESERVE, KEY_A, 0, rt)
            r = command.read_reservation(b)
            want = 0 if rt.all_registrants else KEY_A
            if r.type is not rt or r.key != want:
                raise _Wrong(f"RESERVE answered GOOD, but the other nexus reads {_res_text(r)}")
            return f"{rt.short} by {prm.format_key(KEY_A)}, read back through the other nexus"
        if not self.probe("reserve", reserve):
            return

        bs = block_size(a0)
        original = command.read_block(a0, self.lba, bs)
        if len(original) != bs:
            raise _Stop(f"READ(10) of LBA {self.lba} returned {len(original)} of {bs} bytes")

        def write(t: Transport, op: str, allowed: bool, why: str, **kw: bool) -> None:
            def fn() -> str:
                try:
                    command.write_block(t, self.lba, original)
                except ReservationConflict:
                    if allowed:
                        raise _Wrong(f"RESERVATION CONFLICT, but {why} may write") from None
                    return "RESERVATION CONFLICT"
                if not allowed:
                    raise _Wrong(f"GOOD: the write was accepted ({why})", **kw)
                return f"GOOD (LBA {self.lba}, its own bytes)"
            self.probe(op, fn)

        same = s.same_initiator
        write(b, "write_non_registrant", False,
              "an unregistered nexus" + (" of this node's own initiator: the target decides "
                                         "per initiator, not per I_T nexus; a write from "
                                         "another node was not tested" if same else ""),
              unproven=same)
        write(a0, "write_holder", True, "the holder")

        def riek() -> str:
            command.pr_out(b, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, KEY_B)
            command.pr_out(a0, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, KEY_A)
            keys = command.read_keys(b).keys
            if KEY_B not in keys or keys.count(KEY_A) > len(s.a):
                raise _Wrong(f"keys read back: {_hex(keys)}")
            return "new registration, and an existing one replaced in place"
        self.probe("register_ignore", riek)
        write(b, "write_registrant",
              expected_write(rt, registered=True, holder=False), f"a registrant under {rt.short}")

        def preempt(action: Out, op: str) -> bool:
            def fn() -> str:
                command.pr_out(a0, action, KEY_A, KEY_B, rt)
                keys = command.read_keys(a0).keys
                r = command.read_reservation(a0)
                if KEY_B in keys:
                    raise _Wrong(f"GOOD, but {prm.format_key(KEY_B)} is still registered")
                if not r.held:
                    raise _Wrong("GOOD, but the preempting holder lost its reservation")
                return f"{prm.format_key(KEY_B)} removed; reservation kept"
            ok = self.probe(op, fn)
            if ok:
                self._after_preempt(b)
            return ok

        preempt(Out.PREEMPT_AND_ABORT, "preempt_and_abort")

        def re_register() -> None:
            command.pr_out(b, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, KEY_B)
        re_register()
        preempt(Out.PREEMPT, "preempt")

        def release() -> str:
            command.pr_out(a0, Out.RELEASE, KEY_A, 0, rt)
            r = command.read_reservation(b)
            if r.held:
                raise _Wrong(f"GOOD, but the other nexus reads {_res_text(r)}")
            return "no reservation, read through the other nexus"
        self.probe("release", release)

        def aptpl() -> str:
            command.pr_out(a0, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, KEY_A, aptpl=True)
            try:
                c = command.report_capabilities(a0)
            except ScsiError:
                return "accepted (REPORT CAPABILITIES cannot confirm it)"
            finally:
                command.pr_out(a0, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, KEY_A)
            if not c.ptpl_active:
                raise _Wrong("accepted, but REPORT CAPABILITIES shows PTPL_A=0: persistence "
                             "not confirmed", caveat=True)
            return "accepted, PTPL_A=1 (set back to 0)"
        self.probe("aptpl", aptpl)

        def all_tg_pt() -> str:
            command.pr_out(b, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, KEY_B, all_tg_pt=True)
            n = command.read_keys(a0).keys.count(KEY_B)
            if not n:
                raise _Wrong("accepted, but the key is not registered")
            return f"{n} registration(s) of {prm.format_key(KEY_B)}"
        self.probe("all_tg_pt", all_tg_pt)

        def clear() -> str:
            others = [k for k in command.read_keys(a0).keys if k not in CHECK_KEYS]
            if others:
                raise _NotTested(f"other keys registered ({_hex(others)}): CLEAR would "
                                 "remove them")
            command.pr_out(a0, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, KEY_A)
            command.pr_out(a0, Out.CLEAR, KEY_A, 0)
            keys, r = command.read_keys(b), command.read_reservation(b)
            if keys.keys or r.held:
                raise _Wrong(f"GOOD, but the other nexus reads keys {_hex(keys.keys)}, "
                             f"{_res_text(r)}")
            return "no keys, no reservation, read through the other nexus"
        try:
            self.probe("clear", clear)
        except _NotTested as nt:
            self.see("clear", Outcome.NOT_TESTED, str(nt))

        after = command.read_block(a0, self.lba, bs)
        if after != original:
            raise _Stop(f"LBA {self.lba} changed during the check: someone else writes "
                        "this disk; run check-disk only on a disk nothing uses")

    def _after_preempt(self, b: Transport) -> None:
        """The unit attention the preempted nexus gets, then its write refused."""
        if "unit_attention" not in self.obs:
            def ua() -> str:
                a = command.test_unit_ready(b)
                seen = [(u.asc, u.ascq) for u in a.unit_attentions]
                text = ", ".join(str(u.sense) for u in a.unit_attentions) or "none"
                if (0x2A, 0x05) in seen:
                    return text
                raise _Wrong(f"{text} (SPC-4: 2A/05 REGISTRATIONS PREEMPTED)")
            self.probe("unit_attention", ua)
        if "write_preempted" not in self.obs:
            def fn() -> str:
                data = command.read_block(self.a0, self.lba, block_size(self.a0))
                try:
                    command.write_block(b, self.lba, data)
                except ReservationConflict:
                    return "RESERVATION CONFLICT"
                raise _Wrong("GOOD: the preempted nexus still writes"
                             + (" (both nexuses are this node's initiator)"
                                if self.s.same_initiator else ""),
                             unproven=self.s.same_initiator)
            self.probe("write_preempted", fn)

    # -- restore ----------------------------------------------------------------------
    def restore(self) -> tuple[bool, str]:
        """Leave no key of ours and no reservation of ours; say what the LUN shows."""
        errors = []
        for n in self.s.everyone():
            try:
                command.pr_out(n.transport, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0)
            except (ScsiError, PathError) as err:
                errors.append(str(err))
        try:
            keys = command.read_keys(self.a0).keys
            ours = [k for k in keys if k in CHECK_KEYS]
            if ours:  # registrations of ours on nexuses we have no session on (ALL_TG_PT)
                command.pr_out(self.a0, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, KEY_A)
                if all(k in CHECK_KEYS for k in keys):
                    command.pr_out(self.a0, Out.CLEAR, KEY_A, 0)
                else:
                    for k in set(ours) - {KEY_A}:
                        command.pr_out(self.a0, Out.PREEMPT, KEY_A, k, self.rtype)
                    command.pr_out(self.a0, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0)
            left = command.read_keys(self.a0).keys
            r = command.read_reservation(self.a0)
        except (ScsiError, PathError) as err:
            return False, f"could not restore: {err}; " + "; ".join(errors)
        bad = [k for k in left if k in CHECK_KEYS]
        if bad or (r.held and r.key in CHECK_KEYS):
            return False, (f"left behind: keys {_hex(bad)}, {_res_text(r)}; remove them with "
                           "`hamon check-disk --force` again or sg_persist --out --clear")
        return True, f"no key of the check, no reservation of it (keys now: {_hex(left)})"


class _Wrong(Exception):
    def __init__(self, text: str, caveat: bool = False, unproven: bool = False) -> None:
        super().__init__(text)
        self.caveat, self.unproven = caveat, unproven


class _NotTested(Exception):
    pass


class _Stop(Exception):
    """The check cannot go on safely on this disk; the text says why."""


def _sense(err: ScsiError) -> str:
    return str(err.sense) if err.sense else str(err).split(": ")[-1]


def _res_text(r: prm.Reservation) -> str:
    if not r.held:
        return "no reservation"
    return f"{r.type.short if r.type else '?'} held by {prm.format_key(r.key or 0)}"


def check(s: Setup, rtype: ReservationType = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
          *, read_only: bool = False, force: bool = False, lba: int = 0) -> DiskReport:
    """Check one disk; never raises for what the target answers (it is in the report)."""
    rep = DiskReport(s.disk, [n.name for n in s.everyone()])
    run = _Run(s, rtype, lba)
    try:
        keys = run.reads()
        rep.before = _state(run.a0)
        if read_only:
            rep.judgement = decide(run.obs, read_only=True)
            rep.after = _state(run.a0)
            return rep
        res = command.read_reservation(run.a0)
        foreign = [k for k in keys.keys if k not in CHECK_KEYS]
        if s.b is None:
            raise Refused(
                f"{s.disk}: only one I_T nexus (one path): "
                + ", ".join(OPS_BY_ID[o].label for o in NEEDS_TWO_NEXUSES)
                + " cannot be tested. Give the multipath map (/dev/mapper/NAME) or the "
                "disk's iscsi:// URLs, or check what one path can show with --read-only")
        if (keys.keys or res.held) and not force:
            leftover = keys.keys and not foreign
            raise Refused(
                f"{s.disk}: holds registrations ({_hex(keys.keys)}) or a reservation "
                f"({_res_text(res)}): check-disk never disturbs a disk in use. "
                + ("These are check-disk's own keys, left by an interrupted run: "
                   "--force removes them" if leftover else
                   "Stop the cluster's use of it first, or --force if they are stale"))
        ours = res.key in CHECK_KEYS or bool(res.type and res.type.all_registrants
                                             and keys.keys and not foreign)
        if res.held and not ours:
            raise Refused(f"{s.disk}: {_res_text(res)}, a key not of the check; even with "
                          "--force the check does not preempt it. Release it first "
                          "(hamon reservation cancel)")
        try:
            if any(k in CHECK_KEYS for k in keys.keys):
                run.changed = True
                ok, detail = run.restore()
                if not ok:
                    raise _Stop(f"the earlier run's keys could not be removed: {detail}")
            run.full()
        finally:
            if run.changed:
                rep.restored, rep.restore_detail = run.restore()
        rep.judgement = decide(run.obs)
        rep.after = _state(run.a0)
    except Refused as err:
        rep.refused = str(err)
        rep.judgement = None
    except _Stop as err:
        rep.judgement = decide(run.obs, read_only=read_only)
        _stopped(rep, run, read_only, str(err))
    except PathError as err:
        _stopped(rep, run, read_only, f"no answer: {err}")
    return rep


def _stopped(rep: DiskReport, run: _Run, read_only: bool, why: str) -> None:
    """The check ended early: what was seen is judged, and an early end is never a pass."""
    j = decide(run.obs, read_only=read_only)
    j.why = f"{why}; {j.why}"
    if j.verdict is not Verdict.UNFIT:
        j.verdict = Verdict.INCOMPLETE
    rep.judgement = j
    try:
        rep.after = _state(run.a0)
    except (ScsiError, PathError):
        rep.after = {}


def render(reports: list[DiskReport], rtype: ReservationType, *,
           read_only: bool) -> list[str]:
    """The text `hamon check-disk` prints: per disk its nexuses, table, verdict."""
    from hamon.lib.compliance import format_table
    lines = []
    for r in reports:
        lines.append(f"{r.disk}  ({'read-only' if read_only else rtype.short}; nexuses: "
                     f"{', '.join(r.nexuses) or '-'})")
        if r.judgement:
            lines += format_table(r.judgement.rows)
            lines.append(f"  verdict: {r.judgement.verdict}: {r.judgement.why}")
        if r.restored is not None:
            lines.append(f"  restored: {'yes' if r.restored else 'NO'}: {r.restore_detail}")
        if r.refused:
            lines.append(f"  refused: {r.refused}")
    return lines


# -- from operands (what the CLI calls) ---------------------------------------------------
def check_devices(operands: list[str], *, initiator: str | None,
                  second_initiator: str | None = None, timeout: float = 10.0,
                  rtype: ReservationType = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
                  read_only: bool = False, force: bool = False) -> list[DiskReport]:
    """Resolve ``operands`` (DeviceError for a bad one) and check each disk in turn.

    iscsi:// paths are opened with the check's own ISID role, also while resolving, so a
    live agent's session is never reinstated (closed) by the check's login.
    """
    from hamon.lib.multipath.resolve import Resolver

    resolver = Resolver(initiator=initiator, timeout=timeout,
                        iscsi_opener=lambda url, ini, t: _open_iscsi(url, ini, ISCSI_ROLE, t))
    disks = resolver.resolve(operands)
    reports = []
    try:
        for d in disks:
            try:
                s = setup_for(d, initiator=initiator, second_initiator=second_initiator,
                              timeout=timeout)
            except Refused as err:
                reports.append(DiskReport(d.name, [], refused=str(err)))
                continue
            if d.kind is DiskKind.ISCSI:
                d.close()  # the setup has sessions of its own with the same ISIDs
            try:
                reports.append(check(s, rtype, read_only=read_only, force=force))
            finally:
                s.close()
    finally:
        for d in disks:
            d.close()
    return reports
