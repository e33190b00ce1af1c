"""`lsqsync state runs` and `lsqsync state show RUN --format text|json|csv`: exact output."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from state_helpers import DIGEST, OPP_A, OPP_B, Clock, result

from lsqsync.state.records import Counts, FieldResult, Run
from lsqsync.state.report import (
    RUN_FORMATS,
    RunFormat,
    render_run,
    render_runs,
    render_workspaces,
)
from lsqsync.state.store import StateFile

RUN = Run(
    id="20240501-100000-3fa2c1",
    who="ci@runner-1",
    where="https://github.com/acme/crm-rules/actions/runs/42",
    plan_digest="ab" * 32,
    started="2024-05-01T10:00:00Z",
    finished="2024-05-01T10:01:05Z",
    outcome="partial",
    overrides=("ignore-rule-changes",),
    serial=4,
    counts=Counts(applied=3, already_current=1, stale=1, failed=1, confirmed=1, normalised=1,
                  not_persisted=1),
)  # fmt: skip
RUNNING = Run(
    id="20240501-110000-0a0b0c",
    who="alice@laptop",
    where="/home/alice/crm",
    plan_digest="cd" * 32,
    started="2024-05-01T11:00:00Z",
    finished=None,
    outcome="running",
    overrides=(),
    serial=None,
)
RESULTS = (
    FieldResult(
        OPP_A, 12003, "Status", "Open", "Won", "applied", "close-won", verified="confirmed"
    ),
    FieldResult(
        OPP_A,
        12003,
        "mx_Custom_11",
        "98450 12345",
        "98450 00000",
        "applied",
        "fix-phone",
        current="98450 00000 ",
        verified="normalised",
    ),
    FieldResult(
        OPP_A,
        12003,
        "mx_Custom_9",
        "old",
        "",
        "applied",
        "clear-notes",
        current="old",
        verified="not_persisted",
    ),
    FieldResult(
        OPP_B, 12003, "Owner", None, '=HYPERLINK("http://x")', "stale", "owners", "edited", "u9"
    ),
    FieldResult(
        OPP_B, 12003, "Status", "Open", "Won", "failed", "close-won", "MXInvalid: Status\nlocked"
    ),
    FieldResult(OPP_B, 12004, "mx_Amount", "-12.5", "-12.5", "already_current", "amounts"),
)
MASK = ("mx_Custom_11",)

TEXT = """\
Run 20240501-100000-3fa2c1: partial
  plan       abababababababababababababababababababababababababababababababab
  who        ci@runner-1
  where      https://github.com/acme/crm-rules/actions/runs/42
  started    2024-05-01T10:00:00Z
  finished   2024-05-01T10:01:05Z
  serial     4
  overrides  ignore-rule-changes
  results    3 applied, 1 already current, 1 stale, 1 failed, 0 unknown, 0 not sent
  read back  1 confirmed, 1 normalised, 1 not persisted

OPPORTUNITY                           TYPE   FIELD         BEFORE   AFTER                       STATUS           VERIFIED       RULE         MESSAGE
4f530c63-4c93-4150-8b8e-83487befb3b2  12003  Status        "Open"   "Won"                       applied          confirmed      close-won
4f530c63-4c93-4150-8b8e-83487befb3b2  12003  mx_Custom_11  ***      ***                         applied          normalised     fix-phone    stored as ***
4f530c63-4c93-4150-8b8e-83487befb3b2  12003  mx_Custom_9   "old"    (empty)                     applied          not persisted  clear-notes  not persisted; now "old"
7d2e9a10-1b3c-4d5e-8f70-91a2b3c4d5e6  12003  Owner         (empty)  "=HYPERLINK(\\"http://x\\")"  stale                           owners       edited; now "u9"
7d2e9a10-1b3c-4d5e-8f70-91a2b3c4d5e6  12003  Status        "Open"   "Won"                       failed                          close-won    MXInvalid: Status\\nlocked
7d2e9a10-1b3c-4d5e-8f70-91a2b3c4d5e6  12004  mx_Amount     "-12.5"  "-12.5"                     already_current                 amounts
"""  # noqa: E501 - the table is as wide as it is

CSV = (
    "run,opportunity,type,field,before,after,status,message,rule,current,verified,field_label\r\n"
    "20240501-100000-3fa2c1,4f530c63-4c93-4150-8b8e-83487befb3b2,12003,Status,Open,Won,applied,,close-won,,confirmed,Status\r\n"
    "20240501-100000-3fa2c1,4f530c63-4c93-4150-8b8e-83487befb3b2,12003,mx_Custom_11,***,***,applied,,fix-phone,***,normalised,Contact Phone\r\n"  # noqa: E501
    "20240501-100000-3fa2c1,4f530c63-4c93-4150-8b8e-83487befb3b2,12003,mx_Custom_9,old,,applied,,clear-notes,old,not_persisted,Closing Note\r\n"  # noqa: E501
    '20240501-100000-3fa2c1,7d2e9a10-1b3c-4d5e-8f70-91a2b3c4d5e6,12003,Owner,,"\'=HYPERLINK(""http://x"")",stale,edited,owners,u9,,\r\n'
    '20240501-100000-3fa2c1,7d2e9a10-1b3c-4d5e-8f70-91a2b3c4d5e6,12003,Status,Open,Won,failed,"MXInvalid: Status\nlocked",close-won,,,Status\r\n'  # noqa: E501
    "20240501-100000-3fa2c1,7d2e9a10-1b3c-4d5e-8f70-91a2b3c4d5e6,12004,mx_Amount,-12.5,-12.5,already_current,,amounts,,,\r\n"
)
# the display names the run recorded: Owner has none, type 12004 none at all
LABELS = {
    12003: {"Status": "Status", "mx_Custom_11": "Contact Phone", "mx_Custom_9": "Closing Note"}
}


def run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "who": run.who,
        "where": run.where,
        "plan_digest": run.plan_digest,
        "started": run.started,
        "finished": run.finished,
        "outcome": run.outcome,
        "serial": run.serial,
        "overrides": list(run.overrides),
        "counts": {
            "applied": run.counts.applied,
            "already_current": run.counts.already_current,
            "stale": run.counts.stale,
            "failed": run.counts.failed,
            "unknown": run.counts.unknown,
            "not_sent": run.counts.not_sent,
        },
        "read_back": {
            "confirmed": run.counts.confirmed,
            "normalised": run.counts.normalised,
            "not_persisted": run.counts.not_persisted,
        },
    }


def test_show_as_text() -> None:
    assert render_run(RUN, RESULTS, "text", mask=MASK) == TEXT


def test_show_a_run_without_results_as_text() -> None:
    assert render_run(RUNNING, (), "text") == (
        "Run 20240501-110000-0a0b0c: running\n"
        "  plan       cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd\n"
        "  who        alice@laptop\n"
        "  where      /home/alice/crm\n"
        "  started    2024-05-01T11:00:00Z\n"
        "  finished   -\n"
        "  serial     -\n"
        "  overrides  none\n"
        "  results    0 applied, 0 already current, 0 stale, 0 failed, 0 unknown, 0 not sent\n"
        "  read back  -\n"
        "\n"
        "No field results.\n"
    )


def test_show_as_json() -> None:
    expected = {
        "format_version": 1,
        "run": run_json(RUN),
        "results": [
            {
                "opportunity_id": r.opportunity_id,
                "opportunity_type": r.opportunity_type,
                "field": r.field,
                "field_label": LABELS.get(r.opportunity_type, {}).get(r.field),
                "before": "***" if r.field in MASK else r.before,
                "after": "***" if r.field in MASK else r.after,
                "current": "***" if r.field in MASK else r.current,
                "status": r.status,
                "message": r.message,
                "rule": r.rule,
                "verified": r.verified,
            }
            for r in RESULTS
        ],
    }
    out = render_run(RUN, RESULTS, "json", mask=MASK, field_labels=LABELS)
    assert out == json.dumps(expected, indent=2) + "\n"
    assert json.loads(out)["results"][3]["before"] is None
    assert json.loads(out)["results"][1]["field_label"] == "Contact Phone"


def test_show_as_csv_for_a_spreadsheet() -> None:
    out = render_run(RUN, RESULTS, "csv", mask=MASK, field_labels=LABELS)
    assert out == CSV
    rows = list(csv.reader(io.StringIO(out)))
    assert len(rows) == 1 + len(RESULTS)
    assert rows[4][5] == '\'=HYPERLINK("http://x")'  # shown as text, not run as a formula
    assert rows[5][7] == "MXInvalid: Status\nlocked"  # the API's message, whole


MARKDOWN = """\
### lsqsync apply `20240501-100000-3fa2c1`: partial

- plan: `abababababababababababababababababababababababababababababababab`
- who: ci\\@runner-1
- where: https://github.com/acme/crm-rules/actions/runs/42
- started: 2024-05-01T10:00:00Z, finished: 2024-05-01T10:01:05Z
- overrides: ignore-rule-changes
- read back: 1 confirmed, 1 normalised, 1 not persisted

| Applied | Already current | Stale | Failed | Unknown | Not sent |
|---:|---:|---:|---:|---:|---:|
| 3 | 1 | 1 | 1 | 0 | 0 |

#### Fields that need a look (3)

| Opportunity | Field | Status | Before | After | Message |
|---|---|---|---|---|---|
| 4f530c63-4c93-4150-8b8e-83487befb3b2 | mx\\_Custom\\_9 | not persisted | "old" | (empty) | not persisted; now "old" |
| 7d2e9a10-1b3c-4d5e-8f70-91a2b3c4d5e6 | Status | failed | "Open" | "Won" | MXInvalid: Status\\\\nlocked |
| 7d2e9a10-1b3c-4d5e-8f70-91a2b3c4d5e6 | Owner | stale | (empty) | "=HYPERLINK(\\\\"http://x\\\\")" | edited; now "u9" |

Every result: `lsqsync state show 20240501-100000-3fa2c1 --format csv`. Stale fields changed in \
LeadSquared after the plan and were left alone; plan again to review them. Fields not sent (the \
account's rate limit) are sent by applying the same plan again. Fields not persisted were accepted \
by LeadSquared but read back holding something else.
"""  # noqa: E501 - the table is as wide as it is


def test_show_as_markdown_for_a_pull_request_comment() -> None:
    assert render_run(RUN, RESULTS, "markdown", mask=MASK) == MARKDOWN


def test_markdown_counts_applied_fields_and_lists_only_the_rest() -> None:
    applied = [r for r in RESULTS if r.status == "applied"]
    confirmed = [r for r in applied if r.verified != "not_persisted"]
    out = render_run(RUN, confirmed, "markdown", mask=MASK)
    assert out.endswith("| 3 | 1 | 1 | 1 | 0 | 0 |\n")
    assert "need a look" not in out
    assert "98450" not in out


def test_markdown_lists_at_most_200_problem_fields() -> None:
    many = [result(OPP_A, field=f"mx_Custom_{i}", status="failed") for i in range(250)]
    out = render_run(RUN, many, "markdown")
    rows = [line for line in out.splitlines() if line.startswith(f"| {OPP_A}")]
    assert len(rows) == 200
    assert "| … 50 more | | | | | |" in out
    assert "Fields that need a look (250)" in out


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+44 20 7946 0958", "'+44 20 7946 0958"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-", "'-"),
        ("-12.5", "-12.5"),
        ("+3", "+3"),
        ("Won", "Won"),
    ],
)
def test_csv_cells_never_become_formulas(value: str, cell: str) -> None:
    out = render_run(RUN, [result(OPP_A, after=value)], "csv")
    assert list(csv.reader(io.StringIO(out)))[1][5] == cell


def test_runs_as_text_and_json() -> None:
    assert render_runs([RUN, RUNNING]) == (
        "RUN                     STARTED               OUTCOME  SERIAL  APPLIED  CURRENT  STALE  "
        "FAILED  UNKNOWN  NOT SENT  PLAN          WHO\n"
        "20240501-100000-3fa2c1  2024-05-01T10:00:00Z  partial  4       3        1        1      "
        "1       0        0         abababababab  ci@runner-1\n"
        "20240501-110000-0a0b0c  2024-05-01T11:00:00Z  running  -       0        0        0      "
        "0       0        0         cdcdcdcdcdcd  alice@laptop\n"
    )
    assert render_runs([]) == "No runs yet.\n"
    assert render_runs([RUN, RUNNING], "json") == (
        json.dumps({"format_version": 1, "runs": [run_json(RUN), run_json(RUNNING)]}, indent=2)
        + "\n"
    )


def test_no_workspaces_and_unknown_formats_of_workspaces() -> None:
    assert render_workspaces([], "default") == "No workspaces yet.\n"
    assert json.loads(render_workspaces([], "default", "json")) == {
        "format_version": 1,
        "workspaces": [],
    }
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        render_workspaces([], "default", "csv")  # type: ignore[arg-type]


def test_unknown_formats_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown format 'xml' \(expected one of text, json, csv"):
        render_run(RUN, RESULTS, "xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown format 'csv' \(expected one of text, json\)"):
        render_runs([RUN], "csv")  # type: ignore[arg-type]


def test_a_value_cannot_forge_a_line_in_text() -> None:
    forged = result(OPP_A, after="Won\n4f53  12003  Status  x  applied", rule="r\x1b[31m")
    lines = render_run(RUNNING, [forged], "text").splitlines()
    assert len(lines) == 13  # 10 about the run, a blank line, the header, one row
    assert '"Won\\n4f53  12003  Status  x  applied"' in lines[-1]
    assert "r\\u001b[31m" in lines[-1]


def test_show_a_recorded_run(state: StateFile, clock: Clock) -> None:
    state.acquire_lock("apply")
    run = state.begin_run(DIGEST, who="ci@runner-1", where="/w")
    batch = state.begin_batch(run.id, [OPP_A, OPP_B], b"[]")
    state.record_batch_result(
        run.id, batch.batch, "done", [result(OPP_A), result(OPP_B, status="failed", message="x")]
    )
    clock.advance(5)
    state.finish_run(run.id, "partial")
    shown = state.run(run.id[:12])
    data = json.loads(render_run(shown, state.results(shown.id), "json"))
    assert data["run"]["counts"] == {
        "applied": 1,
        "already_current": 0,
        "stale": 0,
        "failed": 1,
        "unknown": 0,
        "not_sent": 0,
    }
    assert (data["run"]["serial"], data["run"]["finished"]) == (1, "2024-05-01T10:00:05Z")
    assert [(r["opportunity_id"], r["status"]) for r in data["results"]] == [
        (OPP_A, "applied"),
        (OPP_B, "failed"),
    ]
    assert render_runs(state.runs()).splitlines()[1].startswith(f"{run.id}  2024-05-01T10:00:00Z")


@pytest.mark.parametrize("fmt", RUN_FORMATS)
@pytest.mark.parametrize(
    ("field", "secrets"), [("mx_Custom_11", ("98450",)), ("Owner", ("HYPERLINK", "u9"))]
)
def test_a_mask_entry_hides_its_field_whatever_its_case_in_every_format(
    fmt: RunFormat, field: str, secrets: tuple[str, ...]
) -> None:
    shown = render_run(RUN, RESULTS, fmt)
    exact = render_run(RUN, RESULTS, fmt, mask=(field,))
    if fmt != "markdown" or field == "Owner":  # Markdown lists only the fields not written
        assert all(s in shown and s not in exact for s in secrets)
    for entry in (field.lower(), field.upper()):
        assert render_run(RUN, RESULTS, fmt, mask=(entry,)) == exact
