"""What the state records: runs, their batches and field results, the last value written to
each field, and the lock; and, for a PostgreSQL state, its workspaces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

Outcome = Literal["running", "succeeded", "partial", "failed", "interrupted"]
BatchStatus = Literal["sending", "done", "failed", "unknown"]
# not_sent: LeadSquared kept refusing the call for the account's rate limit, so it was not
# processed; applying the plan again sends it
ResultStatus = Literal["applied", "failed", "stale", "already_current", "unknown", "not_sent"]
# What reading an applied field back found: the value as sent; the same value in another form
# (the stored form is then the last value written); or something else (not persisted)
Verdict = Literal["confirmed", "normalised", "not_persisted"]

OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
RESULT_STATUSES: tuple[ResultStatus, ...] = get_args(ResultStatus)
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
CONFIRMED: tuple[ResultStatus, ...] = ("applied", "already_current")  # never re-sent
LAST = "last"  # `lsqsync state show last`: the most recent run

# -- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    applied: int = 0
    already_current: int = 0
    stale: int = 0
    failed: int = 0
    unknown: int = 0
    not_sent: int = 0
    # of the applied fields, what reading them back found (schema 4; none when not verified)
    confirmed: int = 0
    normalised: int = 0
    not_persisted: int = 0

    @property
    def total(self) -> int:
        return (
            self.applied + self.already_current + self.stale + self.failed + self.unknown
            + self.not_sent
        )  # fmt: skip


@dataclass(frozen=True)
class Run:
    id: str
    who: str  # user@host
    where: str  # the working directory, or the CI job's URL
    plan_digest: str
    started: str
    finished: str | None
    outcome: Outcome
    overrides: tuple[str, ...]
    serial: int | None  # the serial this run produced (None: it sent nothing)
    counts: Counts = field(default_factory=Counts)  # from its field results


@dataclass(frozen=True)
class Batch:
    run_id: str
    batch: int  # 1, 2, … within the run
    opportunity_ids: tuple[str, ...]
    payload_sha256: str
    status: BatchStatus
    sent: str
    finished: str | None = None
    message: str | None = None
    resolved_by: str | None = None  # the run that re-read its records after it was left pending


@dataclass(frozen=True)
class FieldResult:
    opportunity_id: str
    opportunity_type: int
    field: str
    before: str | None
    after: str
    status: ResultStatus
    rule: str
    message: str | None = None  # the API's reason for a failure, or why it is stale/unknown
    # what LeadSquared held: when the field was found stale, when it failed or was not
    # persisted (as read back), and for a normalised field the form it is stored in
    current: str | None = None
    verified: Verdict | None = None  # an applied field read back (None: not, or not yet)


@dataclass(frozen=True)
class Verification:
    """What reading back one applied field found, for the result of run ``run_id``."""

    run_id: str
    opportunity_id: str
    field: str
    verdict: Verdict
    current: str | None  # what LeadSquared holds (the stored form, for a normalised field)


@dataclass(frozen=True)
class LastWritten:
    opportunity_id: str
    opportunity_type: int
    field: str
    value: str
    run_id: str
    written: str


@dataclass(frozen=True)
class Lock:
    id: str
    holder: str  # user@host
    host: str
    pid: int
    run_id: str | None
    operation: str
    since: str
    heartbeat: str  # refreshed by every batch; the expiry counts from here


@dataclass(frozen=True)
class Workspace:
    """One workspace of a PostgreSQL state, as `lsqsync state workspaces` lists it."""

    name: str
    schema_version: int
    created: str
    serial: int
    runs: int
    last_run: str | None  # the id of the most recent run
    last_outcome: Outcome | None
    lock: Lock | None
