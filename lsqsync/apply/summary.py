"""What an apply run did, for the person who ran it: the counts, what reading back found, the
calls and the time, why sending stopped, the batches the next run reads back, and a line per
field that needs a person."""

from __future__ import annotations

from dataclasses import dataclass

from lsqsync.display import plural

SHOWN_PROBLEMS = 20  # fields named in the summary; the rest: lsqsync state show RUN


@dataclass(frozen=True)
class Checked:
    """What reading back the fields written found, in this apply."""

    confirmed: int = 0
    normalised: int = 0
    not_persisted: int = 0
    unread: int = 0  # left unverified: the reads failed or were interrupted
    earlier: int = 0  # of them, fields written by earlier runs of the plan
    calls: int = 0
    why_unread: str | None = None

    def text(self) -> str:
        line = (
            f"read back: {self.confirmed} confirmed, {self.normalised} normalised, "
            f"{self.not_persisted} not persisted"
        )
        if self.earlier:
            line += f" ({plural(self.earlier, 'field')} written by an earlier run of the plan)"
        if self.unread:
            line += (
                f"; {plural(self.unread, 'field')} not read back ({self.why_unread}): the next "
                "apply of this plan reads them"
            )
        return line


@dataclass(frozen=True)
class ApplySummary:
    run_id: str
    outcome: str
    counts: dict[str, int]
    opportunities: int
    calls: int
    rate_limited: int
    seconds: float
    runs_since: tuple[str, ...]
    interrupted: bool = False
    budgets: tuple[tuple[str, str], ...] = ()  # (bucket, its limit and where it comes from)
    checked: Checked | None = None  # None: not read back (--no-verify, or nothing written)
    verify: bool = True
    problems: tuple[str, ...] = ()  # a line per field that needs a look, at most SHOWN_PROBLEMS
    more: int = 0  # fields that need a look beyond those
    stopped: str | None = None  # why sending stopped before the end
    unresolved: tuple[str, ...] = ()  # "run R batch N": batches the next apply reads back

    @property
    def clean(self) -> bool:
        statuses = ("failed", "stale", "unknown", "not_sent")
        checked = self.checked
        return not (
            any(self.counts.get(s, 0) for s in statuses)
            or (checked is not None and (checked.not_persisted or checked.unread))
            or self.unresolved
        )

    def text(self) -> str:
        c = self.counts
        not_sent = f", not sent: {c['not_sent']}" if c.get("not_sent") else ""
        lines = [
            f"Run {self.run_id}: {self.outcome}.",
            f"  applied: {c.get('applied', 0)}, already current: {c.get('already_current', 0)}, "
            f"stale: {c.get('stale', 0)}, failed: {c.get('failed', 0)}, "
            f"unknown: {c.get('unknown', 0)}{not_sent} (fields of "
            f"{plural(self.opportunities, 'opportunity', 'opportunities')})",
        ]
        if self.checked is not None:
            lines.append("  " + self.checked.text())
        elif not self.verify:
            lines.append("  read back: skipped (--no-verify)")
        reads = f"{self.checked.calls} to read back; " if self.checked is not None else ""
        lines.append(
            f"  {plural(self.calls, 'API call')} ({reads}{self.rate_limited} refused for the "
            f"rate limit) in {self.seconds:.1f} s"
        )
        lines += [
            f"  {'rate limit' if bucket == 'account' else 'bulk limit'}: {text}"
            for bucket, text in self.budgets
        ]
        lines += self._notes()
        if self.problems:
            lines += ["", *(f"  {line}" for line in self.problems)]
        if self.more:
            lines.append(f"  … {self.more} more: lsqsync state show {self.run_id}")
        elif not self.clean:
            lines.append(f"  details: lsqsync state show {self.run_id}")
        return "\n".join(lines) + "\n"

    def _notes(self) -> list[str]:
        lines = []
        if self.runs_since:
            lines.append(
                "  runs since the plan was made: "
                + ", ".join(self.runs_since)
                + " (each field was checked against LeadSquared before writing)"
            )
        if self.stopped:
            lines.append(f"  stopped sending: {self.stopped}")
        if self.counts.get("not_sent"):
            lines.append("  apply the same plan again to send the fields not sent")
        if self.unresolved:
            lines.append(
                "  outcome unknown, records not read back: "
                + ", ".join(self.unresolved)
                + " (the next apply of this plan reads them back before sending anything)"
            )
        return lines
