"""The JSON text of a plan's changes, written directly: exactly what ``json.dumps`` writes for
``changes_json(changes)``, both indented as the saved plan is (``indent=2``) and canonical as
the digest hashes it (sorted keys, no spaces), never ASCII-escaped.

Why not ``json.dumps``: any ``indent`` makes the stdlib fall back to its pure-Python encoder,
which took ≈ 1.1 s of the save at 100,000 opportunities, and the canonical form of the whole plan
≈ 0.5 s. The shape of a change is fixed (plan.schema.json), so it is written here with the
stdlib's own C string escaper for every string; the property tests compare the result with
``json.dumps`` (escapes, non-ASCII, control characters, empty plans).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from lsqsync.plan.model import OpportunityChange

_q = encode_basestring  # a str as a JSON string, with json.dumps(ensure_ascii=False)'s escapes


def _nq(value: str | None) -> str:
    return "null" if value is None else _q(value)


def _list(items: Iterable[str], indent: str) -> str:
    """Already-encoded ``items`` as an indented JSON array whose closing bracket is at
    ``indent``."""
    inner = f",\n{indent}  ".join(items)
    return f"[\n{indent}  {inner}\n{indent}]" if inner else "[]"


def indented(changes: Sequence[OpportunityChange]) -> str:
    """``json.dumps(changes_json(changes), indent=2, ensure_ascii=False)`` as the value of a
    top-level member: every line after the first indented by two more spaces."""
    return _list(map(_change_indented, changes), "  ")


def _change_indented(c: OpportunityChange) -> str:
    i = "      "  # the members of a change
    fields = _list(
        (
            f'{{\n{i}    "field": {_q(f.field)},\n{i}    "before": {_nq(f.before)},\n'
            f'{i}    "after": {_q(f.after)},\n{i}    "rule": {_q(f.rule)},\n'
            f'{i}    "source": {_q(f.source)}\n{i}  }}'
            for f in c.changes
        ),
        i,
    )
    premises = _list(
        (
            f'{{\n{i}    "rule": {_q(p.rule)},\n'
            f'{i}    "holds": {_list(map(_q, p.holds), i + "    ")},\n'
            f'{i}    "read": {_object(dict(p.read).items(), i + "    ")}\n{i}  }}'
            for p in c.premises
        ),
        i,
    )
    return (
        f'{{\n{i}"id": {_q(c.id)},\n{i}"opportunity_type": {int.__repr__(c.opportunity_type)},\n'
        f'{i}"rules": {_list(map(_q, c.rules), i)},\n{i}"fields": {fields},\n'
        f'{i}"premises": {premises}\n    }}'
    )


def _object(items: Iterable[tuple[str, str | None]], indent: str) -> str:
    inner = f",\n{indent}  ".join(f"{_q(k)}: {_nq(v)}" for k, v in items)
    return f"{{\n{indent}  {inner}\n{indent}}}" if inner else "{}"


def canonical(changes: Sequence[OpportunityChange]) -> str:
    """``json.dumps(changes_json(changes), sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)``."""
    return "[" + ",".join(map(_change_canonical, changes)) + "]"


def _change_canonical(c: OpportunityChange) -> str:
    fields = ",".join(
        f'{{"after":{_q(f.after)},"before":{_nq(f.before)},"field":{_q(f.field)},'
        f'"rule":{_q(f.rule)},"source":{_q(f.source)}}}'
        for f in c.changes
    )
    premises = ",".join(
        f'{{"holds":[{",".join(map(_q, p.holds))}],"read":{{'
        + ",".join(f"{_q(k)}:{_nq(v)}" for k, v in sorted(dict(p.read).items()))
        + f'}},"rule":{_q(p.rule)}}}'
        for p in c.premises
    )
    return (
        f'{{"fields":[{fields}],"id":{_q(c.id)},'
        f'"opportunity_type":{int.__repr__(c.opportunity_type)},'
        f'"premises":[{premises}],"rules":[{",".join(map(_q, c.rules))}]}}'
    )
