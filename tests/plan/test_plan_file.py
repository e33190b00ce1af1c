"""Saved plans: written atomically, read back only as they were made."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from plan_helpers import GEORGE, LABELS, MARY, make_plan, opp_id

from lsqsync import __version__
from lsqsync.errors import LsqsyncError, PlanInvalid
from lsqsync.plan import planfile
from lsqsync.plan.model import Plan, RuleCount, compute_digest, dumps, from_json, to_json

MARY_LABEL = LABELS[MARY]


def sample_plan() -> Plan:
    """The sample plan (with premises) with a state position and a warning."""
    plan = replace(make_plan(warnings=("one warning",)), state_lineage="L1", state_serial=3)
    return replace(plan, digest=compute_digest(plan))


def test_save_then_load_gives_the_same_plan(tmp_path: Path) -> None:
    plan = make_plan()
    path = tmp_path / "plans" / "q4" / "plan.json"  # folders are created
    planfile.save(plan, path)
    assert path.read_text(encoding="utf-8") == dumps(plan)
    assert planfile.load(path) == plan
    assert planfile.load(str(path)) == plan


def test_save_replaces_atomically_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("an older plan")
    planfile.save(make_plan([]), path)
    assert planfile.load(path) == make_plan([])
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]
    # it holds real values: readable by its owner only
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_a_failed_save_says_where_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    target.mkdir()
    with pytest.raises(LsqsyncError) as error:
        planfile.save(make_plan(), target)
    assert str(error.value) == f"{target}: cannot write the plan: Is a directory"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]
    assert list(target.iterdir()) == []


# -- load refuses what it cannot trust --------------------------------------------------------


def saved(
    tmp_path: Path,
    change: Callable[[dict[str, Any]], object] | None = None,
    plan: Plan | None = None,
) -> Path:
    data = to_json(plan or make_plan())
    if change is not None:
        change(data)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(PlanInvalid) as error:
        planfile.load(path)
    return str(error.value)


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    assert load_error(path) == f"{path}: cannot read the plan: No such file or directory"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b"{not json",
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (b"", "Expecting value: line 1 column 1 (char 0)"),
        (b"\xff\xfe{}", "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    ],
)  # fmt: skip
def test_not_json(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(content)
    assert load_error(path) == f"{path}: not a JSON file: {reason}"


def test_every_schema_problem_is_named_by_its_json_path(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["comment"] = "reviewed by Ana"
        data["digest"] = "3f2a1b9c"
        del data["summary"]["types"]
        data["changes"][0]["fields"][1]["after"] = 5
        data["changes"][3]["opportunity_type"] = "12003"
        data["changes"][0]["fields"][0]["note"] = "x"

    path = saved(tmp_path, change)
    assert load_error(path) == (
        f"{path}: not a valid lsqsync plan (6 problems):\n"
        f"{path}: changes[0].fields[0].note: unknown key\n"
        f"{path}: changes[0].fields[1].after: must be a string, not 5\n"
        f'{path}: changes[3].opportunity_type: must be an integer, not "12003"\n'
        f"{path}: comment: unknown key\n"
        f"{path}: digest: \"3f2a1b9c\" does not match '^[0-9a-f]{{64}}$'\n"
        f"{path}: summary: 'types' is required"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[]", "must be an object, not []"),
        ('{"format_version": "3"}', 'format_version: must be 3, not "3"'),
    ],
)
def test_one_schema_problem(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(content)
    message = load_error(path)
    assert message.startswith(f"{path}: not a valid lsqsync plan (")
    assert f"\n{path}: {problem}" in message


def test_a_long_value_is_shortened_in_messages(tmp_path: Path) -> None:
    path = saved(tmp_path, lambda d: d["changes"][0]["fields"][0].update(before=["x" * 100]))
    assert load_error(path).endswith(
        f'{path}: changes[0].fields[0].before: must be a string or null, not ["{"x" * 57}…'
    )


@pytest.mark.parametrize(
    ("made_by", "advice"),
    [
        ("0.9.0", "the plan was made by lsqsync 0.9.0: show or apply it with that version"),
        (None, "make a new plan"),
    ],
)
def test_an_unknown_format_version(tmp_path: Path, made_by: str | None, advice: str) -> None:
    def change(data: dict[str, Any]) -> None:
        data["format_version"] = 4
        data["something_new"] = {"a": 1}  # a newer format may have anything: not reported
        if made_by is None:
            del data["lsqsync_version"]
        else:
            data["lsqsync_version"] = made_by

    path = saved(tmp_path, change)
    assert load_error(path) == (
        f"{path}: unknown plan format_version 4: lsqsync {__version__} reads format_version 3;"
        f" {advice}{', or make a new plan' if made_by else ''}"
    )


def test_a_plan_of_the_first_format_is_refused_with_what_to_do(tmp_path: Path) -> None:
    # what lsqsync 0.x saved: no premises, a digest over inputs and changes only
    def first_format(data: dict[str, Any]) -> None:
        data["format_version"] = 1
        for c in data["changes"]:
            del c["premises"]

    path = saved(tmp_path, first_format)
    assert load_error(path) == (
        f"{path}: a plan of format_version 1, which lsqsync {__version__} no longer reads: it "
        "records no premises (the values the rules read, which apply re-checks) and its digest "
        "does not cover the whole plan. Make a new plan (lsqsync plan --out FILE) and review it"
    )


def test_a_plan_of_the_second_format_is_refused_with_what_to_do(tmp_path: Path) -> None:
    # what lsqsync saved before per-rule counts and re-apply marks
    def second_format(data: dict[str, Any]) -> None:
        data["format_version"] = 2
        del data["rule_counts"], data["reapplied"]

    path = saved(tmp_path, second_format)
    assert load_error(path) == (
        f"{path}: a plan of format_version 2, which lsqsync {__version__} no longer reads: it "
        "records neither what each rule matched nor which changes re-apply a rolled-back run, "
        "which show and the pull-request comment print. Make a new plan (lsqsync plan --out "
        "FILE) and review it"
    )


def test_a_tampered_digest(tmp_path: Path) -> None:
    real = make_plan().digest
    path = saved(tmp_path, lambda d: d.update(digest="0" * 64))
    assert load_error(path) == (
        f"{path}: the plan was modified after it was made: its digest is 00000000… but its"
        f" content hashes to {real[:8]}…; make a new plan"
    )


# Every member of a plan but its digest, each edited the way a hand (or a script) might.
EDITS = [
    pytest.param(lambda d: d["changes"][0]["fields"][0].update(after="Lost"), id="after"),
    pytest.param(lambda d: d["changes"][1]["fields"][0].update(before=None), id="before"),
    pytest.param(lambda d: d["changes"].pop(2), id="a removed opportunity"),
    pytest.param(lambda d: d["changes"][0]["premises"][0]["read"].update(Status="Won"), id="read"),
    pytest.param(lambda d: d["changes"][0].update(premises=[]), id="premises removed"),
    pytest.param(lambda d: d["inputs"].update(allow_large=True), id="allow_large"),
    pytest.param(lambda d: d["inputs"].update(host="https://api.leadsquared.com"), id="host"),
    pytest.param(lambda d: d.update(expires_at="2099-01-01T00:00:00Z"), id="expires_at"),
    pytest.param(lambda d: d.update(created_at="2024-12-01T09:30:04Z"), id="created_at"),
    pytest.param(lambda d: d["state"].update(lineage=None), id="lineage"),
    pytest.param(lambda d: d["state"].update(serial=99), id="serial"),
    pytest.param(lambda d: d["labels"].update({GEORGE: MARY_LABEL}), id="labels"),
    pytest.param(lambda d: d.update(mask=[]), id="mask"),
    # a reviewer would read "Closed On" for another field
    pytest.param(
        lambda d: d["field_labels"]["12003"].update(Status="Closed On"), id="field_labels"
    ),
    pytest.param(lambda d: d["cost"].update(write_calls=0), id="cost"),
    pytest.param(lambda d: d["summary"]["types"][0].update(name="Ernie"), id="summary"),
    pytest.param(lambda d: d.update(warnings=[]), id="warnings"),
    pytest.param(lambda d: d.update(git_commit="0" * 40), id="git_commit"),
    pytest.param(lambda d: d.update(lsqsync_version="9.9.9"), id="lsqsync_version"),
]


@pytest.mark.parametrize("change", EDITS)
def test_an_edit_of_any_member_is_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], object]
) -> None:
    data = to_json(sample_plan())
    change(data)
    assert data != to_json(sample_plan())  # the edit changed something
    digest = compute_digest(from_json(data))
    path = saved(tmp_path, change, sample_plan())
    assert load_error(path) == (
        f"{path}: the plan was modified after it was made: its digest is {data['digest'][:8]}…"
        f" but its content hashes to {digest[:8]}…; make a new plan"
    )


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d["summary"].update(opportunities=1), id="count"),
        pytest.param(lambda d: d["summary"]["rules"][0].update(fields=1), id="rule"),
        pytest.param(lambda d: d["summary"]["types"][0].update(changing=0), id="type"),
        pytest.param(lambda d: d["summary"]["transitions"].pop(0), id="transition"),
    ],
)
def test_a_summary_that_does_not_match_its_changes(
    tmp_path: Path, change: Callable[[dict[str, Any]], object]
) -> None:
    # with the digest made to match too: a reviewer reads the summary first
    def forged(data: dict[str, Any]) -> None:
        change(data)
        data["digest"] = compute_digest(from_json(data))

    path = saved(tmp_path, forged)
    assert load_error(path) == (
        f"{path}: the plan was modified after it was made: its summary does not match its"
        " changes; make a new plan"
    )


def test_an_expired_plan_still_loads(tmp_path: Path) -> None:
    # expiry is apply's decision; `show` must still be able to display an old plan
    plan = replace(make_plan(), expires_at="2000-01-01T00:00:00Z")
    path = tmp_path / "plan.json"
    planfile.save(replace(plan, digest=compute_digest(plan)), path)
    assert planfile.load(path).expires_at == "2000-01-01T00:00:00Z"


def test_a_relative_name_is_reported_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("plan.json").write_text("nope")
    assert load_error(Path("plan.json")).startswith("plan.json: not a JSON file: ")
    assert os.path.exists("plan.json")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: d.pop("field_labels"), "'field_labels' is required"),
        (lambda d: d.update(field_labels={"Deal": {}}), "field_labels: "),
        (lambda d: d.update(field_labels={"12003": {"Status": ""}}), "field_labels.12003.Status: "),
        (lambda d: d.update(field_labels={"12003": {"Status": 7}}), "field_labels.12003.Status: "),
    ],
)
def test_field_labels_of_the_wrong_shape_are_refused(
    tmp_path: Path, edit: Callable[[dict[str, Any]], object], problem: str
) -> None:
    path = saved(tmp_path, edit, sample_plan())
    assert f"{path}: {problem}" in load_error(path)


# -- per-rule counts and re-apply marks ---------------------------------------------------------


def counted_plan() -> Plan:
    """The sample plan with per-rule counts that agree with its summary, and a re-apply mark."""
    plan = make_plan()
    counts = tuple(
        RuleCount(r.name, r.opportunities + 3, r.opportunities, 2, 1, 0) for r in plan.summary.rules
    )
    plan = replace(plan, rule_counts=counts, reapplied={(opp_id(1), "Status"): "run-7"})
    return replace(plan, digest=compute_digest(plan))


def test_counts_and_marks_are_saved_and_read_back(tmp_path: Path) -> None:
    plan = counted_plan()
    path = tmp_path / "plan.json"
    planfile.save(plan, path)
    assert planfile.load(path) == plan
    data = json.loads(path.read_text())
    assert data["reapplied"] == [{"id": opp_id(1), "field": "Status", "run": "run-7"}]
    assert data["rule_counts"][0] == {
        "rule": plan.summary.rules[0].name, "matched": plan.summary.rules[0].opportunities + 3,
        "changing": plan.summary.rules[0].opportunities, "current": 2, "by_other_rule": 1,
        "once": 0,
    }  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d["rule_counts"][0].update(current=9), id="a count"),
        pytest.param(lambda d: d["reapplied"].clear(), id="a removed mark"),
    ],
)
def test_an_edit_of_the_counts_or_marks_is_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], object]
) -> None:
    path = saved(tmp_path, change, counted_plan())
    assert "its digest is" in load_error(path)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["rule_counts"][0].update(current=9), "do not add up"),
        (lambda d: d["rule_counts"][0].update(changing=0, matched=3), "do not match its changes"),
        (lambda d: d["rule_counts"][0].update(rule="ghost"), "names rule 'ghost'"),
        (
            lambda d: d["reapplied"][0].update(field="Owner"),
            f"reapplied names {opp_id(1)} Owner, which the plan does not change",
        ),
    ],
)
def test_counts_or_marks_that_do_not_match_the_changes(
    tmp_path: Path, change: Callable[[dict[str, Any]], object], problem: str
) -> None:
    # with the digest made to match too
    def forged(data: dict[str, Any]) -> None:
        change(data)
        data["digest"] = compute_digest(from_json(data))

    message = load_error(saved(tmp_path, forged, counted_plan()))
    assert message.startswith(
        f"{tmp_path / 'plan.json'}: the plan was modified after it was made: "
    )
    assert problem in message
    assert message.endswith("; make a new plan")


def test_a_part_of_a_plan_keeps_its_changes_marks_but_no_counts(tmp_path: Path) -> None:
    from lsqsync.lsq import Limit
    from lsqsync.plan.model import subset

    plan = counted_plan()
    first, second = plan.changes[0], plan.changes[1]
    assert first.id == opp_id(1)
    with_mark = subset(plan, [first], Limit(25, 5))
    assert (with_mark.reapplied, with_mark.rule_counts) == ({(opp_id(1), "Status"): "run-7"}, ())
    assert subset(plan, [second], Limit(25, 5)).reapplied == {}
    path = tmp_path / "part.json"
    planfile.save(with_mark, path)  # it loads: no counts to check
    assert planfile.load(path) == with_mark
