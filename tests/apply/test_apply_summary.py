"""apply's summary, exactly: the counts, what reading back found, the calls and the time, the
notes, and the fields that need a person."""

from __future__ import annotations

from lsqsync.apply.summary import ApplySummary, Checked
from lsqsync.state.records import FieldResult
from lsqsync.state.report import problem_lines, problems

OPP = "4f530c63-4c93-4150-8b8e-83487befb3b2"
COUNTS = {"applied": 3, "already_current": 0, "stale": 1, "failed": 1, "unknown": 0}


def summary(**changes: object) -> ApplySummary:
    values: dict[str, object] = {
        "run_id": "20261127-073415-5bdda1",
        "outcome": "partial",
        "counts": COUNTS,
        "opportunities": 1,
        "calls": 7,
        "rate_limited": 0,
        "seconds": 2.54,
        "runs_since": (),
    }
    return ApplySummary(**{**values, **changes})  # type: ignore[arg-type]


def test_the_counts_the_read_back_the_calls_and_where_to_look() -> None:
    checked = Checked(confirmed=2, normalised=0, not_persisted=1, calls=1)
    text = summary(checked=checked, problems=("one line",)).text()
    assert text == (
        "Run 20261127-073415-5bdda1: partial.\n"
        "  applied: 3, already current: 0, stale: 1, failed: 1, unknown: 0 (fields of 1 "
        "opportunity)\n"
        "  read back: 2 confirmed, 0 normalised, 1 not persisted\n"
        "  7 API calls (1 to read back; 0 refused for the rate limit) in 2.5 s\n"
        "\n"
        "  one line\n"
        "  details: lsqsync state show 20261127-073415-5bdda1\n"
    )


def test_a_clean_run_says_no_more_and_no_verify_says_so() -> None:
    clean = {"applied": 1, "already_current": 0, "stale": 0, "failed": 0, "unknown": 0}
    text = summary(outcome="succeeded", counts=clean, verify=False, calls=1).text()
    assert text == (
        "Run 20261127-073415-5bdda1: succeeded.\n"
        "  applied: 1, already current: 0, stale: 0, failed: 0, unknown: 0 (fields of 1 "
        "opportunity)\n"
        "  read back: skipped (--no-verify)\n"
        "  1 API call (0 refused for the rate limit) in 2.5 s\n"
    )
    assert summary(counts=clean).clean
    assert not summary(counts=clean, checked=Checked(not_persisted=1)).clean
    assert not summary(counts=clean, checked=Checked(unread=1, why_unread="x")).clean
    assert not summary(counts=clean, unresolved=("run r batch 1",)).clean


def test_what_the_next_run_does_is_said() -> None:
    checked = Checked(confirmed=1, earlier=4, unread=2, why_unread="HTTP 500")
    text = summary(
        checked=checked,
        stopped="3 batches in a row failed",
        unresolved=("run r batch 2", "run r batch 3"),
        counts={**COUNTS, "not_sent": 5},
        problems=("a", "b"),
        more=7,
    ).text()
    assert (
        "  read back: 1 confirmed, 0 normalised, 0 not persisted (4 fields written by an "
        "earlier run of the plan); 2 fields not read back (HTTP 500): the next apply of this "
        "plan reads them\n"
    ) in text
    assert "  stopped sending: 3 batches in a row failed\n" in text
    assert "  apply the same plan again to send the fields not sent\n" in text
    assert (
        "  outcome unknown, records not read back: run r batch 2, run r batch 3 (the next "
        "apply of this plan reads them back before sending anything)\n"
    ) in text
    assert text.endswith("\n  a\n  b\n  … 7 more: lsqsync state show 20261127-073415-5bdda1\n")


def test_the_fields_that_need_a_look_worst_first_one_line_each() -> None:
    def r(field: str, status: str, **more: object) -> FieldResult:
        return FieldResult(OPP, 12003, field, "Open", "Won", status, "rule", **more)  # type: ignore[arg-type]

    results = [
        r("a", "applied", verified="confirmed"),
        r("b", "stale", message="changed in LeadSquared since the plan", current="Lost"),
        r("c", "applied", verified="not_persisted", current="Open"),
        r("d", "unknown", message="no answer, twice"),
        r("e", "failed", message="MXInvalidDataTypeException: no\nway", current="Open"),
        r("f", "not_sent", message="not sent: LeadSquared looks down", current="Open"),
        r("mx_Custom_11", "stale", message="changed", current="secret"),
        r("g", "already_current"),
    ]
    listed = problems(results)
    assert [x.field for x in listed] == ["c", "e", "d", "b", "mx_Custom_11", "f"]
    assert problem_lines(listed, mask=["MX_CUSTOM_11"]) == [
        f'not persisted  {OPP} (12003) c: "Open" → "Won", now "Open": not persisted',
        f'failed         {OPP} (12003) e: "Open" → "Won", now "Open": MXInvalidDataTypeException: '
        "no\\nway",
        f'unknown        {OPP} (12003) d: "Open" → "Won", now unknown: no answer, twice',
        f'stale          {OPP} (12003) b: "Open" → "Won", now "Lost": changed in LeadSquared '
        "since the plan",
        f"stale          {OPP} (12003) mx_Custom_11: *** → ***, now ***: changed",
        f'not sent       {OPP} (12003) f: "Open" → "Won", now "Open": not sent: LeadSquared '
        "looks down",
    ]
