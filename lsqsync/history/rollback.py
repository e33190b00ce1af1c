"""``lsqsync rollback``: a plan that puts back what a run changed, where LeadSquared still
holds what that run wrote.

A rollback's premise for each opportunity is the fields it writes: it puts back a run's
fields together or not at all, so that if one of them changed after the plan, ``apply`` sends
none of that opportunity's (a person who marked the deal Lost again keeps its close date).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from lsqsync import __version__
from lsqsync.apply import engine as apply
from lsqsync.clock import NOW_FORMAT, utcnow
from lsqsync.config import Config
from lsqsync.display import field_name, plural
from lsqsync.errors import StateError
from lsqsync.history.drift import ACCEPT, UNDO, _as_changes, _types
from lsqsync.lsq import LsqClient, OpportunityType, codec
from lsqsync.plan.model import (
    PLAN_LIFETIME,
    FieldChange,
    Inputs,
    OpportunityChange,
    Plan,
    Premise,
    assemble,
)
from lsqsync.state.records import FieldResult, Run
from lsqsync.state.store import StateFile


@dataclass(frozen=True)
class Rollback:
    plan: Plan
    conflicting: tuple[str, ...]  # fields changed since the run: left alone


def rollback(
    client: LsqClient,
    st: StateFile,
    run_id: str,
    config: Config,
    *,
    now: datetime | None = None,
    rules: Collection[str] | None = None,
) -> Rollback:
    """A plan that puts back the ``before`` values of the fields run ``run_id`` applied — with
    the earlier runs of its plan it resumed — only where LeadSquared still holds what was
    written; other fields are listed as conflicting. ``rules``: the project's rules (None: not
    known), for the warning about those that would write the fields again."""
    calls_before = client.calls
    run = st.run(run_id)
    _refuse_accepting(run)
    applied = _applied(st, run.id, run.plan_digest)
    types = _types(client, {r.opportunity_type for r in applied})
    current = apply.read_current(
        client,
        _as_changes(
            [(r.opportunity_id, r.opportunity_type, r.field, r.before, r.after) for r in applied]
        ),
    )
    name, source = f"rollback-{run.id}", f"run {run.id}"  # it comes from the state, not a file
    changes, conflicting = _put_back(applied, types, current, name, source)
    moment = now or utcnow()
    inputs = Inputs(
        files={}, vars={}, now=moment.strftime(NOW_FORMAT), host=client.host, targets=(name,)
    )
    # the types' sizes, so that the shares shown are shares of the account
    totals = {code: (t.name, client.count_opportunities(code)) for code, t in types.items()}
    warnings = [
        f"{plural(len(conflicting), 'field')} changed since run {run.id} "
        f"{'is' if len(conflicting) == 1 else 'are'} left alone: "
        + ", ".join(conflicting[:10])
        + (" …" if len(conflicting) > 10 else "")
    ]
    warnings = (warnings if conflicting else []) + _rules_warning(applied, rules)
    plan = assemble(
        changes,
        inputs,
        version=__version__,
        created=moment,
        lifetime=PLAN_LIFETIME,
        rule_sources={name: source},
        type_totals=totals,
        rate=client.limiter.write_pace() or config.rate_limit.write_pace(),
        read_calls=client.calls - calls_before,
        state=(st.lineage, st.serial),
        warnings=warnings,
        mask=config.mask,
        field_labels={code: t.display_names for code, t in types.items()},
    )
    return Rollback(plan, tuple(conflicting))


def _rules_warning(applied: Sequence[FieldResult], rules: Collection[str] | None) -> list[str]:
    """Which rules that wrote the fields are still in the project: the next plan re-applies
    them (``rules`` None: the project could not be read, so every rule that wrote them)."""
    wrote = sorted({r.rule for r in applied})
    still = [r for r in wrote if rules is None or r in rules]
    if not still:
        return []
    named = ", ".join(repr(r) for r in still)
    where = "" if rules is not None else " (if they are still in the project)"
    many = len(still) > 1
    return [
        f"rule{'s' if many else ''} {named} still want{'' if many else 's'} the values this "
        f"rollback puts back{where}: the next plan re-applies them; revert "
        f"{'these rules' if many else 'this rule'} (or make {'them' if many else 'it'} skip "
        "these opportunities) before the next plan is applied"
    ]


def _refuse_accepting(run: Run) -> None:
    """A run of ``drift --accept`` (or its undoing) sent nothing: there is nothing to put back."""
    if run.plan_digest == ACCEPT:
        raise StateError(
            f"run {run.id} sent nothing to LeadSquared: it recorded values as known (drift "
            f"--accept). To reverse it: lsqsync drift --undo-accept {run.id}"
        )
    if run.plan_digest == UNDO:
        raise StateError(f"run {run.id} sent nothing to LeadSquared: it undid a drift --accept")


def _applied(st: StateFile, run_id: str, digest: str) -> list[FieldResult]:
    """The fields the plan ``digest`` wrote up to run ``run_id``: a run that resumed a plan
    (killed, interrupted, LeadSquared down) carries on the runs before it, and their writes are
    one change. A field read back as not persisted was not written."""
    runs = [r.id for r in st.runs() if r.plan_digest == digest]
    latest: dict[tuple[str, str], FieldResult] = {}
    for rid in runs[: runs.index(run_id) + 1]:
        for r in st.results(rid):
            if r.status == "applied" and r.verified != "not_persisted":
                latest[(r.opportunity_id, r.field)] = r
    return [latest[key] for key in sorted(latest)]


def _put_back(
    applied: Sequence[FieldResult],
    types: Mapping[int, OpportunityType],
    current: Mapping[str, Mapping[str, str | None]],
    name: str,
    source: str,
) -> tuple[list[OpportunityChange], list[str]]:
    """The changes that put back each applied field's ``before`` value, where LeadSquared still
    holds what the run wrote; and the fields changed since ("opportunity field"), left alone."""
    conflicting: list[str] = []
    per_opportunity: dict[tuple[str, int], list[FieldChange]] = defaultdict(list)
    for r in applied:
        meta = types[r.opportunity_type].field(r.field)
        values = current.get(r.opportunity_id.lower())
        held = values.get(r.field) if values is not None else None
        if meta is None or values is None or not codec.same(meta, held, r.after):
            label = meta.display_name if meta is not None else None
            conflicting.append(f"{r.opportunity_id} {field_name(r.field, label)}")
            continue
        per_opportunity[(r.opportunity_id, r.opportunity_type)].append(
            FieldChange(r.field, codec.canonical(meta, held), r.before or "", name, source)
        )
    changes = [
        OpportunityChange(opp, code, (name,), tuple(fields), (_premise(name, fields),))
        for (opp, code), fields in per_opportunity.items()
    ]
    return changes, conflicting


def _premise(rule: str, fields: Sequence[FieldChange]) -> Premise:
    """The fields a rollback writes to one opportunity, as they were when it was planned."""
    ordered = sorted(fields, key=lambda f: f.field)
    return Premise(
        rule, tuple(f.field for f in ordered), tuple((f.field, f.before) for f in ordered)
    )
