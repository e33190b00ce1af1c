"""plan.schema.json describes exactly what the model writes, and the JSON form round-trips."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from plan_helpers import make_plan, many_changes

from lsqsync import resources
from lsqsync.plan import planfile
from lsqsync.plan.model import FORMAT_VERSION, Plan, dumps, from_json, to_json

SCHEMA = resources.schema("plan")
VALIDATOR = Draft202012Validator(SCHEMA)

PLANS = {
    "sample": lambda: make_plan(warnings=("2 ids were not found: a, b",)),
    "empty": lambda: make_plan([]),
    "no-labels-no-mask": lambda: make_plan(labels={}, mask=()),
    "targets-and-allow-large": lambda: make_plan(targets=("q4-notes",), allow_large=True),
    "many": lambda: make_plan(many_changes(30)),
}


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_schema_knows_the_models_format_version() -> None:
    assert SCHEMA["properties"]["format_version"] == {
        "const": FORMAT_VERSION,
        "title": "Plan format version",
        "description": (
            "The version of this JSON form. 3 added rule_counts (what each rule matched), "
            "reapplied (the changes that re-apply a rolled-back run) and field_labels (the display "
            "names of the fields); 2 added the premises of each change and a digest over the whole "
            "plan. Plans of formats 1 and 2 are refused (make a new plan)."
        ),
    }
    assert resources.schema_versions() == {"config": 1, "rules": 1, "plan": 3, "tests": 1}
    assert resources.versions_text() == (
        "config schema v1, rules schema v1, plan format v3, tests schema v1"
    )


def objects(schema: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            yield path, schema
        for key, value in schema.items():
            yield from objects(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for n, value in enumerate(schema):
            yield from objects(value, f"{path}/{n}")


def test_every_record_refuses_unknown_keys_and_every_map_says_what_it_holds() -> None:
    found = dict(objects(SCHEMA))
    # 13 records (a rule's counts and a re-apply mark among them), 6 maps (files, vars, labels,
    # a premise's reads, field labels by type code and each type's by schema name)
    assert len(found) == 19
    for path, schema in found.items():
        if "properties" in schema:  # a record
            assert schema["additionalProperties"] is False, path
            assert set(schema["required"]) == set(schema["properties"]) - {"$schema"}, path
        else:  # a map: its values' schema, and non-empty keys (type codes: digits)
            assert "additionalProperties" in schema, path
            keys = {"pattern": "^[0-9]+$"} if path.endswith("field_labels") else {"minLength": 1}
            assert schema["propertyNames"] == keys, path


@pytest.mark.parametrize("name", PLANS)
def test_the_json_form_validates_and_round_trips(name: str) -> None:
    plan = PLANS[name]()
    data = json.loads(dumps(plan))
    assert sorted(VALIDATOR.iter_errors(data), key=str) == []
    assert from_json(data) == plan
    assert dumps(from_json(data)) == dumps(plan)


@pytest.mark.parametrize(
    ("where", "key"),
    [
        ((), "comment"),
        (("state",), "owner"),
        (("inputs",), "access_key"),
        (("summary",), "extra"),
        (("summary", "rules", 0), "extra"),
        (("summary", "types", 0), "extra"),
        (("summary", "transitions", 0), "extra"),
        (("cost",), "extra"),
        (("changes", 0), "extra"),
        (("changes", 0, "fields", 0), "extra"),
        (("changes", 0, "premises", 0), "extra"),
    ],
)
def test_unknown_keys_are_refused_everywhere(where: tuple[str | int, ...], key: str) -> None:
    data = to_json(make_plan())
    target: Any = data
    for part in where:
        target = target[part]
    target[key] = "x"
    assert [list(e.absolute_path) for e in VALIDATOR.iter_errors(data)] == [list(where)]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("format_version",), 1),
        (("inputs", "host"), "https://api.leadsquared.com/"),  # not in the plan's one form
        (("digest",), "3f2a1b9c"),
        (("inputs", "host"), "https://user:secret@api.leadsquared.com"),
        (("inputs", "files", "rules/x.yml"), "not a hash"),
        (("changes", 0, "fields", 0, "after"), None),
        (("changes", 0, "fields", 0, "source"), "rules/q4.yml"),
        (("changes", 0, "fields"), []),
        (("cost", "write_calls"), -1),
        (("mask",), ["mx_Revenue", "mx_Revenue"]),
        (("changes", 0, "premises", 0, "holds"), []),
        (("changes", 0, "premises", 0, "read"), {}),
        (("changes", 0, "premises", 0, "read", "Status"), 5),
        (("changes", 0, "premises", 0, "rule"), ""),
    ],
)
def test_the_schema_refuses_what_the_model_cannot_mean(
    path: tuple[str | int, ...], value: Any
) -> None:
    data = to_json(make_plan())
    target: Any = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    assert [tuple(e.absolute_path) for e in VALIDATOR.iter_errors(data)] == [path]


def test_plans_compare_by_value() -> None:
    plan: Plan = make_plan()
    assert plan == make_plan()
    assert plan != make_plan(warnings=("different",))


WRONG_VALUES: list[Any] = [
    None,
    True,
    5,
    -1,
    1.5,
    12003.0,
    "",
    "x",
    "rules/a.yml:3",
    [],
    ["x"],
    [""],
    {},
]


def mutations() -> Iterator[tuple[str, Any]]:
    """Every key of a change and of a field change set to every wrong-ish value, removed, plus
    an unknown key."""
    good = to_json(make_plan())["changes"][0]
    for key in good:
        for value in WRONG_VALUES:
            yield f"{key}={value!r}", [{**good, key: value}]
        yield f"no {key}", [{k: v for k, v in good.items() if k != key}]
    yield "unknown key", [{**good, "extra": 1}]
    for key in good["fields"][0]:
        for value in WRONG_VALUES:
            field = {**good["fields"][0], key: value}
            yield f"fields[0].{key}={value!r}", [{**good, "fields": [field]}]
    premise = good["premises"][0]
    for key in premise:
        for value in WRONG_VALUES:
            wrong = {**premise, key: value}
            yield f"premises[0].{key}={value!r}", [{**good, "premises": [wrong]}]
        wrong = {k: v for k, v in premise.items() if k != key}
        yield f"premises[0] without {key}", [{**good, "premises": [wrong]}]
    for value in WRONG_VALUES:
        wrong = {**premise, "read": {**premise["read"], "Status": value}}
        yield f"premises[0].read.Status={value!r}", [{**good, "premises": [wrong]}]
        yield f"premises=[{value!r}]", [{**good, "premises": [value]}]
    wrong = {**premise, "read": {"": "Open"}}
    yield "premises[0].read with an empty name", [{**good, "premises": [wrong]}]
    for value in WRONG_VALUES:
        yield f"changes={value!r}", value
        yield f"changes=[{value!r}]", [value]


@pytest.mark.parametrize(("name", "changes"), list(mutations()))
def test_the_fast_check_of_changes_is_never_looser_than_the_schema(name: str, changes: Any) -> None:
    data = {**to_json(make_plan()), "changes": changes}
    if planfile.changes_well_formed(changes):
        assert VALIDATOR.is_valid(data), name


def test_the_fast_check_accepts_real_changes() -> None:
    for plan in PLANS.values():
        assert planfile.changes_well_formed(to_json(plan())["changes"])
