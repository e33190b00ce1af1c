"""Read-only commands that help people write rules: who am I, what fields does a type have,
what do its opportunities look like. Each returns text for stdout; nothing here prints."""

from __future__ import annotations

import itertools
import json
from collections.abc import Collection, Sequence
from typing import Any, Literal

from lsqsync.display import masked, table
from lsqsync.lsq import FieldMeta, LsqClient
from lsqsync.lsq.transport import same_api_host

Format = Literal["text", "json"]

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
    fmt: Format,
    mask: Collection[str] = (),
) -> str:
    """The first ``limit`` opportunities of a type; values of ``mask``ed fields as ***."""
    columns = list(columns or DEFAULT_COLUMNS)
    t = client.opportunity_type(code)
    users = (
        {u.id.lower(): u.email for u in client.users()}
        if any((f := t.field(c)) is not None and f.is_user_valued for c in columns)
        else {}
    )

    def shown(column: str, value: str | None) -> str | None:
        f = t.field(column)
        if value and f is not None and f.is_user_valued:
            return users.get(value.lower(), value)
        return masked(column, value, mask)

    records = list(
        itertools.islice(
            client.search_opportunities(code, columns, page_size=min(limit, 1000)), limit
        )
    )
    data = [{"id": r.id, **{c: shown(c, r.values.get(c)) for c in columns}} for r in records]
    if fmt == "json":
        return _json(data)
    rows = [[str(d[k] if d[k] is not None else "") for k in ("id", *columns)] for d in data]
    return table(["ID", *columns], rows)


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
