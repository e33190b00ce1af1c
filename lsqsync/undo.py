"""``lsqsync drift`` and ``lsqsync rollback``: what the state file's last-written values say
against what LeadSquared holds now."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from lsqsync import __version__, apply, state
from lsqsync.lsq import LsqClient, OpportunityType, codec
from lsqsync.plan.model import (
    PLAN_LIFETIME,
    FieldChange,
    Inputs,
    OpportunityChange,
    Plan,
    compute_digest,
    sort_changes,
    summarise,
    write_cost,
)
from lsqsync.plan.render import plural


@dataclass(frozen=True)
class Drifted:
    opportunity_id: str
    opportunity_type: int
    field: str
    written: str  # what lsqsync last wrote
    current: str | None  # what LeadSquared holds now
    run_id: str


def _types(client: LsqClient, codes: set[int]) -> dict[int, OpportunityType]:
    return {code: client.opportunity_type(code) for code in sorted(codes)}


def _as_changes(
    rows: Sequence[tuple[str, int, str, str | None, str]],
) -> list[OpportunityChange]:
    """(opportunity, type, field, before, after) rows → changes, for reading back."""
    grouped: dict[tuple[str, int], list[FieldChange]] = defaultdict(list)
    for opp, code, field, before, after in rows:
        grouped[(opp, code)].append(FieldChange(field, before, after, "", ""))
    return [OpportunityChange(o, c, (), tuple(fs)) for (o, c), fs in grouped.items()]


def drift(client: LsqClient, st: state.StateFile) -> list[Drifted]:
    """Fields whose value in LeadSquared is no longer what lsqsync last wrote to them."""
    written = st.last_written_values()
    if not written:
        return []
    types = _types(client, {w.opportunity_type for w in written})
    changes = _as_changes(
        [(w.opportunity_id, w.opportunity_type, w.field, None, w.value) for w in written]
    )
    current = apply.read_current(client, changes)
    out = []
    for w in written:
        meta = types[w.opportunity_type].field(w.field)
        values = current.get(w.opportunity_id.lower())
        now = values.get(w.field) if values is not None else None
        if meta is None or values is None or not codec.same(meta, now, w.value):
            shown = codec.canonical(meta, now) if meta is not None else now
            out.append(
                Drifted(w.opportunity_id, w.opportunity_type, w.field, w.value, shown, w.run_id)
            )
    return out


def render_drift(drifted: Sequence[Drifted], fmt: str, mask: Sequence[str] = ()) -> str:
    def show(field: str, value: str | None) -> str:
        return "***" if field in mask else "(empty)" if value is None else json.dumps(value)

    if fmt == "json":
        return (
            json.dumps(
                [
                    {
                        "opportunity_id": d.opportunity_id,
                        "opportunity_type": d.opportunity_type,
                        "field": d.field,
                        "written": None if d.field in mask else d.written,
                        "current": None if d.field in mask else d.current,
                        "run": d.run_id,
                    }
                    for d in drifted
                ],
                indent=2,
            )
            + "\n"
        )
    if not drifted:
        return "No drift: LeadSquared holds every value lsqsync last wrote.\n"
    lines = [
        f"~ {d.opportunity_id} (type {d.opportunity_type}) {d.field}: wrote "
        f"{show(d.field, d.written)} (run {d.run_id}), now {show(d.field, d.current)}"
        for d in drifted
    ]
    return "\n".join(lines) + f"\nDrift: {plural(len(drifted), 'field')} changed outside lsqsync.\n"


@dataclass(frozen=True)
class Rollback:
    plan: Plan
    conflicting: tuple[str, ...]  # fields changed since the run: left alone


def rollback(
    client: LsqClient,
    st: state.StateFile,
    run_id: str,
    *,
    mask: Sequence[str] = (),
    rate: tuple[int, float] = (25, 5.0),
    now: datetime | None = None,
) -> Rollback:
    """A plan that puts back the ``before`` values of the fields run ``run_id`` applied — only
    where LeadSquared still holds what that run wrote; other fields are listed as conflicting."""
    run = st.run(run_id)
    applied = [r for r in st.results(run.id) if r.status == "applied"]
    types = _types(client, {r.opportunity_type for r in applied})
    current = apply.read_current(
        client,
        _as_changes(
            [(r.opportunity_id, r.opportunity_type, r.field, r.before, r.after) for r in applied]
        ),
    )
    source = f"{st.path.name}:0"  # a plan source is file:line; a rollback comes from the state
    name = f"rollback-{run.id}"
    changes: list[OpportunityChange] = []
    conflicting: list[str] = []
    per_opportunity: dict[tuple[str, int], list[FieldChange]] = defaultdict(list)
    for r in applied:
        meta = types[r.opportunity_type].field(r.field)
        values = current.get(r.opportunity_id.lower())
        held = values.get(r.field) if values is not None else None
        if meta is None or values is None or not codec.same(meta, held, r.after):
            conflicting.append(f"{r.opportunity_id} {r.field}")
            continue
        per_opportunity[(r.opportunity_id, r.opportunity_type)].append(
            FieldChange(r.field, codec.canonical(meta, held), r.before or "", name, source)
        )
    for (opp, code), fields in per_opportunity.items():
        changes.append(OpportunityChange(opp, code, (name,), tuple(fields)))
    ordered = sort_changes(changes)
    moment = now or datetime.now(UTC)
    inputs = Inputs(
        files={},
        vars={},
        now=moment.strftime("%Y-%m-%d %H:%M:%S"),
        host=client.host,
        targets=(name,),
    )
    plan = Plan(
        lsqsync_version=__version__,
        created_at=moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        expires_at=(moment + PLAN_LIFETIME).strftime("%Y-%m-%dT%H:%M:%SZ"),
        inputs=inputs,
        summary=summarise(
            ordered,
            {name: source},
            # the types' sizes, so the shares shown are shares of the account
            {code: (t.name, client.count_opportunities(code)) for code, t in types.items()},
        ),
        cost=write_cost(0, len(ordered), *rate),
        changes=ordered,
        digest=compute_digest(inputs, ordered),
        state_lineage=st.lineage,
        state_serial=st.serial,
        warnings=tuple(
            f"{len(conflicting)} fields changed since run {run.id} are left alone: "
            + ", ".join(conflicting[:10])
            + (" …" if len(conflicting) > 10 else "")
            for _ in [1]
            if conflicting
        ),
        mask=tuple(mask),
    )
    return Rollback(plan, tuple(conflicting))
