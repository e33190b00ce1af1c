"""``lsqsync rollback``: a plan that puts back what a run changed, where LeadSquared still
holds what that run wrote."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from lsqsync import __version__
from lsqsync.apply import engine as apply
from lsqsync.history.drift import _as_changes, _types
from lsqsync.lsq import LsqClient, codec
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
from lsqsync.state.store import StateFile


@dataclass(frozen=True)
class Rollback:
    plan: Plan
    conflicting: tuple[str, ...]  # fields changed since the run: left alone


def rollback(
    client: LsqClient,
    st: StateFile,
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
