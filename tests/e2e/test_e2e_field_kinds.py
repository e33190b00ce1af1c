"""Field kinds and dates end to end (issue 13, problems 2 and 3): plan → apply → plan against the
emulator, whose metadata uses LeadSquared's documented data type names, with a multi-select, a
number read back with two decimals, a Date, a DateTime and an ActiveUsers field. The second
plan must find nothing to do — from Advanced Search (ISO dates) and from GetOpportunitiesById
(US dates) alike — also against an account that keeps a Date as the instant of local midnight.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from cli_helpers import run

from lsqsync.emulator import Emulator
from lsqsync.emulator.model import GEORGE_BAILEY

NOW = ["--now", "2026-11-27 10:00:00"]
LOAN = "c5a7f37c-b789-44c9-929b-74aa6250b539"
NO_CHANGES = "No changes. LeadSquared already matches the rules.\n"

KINDS = """\
version: 1
rules:
  - name: every-kind
    opportunity_type: 12000
    {selection}
    set:
      mx_Custom_17: [Salary Slips, PAN]        # a multi-select (Select, IsMultiSelectDropdown)
      mx_Custom_7: 12.5                        # a Number read back as "12.50"
      mx_Custom_8: "2027-01-15"                # a Date (render type Date)
      mx_Custom_13: "2027-01-15T09:30:00+05:30"  # a DateTime (Date, render type DateTime)
      mx_Custom_16: george.bailey@example.com  # an ActiveUsers field takes an email
"""


def _project(root: Path, rules: str, config: str = "") -> None:
    (root / "rules").mkdir()
    (root / "lsqsync.yml").write_text(
        "version: 1\nrules: [rules/]\nsafety: {max_change_ratio: 1}\n" + config, encoding="utf-8"
    )
    (root / "rules" / "kinds.yml").write_text(rules, encoding="utf-8")


def _stored(emu: Emulator) -> dict[str, str | None]:
    response = requests.get(f"{emu.url}/_emulator/opportunities/{LOAN}", timeout=10)
    fields: dict[str, str | None] = response.json()["fields"]
    return fields


@pytest.mark.parametrize(
    ("selection", "date_zone", "timezone"),
    [
        ("ids: [" + LOAN + "]", "", ""),  # GetOpportunitiesById: US dates
        ("where: {Status: Open}", "", ""),  # Advanced Search: ISO dates
        ("ids: [" + LOAN + "]", "Asia/Kolkata", "timezone: Asia/Kolkata\n"),
        ("where: {Status: Open}", "America/New_York", "timezone: America/New_York\n"),
    ],
)
def test_every_kind_applied_leaves_nothing_to_do(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    selection: str,
    date_zone: str,
    timezone: str,
) -> None:
    connected.settings.date_zone = date_zone
    monkeypatch.chdir(tmp_path)
    _project(tmp_path, KINDS.format(selection=selection), timezone)

    code, out, err = run(["plan", "--out", "plan.json", *NOW], capsys)
    assert code == 0, err
    plan = json.loads((tmp_path / "plan.json").read_text())
    loan = next(c for c in plan["changes"] if c["id"] == LOAN)
    assert {f["field"]: f["after"] for f in loan["fields"]} == {
        "mx_Custom_17": "PAN;Salary Slips",
        "mx_Custom_7": "12.5",
        "mx_Custom_8": "2027-01-15 12:00:00",
        "mx_Custom_13": "2027-01-15 04:00:00",
        "mx_Custom_16": GEORGE_BAILEY.id,
    }

    code, out, _ = run(["apply", "plan.json"], capsys)
    assert code == 0, out
    assert "stale: 0, failed: 0, unknown: 0" in out
    stored = _stored(connected)
    assert stored["mx_Custom_17"] == "PAN;Salary Slips"
    assert stored["mx_Custom_13"] == "2027-01-15 04:00:00"
    # a day-keeping account drops the time; an instant-keeping one keeps what was written
    assert stored["mx_Custom_8"] == ("2027-01-15 12:00:00" if date_zone else "2027-01-15")

    code, out, _ = run(["plan", "--detailed-exitcode", *NOW], capsys)
    assert code == 0
    assert out.endswith(NO_CHANGES)


def test_a_day_picked_in_the_accounts_zone_is_that_day(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A person in India picks 15 January: an account that keeps instants reads it back as
    2027-01-14 18:30:00 (and 1/14/2027 6:30:00 PM by id). With ``timezone: Asia/Kolkata`` that
    is the day the rule wants; read in UTC it is the day before, and the plan rewrites it."""
    connected.settings.date_zone = "Asia/Kolkata"
    edit = [{"ProspectOpportunityId": LOAN, "OpportunityEventCode": 12000,
             "Fields": [{"SchemaName": "mx_Custom_8", "Value": "2027-01-15"}]}]  # fmt: skip
    requests.post(connected.url + "/_emulator/edits", json=edit, timeout=10).raise_for_status()
    monkeypatch.chdir(tmp_path)
    rules = KINDS.format(selection=f"ids: [{LOAN}]").split("      mx_Custom_17")[0]
    _project(tmp_path, rules + '      mx_Custom_8: "2027-01-15"\n', "timezone: Asia/Kolkata\n")
    code, out, _ = run(["plan", "--detailed-exitcode", *NOW], capsys)
    assert code == 0
    assert out.endswith(NO_CHANGES)

    (tmp_path / "lsqsync.yml").write_text("version: 1\nrules: [rules/]\n", encoding="utf-8")
    code, out, _ = run(["plan", "--detailed-exitcode", *NOW], capsys)
    assert code == 2
    assert '~ Expected Disbursal (mx_Custom_8): "2027-01-14 12:00:00" -> "2027-01-15 12:00:00"' in (
        out
    )


def test_a_field_of_an_unrecognised_type_stops_the_plan_until_declared(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    rules = KINDS.format(selection=f"ids: [{LOAN}]").split("      mx_Custom_17")[0]
    _project(tmp_path, rules + "      mx_Custom_18: BR-42\n")
    code, out, err = run(["plan", *NOW], capsys)
    assert (code, out) == (1, "")
    assert err == (
        "error: 1 problem:\nrules/kinds.yml:7:21: rules[0].set.mx_Custom_18: mx_Custom_18 has "
        "data type 'Lookup' (render type 'Lookup'), which lsqsync does not recognise: it is never "
        "written or compared by guesswork. If you know what it holds, declare it in lsqsync.yml: "
        "field_types: {mx_Custom_18: text|number|date|datetime|boolean|dropdown|multiselect|user}\n"
    )
    assert not [r for r in connected.requests if r["path"].endswith("ByOpportunityId")]

    (tmp_path / "lsqsync.yml").write_text(
        "version: 1\nrules: [rules/]\nfield_types: {mx_Custom_18: text, mx_Custom_81: date}\n",
        encoding="utf-8",
    )
    code, out, err = run(["plan", "--out", "plan.json", *NOW], capsys)
    assert code == 0, err
    assert '~ Branch (mx_Custom_18): "BR-' in out
    assert '-> "BR-42"' in out
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["warnings"] == [
        "lsqsync.yml:3:35: field_types.mx_Custom_81: 'mx_Custom_81' is not a field of the rules' "
        "opportunity types (12000), so the declaration applies to nothing (did you mean "
        "'mx_Custom_8'?)"
    ]
    assert run(["apply", "plan.json"], capsys)[0] == 0
    assert _stored(connected)["mx_Custom_18"] == "BR-42"
    assert run(["plan", "--detailed-exitcode", *NOW], capsys)[0] == 0
