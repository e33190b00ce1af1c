"""``lsqsync apply``: send a reviewed plan to LeadSquared, exactly, under the rate limit.

The pipeline for one plan:

1. refuse a plan that cannot be applied as reviewed (another state lineage, expired, rule files
   changed on disk since — see ``refusals``);
2. re-read the planned opportunities (GetOpportunitiesById, 2,000 a call, every call and the
   type metadata at once: the planned fields and the fields of their premises) and decide field
   by field: still the plan's ``before`` → send; already the plan's ``after`` →
   already-current, not sent; anything else → stale, not sent (somebody changed it since the
   plan). A field whose rule's premise no longer holds (a field the rule's ``where``, ``when`` or
   templates read has changed) is stale too, even where the field itself did not change;
3. send the rest in batches of at most 25 opportunities from several workers that share the
   one account-wide rate limiter, so that the limit, not latency, sets the pace;
4. map each batch's results back by row; a whole-call ``MX…`` rejection (a 5xx, or a 200 with
   the error envelope) is split in halves until the bad row is isolated; a batch whose outcome
   is unknown (dropped connection, timeout, retries that ran out) is re-read and resolved —
   applied if the values landed, re-sent once if not;
5. read back every field written and classify it (``verdict``): confirmed, normalised (the
   same value in another form) or not persisted.

Every batch is journaled in the state file before it is sent and its result after (one
transaction per batch), so an interrupted run can be resumed without re-sending anything that
was confirmed.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from lsqsync.clock import stamp
from lsqsync.display import field_name, is_masked, shown
from lsqsync.errors import (
    ApiError,
    ApiRejected,
    AuthError,
    ConnectionFailed,
    OutcomeUnknown,
    RateLimited,
)
from lsqsync.lsq import BulkUpdateItem, FieldMeta, LsqClient, OpportunityType, codec
from lsqsync.lsq.answers import rejects_the_call
from lsqsync.lsq.client import MAX_BULK_ITEMS, MAX_IDS_PER_CALL
from lsqsync.lsq.models import OpportunityRecord
from lsqsync.plan.model import FieldChange, OpportunityChange, plan_host
from lsqsync.state.records import FieldResult, ResultStatus, Verdict, Verification

log = logging.getLogger(__name__)


def result(
    change: OpportunityChange,
    f: FieldChange,
    status: ResultStatus,
    message: str | None = None,
    current: str | None = None,
) -> FieldResult:
    """The result of one planned field, as the state file records it."""
    code = change.opportunity_type
    return FieldResult(
        change.id, code, f.field, f.before, f.after, status, f.rule, message, current
    )


@dataclass(frozen=True)
class Pending:
    """One opportunity's fields that are still to be sent."""

    change: OpportunityChange
    fields: tuple[FieldChange, ...]

    @property
    def item(self) -> BulkUpdateItem:
        return BulkUpdateItem(
            self.change.id, self.change.opportunity_type, {f.field: f.after for f in self.fields}
        )


@dataclass(frozen=True)
class Freshness:
    pending: tuple[Pending, ...]
    settled: tuple[FieldResult, ...]  # already-current and stale fields: decided, not sent


def check_freshness(
    changes: Sequence[OpportunityChange],
    current: Mapping[str, Mapping[str, str | None]],
    types: Mapping[int, OpportunityType],
    confirmed: frozenset[tuple[str, str]] = frozenset(),
    mask: Collection[str] = (),
    written: frozenset[tuple[str, str]] = frozenset(),
) -> Freshness:
    """Decide every planned field against the values just read (``current``: lower-cased
    opportunity id → field → raw value; an opportunity absent from it was deleted).
    ``confirmed`` (opportunity id, field) pairs were applied or found current by an earlier
    attempt of this plan and are skipped entirely; ``written``: those it applied. A field still
    at its ``before`` whose rule's premise (or, for a field two rules set, either rule's) no
    longer holds is stale, with the premise's changes in its message (values of ``mask``ed
    fields not shown). Pure."""
    pending: list[Pending] = []
    settled: list[FieldResult] = []
    for change in changes:
        values = current.get(change.id.lower())
        meta = types[change.opportunity_type]
        held = {} if values is None else premise_changes(change, values, meta, written, mask)
        to_send: list[FieldChange] = []
        for f in change.changes:
            if (change.id.lower(), f.field) in confirmed:
                continue
            fm = meta.field(f.field)
            if values is None or fm is None:
                why = "the opportunity no longer exists" if values is None else "unknown field"
                settled.append(result(change, f, "stale", why))
                continue
            now = values.get(f.field)
            if codec.same(fm, now, f.before or ""):
                if f.field in held:
                    why = held[f.field]
                    settled.append(result(change, f, "stale", why, codec.canonical(fm, now)))
                else:
                    to_send.append(f)
            elif codec.same(fm, now, f.after):
                settled.append(result(change, f, "already_current"))
            else:
                why = "changed in LeadSquared since the plan"
                settled.append(result(change, f, "stale", why, codec.canonical(fm, now)))
        if to_send:
            pending.append(Pending(change, tuple(to_send)))
    return Freshness(tuple(pending), tuple(settled))


def premise_changes(
    change: OpportunityChange,
    values: Mapping[str, str | None],
    meta: OpportunityType,
    written: frozenset[tuple[str, str]] = frozenset(),
    mask: Collection[str] = (),
) -> dict[str, str]:
    """The planned fields of ``change`` held back because a premise no longer holds → why
    (``premise changed: Status "Open" → "Lost"``, values shown canonical, a field by the name
    LeadSquared's screens show and its schema name: ``Stage (mx_Custom_2)``). A premise value
    compares as the codec says (``250000`` is ``250,000.00``). A premise field that this plan
    itself wrote on an earlier attempt (``written``) and that still holds the planned value is
    not a change: the resumed run must not take its own write for somebody else's (a value
    somebody else set, even the planned one, is a change)."""
    planned = {f.field: f.after for f in change.changes}
    reasons: dict[str, list[str]] = {}
    for premise in change.premises:
        changed = []
        for name, value in premise.read:
            fm = meta.field(name)
            now = values.get(name)
            if fm is None:
                changed.append(f"{name} (no longer a field of the type)")
                continue
            if codec.same(fm, now, value or ""):
                continue
            ours = (change.id.lower(), name) in written and name in planned
            if ours and codec.same(fm, now, planned[name]):
                continue
            hidden = is_masked(name, mask)
            was = shown(codec.canonical(fm, value), hidden)
            is_now = shown(codec.canonical(fm, now), hidden)
            changed.append(f"{field_name(name, fm.display_name)} {was} → {is_now}")
        for name in premise.holds if changed else ():
            known = reasons.setdefault(name, [])
            known.extend(c for c in changed if c not in known)
    return {name: "premise changed: " + ", ".join(why) for name, why in reasons.items()}


def batches(
    pending: Sequence[Pending], size: int = MAX_BULK_ITEMS
) -> Iterator[tuple[Pending, ...]]:
    """At most ``size`` opportunities a call; all of an opportunity's fields in one item."""
    for start in range(0, len(pending), size):
        yield tuple(pending[start : start + size])


@dataclass
class BatchOutcome:
    results: list[FieldResult] = field(default_factory=list)
    unknown: list[Pending] = field(default_factory=list)  # to re-read and resolve
    refused: RateLimited | None = None  # the rate limit kept refusing a call of this batch
    # why a call of this batch failed whole, for no reason of its rows (retries ran out, no
    # connection, keys refused, an answer that could not be read): a sign the account is down
    error: str | None = None

    @property
    def status(self) -> Literal["done", "failed", "unknown"]:
        """The batch's journal status: unknown while any of its rows' outcome is (the records
        are read back, now or by the next apply), failed when a call of it was refused whole."""
        if self.unknown:
            return "unknown"
        return "failed" if self.refused or self.error else "done"


class Refusals:
    """Shared by the batches of one run: once the rate limit kept refusing a call through every
    retry, the batches not yet started are not sent either (they would only wait out the same
    refusals)."""

    def __init__(self) -> None:
        self.first: RateLimited | None = None


def send_batch(
    client: LsqClient, batch: Sequence[Pending], refusals: Refusals | None = None
) -> BatchOutcome:
    """Send one batch; on a whole-call ``MX…`` verdict, split it in halves until the bad row is
    isolated (the good rows are applied, the bad one reported with the API's message). A row
    that fails is not retried. An unanswered call leaves its rows unknown. A call the account's
    rate limit kept refusing was not processed: its rows are *not sent* (never failed), and so
    are the halves not yet tried — and, through ``refusals``, the run's batches not started.
    Never raises for what became of the call: whatever went wrong is in the outcome."""
    outcome = BatchOutcome(refused=refusals.first if refusals is not None else None)
    _send(client, list(batch), outcome)
    if refusals is not None and outcome.refused is not None:
        refusals.first = refusals.first or outcome.refused
    return outcome


def not_sent(batch: Sequence[Pending], refusal: RateLimited) -> list[FieldResult]:
    """Fields of a call the rate limit kept refusing: the next apply of the plan sends them."""
    said = refusal.exception_message or f"HTTP {refusal.status}"
    message = f"not sent: LeadSquared kept refusing the call for the account's rate limit ({said})"
    return [r for p in batch for r in each_field(p, "not_sent", message)]


def _send(client: LsqClient, batch: list[Pending], outcome: BatchOutcome) -> None:
    if outcome.refused is not None:
        outcome.results.extend(not_sent(batch, outcome.refused))
        return
    try:
        rows = client.bulk_update([p.item for p in batch])
    except OutcomeUnknown:
        outcome.unknown.extend(batch)
        return
    except RateLimited as e:
        outcome.refused = e
        outcome.results.extend(not_sent(batch, e))
        return
    except ApiRejected as e:
        if rejects_the_call(e.status, e.exception_type) and len(batch) > 1:
            middle = len(batch) // 2
            log.info("apply: batch of %d refused (%s); splitting", len(batch), e.exception_type)
            _send(client, batch[:middle], outcome)
            _send(client, batch[middle:], outcome)
            return
        message = e.exception_message or str(e)
        for p in batch:
            outcome.results.extend(
                each_field(p, "failed", f"{e.exception_type or 'error'}: {message}")
            )
        return
    except (AuthError, ConnectionFailed) as e:
        # Nothing was processed: the connection was never made, or the keys were refused.
        outcome.error = str(e)
        outcome.results += [r for p in batch for r in each_field(p, "not_sent", f"not sent: {e}")]
        return
    except Exception as e:  # retries ran out, an unreadable answer, a bug: it may have landed
        bug = not isinstance(e, ApiError)
        log.warning("apply: a batch of %d failed: %s", len(batch), e, exc_info=bug)
        outcome.error = f"{type(e).__name__}: {e}" if bug else str(e)
        outcome.unknown.extend(batch)
        return
    for p, row in zip(batch, rows, strict=True):
        if row.outcome == "applied":
            outcome.results.extend(each_field(p, "applied"))
        elif row.outcome == "failed":
            reason = f"{row.exception_type}: {row.message}" if row.exception_type else row.message
            outcome.results.extend(each_field(p, "failed", reason or "rejected by LeadSquared"))
        else:
            outcome.unknown.append(p)


def each_field(p: Pending, status: ResultStatus, message: str | None = None) -> list[FieldResult]:
    """A result per field of ``p``. A field that was not written (failed, not sent) held its
    ``before`` value when it was checked just before sending: that is what LeadSquared holds."""
    written = status in ("applied", "unknown")
    return [result(p.change, f, status, message, None if written else f.before) for f in p.fields]


def read_current(
    client: LsqClient,
    changes: Sequence[OpportunityChange],
    pool: Executor | None = None,
) -> dict[str, dict[str, str | None]]:
    """The current values of the planned fields and of the fields of their premises (lower-cased
    id → field → raw value), read by id (2,000 a call) per opportunity type. Deleted
    opportunities are absent. With a ``pool`` the calls go out together: each costs a round
    trip, and none needs another's answer."""
    by_type: dict[int, tuple[set[str], set[str]]] = {}
    for c in changes:
        ids, fields = by_type.setdefault(c.opportunity_type, (set(), set()))
        ids.add(c.id)
        fields.update(f.field for f in c.changes)
        fields.update(name for p in c.premises for name, _ in p.read)
    calls = [
        (code, chunk, sorted(fields))
        for code, (ids, fields) in sorted(by_type.items())
        for chunk in _chunks(sorted(ids), MAX_IDS_PER_CALL)
    ]

    def read(call: tuple[int, list[str], list[str]]) -> list[OpportunityRecord]:
        return client.opportunities_by_id(*call)

    current: dict[str, dict[str, str | None]] = {}
    for records in pool.map(read, calls) if pool is not None else map(read, calls):
        for record in records:
            current[record.id.lower()] = dict(record.values)
    return current


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def resolve_unknown(
    unknown: Sequence[Pending],
    current: Mapping[str, Mapping[str, str | None]],
    types: Mapping[int, OpportunityType],
) -> tuple[list[FieldResult], list[Pending]]:
    """After an unanswered call: fields whose value landed are applied; the rest are to be
    re-sent once (those still at their ``before``) or are stale (changed by someone else)."""
    results: list[FieldResult] = []
    resend: list[Pending] = []
    for p in unknown:
        again = OpportunityChange(p.change.id, p.change.opportunity_type, p.change.rules, p.fields)
        fresh = check_freshness([again], current, types)
        results += [
            replace(r, status="applied") if r.status == "already_current" else r
            for r in fresh.settled
        ]
        resend.extend(fresh.pending)
    return results, resend


def as_changes(written: Sequence[FieldResult]) -> list[OpportunityChange]:
    """Field results as changes, grouped by opportunity: what ``read_current`` reads back."""
    grouped: dict[tuple[str, int], list[FieldChange]] = {}
    for r in written:
        change = FieldChange(r.field, r.before, r.after, r.rule, "")
        grouped.setdefault((r.opportunity_id, r.opportunity_type), []).append(change)
    return [OpportunityChange(o, c, (), tuple(fs)) for (o, c), fs in grouped.items()]


def verdict(meta: FieldMeta | None, raw: str | None, sent: str) -> Verdict | None:
    """What reading back a field written as ``sent`` found: ``confirmed`` (as sent),
    ``normalised`` (the same value, as the codec reads it, in another form: ``23500.00`` for
    ``23500``), or None (something else is there: not yet, or not persisted)."""
    if meta is None or not codec.same(meta, raw, sent):
        return None
    return "confirmed" if _as_sent(meta, raw, sent) else "normalised"


def _as_sent(meta: FieldMeta, raw: str | None, sent: str) -> bool:
    if not (raw or "").strip() and not sent.strip():
        return True
    if codec.kind(meta) in ("date", "datetime", "boolean", "user"):
        # Each read endpoint renders these in its own format (US dates from GetOpportunitiesById,
        # Booleans as 1/0, ids in any case): the read form says nothing about the stored one.
        return codec.canonical(meta, raw) == codec.canonical(meta, sent)
    return raw == sent


Written = tuple[str, FieldResult]  # (the run that wrote it, the applied field)


def verify(
    written: Sequence[Written],
    current: Mapping[str, Mapping[str, str | None]],
    types: Mapping[int, OpportunityType],
) -> tuple[list[Verification], list[Written]]:
    """Classify the written fields against the values just read back: the ones found
    (confirmed or normalised), and the ones whose value is not (yet) there. Pure."""
    found: list[Verification] = []
    missing: list[Written] = []
    for run_id, r in written:
        values = current.get(r.opportunity_id.lower())
        raw = values.get(r.field) if values is not None else None
        meta = types[r.opportunity_type].field(r.field) if values is not None else None
        kind = verdict(meta, raw, r.after)
        if kind is None:
            missing.append((run_id, r))
            continue
        stored = raw if kind == "normalised" else None
        found.append(Verification(run_id, r.opportunity_id, r.field, kind, stored))
    return found, missing


def not_persisted(
    missing: Sequence[Written],
    current: Mapping[str, Mapping[str, str | None]],
    types: Mapping[int, OpportunityType],
) -> list[Verification]:
    """The written fields still not there after the wait: what LeadSquared holds instead."""
    out = []
    for run_id, r in missing:
        values = current.get(r.opportunity_id.lower())
        meta = types[r.opportunity_type].field(r.field)
        raw = values.get(r.field) if values is not None else None
        held = codec.canonical(meta, raw) if meta is not None else raw
        out.append(Verification(run_id, r.opportunity_id, r.field, "not_persisted", held))
    return out


def refusals(
    plan_lineage: str | None,
    state_lineage: str,
    expires_at: datetime,
    now: datetime,
    planned_files: Mapping[str, str],
    current_files: Mapping[str, str | None],
    ignore_rule_changes: bool = False,
    hosts: tuple[str, str | None] | None = None,
) -> list[str]:
    """Why a saved plan cannot be applied as reviewed (empty: it can). ``current_files`` holds
    the sha256 of each planned file as it is on disk now (None: gone). ``hosts``: the plan's
    host and the one apply would write to (None when it is not set: the client says so). A
    state serial that moved since the plan is not a refusal: the per-field freshness check
    decides."""
    reasons = []
    if hosts is not None and hosts[1] is not None:
        planned, target = plan_host(hosts[0]), plan_host(hosts[1])
        if planned != target:
            reasons.append(
                f"the plan was made against {planned}, but apply would write to {target} "
                "(LSQ_HOST or host: in lsqsync.yml): apply it with the host it was made for, or "
                "make a new plan against this one"
            )
    if plan_lineage is not None and plan_lineage != state_lineage:
        reasons.append(
            f"the plan was made against state lineage {plan_lineage}, but this state file is "
            f"lineage {state_lineage} (another project or a recreated state file)"
        )
    if now >= expires_at:
        reasons.append(f"the plan expired at {stamp(expires_at)}; make a new plan")
    changed = sorted(p for p, digest in planned_files.items() if current_files.get(p) != digest)
    if changed and not ignore_rule_changes:
        reasons.append(
            "files changed on disk since the plan: " + ", ".join(changed) + " (make a new plan, "
            "or pass --ignore-rule-changes to apply the reviewed plan anyway; it is recorded)"
        )
    return reasons
