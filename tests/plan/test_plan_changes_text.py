"""The changes' JSON, written directly, is exactly what json.dumps writes: indented as the saved
plan holds it, canonical as the digest hashes it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_helpers import make_plan

from lsqsync.plan import changes_text
from lsqsync.plan.model import (
    FieldChange,
    OpportunityChange,
    Premise,
    changes_json,
    compute_digest,
    dumps,
    to_json,
)

# every kind of character json escapes or keeps: quotes, backslashes, control characters, the
# separators JSON allows but JavaScript does not, non-ASCII, astral characters, and lone
# surrogates aside (they cannot be written as UTF-8 at all)
TEXT = st.text(
    st.one_of(
        st.sampled_from('"\\/\b\f\n\r\t\x00\x1f\x7f\u2028\u2029é€😀 ,:{}[]'),
        st.characters(exclude_categories=("Cs",)),
    ),
    max_size=12,
)
NAMES = st.lists(TEXT, max_size=3).map(tuple)
FIELD = st.builds(FieldChange, TEXT, st.none() | TEXT, TEXT, TEXT, TEXT)
PREMISE = st.builds(
    Premise,
    TEXT,
    NAMES,
    st.dictionaries(TEXT, st.none() | TEXT, max_size=3).map(lambda d: tuple(d.items())),
)
CHANGE = st.builds(
    OpportunityChange,
    TEXT,
    st.integers(min_value=0, max_value=2**63),
    NAMES,
    st.lists(FIELD, max_size=3).map(tuple),
    st.lists(PREMISE, max_size=2).map(tuple),
)
CHANGES = st.lists(CHANGE, max_size=4)


def indented_by_json(changes: list[OpportunityChange]) -> str:
    """The array as json.dumps writes it as the value of a top-level member."""
    text = json.dumps({"changes": changes_json(changes)}, indent=2, ensure_ascii=False)
    return text[len('{\n  "changes": ') : -len("\n}")]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(CHANGES)
def test_the_indented_changes_are_json_dumps(changes: list[OpportunityChange]) -> None:
    assert changes_text.indented(changes) == indented_by_json(changes)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(CHANGES)
def test_the_canonical_changes_are_json_dumps(changes: list[OpportunityChange]) -> None:
    assert changes_text.canonical(changes) == json.dumps(
        changes_json(changes), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(CHANGES, TEXT)
def test_a_saved_plan_and_its_digest_are_those_of_json_dumps(
    changes: list[OpportunityChange], warning: str
) -> None:
    plan = make_plan(warnings=(warning,))
    plan = replace(plan, changes=tuple(changes))
    assert dumps(plan) == json.dumps(to_json(plan), indent=2, ensure_ascii=False) + "\n"
    members = {k: v for k, v in to_json(plan).items() if k != "digest"}
    whole = json.dumps(members, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert compute_digest(plan) == hashlib.sha256(whole.encode()).hexdigest()


def test_an_empty_plan() -> None:
    plan = make_plan([])
    assert changes_text.indented([]) == "[]"
    assert changes_text.canonical([]) == "[]"
    assert dumps(plan) == json.dumps(to_json(plan), indent=2, ensure_ascii=False) + "\n"
    assert dumps(plan).endswith('  "changes": []\n}\n')


def test_a_change_without_premises_and_a_premise_that_read_nothing() -> None:
    # the planner makes neither, but a plan may hold them: the writer must not assume otherwise
    bare = OpportunityChange("a", 1, ("r",), (FieldChange("F", None, "", "r", "x.yml:1"),))
    odd = replace(bare, premises=(Premise("r", (), ()),))
    assert changes_text.indented([bare, odd]) == indented_by_json([bare, odd])
    assert changes_text.canonical([bare, odd]) == json.dumps(
        changes_json([bare, odd]), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


@pytest.mark.parametrize("chunk", [1, 2, 3, 1000])
def test_changes_written_in_chunks_and_shared_objects_are_those_of_json_dumps(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The saved plan and the digest take the text in chunks of CHUNK changes; a field change,
    premise or tuple of rules that several changes share (as the planner shares equal ones) is
    written once and reused."""
    field = FieldChange("Status", "Open", "Won", "r", "rules/r.yml:3")
    other = FieldChange("mx_Custom_9", None, 'say "hi"\n', "s", "rules/r.yml:9")
    premise = Premise("r", ("Status",), (("Status", "Open"), ("mx_Custom_6", None)))
    rules = ("r", "s")
    fields = ((field,), (field, other))
    changes = [
        OpportunityChange(f"id-{i}", 12003, rules, fields[i % 2], (premise,) * (i % 2))
        for i in range(5)
    ]
    monkeypatch.setattr(changes_text, "CHUNK", chunk)
    assert "".join(changes_text.indented_chunks(changes)) == indented_by_json(changes)
    assert "".join(changes_text.canonical_chunks(changes)) == json.dumps(
        changes_json(changes), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    plan = replace(make_plan(), changes=tuple(changes))
    assert dumps(plan) == json.dumps(to_json(plan), indent=2, ensure_ascii=False) + "\n"
