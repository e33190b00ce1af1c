"""Fields named by display name, end to end against the emulator over real HTTP: a rule written
with display names plans and applies exactly what the same rule with schema names does; a
display name two fields share (an emulator whose metadata says so), two keys naming one field,
a template naming a field by display name, offline validate with and without a types snapshot,
and ``opportunities list --where/--columns`` by display name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from crm_helpers import example_project, requests_log

from lsqsync.cli import main
from lsqsync.emulator import Emulator

NOW = ["--now", "2026-11-27 10:00:00", "--allow-large"]
SEARCH = "/v2/OpportunityManagement.svc/Retrieve/BySearchParameter"

BY_SCHEMA_NAME = """\
version: 1
rules:
  - name: close-negotiations
    opportunity_type: 12003
    where:
      Status: Open
      mx_Custom_2: {in: [Negotiation, Proposal]}
      mx_Custom_6: {gt: 100}
    set:
      Status: Won
      mx_Custom_2: Closed Won
      mx_Custom_9: "Closed at {{ opp.mx_Custom_6 }}"
"""
# the same rule, its fields named as LeadSquared's screens name them (one in another case)
BY_DISPLAY_NAME = """\
version: 1
rules:
  - name: close-negotiations
    opportunity_type: 12003
    where:
      Status: Open
      Stage: {in: [Negotiation, Proposal]}
      Deal Value: {gt: 100}
    set:
      Status: Won
      stage: Closed Won
      Closing Note: "Closed at {{ opp.mx_Custom_6 }}"
"""


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def project(root: Path, rules: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    example_project(root)
    monkeypatch.chdir(root)
    for f in (root / "rules").glob("*.yml"):
        f.unlink()
    (root / "rules" / "deals.yml").write_text(rules)
    return root


def saved(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_a_rule_by_display_names_plans_and_applies_what_the_rule_by_schema_names_does(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    by_schema = project(tmp_path / "schema", BY_SCHEMA_NAME, monkeypatch)
    code, _, err = run(["plan", "--out", "p.json", *NOW], capsys)
    assert code == 0, err
    by_display = project(tmp_path / "display", BY_DISPLAY_NAME, monkeypatch)
    assert run(["validate", "--online"], capsys)[:2] == (0, "valid: 1 rule in 1 file\n")
    code, _, err = run(["plan", "--out", "p.json", *NOW], capsys)
    assert code == 0, err

    schema_plan, display_plan = saved(by_schema / "p.json"), saved(by_display / "p.json")
    assert display_plan["changes"], "the rule selects nothing: the comparison proves nothing"
    assert display_plan["changes"] == schema_plan["changes"]
    assert display_plan["summary"] == schema_plan["summary"]
    fields = {f["field"] for c in display_plan["changes"] for f in c["fields"]}
    assert fields == {"Status", "mx_Custom_2", "mx_Custom_9"}  # schema names only, in the file
    assert "Deal Value" not in json.dumps(display_plan["changes"])  # nor in the premises

    code, _, err = run(["apply", "p.json"], capsys)
    assert code == 0, err
    monkeypatch.chdir(by_schema)  # the rule by schema names has nothing left to do
    code, out, err = run(["plan", *NOW, "--detailed-exitcode"], capsys)
    assert (code, err) == (0, ""), out


def test_a_display_name_two_fields_share_is_an_error_naming_both(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the account's metadata gives Closing Note the display name "Stage" too
    connected.settings.display_names = {"12003.mx_Custom_9": "Stage"}
    project(tmp_path, BY_DISPLAY_NAME.replace("stage: Closed Won", "mx_Custom_2: Closed Won"),
            monkeypatch)  # fmt: skip
    ambiguous = (
        "rules/deals.yml:7:7: rules[0].where.Stage: 'Stage' is the display name of 2 fields of "
        "opportunity type 12003 (Enterprise Deal): mx_Custom_2 ('Stage'), mx_Custom_9 ('Stage'); "
        "name the one you mean by its schema name"
    )
    code, out, err = run(["plan", *NOW], capsys)
    assert (code, out) == (1, "")
    assert ambiguous in err.splitlines()
    assert not [e for e in requests_log(connected) if e["path"] == SEARCH]  # no opportunity read
    code, out, _ = run(["validate", "--online"], capsys)
    assert code == 1
    assert ambiguous in out.splitlines()
    code, out, err = run(["opportunities", "list", "--type", "12003", "--where", "Stage=x"], capsys)
    assert (code, out) == (1, "")
    assert err == "error: " + ambiguous.split("Stage: ", 1)[1] + "\n"

    # a schema name always means its own field
    (tmp_path / "rules" / "deals.yml").write_text(BY_SCHEMA_NAME)
    code, out, err = run(["plan", *NOW], capsys)
    assert code == 0, err


def test_two_keys_naming_one_field_are_an_error(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project(tmp_path, BY_DISPLAY_NAME.replace("      stage:", "      mx_Custom_2: Onboarding\n"
                                              "      Stage:"), monkeypatch)  # fmt: skip
    code, out, err = run(["plan", *NOW], capsys)
    assert (code, out) == (1, "")
    assert (
        "rules/deals.yml:12:7: rules[0].set.Stage: 'Stage' and 'mx_Custom_2' (line 11) both "
        "name the field Stage (mx_Custom_2): keep one"
    ) in err.splitlines()
    assert not [e for e in requests_log(connected) if e["path"] == SEARCH]


def test_a_template_reading_a_display_name_is_told_the_schema_name(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project(tmp_path, BY_DISPLAY_NAME.replace("opp.mx_Custom_6", "opp['Deal Value']"), monkeypatch)
    code, out, _ = run(["validate", "--online"], capsys)
    assert code == 1
    assert out.splitlines()[0] == (
        "rules/deals.yml:3:11: rules[0]: a template reads opp['Deal Value']: templates name "
        "fields by schema name; 'Deal Value' is the display name of mx_Custom_6, so read "
        "opp.mx_Custom_6"
    )


def test_offline_validate_resolves_with_a_snapshot_and_says_it_cannot_without(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project(tmp_path, BY_DISPLAY_NAME, monkeypatch)
    # without a snapshot: nothing resolved, and it says so (a warning: the plan resolves them)
    code, out, err = run(["validate"], capsys)
    assert (code, out) == (0, "valid: 1 rule in 1 file\n")
    assert err == (
        "rules/deals.yml:3:11: warning: fields and options of opportunity type 12003 not "
        "checked (types/ has no snapshot of it), nor which field each name means (Closing "
        "Note, Deal Value, Stage, Status, stage: a schema name, a display name or nothing): run "
        "`lsqsync validate --online`, or keep a types snapshot (lsqsync types pull 12003)\n"
    )

    assert run(["types", "pull"], capsys)[0] == 0
    monkeypatch.setenv("LSQ_HOST", "http://127.0.0.1:9")  # offline from here on
    # with one: resolved exactly as online, no warning
    assert run(["validate"], capsys) == (0, "valid: 1 rule in 1 file\n", "")
    (tmp_path / "rules" / "deals.yml").write_text(
        BY_DISPLAY_NAME.replace("Deal Value:", "Deal Valeu:")
        .replace("      stage:", "      mx_Custom_2: Onboarding\n      Stage:")
    )  # fmt: skip
    code, out, _ = run(["validate"], capsys)
    assert code == 1
    assert sorted(out.splitlines()[:-1]) == [
        "rules/deals.yml:12:7: rules[0].set.Stage: 'Stage' and 'mx_Custom_2' (line 11) both "
        "name the field Stage (mx_Custom_2): keep one",
        "rules/deals.yml:8:19: rules[0].where.Deal Valeu: 'Deal Valeu' is not a field of "
        "opportunity type 12003 (Enterprise Deal) (did you mean 'Deal Value', the display name "
        "of mx_Custom_6?)",
    ]

    # a snapshot of an account where two fields share a display name: the same error as online
    connected.settings.display_names = {"12003.mx_Custom_9": "Stage"}
    monkeypatch.setenv("LSQ_HOST", connected.url)
    assert run(["types", "pull"], capsys)[0] == 0
    monkeypatch.setenv("LSQ_HOST", "http://127.0.0.1:9")
    (tmp_path / "rules" / "deals.yml").write_text(
        BY_DISPLAY_NAME.replace("      Closing Note:", "      mx_Custom_9:")
    )
    code, out, _ = run(["validate"], capsys)
    assert code == 1
    assert sorted(out.splitlines()[:-1]) == [
        "rules/deals.yml:11:7: rules[0].set.stage: 'stage' matches the display names of 2 "
        "fields of opportunity type 12003 (Enterprise Deal) (ignoring case): mx_Custom_2 "
        "('Stage'), mx_Custom_9 ('Stage'); name the one you mean by its schema name",
        "rules/deals.yml:7:7: rules[0].where.Stage: 'Stage' is the display name of 2 fields of "
        "opportunity type 12003 (Enterprise Deal): mx_Custom_2 ('Stage'), mx_Custom_9 ('Stage'); "
        "name the one you mean by its schema name",
    ]
    shutil.rmtree(tmp_path / "types")


def test_opportunities_list_by_display_names(
    connected: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    by_schema = ["--where", "mx_Custom_2=Negotiation", "--columns", "mx_Custom_6,mx_Custom_2"]
    by_display = ["--where", "Stage=Negotiation", "--columns", "Deal Value,stage"]
    listed = []
    for names in (by_schema, by_display):
        code, out, err = run(
            ["opportunities", "list", "--type", "12003", *names, "--format", "csv"], capsys
        )
        assert (code, err) == (0, "")
        listed.append(out.splitlines())
    assert listed[0][0] == "id,mx_Custom_6,mx_Custom_2"
    assert listed[1][0] == "id,Deal Value,stage"  # headed as asked
    assert len(listed[1]) > 1, "no opportunity in Negotiation: the comparison proves nothing"
    assert listed[1][1:] == listed[0][1:]

    code, out, err = run(["opportunities", "list", "--type", "12003", "--where", "Stag=x"], capsys)
    assert (code, out) == (1, "")
    assert err == (
        "error: 'Stag' is not a field of opportunity type 12003 (Enterprise Deal) (did you mean "
        "'Stage', the display name of mx_Custom_2?); lsqsync types show 12003 lists them\n"
    )
