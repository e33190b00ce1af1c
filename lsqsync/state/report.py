"""The state's runs (and a PostgreSQL state's workspaces) for people and tools: text tables,
JSON, CSV and Markdown."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal, get_args

from lsqsync.display import (
    MARKDOWN_LIMIT,
    FieldNames,
    capped,
    clean,
    csv_cell,
    is_masked,
    masked,
    md,
    shown,
    table,
)
from lsqsync.state.records import FieldResult, Lock, Run, Workspace

RunFormat = Literal["text", "json", "csv", "markdown"]
RunsFormat = Literal["text", "json"]

RUN_FORMATS: tuple[RunFormat, ...] = get_args(RunFormat)
RUNS_FORMATS: tuple[RunsFormat, ...] = get_args(RunsFormat)
EXPORT_VERSION = 1  # "format_version" of the JSON exports

# -- exports ----------------------------------------------------------------------------------

_COUNT_LABELS = (
    ("applied", "applied"),
    ("already_current", "already current"),
    ("stale", "stale"),
    ("failed", "failed"),
    ("unknown", "unknown"),
    ("not_sent", "not sent"),
)
RUNS_COLUMNS: tuple[str, ...] = (
    "RUN",
    "STARTED",
    "OUTCOME",
    "SERIAL",
    "APPLIED",
    "CURRENT",
    "STALE",
    "FAILED",
    "UNKNOWN",
    "NOT SENT",
    "PLAN",
    "WHO",
)
RESULT_COLUMNS: tuple[str, ...] = (
    "OPPORTUNITY",
    "TYPE",
    "FIELD",
    "BEFORE",
    "AFTER",
    "STATUS",
    "VERIFIED",
    "RULE",
    "MESSAGE",
)
_VERDICT_LABELS = (
    ("confirmed", "confirmed"),
    ("normalised", "normalised"),
    ("not_persisted", "not persisted"),
)
NO_VERIFY = "--no-verify"  # the override a run records when it did not read back
CSV_COLUMNS: tuple[str, ...] = (
    "run",
    "opportunity",
    "type",
    "field",
    "before",
    "after",
    "status",
    "message",
    "rule",
    "current",
    "verified",
    "field_label",
)


def render_runs(runs: Sequence[Run], fmt: RunsFormat = "text") -> str:
    """The runs for `lsqsync state runs`: an aligned table, or JSON."""
    if fmt == "json":
        return _json({"format_version": EXPORT_VERSION, "runs": [_run_object(r) for r in runs]})
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(RUNS_FORMATS)})")
    if not runs:
        return "No runs yet.\n"
    rows: list[Sequence[str]] = [RUNS_COLUMNS]
    for r in runs:
        c = r.counts
        counts = (c.applied, c.already_current, c.stale, c.failed, c.unknown, c.not_sent)
        rows.append(
            (
                r.id,
                r.started,
                r.outcome,
                _serial(r.serial),
                *map(str, counts),
                r.plan_digest[:12],
                r.who,
            )
        )
    return table(rows[0], rows[1:], cut=None)


WORKSPACE_COLUMNS: tuple[str, ...] = ("", "WORKSPACE", "SERIAL", "RUNS", "LAST RUN", "LOCK")


def render_workspaces(
    workspaces: Sequence[Workspace], current: str, fmt: RunsFormat = "text"
) -> str:
    """The workspaces for `lsqsync state workspaces`, ``current`` (the project's) marked *."""
    if fmt == "json":
        return _json(
            {
                "format_version": EXPORT_VERSION,
                "workspaces": [
                    {
                        "name": w.name,
                        "current": w.name == current,
                        "schema_version": w.schema_version,
                        "created": w.created,
                        "serial": w.serial,
                        "runs": w.runs,
                        "last_run": w.last_run,
                        "last_outcome": w.last_outcome,
                        "lock": _lock_json(w.lock),
                    }
                    for w in workspaces
                ],
            }
        )
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(RUNS_FORMATS)})")
    if not workspaces:
        return "No workspaces yet.\n"
    rows = []
    for w in workspaces:
        last = f"{w.last_run} {w.last_outcome}" if w.last_run else "-"
        lock = w.lock
        held = f"{lock.holder} ({lock.operation} since {lock.since})" if lock else "-"
        mark = "*" if w.name == current else ""
        rows.append((mark, w.name, str(w.serial), str(w.runs), last, held))
    return table(WORKSPACE_COLUMNS, rows, cut=None)


def render_run(
    run: Run,
    results: Sequence[FieldResult],
    fmt: RunFormat = "text",
    *,
    mask: Collection[str] = (),
    field_labels: Mapping[int, Mapping[str, str]] | None = None,
) -> str:
    """One run and its field results for `lsqsync state show`: text for a terminal, JSON, or
    CSV (one row per field result) for a spreadsheet. Values of the fields in ``mask`` are
    shown as ***, in every format. ``field_labels`` (type code → schema name → display name)
    name the fields as LeadSquared's screens do: ``Stage (mx_Custom_2)`` for people, a
    ``field_label`` beside the schema name for tools."""
    if fmt not in RUN_FORMATS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(RUN_FORMATS)})")
    names = FieldNames(field_labels)
    if fmt == "json":
        return _run_json(run, results, mask, names)
    if fmt == "csv":
        return _run_csv(run, results, mask, names)
    if fmt == "markdown":
        return _run_markdown(run, results, mask, names)
    return _run_text(run, results, mask, names)


def _run_json(
    run: Run, results: Sequence[FieldResult], mask: Collection[str], names: FieldNames
) -> str:
    """The run and every field result, for tools."""
    return _json(
        {
            "format_version": EXPORT_VERSION,
            "run": _run_object(run),
            "results": [
                {
                    "opportunity_id": r.opportunity_id,
                    "opportunity_type": r.opportunity_type,
                    "field": r.field,
                    "field_label": names.label(r.field, r.opportunity_type),
                    "before": masked(r.field, r.before, mask),
                    "after": masked(r.field, r.after, mask),
                    "current": masked(r.field, r.current, mask),
                    "status": r.status,
                    "message": r.message,
                    "rule": r.rule,
                    "verified": r.verified,
                }
                for r in results
            ],
        }
    )


def _run_csv(
    run: Run, results: Sequence[FieldResult], mask: Collection[str], names: FieldNames
) -> str:
    """One row per field result, each cell safe to open in a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow(
            csv_cell(x)
            for x in (
                run.id,
                r.opportunity_id,
                str(r.opportunity_type),
                r.field,
                masked(r.field, r.before, mask),
                masked(r.field, r.after, mask),
                r.status,
                r.message,
                r.rule,
                masked(r.field, r.current, mask),
                r.verified,
                names.label(r.field, r.opportunity_type),
            )
        )
    return out.getvalue()


def _run_text(
    run: Run, results: Sequence[FieldResult], mask: Collection[str], names: FieldNames
) -> str:
    counts = ", ".join(f"{getattr(run.counts, k)} {label}" for k, label in _COUNT_LABELS)
    lines = [
        f"Run {run.id}: {run.outcome}",
        f"  plan       {run.plan_digest}",
        f"  who        {clean(run.who)}",
        f"  where      {clean(run.where)}",
        f"  started    {run.started}",
        f"  finished   {run.finished or '-'}",
        f"  serial     {_serial(run.serial)}",
        f"  overrides  {clean(', '.join(run.overrides)) or 'none'}",
        f"  results    {counts}",
        f"  read back  {read_back(run)}",
        "",
    ]
    if not results:
        return "\n".join([*lines, "No field results.", ""])
    rows: list[Sequence[str]] = [RESULT_COLUMNS]
    for r in results:
        rows.append(
            (
                r.opportunity_id,
                str(r.opportunity_type),
                names(r.field, r.opportunity_type),
                shown(r.before, is_masked(r.field, mask)),
                shown(r.after, is_masked(r.field, mask)),
                r.status,
                _VERDICTS.get(r.verified or "", ""),
                r.rule,
                _message(r, is_masked(r.field, mask)),
            )
        )
    return "\n".join(lines) + "\n" + table(rows[0], rows[1:], cut=None)


_VERDICTS = dict(_VERDICT_LABELS)


def read_back(run: Run) -> str:
    """What reading back the run's applied fields found, in a few words."""
    c = run.counts
    if NO_VERIFY in run.overrides and not c.confirmed + c.normalised + c.not_persisted:
        return "skipped (--no-verify)"  # (a later apply of the plan may read them back)
    if not c.applied:
        return "-"
    found = ", ".join(f"{getattr(c, k)} {label}" for k, label in _VERDICT_LABELS)
    unread = c.applied - c.confirmed - c.normalised - c.not_persisted
    return found + (f"; {unread} not read back" if unread > 0 else "")


# How a field that needs a person is named, the worst first: what LeadSquared said it took but
# does not hold, what it refused, what nobody knows, what changed since the plan, what waits
PROBLEMS = (
    ("not_persisted", "not persisted"),
    ("failed", "failed"),
    ("unknown", "unknown"),
    ("stale", "stale"),
    ("not_sent", "not sent"),
)
_PROBLEM_RANK = {kind: rank for rank, (kind, _) in enumerate(PROBLEMS)}


def problem(r: FieldResult) -> str | None:
    """Why a field needs a person (a key of PROBLEMS), or None."""
    if r.status == "applied":
        return "not_persisted" if r.verified == "not_persisted" else None
    return r.status if r.status in _PROBLEM_RANK else None


def problems(*groups: Sequence[FieldResult]) -> list[FieldResult]:
    """The fields that need a person, the worst first, then by opportunity and field."""
    found = [r for group in groups for r in group if problem(r) is not None]
    return sorted(found, key=lambda r: (_PROBLEM_RANK[problem(r) or ""], r.opportunity_id, r.field))


def problem_lines(
    results: Sequence[FieldResult], mask: Collection[str] = (), names: FieldNames | None = None
) -> list[str]:
    """One line per field that needs a person: what it is, what was planned, what LeadSquared
    holds now, and why — ``stale  ID (12003) Stage (mx_Custom_2): "Open" → "Won", now "Lost":
    …`` (``names``: how fields are named; by schema name when None)."""
    names = names or FieldNames()
    labels = dict(PROBLEMS)
    kinds = [problem(r) or "" for r in results]
    width = max((len(labels[k]) for k in kinds), default=0)
    lines = []
    for r, kind in zip(results, kinds, strict=True):
        hidden = is_masked(r.field, mask)
        planned = f"{shown(r.before, hidden)} → {shown(r.after, hidden)}"
        now = "unknown" if kind == "unknown" else shown(r.current, hidden)
        why = "not persisted" if kind == "not_persisted" else r.message or labels[kind]
        lines.append(
            f"{labels[kind]:<{width}}  {clean(r.opportunity_id)} ({r.opportunity_type}) "
            f"{names(r.field, r.opportunity_type)}: {planned}, now {now}: "
            f"{capped(clean(why), 160)}"
        )
    return lines


MARKDOWN_ROWS = 200  # problem rows shown in a pull-request comment; the rest: --format csv


def _run_markdown(
    run: Run, results: Sequence[FieldResult], mask: Collection[str], names: FieldNames
) -> str:
    """A run for a pull-request comment: what happened, the counts, and every field that needs a
    person (stale, failed, unknown, not sent); applied fields are only counted."""
    c = run.counts
    lines = [
        f"### lsqsync apply `{run.id}`: {run.outcome}",
        "",
        f"- plan: `{run.plan_digest}`",
        f"- who: {md(clean(run.who))}",
        f"- where: {md(clean(run.where))}",
        f"- started: {run.started}, finished: {run.finished or '-'}",
        f"- overrides: {md(clean(', '.join(run.overrides))) or 'none'}",
        f"- read back: {read_back(run)}",
        "",
        "| " + " | ".join(label.capitalize() for _, label in _COUNT_LABELS) + " |",
        "|" + "---:|" * len(_COUNT_LABELS),
        "| " + " | ".join(str(getattr(c, k)) for k, _ in _COUNT_LABELS) + " |",
    ]
    listed = problems(results)
    if not listed:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        f"#### Fields that need a look ({len(listed)})",
        "",
        "| Opportunity | Field | Status | Before | After | Message |",
        "|---|---|---|---|---|---|",
    ]
    tail = [
        "",
        f"Every result: `lsqsync state show {run.id} --format csv`. Stale fields changed in "
        "LeadSquared after the plan and were left alone; plan again to review them. Fields not "
        "sent (the account's rate limit) are sent by applying the same plan again. Fields not "
        "persisted were accepted by LeadSquared but read back holding something else.",
    ]
    size = sum(len(x) + 1 for x in lines + tail)
    labels = dict(PROBLEMS)
    for count, r in enumerate(listed):
        hidden = is_masked(r.field, mask)
        before, after = shown(r.before, hidden), shown(r.after, hidden)
        status = labels[problem(r) or ""]
        field = names(r.field, r.opportunity_type)
        cells = (r.opportunity_id, field, status, before, after, _message(r, hidden))
        row = "| " + " | ".join(md(clean(x)) for x in cells) + " |"
        if count == MARKDOWN_ROWS or size + len(row) + 200 > MARKDOWN_LIMIT:
            lines.append(f"| … {len(listed) - count} more | | | | | |")
            break
        lines.append(row)
        size += len(row) + 1
    return "\n".join(lines + tail) + "\n"


def _run_object(run: Run) -> dict[str, Any]:
    """The run without its field results, as JSON exports show it."""
    return {
        "id": run.id,
        "who": run.who,
        "where": run.where,
        "plan_digest": run.plan_digest,
        "started": run.started,
        "finished": run.finished,
        "outcome": run.outcome,
        "serial": run.serial,
        "overrides": list(run.overrides),
        "counts": {k: getattr(run.counts, k) for k, _ in _COUNT_LABELS},
        "read_back": {k: getattr(run.counts, k) for k, _ in _VERDICT_LABELS},
    }


def _lock_json(lock: Lock | None) -> dict[str, Any] | None:
    if lock is None:
        return None
    keys = ("id", "holder", "host", "pid", "run_id", "operation", "since", "heartbeat")
    return {k: getattr(lock, k) for k in keys}


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _serial(serial: int | None) -> str:
    return "-" if serial is None else str(serial)


def _message(r: FieldResult, masked: bool) -> str:
    """The result's message, with the value that made a stale field stale, the one a field not
    persisted holds instead, or the form a normalised one is stored in."""
    if r.status == "stale" and r.current is not None:
        return f"{r.message or 'stale'}; now {shown(r.current, masked)}"
    if r.verified == "not_persisted":
        return f"not persisted; now {shown(r.current, masked)}"
    if r.verified == "normalised":
        return f"stored as {shown(r.current, masked)}"
    return r.message or ""
