"""What one disk's check found: the table, the verdict, the restore, as text and data.

Kept apart from the run so that the CLI's exit code (:meth:`DiskReport.failed`) and what
it prints are read off plain values, the same for the text and the ``--json`` output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hamon.lib.compliance.verdict import Judgement, Outcome, Verdict, format_table
from hamon.lib.scsi.pr import ReservationType


@dataclass
class DiskReport:
    """One disk's check: its nexuses, the judgement, a refusal, the restore, the state
    before and after."""

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


def render(reports: list[DiskReport], rtype: ReservationType, *,
           read_only: bool) -> list[str]:
    """The text `hamon check-disk` prints: per disk its nexuses, table, verdict."""
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
