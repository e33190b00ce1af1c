"""Which field a name in a rule means (``rules.names``): a schema name first, then one exact
display name, then one display name ignoring case; ambiguity and two keys naming one field are
errors at the key; and ``mask:``/``field_types:``, which take schema names only, say so for a
display name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lsqsync.cli import main
from lsqsync.config import Config
from lsqsync.documents.yamlsource import Location
from lsqsync.lsq import FieldMeta, OpportunityType
from lsqsync.rules import names
from lsqsync.rules.project import Condition, FieldValue, Project, Rule

ROOT = Path(__file__).parents[2]

TYPE = OpportunityType(
    1,
    "Deal",
    (
        FieldMeta("Status", "Status", "SearchableDropdown"),
        FieldMeta("mx_Custom_1", "Status", "String"),  # its display name is another's schema name
        FieldMeta("mx_Custom_2", "Stage", "SearchableDropdown"),
        FieldMeta("mx_Custom_3", "stage", "String"),  # the same display name but for its case
        FieldMeta("mx_Custom_4", "Deal Value", "Number"),
        FieldMeta("mx_Custom_5", "Region", "String"),
        FieldMeta("mx_Custom_6", "Region", "String"),
        FieldMeta("mx_Custom_7", "mx_Custom_4", "String"),  # a display name like a schema name
    ),
)


@pytest.mark.parametrize(
    ("name", "means"),
    [
        ("Status", "Status"),  # a schema name always means its own field
        ("mx_Custom_4", "mx_Custom_4"),  # ... even when another field is displayed so
        ("Stage", "mx_Custom_2"),  # an exact display name beats one that differs in case
        ("stage", "mx_Custom_3"),
        ("Deal Value", "mx_Custom_4"),
        ("deal value", "mx_Custom_4"),  # ignoring case, when only one field matches
        ("DEAL VALUE", "mx_Custom_4"),
        ("mx_custom_4", None),  # schema names are never matched ignoring case, nor is a
        ("status", None),  # schema name in another case taken for a display name
        ("Deal", None),
    ],
)
def test_which_field_a_name_means(name: str, means: str | None) -> None:
    found = names.find(TYPE, name)
    assert not isinstance(found, names.Ambiguous)
    assert (found.schema_name if found else None) == means


def test_a_name_several_fields_answer_to_is_ambiguous() -> None:
    exact = names.find(TYPE, "Region")
    assert isinstance(exact, names.Ambiguous)
    assert exact.message(TYPE) == (
        "'Region' is the display name of 2 fields of opportunity type 1 (Deal): mx_Custom_5 "
        "('Region'), mx_Custom_6 ('Region'); name the one you mean by its schema name"
    )
    folded = names.find(TYPE, "STAGE")  # no exact match; two ignoring case
    assert isinstance(folded, names.Ambiguous)
    assert [f.schema_name for f in folded.candidates] == ["mx_Custom_2", "mx_Custom_3"]
    assert "(ignoring case)" in folded.message(TYPE)


def _rule(*keys: str) -> Rule:
    at = Location("rules/r.yml", 5, 9)
    return Rule(
        "r", "", 1, None, None,
        tuple(Condition(k, "eq", "x", at, f"rules[0].where.{k}", Location("rules/r.yml", i, 7))
              for i, k in enumerate(keys, start=10)),
        None,
        (FieldValue("Deal Value", 1, None, at, "rules[0].set.Deal Value",
                    key_location=Location("rules/r.yml", 20, 7)),),
        at, frozenset(), False,
    )  # fmt: skip


def test_a_rule_is_resolved_into_schema_names_and_its_mistakes_are_at_their_keys() -> None:
    rule, problems = names.resolve_rule(_rule("Stage", "Region", "Nothing", "mx_Custom_2"), TYPE)
    assert [c.field for c in rule.where] == ["mx_Custom_2", "Region", "Nothing", "mx_Custom_2"]
    assert [v.field for v in rule.set] == ["mx_Custom_4"]
    assert [(str(p.location), p.path) for p in problems] == [
        ("rules/r.yml:11:7", "rules[0].where.Region"),
        ("rules/r.yml:13:7", "rules[0].where.mx_Custom_2"),
    ]
    assert problems[1].message == (
        "'mx_Custom_2' and 'Stage' (line 10) both name the field Stage (mx_Custom_2): keep one"
    )
    # resolved again, nothing changes (and the same keys are reported)
    again, problems_again = names.resolve_rule(rule, TYPE)
    assert again is rule
    assert [p.location for p in problems_again] == [p.location for p in problems]
    # the rules of a type without metadata are left as written
    other = _rule("Stage")
    project = Project(Config(Path("."), "lsqsync.yml"), (other,), (), {})
    resolved, found = names.resolve_project(project, {})
    assert (resolved.rules, found) == ((other,), [])


def test_suggestions_name_the_schema_name_of_a_display_name() -> None:
    assert names.did_you_mean("Deal Valeu", TYPE) == (
        " (did you mean 'Deal Value', the display name of mx_Custom_4?)"
    )
    assert names.did_you_mean("mx_Custom_44", TYPE) == " (did you mean 'mx_Custom_4'?)"
    assert names.did_you_mean("zzzzzz", TYPE) == ""


def test_mask_and_field_types_take_schema_names_and_say_so_for_a_display_name(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_network: list[object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copytree(ROOT / "types", tmp_path / "types")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yml").write_text(
        "version: 1\nrules:\n  - name: r\n    opportunity_type: 12003\n    set: {Priority: High}\n"
    )
    (tmp_path / "lsqsync.yml").write_text(
        "version: 1\nmask: [Priority]\nfield_types: {Stage: text}\n"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["validate"])
    out, _ = capsys.readouterr()
    assert exit_info.value.code == 1
    # Priority is mx_Custom_10's display name, but also the rule's key: only mask: objects
    assert out.splitlines()[:2] == [
        "lsqsync.yml:2:8: mask[0]: 'Priority' is not a field of the rules' opportunity types "
        "(12000, 12003), so it masks nothing ('Priority' is a display name: mask: takes schema "
        "names: mx_Custom_10)",
        "lsqsync.yml:3:15: field_types.Stage: 'Stage' is not a field of the rules' opportunity "
        "types (12000, 12003), so the declaration applies to nothing ('Stage' is a display name: "
        "field_types: takes schema names: mx_Custom_2)",
    ]
