"""The plan: what lsqsync would change, frozen, with its JSON form and its digest.

A plan is bound to everything in it: the digest is a sha256 over the canonical JSON of every
member of the plan but the digest itself — the changes and their premises, what produced them
(the input files' hashes, the variables, ``now``, the host, the targets, the overrides), the
state it was made against, its times and expiry, its summary, cost, labels, field labels and
mask. Editing any of them (an expiry pushed back, another lineage, a label or a mask that makes
``show`` lie) makes the plan refused. Two plans of the same inputs made at different moments
have different digests; their ``changes`` are still byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from lsqsync.clock import parse_stamp, stamp
from lsqsync.lsq import MAX_BULK_ITEMS, Limit
from lsqsync.plan import changes_text

# 3: per-rule counts (rule_counts), the re-apply marks (reapplied) and the fields' display names
# (field_labels); 2: premises in the changes, and a digest over the whole plan (1 covered inputs
# and changes)
FORMAT_VERSION = 3
TOP_TRANSITIONS = 10


# How a plan's warning about a rule that never settles starts (``apply`` refuses such a plan
# without --allow-nonconvergent), and one about changes that re-apply a rolled-back run.
NONCONVERGENT = "non-convergent rule"
REAPPLIES = "re-applies rolled-back run"


# How long a saved plan may be applied, unless `plan --expires-in` says otherwise.
PLAN_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str | None  # the current value, canonical (None: empty)
    after: str  # the value to write, as sent ("" clears the field)
    rule: str
    source: str  # "rules/q4.yml:12": where the rule sets this field


@dataclass(frozen=True)
class Premise:
    """What one rule's changes to one opportunity rest on: the values, as read when planning, of
    the fields the rule's ``where``, ``when`` and templates read. When any of them no longer
    holds at apply time, none of the fields the rule ``holds`` is sent."""

    rule: str
    holds: tuple[str, ...]  # the planned fields of this opportunity the rule sets, sorted
    # (field, value as LeadSquared returned it; None: empty), sorted by field. Compared with
    # the codec at apply time (250000 is 250,000.00): parsing 100,000 of them here would cost
    # the planner more than it saves anyone.
    read: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class OpportunityChange:
    id: str
    opportunity_type: int
    rules: tuple[str, ...]
    changes: tuple[FieldChange, ...]  # sorted by field
    premises: tuple[Premise, ...] = ()  # sorted by rule; a rule that read nothing has none


@dataclass(frozen=True)
class RuleSummary:
    name: str
    source: str  # file:line of the rule's name
    opportunities: int
    fields: int


@dataclass(frozen=True)
class RuleCount:
    """How the opportunities one rule matched came out. A rule matches an opportunity of its
    type that it selects (every one, or its ``ids`` or CSV rows) and whose ``where`` and
    ``when`` hold; of those, ``matched`` = ``changing`` + ``current`` + ``by_other_rule`` +
    ``once``."""

    rule: str
    matched: int
    changing: int  # a field the rule sets changes, in the rule's name (the summary's count)
    current: int  # every field the rule sets already holds its value
    # a field the rule sets changes, in the name of another rule that sets the same value
    # (the first of them in file order): only that rule's name is on the change
    by_other_rule: int
    once: int  # left alone: the rule has ``once: true`` and wrote the opportunity before


@dataclass(frozen=True)
class Transition:
    field: str
    before: str | None
    after: str
    count: int


@dataclass(frozen=True)
class TypeSummary:
    opportunity_type: int
    name: str
    total: int | None  # opportunities of the type in the account; None: unknown
    changing: int


@dataclass(frozen=True)
class Summary:
    opportunities: int
    fields: int
    rules: tuple[RuleSummary, ...]
    types: tuple[TypeSummary, ...]
    transitions: tuple[Transition, ...]  # the most frequent, most frequent first


@dataclass(frozen=True)
class Cost:
    read_calls: int  # made to build the plan
    write_calls: int  # needed to apply it: ⌈opportunities / 25⌉
    min_seconds: float  # the least time the writes take at the account's rate limit


def write_cost(read_calls: int, opportunities: int, rate: Limit) -> Cost:
    """Bulk Update takes 25 opportunities a call; under a limit of ``rate.calls`` per
    ``rate.per_seconds`` (the strictest a Bulk Update call meets), the first window's calls go
    at once and each further window waits."""
    write_calls = math.ceil(opportunities / MAX_BULK_ITEMS)
    waits = max(0, math.ceil(write_calls / rate.calls) - 1)
    return Cost(read_calls, write_calls, waits * rate.per_seconds)


@dataclass(frozen=True)
class Inputs:
    """What the plan was computed from (hashes only: no rule text, no secrets)."""

    files: Mapping[str, str]  # path → sha256 of the configuration, rule and CSV files
    vars: Mapping[str, Any]
    now: str
    host: str
    targets: tuple[str, ...] = ()
    allow_large: bool = False


@dataclass(frozen=True)
class Plan:
    lsqsync_version: str
    created_at: str
    expires_at: str
    inputs: Inputs
    summary: Summary
    cost: Cost
    changes: tuple[OpportunityChange, ...]
    digest: str
    git_commit: str | None = None
    state_lineage: str | None = None
    state_serial: int | None = None
    warnings: tuple[str, ...] = ()
    # Rendering aids, saved with the plan so that `show` needs no network: user id → label
    # ("George Bailey <george.bailey@example.com>") for user-valued fields, and masked fields.
    labels: Mapping[str, str] = field(default_factory=dict)
    mask: tuple[str, ...] = ()
    # type code → schema name → display name of the fields the changes name, from the metadata
    # read when planning: outputs for people say "Stage (mx_Custom_2)" without the network
    field_labels: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # Per rule (in the project's order), how the opportunities it matched came out; empty in a
    # plan that is not made from rules (a rollback) or is a part of one (reconcile)
    rule_counts: tuple[RuleCount, ...] = ()
    # (opportunity id, field) of the changes that write again what a rolled-back run wrote →
    # that run's id, as the state said when planning: marked where the plan is shown
    reapplied: Mapping[tuple[str, str], str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def nonconvergent(self) -> tuple[str, ...]:
        """The warnings about rules that would change their fields again after this plan."""
        return tuple(w for w in self.warnings if w.startswith(NONCONVERGENT))


# -- building blocks ------------------------------------------------------------------------


def assemble(
    changes: Iterable[OpportunityChange],
    inputs: Inputs,
    *,
    version: str,
    created: datetime,
    lifetime: timedelta,
    rule_sources: Mapping[str, str],
    type_totals: Mapping[int, tuple[str, int | None]],
    rate: Limit,
    read_calls: int,
    git_commit: str | None = None,
    state: tuple[str | None, int | None] = (None, None),
    warnings: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    mask: Sequence[str] = (),
    field_labels: Mapping[int, Mapping[str, str]] | None = None,
    presorted: bool = False,
    rule_counts: Sequence[RuleCount] = (),
    reapplied: Mapping[tuple[str, str], str] | None = None,
) -> Plan:
    """The one way to make a Plan: the changes sorted (``presorted``: they are already as
    ``sort_changes`` makes them, as the planner builds them), summarised (``rule_sources``: rule
    name → file:line; ``type_totals``: code → (name, opportunities of the type, or None when not
    read)), costed under ``rate`` and digested; stamped ``created`` and valid for
    ``lifetime``; ``state`` is the state file's (lineage, serial) it was made against; its host
    in one form (``plan_host``); ``presorted``: the changes are already as ``sort_changes``
    makes them (as the planner builds them); ``rule_counts`` and ``reapplied`` as ``Plan`` has
    them."""
    ordered = tuple(changes) if presorted else sort_changes(changes)
    plan = Plan(
        lsqsync_version=version,
        created_at=stamp(created),
        expires_at=stamp(created + lifetime),
        inputs=replace(inputs, host=plan_host(inputs.host)),
        summary=summarise(ordered, rule_sources, type_totals),
        cost=write_cost(read_calls, len(ordered), rate),
        changes=ordered,
        digest="",
        git_commit=git_commit,
        state_lineage=state[0],
        state_serial=state[1],
        warnings=tuple(warnings),
        labels=dict(labels or {}),
        mask=tuple(mask),
        field_labels=named_fields(ordered, field_labels or {}),
        rule_counts=tuple(rule_counts),
        reapplied=dict(sorted((reapplied or {}).items())),
    )
    return replace(plan, digest=compute_digest(plan))


def named_fields(
    changes: Sequence[OpportunityChange], labels: Mapping[int, Mapping[str, str]]
) -> dict[int, dict[str, str]]:
    """Of ``labels`` (type code → schema name → display name), those of the fields that
    ``changes`` name, per type: what the plan keeps to show them by the names people know."""
    named = {(c.opportunity_type, f.field) for c in changes for f in c.changes}  # ≈ 20 ms/100k
    out: dict[int, dict[str, str]] = {}
    for code, name in sorted(named):
        label = labels.get(code, {}).get(name)
        if label:
            out.setdefault(code, {})[name] = label
    return out


def plan_host(host: str) -> str:
    """The host a plan is bound to, in one form, so that two spellings of one host are one:
    ``HTTPS://API-in21.LeadSquared.com:443/v2/`` is ``https://api-in21.leadsquared.com``. It
    must agree with ``lsq.transport.normalise_host``, which reads ``LSQ_HOST`` and ``host:``
    (a base URL; ``https://`` when the scheme is left out; a trailing ``/v2`` is the API's own
    path): two settings it accepts for one host must give one value here, or ``apply`` would
    refuse a plan of the very host it writes to. Never raises: a value it cannot read is kept
    as it is (lower-cased)."""
    text = host.strip()
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text.lower()
    scheme = parts.scheme.lower()
    name = (parts.hostname or "").rstrip(".")  # urlsplit lower-cases it
    if ":" in name:
        name = f"[{name}]"  # an IPv6 address
    if port is not None and port != {"https": 443, "http": 80}.get(scheme):
        name += f":{port}"
    path = parts.path.rstrip("/")
    if path.lower().endswith("/v2"):
        path = path[:-3].rstrip("/")
    return f"{scheme}://{name}{path}"


def subset(
    plan: Plan,
    changes: Iterable[OpportunityChange],
    rate: Limit,
    warnings: Sequence[str] = (),
) -> Plan:
    """A plan of some of ``plan``'s changes (reconcile splits a plan into what it applies and
    what waits for review): the same inputs, time, expiry, state and rules, summarised, costed
    under ``rate`` and digested anew, with ``warnings`` added to the plan's. The part keeps the
    re-apply marks of its changes, but not the per-rule counts: they describe the whole plan
    (what each rule matched), which a part no longer adds up to."""
    chosen = tuple(changes)
    created, expires = parse_stamp(plan.created_at), parse_stamp(plan.expires_at)
    values = {(v or "").lower() for c in chosen for f in c.changes for v in (f.before, f.after)}
    fields = {(c.id, f.field) for c in chosen for f in c.changes}
    return assemble(
        chosen,
        plan.inputs,
        version=plan.lsqsync_version,
        created=created,
        lifetime=expires - created,
        rule_sources={r.name: r.source for r in plan.summary.rules},
        type_totals={t.opportunity_type: (t.name, t.total) for t in plan.summary.types},
        rate=rate,
        read_calls=plan.cost.read_calls,
        git_commit=plan.git_commit,
        state=(plan.state_lineage, plan.state_serial),
        warnings=[*plan.warnings, *warnings],
        labels={k: v for k, v in plan.labels.items() if k in values},
        mask=plan.mask,
        field_labels=plan.field_labels,
        reapplied={key: run for key, run in plan.reapplied.items() if key in fields},
    )


def sort_changes(changes: Iterable[OpportunityChange]) -> tuple[OpportunityChange, ...]:
    return tuple(
        sorted(
            (
                OpportunityChange(
                    c.id,
                    c.opportunity_type,
                    tuple(sorted(set(c.rules))),
                    tuple(sorted(c.changes, key=lambda f: f.field)),
                    tuple(sorted(c.premises, key=lambda p: p.rule)),
                )
                for c in changes
            ),
            key=lambda c: c.id,
        )
    )


def summarise(
    changes: Sequence[OpportunityChange],
    rule_sources: Mapping[str, str],
    type_totals: Mapping[int, tuple[str, int | None]],
) -> Summary:
    """Counts per rule and type, and the most frequent value transitions."""
    per_rule_opps: Counter[str] = Counter()
    per_rule_fields: Counter[str] = Counter()
    per_type: Counter[int] = Counter()
    transitions: Counter[tuple[str, str | None, str]] = Counter()
    for opp in changes:
        per_type[opp.opportunity_type] += 1
        for rule in {f.rule for f in opp.changes}:
            per_rule_opps[rule] += 1
        for f in opp.changes:
            per_rule_fields[f.rule] += 1
            transitions[(f.field, f.before, f.after)] += 1
    return Summary(
        opportunities=len(changes),
        fields=sum(len(c.changes) for c in changes),
        rules=tuple(
            RuleSummary(name, source, per_rule_opps[name], per_rule_fields[name])
            for name, source in rule_sources.items()
        ),
        types=tuple(
            TypeSummary(code, name, total, per_type[code])
            for code, (name, total) in sorted(type_totals.items())
        ),
        transitions=tuple(
            Transition(f, before, after, n)
            for (f, before, after), n in sorted(
                transitions.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] or "", kv[0][2])
            )[:TOP_TRANSITIONS]
        ),
    )


# -- JSON -----------------------------------------------------------------------------------


def changes_json(changes: Sequence[OpportunityChange]) -> list[dict[str, Any]]:
    return [
        {
            "id": c.id,
            "opportunity_type": c.opportunity_type,
            "rules": list(c.rules),
            "fields": [
                {
                    "field": f.field,
                    "before": f.before,
                    "after": f.after,
                    "rule": f.rule,
                    "source": f.source,
                }
                for f in c.changes
            ],
            "premises": [
                {"rule": p.rule, "holds": list(p.holds), "read": dict(p.read)} for p in c.premises
            ],
        }
        for c in changes
    ]


def inputs_json(inputs: Inputs) -> dict[str, Any]:
    return {
        "files": dict(sorted(inputs.files.items())),
        "vars": dict(sorted(inputs.vars.items())),
        "now": inputs.now,
        "host": inputs.host,
        "targets": list(inputs.targets),
        "allow_large": inputs.allow_large,
    }


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_digest(plan: Plan) -> str:
    """sha256 over the canonical JSON of every member of ``plan`` but its digest: that of
    ``_members(plan)``, with the changes (whose key sorts first) written directly."""
    header = canonical(_members(plan))
    assert header.startswith(b'{"cost":')  # "changes" < "cost" < every other member
    digest = hashlib.sha256(b'{"changes":')
    for chunk in changes_text.canonical_chunks(plan.changes):
        digest.update(chunk.encode())
    digest.update(b"," + header[1:])
    return digest.hexdigest()


def to_json(plan: Plan) -> dict[str, Any]:
    return {**to_json_header(plan), "changes": changes_json(plan.changes)}


def to_json_header(plan: Plan) -> dict[str, Any]:
    """The plan's JSON form but its changes (the last member of the whole)."""
    members = _members(plan)
    return {
        "format_version": members.pop("format_version"),
        "lsqsync_version": members.pop("lsqsync_version"),
        "digest": plan.digest,
        **members,
    }


def _members(plan: Plan) -> dict[str, Any]:
    """The plan's JSON form, without its digest and its changes (which are written apart)."""
    s = plan.summary
    return {
        "format_version": plan.format_version,
        "lsqsync_version": plan.lsqsync_version,
        "created_at": plan.created_at,
        "expires_at": plan.expires_at,
        "git_commit": plan.git_commit,
        "state": {"lineage": plan.state_lineage, "serial": plan.state_serial},
        "inputs": inputs_json(plan.inputs),
        "summary": {
            "opportunities": s.opportunities,
            "fields": s.fields,
            "rules": [
                {
                    "name": r.name,
                    "source": r.source,
                    "opportunities": r.opportunities,
                    "fields": r.fields,
                }
                for r in s.rules
            ],
            "types": [
                {
                    "opportunity_type": t.opportunity_type,
                    "name": t.name,
                    "total": t.total,
                    "changing": t.changing,
                }
                for t in s.types
            ],
            "transitions": [
                {"field": t.field, "before": t.before, "after": t.after, "count": t.count}
                for t in s.transitions
            ],
        },
        "cost": {
            "read_calls": plan.cost.read_calls,
            "write_calls": plan.cost.write_calls,
            "min_seconds": plan.cost.min_seconds,
        },
        "warnings": list(plan.warnings),
        "labels": dict(sorted(plan.labels.items())),
        "mask": list(plan.mask),
        "field_labels": field_labels_json(plan.field_labels),
        **counts_and_marks_json(plan),
    }


def counts_and_marks_json(plan: Plan) -> dict[str, Any]:
    """The plan's per-rule counts and re-apply marks, in their JSON form."""
    return {
        "rule_counts": [
            {
                "rule": c.rule,
                "matched": c.matched,
                "changing": c.changing,
                "current": c.current,
                "by_other_rule": c.by_other_rule,
                "once": c.once,
            }
            for c in plan.rule_counts
        ],
        "reapplied": [
            {"id": opp_id, "field": name, "run": run}
            for (opp_id, name), run in sorted(plan.reapplied.items())
        ],
    }


def counts_and_marks(data: Mapping[str, Any]) -> dict[str, Any]:
    """``Plan``'s ``rule_counts`` and ``reapplied`` from their JSON form."""
    return {
        "rule_counts": tuple(
            RuleCount(
                c["rule"], c["matched"], c["changing"], c["current"], c["by_other_rule"], c["once"]
            )
            for c in data["rule_counts"]
        ),
        "reapplied": {(m["id"], m["field"]): m["run"] for m in data["reapplied"]},
    }


def field_labels_json(labels: Mapping[int, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """``{"12003": {"mx_Custom_2": "Stage"}}``: by type code (a JSON key is text), then
    schema name, both sorted."""
    return {str(code): dict(sorted(labels[code].items())) for code in sorted(labels)}


def dumps(plan: Plan) -> str:
    """``json.dumps(to_json(plan), indent=2, ensure_ascii=False)`` and a newline: the header by
    json.dumps, the changes (its last member, and nearly all of its size) written directly."""
    return "".join(dumps_chunks(plan))


def dumps_chunks(plan: Plan) -> Iterator[str]:
    """``dumps(plan)`` in pieces, for writing it without holding all of it."""
    header = {**to_json_header(plan), "changes": []}
    text = json.dumps(header, indent=2, ensure_ascii=False)
    assert text.endswith('\n  "changes": []\n}')
    yield text[: -len("[]\n}")]
    yield from changes_text.indented_chunks(plan.changes)
    yield "\n}\n"


def from_json(data: Mapping[str, Any]) -> Plan:
    """A plan from its JSON form (already validated against ``plan.schema.json``)."""
    s = data["summary"]
    return Plan(
        format_version=data["format_version"],
        lsqsync_version=data["lsqsync_version"],
        digest=data["digest"],
        created_at=data["created_at"],
        expires_at=data["expires_at"],
        git_commit=data.get("git_commit"),
        state_lineage=data["state"]["lineage"],
        state_serial=data["state"]["serial"],
        inputs=Inputs(
            files=dict(data["inputs"]["files"]),
            vars=dict(data["inputs"]["vars"]),
            now=data["inputs"]["now"],
            host=data["inputs"]["host"],
            targets=tuple(data["inputs"]["targets"]),
            allow_large=data["inputs"]["allow_large"],
        ),
        summary=Summary(
            opportunities=s["opportunities"],
            fields=s["fields"],
            rules=tuple(
                RuleSummary(r["name"], r["source"], r["opportunities"], r["fields"])
                for r in s["rules"]
            ),
            types=tuple(
                TypeSummary(t["opportunity_type"], t["name"], t["total"], t["changing"])
                for t in s["types"]
            ),
            transitions=tuple(
                Transition(t["field"], t["before"], t["after"], t["count"])
                for t in s["transitions"]
            ),
        ),
        cost=Cost(**data["cost"]),
        warnings=tuple(data["warnings"]),
        labels=dict(data["labels"]),
        mask=tuple(data["mask"]),
        field_labels={int(code): dict(names) for code, names in data["field_labels"].items()},
        **counts_and_marks(data),
        changes=tuple(
            OpportunityChange(
                c["id"],
                c["opportunity_type"],
                tuple(c["rules"]),
                tuple(
                    FieldChange(f["field"], f["before"], f["after"], f["rule"], f["source"])
                    for f in c["fields"]
                ),
                tuple(
                    Premise(p["rule"], tuple(p["holds"]), tuple(sorted(p["read"].items())))
                    for p in c["premises"]
                ),
            )
            for c in data["changes"]
        ),
    )
