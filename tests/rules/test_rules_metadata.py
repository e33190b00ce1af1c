"""``validate --online``: field names, writable fields, options and lengths checked against the
opportunity types of a LeadSquared account (the emulator)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsqsync.cli import main
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator
from lsqsync.lsq import LsqClient
from lsqsync.rules.metadata import read_differently

CONFIG = "version: 1\nrules: [rules/]\nvars: {region: APAC}\n"

PROBLEMS = """\
version: 1
rules:
  - name: online-problems
    opportunity_type: 12003
    where:
      Stauts: Open
      mx_Custom_99: {gt: 1}
    set:
      mx_Custom_14: web
      mx_Custom_15: D-0001
      Status: Closed
      mx_Custom_10: high
      mx_Custom_9: "%s"
  - name: lowercase-status
    opportunity_type: 12000
    set:
      Status: won
      mx_Custom_9: "{{ opp.Status }} is a template: not checked"
      mx_Custom_11: null
  - name: unknown-type
    opportunity_type: 99999
    set: {Status: Won}
""" % ("x" * 201)

VALID = """\
version: 1
rules:
  - name: close-signed-deals
    opportunity_type: 12003
    where:
      Status: Open
      mx_Custom_6: {gt: 100000}
    when: "opp.mx_Custom_2 in ['Negotiation', 'Proposal']"
    set:
      Status: Won
      mx_Custom_2: Closed Won
      mx_Custom_8: "{{ now }}"
      mx_Custom_9: "Closed by rule {{ rule.name }}"
      mx_Custom_10: High
      mx_Custom_13: true
  - name: reassign-loans
    opportunity_type: 12000
    csv: {path: data/reassign.csv, key: opportunity_id}
    set:
      Owner: "{{ row.new_owner }}"
      mx_Custom_11: ABCDE1234F
"""


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rules: str) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "lsqsync.yml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "rules" / "online.yml").write_text(rules, encoding="utf-8")
    (tmp_path / "data" / "reassign.csv").write_text(
        "opportunity_id,new_owner\nc5a7f37c-b789-44c9-929b-74aa6250b539,george.bailey@example.com\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _validate(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", *args])
    out, err = capsys.readouterr()
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out, err


def test_online_problems(
    connected: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _project(tmp_path, monkeypatch, PROBLEMS)
    code, out, err = _validate(["--online"], capsys)
    assert (code, out.splitlines(), err) == (
        1,
        [
            "rules/online.yml:6:15: rules[0].where.Stauts: 'Stauts' is not a field of opportunity "
            "type 12003 (Enterprise Deal) (did you mean 'Status'?)",
            "rules/online.yml:7:21: rules[0].where.mx_Custom_99: 'mx_Custom_99' is not a field of "
            "opportunity type 12003 (Enterprise Deal) (did you mean 'mx_Custom_9'?)",
            "rules/online.yml:9:21: rules[0].set.mx_Custom_14: 'mx_Custom_14' is read-only in "
            "opportunity type 12003",
            "rules/online.yml:10:21: rules[0].set.mx_Custom_15: 'mx_Custom_15' is read-only in "
            "opportunity type 12003",
            "rules/online.yml:11:15: rules[0].set.Status: 'Closed' is not an option of Status "
            "(Open, Won, Lost); LeadSquared would store it anyway",
            "rules/online.yml:12:21: rules[0].set.mx_Custom_10: 'high' is not an option of "
            "mx_Custom_10 (Low, Medium, High) (did you mean 'High'?); LeadSquared would store it "
            "anyway",
            "rules/online.yml:13:20: rules[0].set.mx_Custom_9: mx_Custom_9 holds at most 200 "
            "characters, not 201",
            "rules/online.yml:17:15: rules[1].set.Status: 'won' is not an option of Status "
            "(Open, Won, Lost) (did you mean 'Won'?); LeadSquared would store it anyway",
            "rules/online.yml:20:11: opportunity type 99999: Opportunity type with code '99999' "
            "does not exist.",
            "9 problems found",
        ],
        "",
    )


def test_a_valid_project_is_valid_online(
    connected: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _project(tmp_path, monkeypatch, VALID)
    assert _validate(["--online"], capsys) == (0, "valid: 2 rules in 1 file\n", "")
    assert _validate(["--online", "--format", "github"], capsys) == (0, "", "")


def test_offline_problems_are_reported_without_calling_leadsquared(
    connected: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _project(tmp_path, monkeypatch, VALID.replace("mx_Custom_10: High", "ModifiedOn: x"))
    monkeypatch.delenv("LSQ_HOST")
    assert _validate(["--online"], capsys) == (
        1,
        "rules/online.yml:14:7: rules[0].set.ModifiedOn: 'ModifiedOn' is a system field and "
        "cannot be set\n1 problem found\n",
        "",
    )


def test_online_needs_the_connection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LSQ_HOST", "LSQ_ACCESS_KEY", "LSQ_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    _project(tmp_path, monkeypatch, VALID)
    assert _validate(["--online"], capsys) == (
        1,
        "",
        "error: LSQ_HOST and LSQ_ACCESS_KEY and LSQ_SECRET_KEY not set: lsqsync reads the "
        "LeadSquared host and API keys from the environment (keys: My Account > Settings > API "
        "and Webhooks)\n",
    )


TYPES_AND_VALUES = """\
version: 1
rules:
  - name: wrong-values
    opportunity_type: 12003
    where:
      Status: Opne
      mx_Custom_6: {gt: lots}
      mx_Custom_12: {in: ["2026-01-01", soon]}
    set:
      mx_Custom_6: abc
      mx_Custom_7: "12.5.6"
      mx_Custom_8: yesterday
      mx_Custom_13: maybe
      Owner: nobody@example.com
      mx_Custom_1: null
  - name: stage-under-status
    opportunity_type: 12003
    set:
      Status: Won
      mx_Custom_2: Negotiation
"""


def test_online_checks_values_against_the_field_types(
    connected: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _project(tmp_path, monkeypatch, TYPES_AND_VALUES)
    code, out, err = _validate(["--online"], capsys)
    assert (code, out.splitlines(), err) == (
        1,
        [
            "rules/online.yml:6:15: rules[0].where.Status: 'Opne' is not an option of Status "
            "(Open, Won, Lost): the condition can never hold (did you mean 'Open'?)",
            "rules/online.yml:7:20: rules[0].where.mx_Custom_6: mx_Custom_6 (number): 'lots' is "
            "not a number",
            "rules/online.yml:8:21: rules[0].where.mx_Custom_12: mx_Custom_12 (date): 'soon' is "
            "not a date",
            "rules/online.yml:10:20: rules[0].set.mx_Custom_6: mx_Custom_6 (number): 'abc' is not "
            "a number",
            "rules/online.yml:11:20: rules[0].set.mx_Custom_7: mx_Custom_7 (number): '12.5.6' is "
            "not a number",
            "rules/online.yml:12:20: rules[0].set.mx_Custom_8: mx_Custom_8 (datetime): "
            "'yesterday' is not a date",
            "rules/online.yml:13:21: rules[0].set.mx_Custom_13: mx_Custom_13 (boolean): 'maybe' "
            "is not a boolean (use true or false)",
            "rules/online.yml:14:14: rules[0].set.Owner: Owner: no active user with email "
            "'nobody@example.com' (lsqsync users list shows every user)",
            "rules/online.yml:15:20: rules[0].set.mx_Custom_1: mx_Custom_1 is mandatory and "
            "cannot be cleared",
            "rules/online.yml:20:20: rules[1].set.mx_Custom_2: mx_Custom_2 'Negotiation' is not "
            "allowed under Status 'Won' (allowed: Closed Won, Onboarding)",
            "10 problems found",
        ],
        "",
    )


def test_a_mask_entry_that_names_no_field_is_a_problem_online(
    connected: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _project(tmp_path, monkeypatch, VALID)
    config = tmp_path / "lsqsync.yml"
    config.write_text(CONFIG + "mask: [mx_custom_11, mx_Custom_111]\n", encoding="utf-8")
    code, out, _ = _validate(["--online"], capsys)
    assert (code, out.splitlines()) == (
        1,
        [
            "lsqsync.yml:4:22: mask[1]: 'mx_Custom_111' is not a field of the rules' opportunity "
            "types (12000, 12003), so it masks nothing (did you mean 'mx_Custom_11'?)",
            "1 problem found",
        ],
    )
    # offline, nothing knows the fields: the same file is valid
    assert _validate([], capsys)[0] == 0


# -- problem 2 of issue 13: a data type lsqsync does not recognise is never written ----------

UNRECOGNISED = """\
version: 1
rules:
  - name: branch-by-guesswork
    opportunity_type: 12000
    where:
      mx_Custom_18: BR-10
    when: "opp.mx_Custom_18 != ''"
    set:
      mx_Custom_18: BR-20
  - name: documents
    opportunity_type: 12000
    where:
      mx_Custom_17: {gt: PAN}
    set:
      mx_Custom_17: [PAN, Passport]
      mx_Custom_16: [george.bailey@example.com]
      mx_Custom_7: "4.615"
"""

UNRECOGNISED_HINT = (
    "mx_Custom_18 has data type 'Lookup' (render type 'Lookup'), which lsqsync does not "
    "recognise: it is never written or compared by guesswork. If you know what it holds, declare "
    "it in lsqsync.yml: field_types: {mx_Custom_18: "
    "text|number|date|datetime|boolean|dropdown|multiselect|user}"
)


def test_a_field_of_an_unrecognised_type_is_a_located_error_online(
    connected: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _project(tmp_path, monkeypatch, UNRECOGNISED)
    code, out, err = _validate(["--online"], capsys)
    assert (code, out.splitlines(), err) == (
        1,
        [
            f"rules/online.yml:3:11: rules[0]: a template reads opp.mx_Custom_18: "
            f"{UNRECOGNISED_HINT}",
            f"rules/online.yml:6:21: rules[0].where.mx_Custom_18: {UNRECOGNISED_HINT}",
            f"rules/online.yml:9:21: rules[0].set.mx_Custom_18: {UNRECOGNISED_HINT}",
            "rules/online.yml:13:21: rules[1].where.mx_Custom_17: mx_Custom_17 is a multi-select "
            "field: 'gt' does not apply (use eq, ne, in, not_in, contains, empty)",
            "rules/online.yml:15:21: rules[1].set.mx_Custom_17: 'Passport' is not an option of "
            "mx_Custom_17 (PAN, Aadhaar, Salary Slips, Bank Statement, Property Papers); "
            "LeadSquared would store it anyway",
            "rules/online.yml:16:21: rules[1].set.mx_Custom_16: mx_Custom_16 (user) holds one "
            "value, not a list: lists are for multi-select fields",
            "rules/online.yml:17:20: rules[1].set.mx_Custom_7: mx_Custom_7 (number): '4.615' has 3 "
            "decimal places; a number field keeps 2",
            "7 problems found",
        ],
        "",
    )


def test_field_types_declares_what_a_field_holds(
    connected: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rules = UNRECOGNISED.split("  - name: documents")[0]
    _project(tmp_path, monkeypatch, rules)
    config = tmp_path / "lsqsync.yml"
    config.write_text(CONFIG + "field_types: {mx_Custom_18: text}\n", encoding="utf-8")
    assert _validate(["--online"], capsys) == (0, "valid: 1 rule in 1 file\n", "")


def test_a_field_types_entry_that_names_no_field_is_a_problem_online(
    connected: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _project(tmp_path, monkeypatch, VALID)
    config = tmp_path / "lsqsync.yml"
    config.write_text(
        CONFIG + "field_types:\n  mx_Custom_18: text\n  mx_Custom_188: date\n", encoding="utf-8"
    )
    code, out, _ = _validate(["--online"], capsys)
    assert (code, out.splitlines()) == (
        1,
        [
            "lsqsync.yml:6:3: field_types.mx_Custom_188: 'mx_Custom_188' is not a field of the "
            "rules' opportunity types (12000, 12003), so the declaration applies to nothing "
            "(did you mean 'mx_Custom_18'?)",
            "1 problem found",
        ],
    )
    assert _validate([], capsys)[0] == 0  # offline, nothing knows the fields


def test_two_reads_of_one_opportunity_mean_the_same(connected: Emulator) -> None:
    """What ``doctor`` can check: the row of Advanced Search (ISO dates) and of
    GetOpportunitiesById (US dates, two-decimal numbers) read the same; a day-first date from an
    account whose API user prefers D/M/YYYY would not."""
    loan = "c5a7f37c-b789-44c9-929b-74aa6250b539"
    with LsqClient(connected.url, DEMO_ACCESS_KEY, DEMO_SECRET_KEY, limiter=None) as client:
        t = client.opportunity_type(12000)
        columns = [f.schema_name for f in t.fields]
        (by_search,) = [r for r in client.search_opportunities(12000, columns) if r.id == loan]
        (by_id,) = client.opportunities_by_id(12000, [loan], columns)
    assert [f.schema_name for f in t.unrecognised] == ["mx_Custom_18"]
    assert by_id.values["mx_Custom_8"] != by_search.values["mx_Custom_8"]  # two formats
    assert read_differently(t, by_search.values, by_id.values) == []
    day_first = {**by_id.values, "mx_Custom_8": "27/9/2025 12:00:00 AM"}
    assert read_differently(t, by_search.values, day_first) == [
        ("mx_Custom_8", "2025-09-27", "27/9/2025 12:00:00 AM")
    ]
