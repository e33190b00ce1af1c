"""Read-only commands that help people write rules: who am I, who are the users, what fields
does a type have, what do its opportunities look like. Each returns text for stdout; nothing
here prints."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from lsqsync.display import csv_cell, masked, table
from lsqsync.errors import LsqsyncError
from lsqsync.lsq import FieldMeta, LsqClient, OpportunityType
from lsqsync.lsq.codec import InvalidValue
from lsqsync.lsq.transport import same_api_host
from lsqsync.plan.planner import predicate
from lsqsync.rules import names
from lsqsync.rules.metadata import condition_problems
from lsqsync.rules.project import Condition

Format = Literal["text", "json"]
ListFormat = Literal["text", "json", "csv"]

DEFAULT_COLUMNS = ("Status", "Owner", "ModifiedOn")


def whoami(client: LsqClient) -> str:
    me = client.who_am_i()
    budgets = client.limiter.budgets()
    lines = [
        f"host:  {client.host}",
        f"user:  {me.user.name} <{me.user.email}>",
        f"role:  {me.user.role or 'unknown'}",
    ]
    if "account" in budgets:
        bulk = budgets.get("bulk", "none known: Bulk Update is paced by the account's limit")
        lines += [
            f"rate:  {budgets['account']}",
            f"bulk:  {bulk}",
            f"cache: {client.limiter.where}",
        ]
    if me.api_host and not same_api_host(me.api_host, client.host):
        lines.append(
            f"note:  LeadSquared names {me.api_host} as this account's API host; set LSQ_HOST to it"
        )
    return "\n".join(lines) + "\n"


USER_COLUMNS = ("email", "name", "role", "status", "id")


def list_users(client: LsqClient, fmt: ListFormat) -> str:
    """Every user of the account, active and inactive, by email: what a User field or
    ``user()`` takes (an active user's email or id)."""
    users = sorted(client.users(), key=lambda u: (u.email.casefold(), u.id))
    rows = [
        {
            "email": u.email,
            "name": u.name,
            "role": u.role,
            "status": "active" if u.active else "inactive",
            "id": u.id,
        }
        for u in users
    ]
    if fmt == "json":
        return _json(rows)
    if fmt == "csv":
        return _csv(list(USER_COLUMNS), [[r[c] for c in USER_COLUMNS] for r in rows])
    active = sum(1 for u in users if u.active)
    footer = f"{len(users)} users: {active} active, {len(users) - active} inactive\n"
    body = table([c.upper() for c in USER_COLUMNS], [[r[c] for c in USER_COLUMNS] for r in rows])
    return body + footer


def _flags(f: FieldMeta) -> str:
    return ",".join(
        name
        for name, on in (
            ("mandatory", f.mandatory),
            ("system", f.is_system),
            ("read-only", f.read_only and not f.is_system),
        )
        if on
    )


def _options(f: FieldMeta) -> str:
    if f.dependent_options:
        return "; ".join(f"{p}: {', '.join(o)}" for p, o in f.dependent_options.items())
    return ", ".join(f.options)


def type_fields(client: LsqClient, code: int, fmt: Format) -> str:
    t = client.opportunity_type(code)
    if fmt == "json":
        return _json(
            {
                "code": t.code,
                "name": t.name,
                "fields": [
                    {
                        "schema_name": f.schema_name,
                        "display_name": f.display_name,
                        "data_type": f.data_type,
                        "render_type": f.render_type,
                        "multi_select": f.multi_select,
                        "kind": f.kind,  # null: lsqsync does not recognise it
                        "mandatory": f.mandatory,
                        "read_only": f.read_only,
                        "system": f.is_system,
                        "max_length": f.max_length,
                        "options": list(f.options),
                        "parent_field": f.parent_field,
                        "dependent_options": {k: list(v) for k, v in f.dependent_options.items()},
                    }
                    for f in t.fields
                ],
            }
        )
    rows = [
        [
            f.schema_name,
            f.display_name,
            f.data_type + (f"({f.max_length})" if f.max_length else ""),
            f.kind or "UNRECOGNISED",
            _flags(f),
            (f"under {f.parent_field}: " if f.parent_field else "") + _options(f),
        ]
        for f in t.fields
    ]
    header = f"{t.code} {t.name}: {len(t.fields)} fields\n"
    return header + table(
        ["SCHEMA NAME", "DISPLAY NAME", "TYPE", "KIND", "FLAGS", "OPTIONS"], rows, cut=None
    )


def list_opportunities(
    client: LsqClient,
    code: int,
    columns: Sequence[str],
    limit: int,
    fmt: ListFormat,
    mask: Collection[str] = (),
    where: Sequence[Condition] = (),
) -> str:
    """The first ``limit`` opportunities of a type, oldest first, that meet every condition of
    ``where`` (as a rule's ``where`` would select them); values of ``mask``ed fields as ***.
    Without ``columns``: Status, Owner, ModifiedOn and the fields ``where`` tests. Fields may be
    named as in rules, by schema or display name; columns are headed as they were asked for."""
    t = client.opportunity_type(code)
    if not columns:
        columns = [*DEFAULT_COLUMNS, *(c.field for c in where)]
    where = [replace(c, field=_field(t, c.field).schema_name) for c in where]
    labels: dict[str, str] = {}  # schema name -> the column's heading
    for name in columns:
        labels.setdefault(_field(t, name).schema_name, name)
    read = list(dict.fromkeys([*labels, *(c.field for c in where)]))
    metas = {name: _field(t, name) for name in read}
    needs_users = any(meta.is_user_valued for meta in metas.values())
    users = client.users() if needs_users else []
    tests = _tests(where, metas, {u.email.lower(): u.id.lower() for u in users})
    emails = {u.id.lower(): u.email for u in users}

    def shown(column: str, value: str | None) -> str | None:
        if value and metas[column].is_user_valued:
            return emails.get(value.lower(), value)
        return masked(column, value, mask)

    page = 1000 if where else min(limit, 1000)  # a filter may skip many records a page
    matching = (
        r
        for r in client.search_opportunities(code, read, page_size=page)
        if all(test(r.values.get(name)) for name, test in tests)
    )
    records = list(itertools.islice(matching, limit))
    data = [
        {"id": r.id, **{label: shown(c, r.values.get(c)) for c, label in labels.items()}}
        for r in records
    ]
    headings = list(labels.values())
    if fmt == "json":
        return _json(data)
    rows = [[d[k] for k in ("id", *headings)] for d in data]
    if fmt == "csv":
        return _csv(["id", *headings], rows)
    return table(["ID", *headings], [[v or "" for v in row] for row in rows])


def _field(t: OpportunityType, name: str) -> FieldMeta:
    """The field ``name`` means, as a rule would name it (schema or display name); an unknown or
    ambiguous name is an error (with a suggestion)."""
    found = names.find(t, name)
    if isinstance(found, names.Ambiguous):
        raise LsqsyncError(found.message(t))
    if found is None:
        raise LsqsyncError(
            f"'{name}' is not a field of opportunity type {t.code} ({t.name})"
            f"{names.did_you_mean(name, t)}; lsqsync types show {t.code} lists them"
        )
    return found


def _tests(
    where: Sequence[Condition], metas: Mapping[str, FieldMeta], everyone: Mapping[str, str]
) -> list[tuple[str, Callable[[Any], bool]]]:
    """A test per condition, as the planner makes it for a rule's ``where``; a condition that
    can never hold or has a value of the wrong type is an error."""
    tests = []
    for condition in where:
        meta = metas[condition.field]
        problems = condition_problems(condition, meta)
        try:
            tests.append((condition.field, predicate(condition, meta, everyone)))
        except InvalidValue as e:
            problems.append(str(e))
        if problems:
            raise LsqsyncError(f"{condition.path}: {'; '.join(dict.fromkeys(problems))}")
    return tests


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _csv(header: Sequence[str], rows: Sequence[Sequence[str | None]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    return out.getvalue()
