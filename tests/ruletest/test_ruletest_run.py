"""``lsqsync test``: rule tests planned offline by the real planner against the types snapshot,
reported like pytest; every mistake in a test file at its place."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import run

ROOT = Path(__file__).parents[2]

RULES = """\
version: 1
rules:
  - name: flag-high-value
    opportunity_type: 12003
    where: {Status: Open, mx_Custom_6: {gte: 400000}}
    set: {mx_Custom_10: High}
  - name: close-won
    opportunity_type: 12003
    where: {mx_Custom_2: Negotiation}
    when: "opp.mx_Custom_6 > 100000"
    set: {Status: Won, mx_Custom_2: Closed Won, mx_Custom_8: "{{ now }}"}
  - name: demote-small
    opportunity_type: 12003
    where: {mx_Custom_6: {lt: 1000}}
    set: {mx_Custom_10: Low}
"""

PASSING = """\
version: 1
tests:
  - name: large open deals are flagged
    rules: [flag-high-value]
    given:
      large: {type: 12003, fields: {Status: Open, mx_Custom_6: 400000}}
      small: {type: 12003, fields: {Status: Open, mx_Custom_6: 399999}}
    expect:
      large: {mx_Custom_10: High}
  - name: a deal in negotiation is won at now
    rules: [close-won]
    now: "2026-05-01 10:00:00"
    given:
      deal: {type: 12003, fields: {Status: Open, mx_Custom_2: Negotiation, mx_Custom_6: 200000}}
    expect:
      deal: {Status: Won, mx_Custom_2: Closed Won, mx_Custom_8: "2026-05-01T10:00:00"}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[object]) -> Path:
    """A project with the repository's snapshot of the emulator's types, run with no network."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "lsqsync.yml").write_text("version: 1\n")
    (tmp_path / "rules" / "deals.yml").write_text(RULES)
    shutil.copytree(ROOT / "types", tmp_path / "types")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_repository_example_passes_offline(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_network: list[object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["test", "--config", str(ROOT)], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[-1] == "7 passed (2 test files)"
    assert all(line.endswith(" PASSED") for line in lines[:-2])
    assert no_network == []


def test_passing_tests_and_the_rules_no_test_exercises(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "tests" / "deals.yml").write_text(PASSING)

    code, out, _ = run(["test"], capsys)

    assert (code, out) == (
        0,
        "tests/deals.yml::large open deals are flagged PASSED\n"
        "tests/deals.yml::a deal in negotiation is won at now PASSED\n"
        "\n"
        "Rules that no test exercises (no test plans a change from them):\n"
        "  demote-small (rules/deals.yml:12)\n"
        "\n"
        "2 passed (1 test file)\n",
    )
    code, out, _ = run(["test", "--format", "github"], capsys)
    assert code == 0
    assert out.splitlines()[0] == (
        "::warning file=rules/deals.yml,line=12,col=11,title=lsqsync test::"
        "no test plans a change from rule 'demote-small'"
    )


def test_a_broken_rule_fails_its_test_with_a_diff(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "tests" / "deals.yml").write_text(PASSING)
    broken = RULES.replace("{gte: 400000}", "{gt: 400000}").replace("Closed Won", "Onboarding")
    (project / "rules" / "deals.yml").write_text(broken)

    code, out, _ = run(["test"], capsys)

    assert code == 1
    assert out.split("\n\n")[1] == (
        "==================== failures ====================\n"
        "tests/deals.yml:3:11: large open deals are flagged: failed\n"
        '    large: mx_Custom_10: expected "High", planned no change\n'
        "tests/deals.yml:10:11: a deal in negotiation is won at now: failed\n"
        '    deal: mx_Custom_2: expected "Closed Won", planned "Onboarding"   # close-won '
        "(rules/deals.yml:11)"
    )
    assert out.endswith("\n2 failed (1 test file)\n")
    code, out, _ = run(["test", "--format", "github"], capsys)
    assert out.splitlines()[0] == (
        "::error file=tests/deals.yml,line=3,col=11,title=lsqsync test::test 'large open deals "
        'are flagged\' failed:%0Alarge: mx_Custom_10: expected "High", planned no change'
    )


def test_a_change_the_test_does_not_expect_fails_it(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "tests" / "deals.yml").write_text(
        PASSING.replace("    expect:\n      large: {mx_Custom_10: High}\n", "")
    )
    code, out, _ = run(["test"], capsys)
    assert code == 1
    assert (
        '    large: mx_Custom_10: expected no change, planned "High"   # flag-high-value '
        "(rules/deals.yml:6)\n" in out
    )


EXPECTED_ERRORS = """\
version: 1
tests:
  - name: two rules disagree on the priority
    rules: [flag-high-value, demote-small]
    given:
      odd: {type: 12003, fields: {Status: Open, mx_Custom_6: 400000}}
    expect_error: conflict
  - name: a tenth of a large type is too much at once
    rules: [flag-high-value]
    given:
GIVEN    expect_error: {kind: safety, message: "more than safety.max_change_ratio (30%)"}
  - name: a deal without a value cannot be compared
    rules: [close-won]
    given:
      blank: {type: 12003, fields: {Status: Open, mx_Custom_2: Negotiation}}
    expect_error: {kind: invalid, message: "opportunity blank: "}
  - name: expects a conflict that is not there
    rules: [flag-high-value]
    given:
      one: {type: 12003, fields: {Status: Open, mx_Custom_6: 400000}}
    expect_error: conflict
"""


def test_expected_errors(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = RULES.replace("where: {mx_Custom_6: {lt: 1000}}", "where: {Status: Open}")
    (project / "rules" / "deals.yml").write_text(rules)
    given = "".join(
        f"      d{i}: {{type: 12003, fields: {{Status: Open, mx_Custom_6: {400000 * (i < 4)}}}}}\n"
        for i in range(10)
    )
    (project / "tests" / "errors.yml").write_text(EXPECTED_ERRORS.replace("GIVEN", given))

    code, out, _ = run(["test"], capsys)

    assert code == 1
    assert out.splitlines()[:4] == [
        "tests/errors.yml::two rules disagree on the priority PASSED",
        "tests/errors.yml::a tenth of a large type is too much at once PASSED",
        "tests/errors.yml::a deal without a value cannot be compared PASSED",
        "tests/errors.yml::expects a conflict that is not there FAILED",
    ]
    assert "    expected a conflict; got a plan (1 opportunities to change)\n" in out, out


MISTAKES = """\
version: 1
tests:
  - name: mistakes
    rules: [flag-high-valu]
    given:
      a: {type: 12003, fields: {Statuss: Open, mx_Custom_6: lots}}
  - name: a type without a snapshot
    given:
      loan: {type: 12005, fields: {Status: Open}}
"""


def test_mistakes_in_a_test_file_are_located(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "tests" / "schema.yml").write_text(
        "version: 1\ntests:\n  - name: x\n    given: {a: {type: 12003}}\n    expects: {}\n"
    )
    (project / "tests" / "semantic.yml").write_text(MISTAKES)
    (project / "tests" / "unknown.yml").write_text(
        "version: 1\ntests:\n  - name: y\n    given: {a: {type: 12003}}\n"
        "    expect: {b: no_change}\n"
    )

    code, out, _ = run(["test"], capsys)

    assert code == 1
    assert out == (
        "tests/semantic.yml::mistakes ERROR\n"
        "tests/semantic.yml::a type without a snapshot ERROR\n"
        "\n"
        "==================== failures ====================\n"
        "tests/semantic.yml:3:11: mistakes: error\n"
        "    tests/semantic.yml:4:13: tests[0].rules[0]: no rule named 'flag-high-valu' (did you"
        " mean 'flag-high-value'?)\n"
        "    tests/semantic.yml:6:33: tests[0].given.a.fields.Statuss: 'Statuss' is not a field "
        "of opportunity type 12003 (Enterprise Deal) (did you mean 'Status'?)\n"
        "    tests/semantic.yml:6:61: tests[0].given.a.fields.mx_Custom_6: mx_Custom_6 (number):"
        " 'lots' is not a number\n"
        "tests/semantic.yml:7:11: a type without a snapshot: error\n"
        "    tests/semantic.yml:9:20: tests[1].given.loan.type: types/ has no snapshot of "
        "opportunity type 12005: lsqsync types pull 12005\n"
        "tests/schema.yml:5:5: tests[0].expects: unknown key (did you mean 'expect'?)\n"
        "tests/unknown.yml:5:14: tests[0].expect.b: 'b' is not an opportunity the test gives "
        "(a)\n"
        "\n"
        "Rules that no test exercises (no test plans a change from them):\n"
        "  flag-high-value (rules/deals.yml:3)\n"
        "  close-won (rules/deals.yml:7)\n"
        "  demote-small (rules/deals.yml:12)\n"
        "\n"
        "2 errors, 2 problems in the test files (3 test files)\n"
    )


LOANS = """\
version: 1
rules:
  - name: reassign
    opportunity_type: 12000
    csv: {path: rules/owners.csv, key: id}
    set: {Owner: "{{ row.owner }}"}
"""
HANDOVER = """\
version: 1
tests:
  - name: the sheet's loans change owner
    users: [{email: ann@example.com}, {email: bob@example.com, active: false}]
    csv:
      rules/owners.csv: |
        id,owner
        0b6f1c5e-3f0a-4e8b-9d62-1d1f5e4c2a10,ann@example.com
    given:
      0b6f1c5e-3f0a-4e8b-9d62-1d1f5e4c2a10: {type: 12000, fields: {Owner: bob@example.com}}
      7d3e2a1b-0c4f-4a5e-8b6d-2e3f4a5b6c7d: {type: 12000, fields: {Owner: bob@example.com}}
    expect:
      0b6f1c5e-3f0a-4e8b-9d62-1d1f5e4c2a10: {Owner: ann@example.com}
  - name: a user the test does not list
    csv: {rules/other.csv: "id\\n"}
    given:
      x: {type: 12000, fields: {Owner: carol@example.com}}
"""


def test_csv_contents_and_users_come_from_the_test(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "rules" / "deals.yml").write_text(LOANS)
    # the file on disk names another opportunity: the test's contents are planned instead
    (project / "rules" / "owners.csv").write_text("id,owner\nnobody,nobody@example.com\n")
    (project / "tests" / "loans.yml").write_text(HANDOVER)

    code, out, _ = run(["test"], capsys)

    assert code == 1
    assert out.splitlines()[:2] == [
        "tests/loans.yml::the sheet's loans change owner PASSED",
        "tests/loans.yml::a user the test does not list ERROR",
    ]
    assert (
        "    tests/loans.yml:15:11: tests[1].csv.rules/other.csv: no rule of the test reads the "
        "CSV rules/other.csv\n"
        "    tests/loans.yml:17:40: tests[1].given.x.fields.Owner: Owner: no user with email "
        "'carol@example.com' in the test's users\n"
    ) in out


def test_no_tests_is_not_a_failure(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(project / "tests")
    code, out, _ = run(["test"], capsys)
    assert code == 0
    assert out.endswith("\nno tests ran (0 test files)\n")


def test_rules_that_do_not_load_are_reported(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "rules" / "deals.yml").write_text(RULES.replace("set: {mx_Custom_10: Low}", ""))
    code, out, _ = run(["test"], capsys)
    assert code == 1
    assert out.startswith("\n==================== failures ====================\n")
    assert "rules/deals.yml:12:5: rules[2]: 'set' is required\n" in out


def test_rules_and_tests_may_name_fields_by_display_name(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the same rules and tests as PASSING, with fields named as LeadSquared's screens name them
    by_display = {"mx_Custom_6": "Deal Value", "mx_Custom_10": "Priority", "mx_Custom_2": "Stage"}
    rules, tests = RULES, PASSING
    for schema_name, display_name in by_display.items():
        rules = rules.replace(f"{schema_name}:", f"'{display_name}':")
        tests = tests.replace(f"{schema_name}:", f"'{display_name}':")
    assert "mx_Custom_6:" not in rules + tests
    (project / "rules" / "deals.yml").write_text(rules)
    (project / "tests" / "deals.yml").write_text(tests)
    code, out, _ = run(["test"], capsys)
    assert (code, out.splitlines()[-1]) == (0, "2 passed (1 test file)")

    # a mistake among them is located at its key, with the display names among the suggestions
    (project / "tests" / "deals.yml").write_text(
        tests.replace("{Status: Open, 'Deal Value': 399999}",
                      "{Status: Open, 'deal value': 1, 'Deal Value': 399999}")
    )  # fmt: skip
    code, out, _ = run(["test"], capsys)
    assert code == 1
    assert (
        "    tests/deals.yml:7:68: tests[0].given.small.fields.Deal Value: 'Deal Value' and 'deal "
        "value' both name the field Deal Value (mx_Custom_6): keep one"
    ) in out.splitlines()
    (project / "tests" / "deals.yml").write_text(
        tests.replace("{'Priority': High}", "{Priorty: 1}")
    )
    code, out, _ = run(["test"], capsys)
    assert code == 1
    assert (
        "    tests/deals.yml:9:15: tests[0].expect.large.Priorty: 'Priorty' is not a field of "
        "opportunity type 12003 (Enterprise Deal) (did you mean 'Priority', the display name of "
        "mx_Custom_10?)"
    ) in out.splitlines()
