"""``lsqsync drift``: the fields whose value in LeadSquared is no longer what lsqsync last
wrote to them; and ``drift --accept``, which takes LeadSquared's values as the known ones.

Accepting is Terraform's refresh-only apply: nothing is sent to LeadSquared. It is a run of its
own in the state — its plan digest is ACCEPT, each field's result ``already_current`` with the
value lsqsync knew as ``before`` and LeadSquared's as ``after`` (``stale`` for an opportunity
that no longer exists, which lsqsync then stops comparing) — and ``last_written`` takes the
accepted values. ``drift --undo-accept RUN`` reverses one: another such run (digest UNDO) that
puts back the values the accepting run replaced, where nothing replaced them since.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from lsqsync.apply import engine as apply
from lsqsync.display import FieldNames, clean, field_name, is_masked, masked, plural, shown
from lsqsync.errors import StateError
from lsqsync.lsq import LsqClient, OpportunityType, codec
from lsqsync.plan.model import (
    FieldChange,
    OpportunityChange,
)
from lsqsync.state.records import FieldResult, Run
from lsqsync.state.store import StateFile

# The plan digests of runs that apply no plan: they record values as known (state runs shows
# them in the PLAN column).
ACCEPT = "drift-accept"
UNDO = "drift-undo"
GONE = "the opportunity no longer exists"
_KINDS = {ACCEPT: "accept", UNDO: "undo"}
_VERBS = {"apply": "wrote", "accept": "accepted", "undo": "restored"}


@dataclass(frozen=True)
class Drifted:
    opportunity_id: str
    opportunity_type: int
    field: str
    written: str  # what lsqsync last wrote (or accepted as known)
    current: str | None  # what LeadSquared holds now
    run_id: str
    known_by: str = "apply"  # how run_id came to know ``written``: apply, accept or undo
    gone: bool = False  # the opportunity no longer exists
    label: str | None = None  # the field's display name, as the metadata says (None: unknown)


@dataclass(frozen=True)
class Accepted:
    """What ``drift --accept`` or ``--undo-accept`` recorded (``run`` None: nothing to do)."""

    kind: str  # ACCEPT or UNDO
    run: Run | None
    results: tuple[FieldResult, ...]
    left: tuple[str, ...] = ()  # fields left as they were, and why
    # type code → schema name → display name of the fields of ``results``
    field_labels: Mapping[int, Mapping[str, str]] = field(default_factory=dict)


def _types(client: LsqClient, codes: set[int]) -> dict[int, OpportunityType]:
    return {code: client.opportunity_type(code) for code in sorted(codes)}


def _as_changes(
    rows: Sequence[tuple[str, int, str, str | None, str]],
) -> list[OpportunityChange]:
    """(opportunity, type, field, before, after) rows → changes, for reading back."""
    grouped: dict[tuple[str, int], list[FieldChange]] = defaultdict(list)
    for opp, code, name, before, after in rows:
        grouped[(opp, code)].append(FieldChange(name, before, after, "", ""))
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
    kinds = {r.id: _KINDS[r.plan_digest] for r in st.runs() if r.plan_digest in _KINDS}
    out = []
    for w in written:
        meta = types[w.opportunity_type].field(w.field)
        label = meta.display_name if meta is not None else None
        values = current.get(w.opportunity_id.lower())
        now = values.get(w.field) if values is not None else None
        if meta is None or values is None or not codec.same(meta, now, w.value):
            held = codec.canonical(meta, now) if meta is not None else now
            out.append(
                Drifted(
                    w.opportunity_id,
                    w.opportunity_type,
                    w.field,
                    w.value,
                    held,
                    w.run_id,
                    known_by=kinds.get(w.run_id, "apply"),
                    gone=values is None,
                    label=label or None,
                )
            )
    return out


def accept(client: LsqClient, st: StateFile, run_id: str | None) -> Accepted:
    """Take LeadSquared's current values as the known ones, for the drifted fields that run
    ``run_id`` wrote (every drifted field when None). Sends nothing; needs a writable state."""
    wanted = st.run(run_id).id if run_id is not None else None
    drifted = [d for d in drift(client, st) if wanted is None or d.run_id == wanted]
    results = tuple(
        FieldResult(
            d.opportunity_id,
            d.opportunity_type,
            d.field,
            before=d.written,
            after=d.current or "",
            status="stale" if d.gone else "already_current",
            rule="drift --accept",
            message=f"{GONE}: no longer compared" if d.gone else _why(d),
        )
        for d in drifted
    )
    flag = f"--accept {wanted}" if wanted else "--accept --all"
    labels = _labels(drifted)
    return Accepted(ACCEPT, _record(st, ACCEPT, flag, results, labels), results, (), labels)


def _labels(drifted: Sequence[Drifted]) -> dict[int, dict[str, str]]:
    """Type code → schema name → display name, of the drifted fields that have one."""
    labels: dict[int, dict[str, str]] = {}
    for d in drifted:
        if d.label:
            labels.setdefault(d.opportunity_type, {})[d.field] = d.label
    return labels


def _why(d: Drifted) -> str:
    return f"accepted: changed since run {d.run_id} {_VERBS[d.known_by]} it"


def undo_accept(st: StateFile, run_id: str) -> Accepted:
    """Put back the values that the ``drift --accept`` run ``run_id`` replaced, where no later
    run replaced them since; recorded as a run of its own. Reads nothing from LeadSquared."""
    run = st.run(run_id)
    if run.plan_digest != ACCEPT:
        raise StateError(
            f"run {run.id} did not accept drift (its plan is {run.plan_digest[:12]}): "
            "--undo-accept takes a run of lsqsync drift --accept (lsqsync state runs lists "
            f"them as plan {ACCEPT}); to put back what a run wrote, use lsqsync rollback"
        )
    known = {(w.opportunity_id.lower(), w.field): w for w in st.last_written_values()}
    results, left = [], []
    for r in st.results(run.id):
        now = known.get((r.opportunity_id.lower(), r.field))
        replaced = now is None if r.status == "stale" else now is not None and now.run_id == run.id
        if not replaced:
            later = f"run {now.run_id}" if now is not None else "a later run"
            left.append(f"{r.opportunity_id} {r.field} (changed since by {later})")
            continue
        results.append(
            FieldResult(
                r.opportunity_id,
                r.opportunity_type,
                r.field,
                before=None if r.status == "stale" else r.after,
                after=r.before or "",
                status="already_current",
                rule="drift --undo-accept",
                message=f"run {run.id} undone: compared with this value again",
            )
        )
    labels = st.field_labels(run.id)  # as the accepting run had them from the metadata
    recorded = _record(st, UNDO, f"--undo-accept {run.id}", tuple(results), labels)
    return Accepted(UNDO, recorded, tuple(results), tuple(left), labels)


def _record(
    st: StateFile,
    digest: str,
    flag: str,
    results: Sequence[FieldResult],
    labels: Mapping[int, Mapping[str, str]],
) -> Run | None:
    """A run of its own that records ``results`` as known values, with the display names of
    their fields (none when there are no results)."""
    if not results:
        return None
    lock = st.acquire_lock(f"drift {flag.split()[0]}", expiry=3600.0)
    try:
        run = st.begin_run(digest, overrides=[flag], field_labels=labels)
        try:
            st.record_accepted(run.id, results)
        except BaseException:
            st.finish_run(run.id, "failed")
            raise
        return st.finish_run(run.id, "succeeded")
    finally:
        st.release_lock(lock.id)


# -- rendering --------------------------------------------------------------------------------


def render_drift(drifted: Sequence[Drifted], fmt: str, mask: Collection[str] = ()) -> str:
    if fmt == "json":
        return (
            json.dumps(
                [
                    {
                        "opportunity_id": d.opportunity_id,
                        "opportunity_type": d.opportunity_type,
                        "field": d.field,
                        "field_label": d.label,
                        "written": masked(d.field, d.written, mask),
                        "current": masked(d.field, d.current, mask),
                        "run": d.run_id,
                        "known_by": d.known_by,
                        "gone": d.gone,
                    }
                    for d in drifted
                ],
                indent=2,
            )
            + "\n"
        )
    if not drifted:
        return "No drift: LeadSquared holds every value lsqsync last wrote.\n"
    lines = [_drift_line(d, mask) for d in drifted]
    tail = f"Drift: {plural(len(drifted), 'field')} changed outside lsqsync."
    hint = (
        "To take LeadSquared's values as the known ones: lsqsync drift --accept RUN "
        "(the fields that run wrote) or --accept --all."
    )
    return "\n".join([*lines, tail, hint]) + "\n"


def _drift_line(d: Drifted, mask: Collection[str]) -> str:
    hidden = is_masked(d.field, mask)
    now = GONE if d.gone else f"now {shown(d.current, hidden)}"
    return (
        f"~ {clean(d.opportunity_id)} (type {d.opportunity_type}) "
        f"{field_name(d.field, d.label)}: {_VERBS[d.known_by]} "
        f"{shown(d.written, hidden)} (run {d.run_id}), {now}"
    )


def render_accepted(accepted: Accepted, fmt: str, mask: Collection[str] = ()) -> str:
    """What ``drift --accept`` or ``--undo-accept`` recorded."""
    run = accepted.run
    names = FieldNames(accepted.field_labels)
    if fmt == "json":
        rows = [
            {
                "opportunity_id": r.opportunity_id,
                "opportunity_type": r.opportunity_type,
                "field": r.field,
                "field_label": names.label(r.field, r.opportunity_type),
                "before": masked(r.field, r.before, mask),
                "after": masked(r.field, r.after, mask),
                "status": r.status,
                "message": r.message,
            }
            for r in accepted.results
        ]
        body = {"run": run.id if run else None, "results": rows, "left": list(accepted.left)}
        return json.dumps(body, indent=2) + "\n"
    lines = [_accepted_line(r, mask, names) for r in accepted.results]
    lines += [f"left alone: {clean(f)}" for f in accepted.left]
    if run is None:
        nothing = "no drifted field to accept" if accepted.kind == ACCEPT else "nothing to undo"
        return "\n".join([*lines, f"No changes: {nothing}; the state is as it was."]) + "\n"
    count = plural(len(accepted.results), "field")
    if accepted.kind == ACCEPT:
        lines += [
            f"Accepted {count} as LeadSquared holds them (run {run.id}); nothing was sent. "
            "Drift now reports only later edits.",
            f"To undo: lsqsync drift --undo-accept {run.id}",
        ]
    else:
        lines.append(
            f"Put back {count} (run {run.id}): drift compares them with what lsqsync wrote again."
        )
    return "\n".join(lines) + "\n"


def _accepted_line(r: FieldResult, mask: Collection[str], names: FieldNames) -> str:
    hidden = is_masked(r.field, mask)
    after = GONE if r.status == "stale" else shown(r.after, hidden)
    return (
        f"~ {clean(r.opportunity_id)} (type {r.opportunity_type}) "
        f"{names(r.field, r.opportunity_type)}: "
        f"{shown(r.before, hidden)} -> {after}"
    )
