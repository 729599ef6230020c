"""``hamon check-disk``'s runner: the commands, in order, through two nexuses of this node.

What it changes and how it restores it: only the check's own keys (``KEY_A``/``KEY_B``,
see :mod:`hamon.lib.compliance.verdict`) are registered, the only reservation is the
check's own, and :meth:`Run.restore` unregisters every nexus it used (REGISTER AND IGNORE
EXISTING KEY with key 0, APTPL off), then removes what is left of its keys (CLEAR when no
other key is registered, PREEMPT otherwise), then reads the LUN again to say whether it
is restored. The one write goes to one block (``lba``, default 0) and carries the bytes
just read from that block: user data is never changed (the block is compared again at
the end).

Read-only mode sends TEST UNIT READY, INQUIRY and PERSISTENT RESERVE IN only. Each
operation's outcome is recorded as an :class:`~hamon.lib.compliance.verdict.Observation`;
the meaning is decided elsewhere (:func:`~hamon.lib.compliance.verdict.decide`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hamon.lib import command
from hamon.lib.compliance.nexus import Setup
from hamon.lib.compliance.verdict import (
    CHECK_KEYS,
    KEY_A,
    KEY_B,
    OPS_BY_ID,
    Observation,
    Outcome,
    expected_write,
)
from hamon.lib.scsi import pr as prm
from hamon.lib.scsi.errors import IllegalRequest, ReservationConflict, ScsiError
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.pr import ReservationType
from hamon.lib.transport.base import PathError, Transport

READ_CAPACITY_10 = 0x25


def hex_keys(keys: tuple[int, ...] | list[int]) -> str:
    return ", ".join(prm.format_key(k) for k in keys) or "none"


def lun_state(t: Transport) -> dict[str, Any]:
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


class Run:
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
            raise Stopped("the nexuses do not show one LUN; nothing was sent to change it")

        def caps() -> str:
            c = command.report_capabilities(self.a0)
            types = ",".join(sorted(t.short for t in c.types)) if c.type_mask_valid else "?"
            return (f"types {types}; ALL_TG_PT_C={int(c.all_tg_pt_capable)} "
                    f"PTPL_C={int(c.ptpl_capable)} PTPL_A={int(c.ptpl_active)}")
        self.probe("report_capabilities", caps)
        got: list[prm.Keys] = []

        def read_keys() -> str:
            got.append(command.read_keys(self.a0))
            return f"generation {got[0].generation}, keys {hex_keys(got[0].keys)}"
        if not self.probe("read_keys", read_keys):
            raise Stopped("READ KEYS is not answered: nothing was sent to change the disk")
        self.probe("read_reservation", lambda: reservation_text(command.read_reservation(self.a0)))

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
                raise _Wrong("RESERVE answered GOOD, but the other nexus reads "
                             f"{reservation_text(r)}")
            return f"{rt.short} by {prm.format_key(KEY_A)}, read back through the other nexus"
        if not self.probe("reserve", reserve):
            return

        bs = block_size(a0)
        original = command.read_block(a0, self.lba, bs)
        if len(original) != bs:
            raise Stopped(f"READ(10) of LBA {self.lba} returned {len(original)} of {bs} bytes")

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
                raise _Wrong(f"keys read back: {hex_keys(keys)}")
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
                raise _Wrong(f"GOOD, but the other nexus reads {reservation_text(r)}")
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
                raise _NotTested(f"other keys registered ({hex_keys(others)}): CLEAR would "
                                 "remove them")
            command.pr_out(a0, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, KEY_A)
            command.pr_out(a0, Out.CLEAR, KEY_A, 0)
            keys, r = command.read_keys(b), command.read_reservation(b)
            if keys.keys or r.held:
                raise _Wrong(f"GOOD, but the other nexus reads keys {hex_keys(keys.keys)}, "
                             f"{reservation_text(r)}")
            return "no keys, no reservation, read through the other nexus"
        try:
            self.probe("clear", clear)
        except _NotTested as nt:
            self.see("clear", Outcome.NOT_TESTED, str(nt))

        after = command.read_block(a0, self.lba, bs)
        if after != original:
            raise Stopped(f"LBA {self.lba} changed during the check: someone else writes "
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
            return False, (f"left behind: keys {hex_keys(bad)}, {reservation_text(r)}; remove "
                           "them with `hamon check-disk --force` again or sg_persist --out "
                           "--clear")
        return True, f"no key of the check, no reservation of it (keys now: {hex_keys(left)})"


class _Wrong(Exception):
    """The target accepted or answered, but not as SPC-4 says; the text says how."""

    def __init__(self, text: str, caveat: bool = False, unproven: bool = False) -> None:
        super().__init__(text)
        self.caveat, self.unproven = caveat, unproven


class _NotTested(Exception):
    """The operation was not tried, to leave what others registered alone."""


class Stopped(Exception):
    """The check cannot go on safely on this disk; the text says why."""


def _sense(err: ScsiError) -> str:
    return str(err.sense) if err.sense else str(err).split(": ")[-1]


def reservation_text(r: prm.Reservation) -> str:
    if not r.held:
        return "no reservation"
    return f"{r.type.short if r.type else '?'} held by {prm.format_key(r.key or 0)}"
