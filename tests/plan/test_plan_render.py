"""The renderings people read: text for terminals and CI logs, Markdown for pull requests."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from plan_helpers import (
    GEORGE,
    LABELS,
    MARY,
    SECRET_VALUES,
    make_plan,
    many_changes,
)

from lsqsync import display
from lsqsync.config import Safety
from lsqsync.display import MARKDOWN_LIMIT
from lsqsync.plan import planfile
from lsqsync.plan import render as render_module
from lsqsync.plan.model import Plan
from lsqsync.plan.render import FORMATS, Format, render

GOLDEN = Path(__file__).parent / "golden"
# The golden files are the renderers' exact output. After an intended change, regenerate them
# with `LSQSYNC_UPDATE_GOLDEN=1 .venv/bin/pytest tests/plan` and review their diff like code.
UPDATE_GOLDEN = os.environ.get("LSQSYNC_UPDATE_GOLDEN") == "1"

WARNING = "2 ids in rules/renewals.csv were not found: 0d9cfffe, 0d9cffff"
BIG_TYPES = {12003: ("Enterprise Deal", 20_000), 12004: ("Renewal", 10)}


def sample() -> Plan:
    return make_plan(warnings=(WARNING,))


GOLDEN_CASES: dict[str, Callable[[], str]] = {
    "text.txt": lambda: render(sample(), "text"),
    "text-color.txt": lambda: render(sample(), "text", color=True),
    "text-capped.txt": lambda: render(sample(), "text", max_details=2, saved_as="plans/q4.json"),
    "text-empty.txt": lambda: render(make_plan([]), "text"),
    "markdown.md": lambda: render(sample(), "markdown"),
    "markdown-large.md": lambda: render(
        make_plan(allow_large=True), "markdown", safety=Safety(6, 0.2)
    ),
    "markdown-empty.md": lambda: render(make_plan([]), "markdown"),
    "plan.json": lambda: render(sample(), "json"),
}


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_rendering_matches_its_golden_file(name: str) -> None:
    actual = GOLDEN_CASES[name]()
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_bytes(actual.encode())
    assert actual == path.read_bytes().decode(), (
        f"{path} differs; if the change is intended, regenerate with LSQSYNC_UPDATE_GOLDEN=1"
    )


def test_every_golden_file_has_a_case() -> None:
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(GOLDEN_CASES)


@pytest.mark.parametrize("fmt", FORMATS)
def test_rendering_is_deterministic(fmt: Format) -> None:
    assert render(sample(), fmt) == render(sample(), fmt)


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown plan format 'html'"):
        render(sample(), "html")  # type: ignore[arg-type]


# -- text -------------------------------------------------------------------------------------


def test_text_starts_with_the_plan_and_its_host_and_ends_with_the_totals() -> None:
    """What a reviewer reads first is which account and what changes: the plan's identity and
    provenance come after the changes, before the totals."""
    plan = sample()
    lines = render(plan, "text").splitlines()
    assert lines[:3] == [
        f"lsqsync plan {plan.digest[:8]} for https://api-in21.leadsquared.com",
        "",
        "Summary: 6 opportunities, 13 fields",
    ]
    about = lines.index("About this plan:")
    assert lines[about + 1] == f"  digest:  {plan.digest}"
    assert about > max(i for i, line in enumerate(lines) if line.startswith("~ opportunity"))
    assert lines[-1] == "Plan: 6 opportunities to change (13 fields)."
    # to apply: per type (two), its metadata, one call to re-check, one to read back
    assert lines[-3] == (
        "API cost: 7 read calls made; to apply: 1 write call, 6 read calls (re-check, read "
        "back); writes ≥ 0.2 s at the rate limit"
    )


def test_text_shows_users_by_label_whatever_the_case_of_the_id() -> None:
    text = render(sample(), "text")
    assert GEORGE not in text.lower()
    assert MARY not in text.lower()
    assert (
        f"    ~ Owner: {LABELS[GEORGE]} -> {LABELS[MARY]}   # reassign-enterprise (line 5)"
    ) in text.splitlines()


def test_text_has_no_colour_unless_asked() -> None:
    assert "\x1b" not in render(sample(), "text")
    coloured = render(sample(), "text", color=True)
    assert coloured.startswith("\x1b[1mlsqsync plan ")
    assert '\x1b[33m~\x1b[0m Status: \x1b[31m"Open"\x1b[0m -> \x1b[32m"Won"\x1b[0m' in coloured


def test_values_cannot_break_lines_or_reach_the_terminal() -> None:
    text = render(sample(), "text")
    assert text.isascii() or all(ch.isprintable() or ch == "\n" for ch in text)
    assert '-> "Renewal\\tQ1 \\u202eevil\\u202c\\u001b[31m"' in text
    assert '"Line one\\nLine two: \\"quoted\\" | @reviewer #12 $x$ `code` \\\\ done"' in text
    # one line per field: a value's line break does not start a line of its own
    assert not any(line.startswith("Line two") for line in text.splitlines())


@pytest.mark.parametrize(
    ("count", "max_details", "shown", "more"),
    [
        (250, 200, 200, "… 50 more opportunities in the saved plan (lsqsync show FILE)"),
        (201, 200, 200, "… 1 more opportunity in the saved plan (lsqsync show FILE)"),
        (200, 200, 200, None),
        (5, 0, 0, "… 5 more opportunities in the saved plan (lsqsync show FILE)"),
    ],
)
def test_text_details_are_capped(
    count: int, max_details: int, shown: int, more: str | None
) -> None:
    plan = make_plan(many_changes(count), types=BIG_TYPES)
    lines = render(plan, "text", max_details=max_details).splitlines()
    assert sum(line.startswith("~ opportunity ") for line in lines) == shown
    assert ("Symbols: ~ update in place" in lines) == (shown > 0)
    assert [line for line in lines if line.startswith("… ")] == ([more] if more else [])
    assert lines[-1] == f"Plan: {count} opportunities to change ({2 * count} fields)."


def test_the_more_line_names_the_saved_plan() -> None:
    plan = make_plan(many_changes(3), types=BIG_TYPES)
    text = render(plan, "text", max_details=1, saved_as="plans/q4.json")
    assert "… 2 more opportunities in the saved plan (lsqsync show plans/q4.json)\n" in text


def test_text_of_an_empty_plan_says_no_changes() -> None:
    lines = render(make_plan([]), "text").splitlines()
    assert lines[-1] == "No changes. LeadSquared already matches the rules."
    assert not any(line.startswith(("Summary", "Symbols", "~")) for line in lines)


# -- masking ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rendering",
    [
        pytest.param(lambda p: render(p, "text"), id="text"),
        pytest.param(lambda p: render(p, "text", color=True), id="text-color"),
        pytest.param(lambda p: render(p, "text", max_details=1), id="text-capped"),
        pytest.param(lambda p: render(p, "markdown"), id="markdown"),
    ],
)
def test_masked_values_appear_nowhere_in_renderings(rendering: Callable[[Plan], str]) -> None:
    out = rendering(sample())
    for value in SECRET_VALUES:
        assert value not in out
    assert "***" in out


def test_masked_transitions_are_merged_in_the_summary() -> None:
    assert "    Revenue (mx_Revenue): *** -> *** \u00d72" in render(sample(), "text").splitlines()


def test_masking_ignores_the_case_of_the_field_name() -> None:
    text = render(make_plan(mask=("MX_REVENUE",)), "text")
    assert not any(value in text for value in SECRET_VALUES)


def test_json_keeps_the_real_values_because_apply_writes_them() -> None:
    # The saved plan is the machine form: apply sends its values and re-checks its befores.
    # Masking is for what people and CI logs see.
    data = json.loads(render(sample(), "json"))
    values = {f[k] for c in data["changes"] for f in c["fields"] for k in ("before", "after")}
    assert set(SECRET_VALUES) <= values
    assert data["mask"] == ["mx_Revenue"]


# -- markdown ---------------------------------------------------------------------------------


def unescaped_pipes(line: str) -> int:
    count, escaped = 0, False
    for ch in line:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "|":
            count += 1
    return count


def test_markdown_table_cells_escape_what_markdown_would_act_on() -> None:
    md = render(sample(), "markdown")
    tables = [b.splitlines() for b in md.split("\n\n") if b.startswith("| ")]
    assert len(tables) == 4
    for table in tables:  # every row has as many cells as the header
        assert len({unescaped_pipes(row) for row in table}) == 1
    rows = [row for table in tables for row in table]
    assert (
        "| Notes / Renewal \\*notes\\* \\| \\\\u202eQ1 (mx\\_Notes) "
        '| "Discount \\| 10% \\*approved\\* \\<b\\>" | "Line one\\\\nLine two:'
        ' \\\\"quoted\\\\" \\| \\@reviewer \\#12 \\$x\\$ \\`code\\` \\\\\\\\ done" | 1 |'
    ) in rows
    assert "| Owner | (empty) | Mary Hatch \\<mary.hatch\\@example.com\\> | 1 |" in rows


def test_markdown_puts_the_summary_first_and_folds_the_details() -> None:
    plan = sample()
    md = render(plan, "markdown")
    assert md.startswith(
        f"### lsqsync plan `{plan.digest[:8]}` for `https://api-in21.leadsquared.com`\n\n"
        "#### Summary: 6 opportunities, 13 fields\n"
    )
    assert md.index("#### Summary") < md.index("About this plan:") < md.index("<details>")
    assert md.index("<details>") < md.index("```diff\n")
    assert "\n<details><summary>Details: 6 opportunities, 13 fields</summary>\n\n```diff\n" in md
    assert md.endswith("```\n\n</details>\n\nPlan: 6 opportunities to change (13 fields).\n")
    assert "details truncated" not in md


def test_markdown_diff_lines_are_coloured_by_github() -> None:
    md = render(sample(), "markdown")
    diff = md[md.index("```diff\n") + 8 : md.index("```\n\n</details>")]
    assert {line[0] for line in diff.splitlines()} == {"~", "-", "+"}
    assert '-     Status: "Open"\n+     Status: "Won"   # close-signed-deals (line 7)\n' in diff


def test_markdown_is_capped_at_whole_opportunities() -> None:
    plan = make_plan(many_changes(5000), types=BIG_TYPES)
    md = render(plan, "markdown")
    assert len(md) <= MARKDOWN_LIMIT
    shown = md.count("\n~ opportunity ")
    assert 100 < shown < 5000
    assert f"\ndetails truncated: {shown} of 5000 opportunities shown;" in md
    assert f"{shown} of 5000 opportunities shown; the full plan is in the artifact\n" in md
    diff = md[md.index("```diff\n") + 8 : md.index("```\n\n</details>")]
    last = diff.splitlines()[-5:]  # the last opportunity, whole: its title and both fields
    assert last[0].startswith("~ opportunity ")
    assert [line[0] for line in last[1:]] == ["-", "+", "-", "+"]
    assert md.endswith("\n\nPlan: 5000 opportunities to change (10000 fields).\n")


def test_markdown_stays_under_the_cap_even_when_the_summary_is_huge() -> None:
    warnings = tuple(f"unknown id {n:05d} " + "x" * 100 for n in range(1000))
    plan = make_plan(many_changes(10), types=BIG_TYPES, warnings=warnings)
    md = render(plan, "markdown")
    assert len(md) <= MARKDOWN_LIMIT
    assert "\n\n… summary truncated; the full plan is in the artifact\n" in md
    assert "\ndetails truncated: 0 of 10 opportunities shown;" in md
    assert "<details>" not in md
    assert md.endswith("\nPlan: 10 opportunities to change (20 fields).\n")


RATIO = "(safety.max\\_change\\_ratio)"
RENEWAL = "type 12004 Renewal: 2 of 10 opportunities change (20%)"
ENTERPRISE = "type 12003 Enterprise Deal: 4 of 40 opportunities change (10%)"


@pytest.mark.parametrize(
    ("safety", "allow_large", "expected"),
    [
        ((1000, 0.3), False, []),
        (
            (7, 0.3),
            False,
            ["6 opportunities to change: close to the limit of 7 (safety.max\\_changes)"],
        ),
        (
            (5, 0.3),
            False,
            ["6 opportunities to change: over the limit of 5 (safety.max\\_changes)"],
        ),
        (
            (1000, 0.25),
            False,
            [f"{RENEWAL}: close to the limit of 25% {RATIO}"],
        ),
        (
            (1000, 0.1),
            False,
            [
                # 4 of 40 is exactly the limit: close to it, not over it
                f"{ENTERPRISE}: close to the limit of 10% {RATIO}",
                f"{RENEWAL}: over the limit of 10% {RATIO}",
            ],
        ),
        ((1000, 0.3), True, ["made with --allow-large: the safety limits were overridden"]),
    ],
)
def test_a_close_safety_limit_is_a_bold_warning_in_markdown_and_a_warning_in_text(
    safety: tuple[int, float], allow_large: bool, expected: list[str]
) -> None:
    plan = make_plan(allow_large=allow_large)
    md = render(plan, "markdown", safety=Safety(*safety))
    assert [line for line in md.splitlines() if "⚠️" in line] == [f"**⚠️ {e}**" for e in expected]
    text = render(plan, "text", safety=Safety(*safety))
    assert [line for line in text.splitlines() if line.startswith("Warning: ")] == [
        "Warning: " + e.replace("\\", "") for e in expected
    ]


def test_small_types_are_outside_the_ratio_limit() -> None:
    plan = make_plan(types={12003: ("Enterprise Deal", 9), 12004: ("Renewal", 2)})
    assert "⚠️" not in render(plan, "markdown", safety=Safety(1000, 0.1))


def test_a_type_whose_number_is_unknown_is_shown_so_and_never_warned_about(
    tmp_path: Path,
) -> None:
    # keys that may not use Advanced Search could not count the type
    plan = make_plan(types={12003: ("Enterprise Deal", None), 12004: ("Renewal", 10)})
    text = render(plan, "text", safety=Safety(1000, 0.01))
    assert "    12003 Enterprise Deal: 4 changing (of an unknown number)\n" in text
    assert "Warning: type 12003" not in text
    md = render(plan, "markdown", safety=Safety(1000, 0.01))
    assert "| 12003 Enterprise Deal | 4 | unknown |  |" in md
    assert "12003 Enterprise Deal: 3 of" not in md + text
    data = json.loads(render(plan, "json"))
    assert data["summary"]["types"][0] == {
        "opportunity_type": 12003, "name": "Enterprise Deal", "total": None, "changing": 4,
    }  # fmt: skip
    saved = tmp_path / "p.json"
    planfile.save(plan, saved)
    assert planfile.load(saved) == plan  # the schema, and the summary check, accept it


def test_markdown_of_an_empty_plan_says_no_changes() -> None:
    md = render(make_plan([]), "markdown")
    assert md.endswith("\n\nNo changes. LeadSquared already matches the rules.\n")
    assert "<details>" not in md


@pytest.mark.parametrize(
    ("text", "expected"),
    [("plain", "`plain`"), ("a`b", "``a`b``"), ("`x`", "`` `x` ``")],
)
def test_code_spans_survive_backticks(text: str, expected: str) -> None:
    assert render_module._code(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (0.04, "0"),
        (0.2, "0.2"),
        (3 * 0.1, "0.3"),
        (0.29999999999999993, "0.3"),
        (7.99, "7.9"),
        (99.95, "99.9"),
        (4000.7, "4000"),
    ],
)
def test_cost_seconds_are_a_lower_bound(value: float, expected: str) -> None:
    assert display.seconds(value) == expected


def test_no_text_line_passes_200_characters_and_long_values_get_lines_of_their_own() -> None:
    from plan_helpers import NOTES, change, opportunity

    note = "Renewal agreed on the call with procurement; " * 8  # 360 characters
    plan = make_plan([opportunity(1, 12003, change("mx_Notes", "short", note, NOTES, 24))])
    lines = render(plan, "text").splitlines()
    assert max(map(len, lines)) <= 200
    at = lines.index("    ~ Notes (mx_Notes):   # q4-notes (line 24)")
    assert lines[at + 1 : at + 3] == [
        '        "short"',
        f"     -> {display.capped(display.quote(note), 160)}",
    ]
    assert lines[at + 2].endswith("… (202 more characters)")
    # the summary's transition is cut to fit too
    (summary,) = [line for line in lines if line.startswith('    Notes (mx_Notes): "short" -> ')]
    assert summary.endswith("more characters) \u00d71")


def test_a_field_from_a_run_names_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rollback plan's fields come from a run, not a file: their line names the run."""
    import plan_helpers
    from plan_helpers import opportunity

    from lsqsync.plan.model import FieldChange

    monkeypatch.setitem(plan_helpers.RULE_SOURCES, "rollback-r1", "run r1")
    back = FieldChange("Status", "Won", "Open", "rollback-r1", "run r1")
    lines = render(make_plan([opportunity(1, 12003, back)]), "text").splitlines()
    assert '    ~ Status: "Won" -> "Open"   # rollback-r1 (run r1)' in lines
