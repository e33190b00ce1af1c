"""The JSON text of a plan's changes, written directly: exactly what ``json.dumps`` writes for
``changes_json(changes)``, both indented as the saved plan is (``indent=2``) and canonical as
the digest hashes it (sorted keys, no spaces), never ASCII-escaped.

Why not ``json.dumps``: any ``indent`` makes the stdlib fall back to its pure-Python encoder,
which took ≈ 1.1 s of the save at 100,000 opportunities, and the canonical form of the whole plan
≈ 0.5 s. The shape of a change is fixed (plan.schema.json), so it is written here with the
stdlib's own C string escaper for every string; the property tests compare the result with
``json.dumps`` (escapes, non-ASCII, control characters, empty plans).

Both forms are also given in chunks of ``CHUNK`` changes (``indented_chunks``,
``canonical_chunks``), so that the saved plan and the digest need not hold the text of every
change at once (≈ 33 MB at 100,000 opportunities, twice over for the digest's bytes). Within one
text, the text of a field change, a premise or a tuple of rules is written once per object (the
planner shares equal ones: in bench/plan_bench.py, 15 distinct field changes among 68,846 and
4,980 premises among 41,219) and then reused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from lsqsync.plan.model import FieldChange, OpportunityChange, Premise

_q = encode_basestring  # a str as a JSON string, with json.dumps(ensure_ascii=False)'s escapes
CHUNK = 1000  # changes per chunk of text


def _nq(value: str | None) -> str:
    return "null" if value is None else _q(value)


def _list(items: Iterable[str], indent: str) -> str:
    """Already-encoded ``items`` as an indented JSON array whose closing bracket is at
    ``indent``."""
    inner = f",\n{indent}  ".join(items)
    return f"[\n{indent}  {inner}\n{indent}]" if inner else "[]"


def _once(write: Callable[[Any], str]) -> Callable[[Any], str]:
    """``write``, remembering its text per object (by identity: every object written is held
    by the changes being written, so no id is reused meanwhile)."""
    texts: dict[int, str] = {}

    def written(item: Any) -> str:
        text = texts.get(id(item))
        if text is None:
            text = texts[id(item)] = write(item)
        return text

    return written


def indented(changes: Sequence[OpportunityChange]) -> str:
    """``json.dumps(changes_json(changes), indent=2, ensure_ascii=False)`` as the value of a
    top-level member: every line after the first indented by two more spaces."""
    return "".join(indented_chunks(changes))


def indented_chunks(changes: Sequence[OpportunityChange]) -> Iterator[str]:
    """``indented(changes)`` in pieces."""
    if not changes:
        yield "[]"
        return
    change = _indented_writer()
    for start in range(0, len(changes), CHUNK):
        head = "[\n    " if start == 0 else ",\n    "
        yield head + ",\n    ".join(map(change, changes[start : start + CHUNK]))
    yield "\n  ]"


_I = "      "  # the indent of the members of a change


def _field_indented(f: FieldChange) -> str:
    i = _I
    return (
        f'{{\n{i}    "field": {_q(f.field)},\n{i}    "before": {_nq(f.before)},\n'
        f'{i}    "after": {_q(f.after)},\n{i}    "rule": {_q(f.rule)},\n'
        f'{i}    "source": {_q(f.source)}\n{i}  }}'
    )


def _premise_indented(p: Premise) -> str:
    i = _I
    return (
        f'{{\n{i}    "rule": {_q(p.rule)},\n'
        f'{i}    "holds": {_list(map(_q, p.holds), i + "    ")},\n'
        f'{i}    "read": {_object(dict(p.read).items(), i + "    ")}\n{i}  }}'
    )


def _rules_indented(rules: tuple[str, ...]) -> str:
    return _list(map(_q, rules), _I)


def _indented_writer() -> Callable[[OpportunityChange], str]:
    field, premise = _once(_field_indented), _once(_premise_indented)
    rules = _once(_rules_indented)
    i = _I

    def change(c: OpportunityChange) -> str:
        return (
            f'{{\n{i}"id": {_q(c.id)},\n'
            f'{i}"opportunity_type": {int.__repr__(c.opportunity_type)},\n'
            f'{i}"rules": {rules(c.rules)},\n'
            f'{i}"fields": {_list(map(field, c.changes), i)},\n'
            f'{i}"premises": {_list(map(premise, c.premises), i)}\n    }}'
        )

    return change


def _object(items: Iterable[tuple[str, str | None]], indent: str) -> str:
    inner = f",\n{indent}  ".join(f"{_q(k)}: {_nq(v)}" for k, v in items)
    return f"{{\n{indent}  {inner}\n{indent}}}" if inner else "{}"


def canonical(changes: Sequence[OpportunityChange]) -> str:
    """``json.dumps(changes_json(changes), sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)``."""
    return "".join(canonical_chunks(changes))


def canonical_chunks(changes: Sequence[OpportunityChange]) -> Iterator[str]:
    """``canonical(changes)`` in pieces."""
    change = _canonical_writer()
    yield "["
    for start in range(0, len(changes), CHUNK):
        yield ("," if start else "") + ",".join(map(change, changes[start : start + CHUNK]))
    yield "]"


def _field_canonical(f: FieldChange) -> str:
    return (
        f'{{"after":{_q(f.after)},"before":{_nq(f.before)},"field":{_q(f.field)},'
        f'"rule":{_q(f.rule)},"source":{_q(f.source)}}}'
    )


def _premise_canonical(p: Premise) -> str:
    return (
        f'{{"holds":[{",".join(map(_q, p.holds))}],"read":{{'
        + ",".join(f"{_q(k)}:{_nq(v)}" for k, v in sorted(dict(p.read).items()))
        + f'}},"rule":{_q(p.rule)}}}'
    )


def _rules_canonical(rules: tuple[str, ...]) -> str:
    return ",".join(map(_q, rules))


def _canonical_writer() -> Callable[[OpportunityChange], str]:
    field, premise = _once(_field_canonical), _once(_premise_canonical)
    rules = _once(_rules_canonical)

    def change(c: OpportunityChange) -> str:
        return (
            f'{{"fields":[{",".join(map(field, c.changes))}],"id":{_q(c.id)},'
            f'"opportunity_type":{int.__repr__(c.opportunity_type)},'
            f'"premises":[{",".join(map(premise, c.premises))}],'
            f'"rules":[{rules(c.rules)}]}}'
        )

    return change
