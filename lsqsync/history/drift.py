"""``lsqsync drift``: the fields whose value in LeadSquared is no longer what lsqsync last
wrote to them."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from lsqsync.apply import engine as apply
from lsqsync.display import clean, is_masked, masked, plural, shown
from lsqsync.lsq import LsqClient, OpportunityType, codec
from lsqsync.plan.model import (
    FieldChange,
    OpportunityChange,
)
from lsqsync.state.store import StateFile


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


def drift(client: LsqClient, st: StateFile) -> list[Drifted]:
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


def render_drift(drifted: Sequence[Drifted], fmt: str, mask: Collection[str] = ()) -> str:
    if fmt == "json":
        return (
            json.dumps(
                [
                    {
                        "opportunity_id": d.opportunity_id,
                        "opportunity_type": d.opportunity_type,
                        "field": d.field,
                        "written": masked(d.field, d.written, mask),
                        "current": masked(d.field, d.current, mask),
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
    lines = []
    for d in drifted:
        hidden = is_masked(d.field, mask)
        lines.append(
            f"~ {clean(d.opportunity_id)} (type {d.opportunity_type}) {clean(d.field)}: wrote "
            f"{shown(d.written, hidden)} (run {d.run_id}), now {shown(d.current, hidden)}"
        )
    return "\n".join(lines) + f"\nDrift: {plural(len(drifted), 'field')} changed outside lsqsync.\n"
