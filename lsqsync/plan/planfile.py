"""Saved plans: written atomically, read back only if they are exactly what was made.

A saved plan holds the real values (apply writes them and re-checks the ``before`` values);
masking is for renderings only. ``load`` refuses a file that is not JSON, does not match
``plan.schema.json`` (every problem, each at its JSON path), has a format this version cannot
read, or any member of which (changes, inputs, times, state, labels, mask …) was modified after
the plan was made.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from lsqsync import __version__, resources
from lsqsync.documents.problems import format_path
from lsqsync.documents.schemacheck import describe
from lsqsync.errors import LsqsyncError, PlanInvalid
from lsqsync.plan.model import (
    FORMAT_VERSION,
    Plan,
    Summary,
    compute_digest,
    dumps_chunks,
    from_json,
    summarise,
)


def file_sha256(path: Path) -> str:
    """The hash by which a plan binds one of its input files (``inputs.files``)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(plan: Plan, path: Path | str) -> None:
    """Write ``plan`` to ``path`` atomically (a temporary file beside it, then ``os.replace``),
    creating the folder. The file is readable by its owner only: it holds real values."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.writelines(dumps_chunks(plan))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise LsqsyncError(f"{path}: cannot write the plan: {e.strerror or e}") from None


def load(path: Path | str) -> Plan:
    """The plan saved at ``path``; PlanInvalid (message starting with the path) when it cannot be
    used as it is."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise PlanInvalid(f"{name}: cannot read the plan: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise PlanInvalid(f"{name}: not a JSON file: {e}") from None
    try:
        data = json.loads(text)
        return parse(data, name)
    except json.JSONDecodeError as e:
        raise PlanInvalid(f"{name}: not a JSON file: {e}") from None
    except RecursionError:  # json, or the schema check, on a document nested thousands deep
        raise PlanInvalid(f"{name}: not a plan (nested too deeply)") from None


def parse(data: Any, name: str) -> Plan:
    """A plan from its decoded JSON form, checked like ``load`` does; ``name`` starts messages."""
    _check_format_version(data, name)
    problems = _problems(data)
    if problems:
        count = len(problems)
        raise PlanInvalid(
            f"{name}: not a valid lsqsync plan ({count} problem{'s' if count != 1 else ''}):\n"
            + "\n".join(f"{name}: {p}" for p in problems)
        )
    plan = from_json(data)
    digest = compute_digest(plan)
    if digest != plan.digest:
        raise PlanInvalid(
            f"{name}: the plan was modified after it was made: its digest is {plan.digest[:8]}…"
            f" but its content hashes to {digest[:8]}…; make a new plan"
        )
    if _recomputed_summary(plan) != plan.summary:
        raise PlanInvalid(
            f"{name}: the plan was modified after it was made: its summary does not match its "
            "changes; make a new plan"
        )
    mismatch = counts_and_marks_mismatch(plan)
    if mismatch:
        raise PlanInvalid(
            f"{name}: the plan was modified after it was made: {mismatch}; make a new plan"
        )
    return plan


# What each older format lacks, that this version needs to apply or show a plan as made.
_OLDER = {
    1: "it records no premises (the values the rules read, which apply re-checks) and its "
    "digest does not cover the whole plan",
    2: "it records neither what each rule matched nor which changes re-apply a rolled-back "
    "run, which show and the pull-request comment print",
}


def _check_format_version(data: Any, name: str) -> None:
    if not isinstance(data, dict) or "format_version" not in data:
        return  # the schema reports it
    version = data["format_version"]
    if version == FORMAT_VERSION or not isinstance(version, int) or isinstance(version, bool):
        return  # the right one, or not a version at all: the schema reports the latter
    if version in _OLDER:
        raise PlanInvalid(
            f"{name}: a plan of format_version {version}, which lsqsync {__version__} no longer "
            f"reads: {_OLDER[version]}. Make a new plan (lsqsync plan --out FILE) and review it"
        )
    message = (
        f"{name}: unknown plan format_version {version}:"
        f" lsqsync {__version__} reads format_version {FORMAT_VERSION}"
    )
    made_by = data.get("lsqsync_version")
    if isinstance(made_by, str):
        message += f"; the plan was made by lsqsync {made_by}: show or apply it with that version"
        message += ", or make a new plan"
    else:
        message += "; make a new plan"
    raise PlanInvalid(message)


def _recomputed_summary(plan: Plan) -> Summary:
    # The digest binds the summary to the plan as it was made; this also makes sure that the
    # summary a reviewer reads first agrees with the changes it summarises (rule sources and
    # type totals come from the plan itself).
    s = plan.summary
    return summarise(
        plan.changes,
        {r.name: r.source for r in s.rules},
        {t.opportunity_type: (t.name, t.total) for t in s.types},
    )


def counts_and_marks_mismatch(plan: Plan) -> str | None:
    """How the plan's per-rule counts or re-apply marks disagree with its changes (None: they
    agree): each count adds up, names a rule of the summary and changes what the summary says
    it does; each mark names a field the plan changes."""
    changing = {r.name: r.opportunities for r in plan.summary.rules}
    for c in plan.rule_counts:
        if c.rule not in changing:
            return f"rule_counts names rule '{c.rule}', which the summary does not"
        if c.changing != changing[c.rule]:
            return f"rule_counts of rule '{c.rule}' do not match its changes"
        if c.matched != c.changing + c.current + c.by_other_rule + c.once:
            return f"rule_counts of rule '{c.rule}' do not add up"
    fields = {(c.id, f.field) for c in plan.changes for f in c.changes}
    for opp_id, name in plan.reapplied:
        if (opp_id, name) not in fields:
            return f"reapplied names {opp_id} {name}, which the plan does not change"
    return None


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(resources.schema("plan"))


@dataclass(frozen=True)
class _Shape:
    """The keys of a change, of its fields and of its premises, and the pattern of a source."""

    change: frozenset[str]
    field: frozenset[str]
    premise: frozenset[str]
    source: re.Pattern[str]


@cache
def _change_shape() -> _Shape:
    schema = resources.schema("plan")
    item = schema["properties"]["changes"]["items"]["properties"]
    return _Shape(
        frozenset(item),
        frozenset(item["fields"]["items"]["properties"]),
        frozenset(item["premises"]["items"]["properties"]),
        re.compile(schema["$defs"]["source"]["pattern"]),
    )


def changes_well_formed(changes: Any) -> bool:
    """True only if ``changes`` satisfies plan.schema.json (never looser; it may be stricter,
    e.g. about 12003.0 as a type code). The changes are what makes a plan big, and this is
    tens of times faster than the validator: 100,000 opportunities in well under a second."""
    shape = _change_shape()
    if type(changes) is not list:
        return False
    for c in changes:
        if type(c) is not dict or c.keys() != shape.change:
            return False
        t, rules, fields, premises = c["opportunity_type"], c["rules"], c["fields"], c["premises"]
        if not (type(c["id"]) is str and c["id"] and type(t) is int and t >= 0):
            return False
        if not (_names(rules) and type(fields) is list and fields and type(premises) is list):
            return False
        if not all(_field_well_formed(f, shape) for f in fields):
            return False
        if not all(_premise_well_formed(p, shape) for p in premises):
            return False
    return True


def _names(items: Any) -> bool:
    """A non-empty list of non-empty strings."""
    return type(items) is list and bool(items) and all(type(i) is str and i for i in items)


def _field_well_formed(f: Any, shape: _Shape) -> bool:
    return (
        type(f) is dict
        and f.keys() == shape.field
        and type(f["field"]) is str
        and bool(f["field"])
        and (f["before"] is None or type(f["before"]) is str)
        and type(f["after"]) is str
        and type(f["rule"]) is str
        and bool(f["rule"])
        and type(f["source"]) is str
        and shape.source.search(f["source"]) is not None
    )


def _premise_well_formed(p: Any, shape: _Shape) -> bool:
    if not (type(p) is dict and p.keys() == shape.premise and type(p["read"]) is dict):
        return False
    read = p["read"]
    return (
        type(p["rule"]) is str
        and bool(p["rule"])
        and _names(p["holds"])
        and bool(read)
        and all(name and (v is None or type(v) is str) for name, v in read.items())
    )


def _problems(data: Any) -> list[str]:
    """Every schema violation as ``path: message``, sorted by path."""
    if isinstance(data, dict) and changes_well_formed(data.get("changes")):
        # The validator needs only the rest; when in doubt it sees everything, for its messages.
        data = {**data, "changes": []}
    found: list[tuple[tuple[tuple[int, int | str], ...], str]] = []
    for error in _validator().iter_errors(data):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            found.extend(
                (_order((*path, str(key))), f"{format_path((*path, str(key)))}: unknown key")
                for key in error.instance
                if key not in known
            )
        else:
            where, message = format_path(path), describe(error, _short)
            found.append((_order(path), f"{where}: {message}" if where else message))
    return [text for _, text in sorted(found)]


def _order(path: tuple[str | int, ...]) -> tuple[tuple[int, int | str], ...]:
    # changes[2] before changes[10]; keys and indexes never compare with each other
    return tuple((0, p) if isinstance(p, int) else (1, p) for p in path)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:59] + "…"
