"""Premises at apply time: a rule's fields are sent only while what the rule decided on still
holds (pure: the engine's decision on values as re-read), and the plan's host."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import cast

import pytest
import requests
from cli_helpers import run

from lsqsync.apply.engine import check_freshness, premise_changes, read_current, refusals
from lsqsync.emulator import Emulator
from lsqsync.emulator.model import TYPES
from lsqsync.lsq import LsqClient, OpportunityRecord, OpportunityType
from lsqsync.plan.model import FieldChange, OpportunityChange, Premise, plan_host

META = {code: OpportunityType.from_api(t.metadata(), code=code) for code, t in TYPES.items()}
DEAL = "4f530c63-4c93-4150-8b8e-83487befb3b2"
CLOSE = "close-q4"


def deal(
    *fields: tuple[str, str | None, str, str], premises: tuple[Premise, ...] = ()
) -> OpportunityChange:
    """A planned change of DEAL: (field, before, after, rule) each."""
    changes = tuple(FieldChange(f, b, a, r, "rules/r.yml:3") for f, b, a, r in fields)
    return OpportunityChange(DEAL, 12003, tuple(sorted({c.rule for c in changes})), changes,
                             premises)  # fmt: skip


def premise(rule: str, holds: tuple[str, ...], **read: str | None) -> Premise:
    return Premise(rule, holds, tuple(sorted(read.items())))


# The Lost deal: Open deals in Negotiation become Won, with a close date and a remark.
LOST_DEAL = deal(
    ("Status", "Open", "Won", CLOSE),
    ("mx_Custom_2", "Negotiation", "Closed Won", CLOSE),
    ("mx_Custom_8", None, "2026-11-27 10:00:00", CLOSE),
    ("mx_Custom_9", None, "closed by close-q4", CLOSE),
    premises=(
        premise(
            CLOSE,
            ("Status", "mx_Custom_2", "mx_Custom_8", "mx_Custom_9"),
            Status="Open",
            mx_Custom_2="Negotiation",
            mx_Custom_6="300000",
        ),
    ),
)
AS_PLANNED = {"Status": "Open", "mx_Custom_2": "Negotiation", "mx_Custom_6": "300000",
              "mx_Custom_8": None, "mx_Custom_9": None}  # fmt: skip


def decided(
    change: OpportunityChange, now: dict[str, str | None], **kwargs: object
) -> tuple[list[str], list[tuple[str, str, str | None, str | None]]]:
    """(fields to send, (field, status, message, current) of the others)."""
    fresh = check_freshness([change], {DEAL: now}, META, **kwargs)  # type: ignore[arg-type]
    sent = [f.field for p in fresh.pending for f in p.fields]
    return sent, [(r.field, r.status, r.message, r.current) for r in fresh.settled]


def test_while_the_premise_holds_every_field_is_sent() -> None:
    # the same values in another format are the same values (the codec decides)
    now = {**AS_PLANNED, "mx_Custom_6": "300,000.00"}
    assert decided(LOST_DEAL, now) == (["Status", "mx_Custom_2", "mx_Custom_8", "mx_Custom_9"], [])


def test_the_lost_deal_gets_none_of_the_rules_fields() -> None:
    now = {**AS_PLANNED, "Status": "Lost", "mx_Custom_2": "No Budget"}
    why = 'premise changed: Status "Open" → "Lost", Stage (mx_Custom_2) "Negotiation" → "No Budget"'
    assert decided(LOST_DEAL, now) == ([], [
        ("Status", "stale", "changed in LeadSquared since the plan", "Lost"),
        ("mx_Custom_2", "stale", "changed in LeadSquared since the plan", "No Budget"),
        ("mx_Custom_8", "stale", why, None),
        ("mx_Custom_9", "stale", why, None),
    ])  # fmt: skip


def test_a_premise_field_that_is_not_written_holds_the_fields_back_too() -> None:
    now = {**AS_PLANNED, "mx_Custom_6": "1000"}
    why = 'premise changed: Deal Value (mx_Custom_6) "300000" → "1000"'
    sent, settled = decided(LOST_DEAL, now)
    assert sent == []
    assert settled == [
        ("Status", "stale", why, "Open"),
        ("mx_Custom_2", "stale", why, "Negotiation"),
        ("mx_Custom_8", "stale", why, None),
        ("mx_Custom_9", "stale", why, None),
    ]


def test_a_premise_field_emptied_is_shown_as_empty() -> None:
    now = {**AS_PLANNED, "mx_Custom_6": None}
    sent, settled = decided(LOST_DEAL, now)
    assert sent == []
    assert {m for _, _, m, _ in settled} == {
        'premise changed: Deal Value (mx_Custom_6) "300000" → (empty)'
    }


def test_already_current_fields_stay_already_current() -> None:
    # nothing is sent to them either way; a person who did the rule's work by hand is not stale
    now = {**AS_PLANNED, "mx_Custom_6": "1", "mx_Custom_9": "closed by close-q4"}
    sent, settled = decided(LOST_DEAL, now)
    assert sent == []
    assert [(f, s) for f, s, _, _ in settled] == [
        ("Status", "stale"), ("mx_Custom_2", "stale"), ("mx_Custom_8", "stale"),
        ("mx_Custom_9", "already_current"),
    ]  # fmt: skip


def test_a_field_two_rules_set_is_held_by_either_premise() -> None:
    both = deal(
        ("mx_Custom_10", "Low", "High", "by-status"),
        ("mx_Custom_9", None, "big", "by-value"),
        premises=(
            premise("by-status", ("mx_Custom_10",), Status="Open"),
            premise("by-value", ("mx_Custom_10", "mx_Custom_9"), mx_Custom_6="500000"),
        ),
    )
    now = {"Status": "Open", "mx_Custom_6": "500000", "mx_Custom_10": "Low", "mx_Custom_9": None}
    assert decided(both, now)[0] == ["mx_Custom_10", "mx_Custom_9"]
    value_changed = decided(both, {**now, "mx_Custom_6": "20"})
    status_changed = decided(both, {**now, "Status": "Won"})
    assert value_changed[0] == []
    assert status_changed[0] == ["mx_Custom_9"]  # by-value's own field: its premise holds
    assert status_changed[1] == [
        ("mx_Custom_10", "stale", 'premise changed: Status "Open" → "Won"', "Low")
    ]
    # both changed: one field, both reasons, each once
    assert decided(both, {**now, "Status": "Won", "mx_Custom_6": "20"})[1][0][2] == (
        'premise changed: Status "Open" → "Won", Deal Value (mx_Custom_6) "500000" → "20"'
    )


def test_a_masked_premise_field_does_not_show_its_values() -> None:
    secret = deal(
        ("mx_Custom_9", None, "call back", "r"),
        premises=(premise("r", ("mx_Custom_9",), mx_Custom_11="+91 98450 12345"),),
    )
    now = {"mx_Custom_9": None, "mx_Custom_11": "+91 11111 22222"}
    _, settled = decided(secret, now, mask=("MX_custom_11",))
    assert settled == [
        ("mx_Custom_9", "stale", "premise changed: Contact Phone (mx_Custom_11) *** → ***", None)
    ]
    # emptied: that it is empty is no secret
    _, settled = decided(secret, {**now, "mx_Custom_11": None}, mask=("mx_Custom_11",))
    assert settled[0][2] == "premise changed: Contact Phone (mx_Custom_11) *** → (empty)"


def test_a_resumed_run_does_not_take_its_own_write_for_a_change() -> None:
    # rule "priority" read Stage; rule "stage" set it. An earlier attempt of the plan wrote Stage
    # (confirmed); the priority was not sent then (the rate limit refused its batch, say).
    c = deal(
        ("mx_Custom_2", "Negotiation", "Proposal", "stage"),
        ("mx_Custom_10", "Low", "High", "priority"),
        premises=(premise("priority", ("mx_Custom_10",), mx_Custom_2="Negotiation"),),
    )
    now = {"mx_Custom_2": "Proposal", "mx_Custom_10": "Low"}
    stage = frozenset({(DEAL, "mx_Custom_2")})
    assert decided(c, now, confirmed=stage, written=stage)[0] == ["mx_Custom_10"]
    # not written by this plan: somebody else set the same value (an earlier attempt found it
    # already current)
    assert decided(c, now)[0] == []
    assert decided(c, now, confirmed=stage)[0] == []
    # written by this plan, then changed again by somebody
    changed = {**now, "mx_Custom_2": "Qualification"}
    assert decided(c, changed, confirmed=stage, written=stage)[0] == []


def test_a_premise_field_the_type_no_longer_has_holds_the_fields_back() -> None:
    c = deal(("mx_Custom_9", None, "x", "r"),
             premises=(premise("r", ("mx_Custom_9",), mx_Gone="1"),))  # fmt: skip
    assert premise_changes(c, {"mx_Custom_9": None}, META[12003]) == {
        "mx_Custom_9": "premise changed: mx_Gone (no longer a field of the type)"
    }


class Reads:
    """A client that records the columns each re-read asks for."""

    def __init__(self) -> None:
        self.columns: list[tuple[str, ...]] = []

    def opportunities_by_id(
        self, event_code: int, ids: list[str], columns: list[str]
    ) -> list[OpportunityRecord]:
        self.columns.append(tuple(columns))
        return [OpportunityRecord(i, event_code, dict.fromkeys(columns)) for i in ids]


def test_premise_fields_are_read_with_the_written_ones_in_the_same_call() -> None:
    reads = Reads()
    read_current(cast(LsqClient, reads), [LOST_DEAL])
    assert reads.columns == [("Status", "mx_Custom_2", "mx_Custom_6", "mx_Custom_8", "mx_Custom_9")]


# -- the host ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "one_form"),
    [
        ("https://api-in21.leadsquared.com", "https://api-in21.leadsquared.com"),
        ("HTTPS://API-in21.LeadSquared.COM/", "https://api-in21.leadsquared.com"),
        ("https://api-in21.leadsquared.com:443/v2/", "https://api-in21.leadsquared.com"),
        ("https://api-in21.leadsquared.com/V2", "https://api-in21.leadsquared.com"),
        ("api-in21.leadsquared.com", "https://api-in21.leadsquared.com"),
        (" https://api-in21.leadsquared.com./ ", "https://api-in21.leadsquared.com"),
        ("https://api-in21.leadsquared.com:8443", "https://api-in21.leadsquared.com:8443"),
        ("http://127.0.0.1:8080/v2", "http://127.0.0.1:8080"),
        ("http://[::1]:80/", "http://[::1]"),
        ("https://proxy.example/lsq/v2", "https://proxy.example/lsq"),
        ("https://bad:port", "https://bad:port"),  # unreadable: kept, lower-cased
    ],
)
def test_the_plans_host_has_one_form(given: str, one_form: str) -> None:
    assert plan_host(given) == one_form


def test_a_plan_made_against_another_host_is_refused_naming_both() -> None:
    from datetime import datetime

    args = ("L1", "L1", datetime(2030, 1, 1), datetime(2026, 1, 1), {}, {})
    a, b = "http://127.0.0.1:8001", "http://127.0.0.1:8002"
    assert refusals(*args, hosts=(a, "HTTP://127.0.0.1:8001/v2/")) == []
    assert refusals(*args, hosts=(a, None)) == []  # not set: the client says so
    assert refusals(*args, hosts=(a, b)) == [
        "the plan was made against http://127.0.0.1:8001, but apply would write to "
        "http://127.0.0.1:8002 (LSQ_HOST or host: in lsqsync.yml): apply it with the host it was "
        "made for, or make a new plan against this one"
    ]


# -- end to end: a person's edit between the plan and the apply -------------------------------

NOW = ["--now", "2026-11-27 10:00:00"]
CLOSED_AT = "2026-11-27 10:00:00"


def deals(emu: Emulator, count: int) -> list[str]:
    """The ids of the first ``count`` Enterprise Deals of the emulator's data."""
    _, rows = emu.store.search(12003, page_index=1, page_size=count, sort_column="CreatedOn",
                               desc=False)  # fmt: skip
    return [opp.id for opp, _ in rows]


def edit(emu: Emulator, opp_id: str, **values: str) -> None:
    """A person's edit in LeadSquared's UI (not an API call)."""
    body = [{"ProspectOpportunityId": opp_id, "OpportunityEventCode": 12003,
             "Fields": [{"SchemaName": k, "Value": v} for k, v in values.items()]}]  # fmt: skip
    answer = requests.post(emu.url + "/_emulator/edits", json=body, timeout=5)
    assert answer.json()["Response"][0]["OpportunityUpdated"], answer.text


def stored(emu: Emulator, opp_id: str) -> dict[str, str | None]:
    """What LeadSquared holds for the opportunity now."""
    answer = requests.get(f"{emu.url}/_emulator/opportunities/{opp_id}", timeout=5)
    fields: dict[str, str | None] = answer.json()["fields"]
    return fields


def project(root: Path, rules: str, mask: str = "[]") -> Path:
    (root / "rules").mkdir(parents=True)
    (root / "lsqsync.yml").write_text(
        "version: 1\nrules: [rules/]\nstate: .lsqsync/state.db\n"
        "rate_limit: {calls: 1000, per_seconds: 1}\n"
        f"safety: {{max_changes: 100, max_change_ratio: 1}}\nmask: {mask}\n"
    )
    (root / "rules" / "q4.yml").write_text("version: 1\nrules:\n" + textwrap.indent(
        textwrap.dedent(rules).strip("\n") + "\n", "  "))  # fmt: skip
    return root


@pytest.fixture
def here(connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def stale_results(capsys: pytest.CaptureFixture[str]) -> list[tuple[str, str, str | None]]:
    """(opportunity, field, message) of the last run's stale fields, from ``state show``."""
    code, out, _ = run(["state", "show", "last", "--format", "json"], capsys)
    assert code == 0
    results = json.loads(out)["results"]
    return sorted(
        (r["opportunity_id"], r["field"], r["message"]) for r in results if r["status"] == "stale"
    )


def test_the_lost_deal_gets_nothing_of_the_rule_and_the_others_are_applied(
    connected: Emulator, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, lost, three = deals(connected, 3)
    for opp in (one, lost, three):
        edit(connected, opp, Status="Open", mx_Custom_2="Negotiation", mx_Custom_8="",
             mx_Custom_9="")  # fmt: skip
    project(here, f"""
    - name: close-q4
      description: Open deals in Negotiation are won
      opportunity_type: 12003
      ids: [{one}, {lost}, {three}]
      where: {{Status: Open, mx_Custom_2: Negotiation}}
      set:
        Status: Won
        mx_Custom_2: Closed Won
        mx_Custom_8: "{{{{ now }}}}"
        mx_Custom_9: closed by close-q4
    """)  # fmt: skip
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    # after the plan, a salesperson marks one of them Lost
    edit(connected, lost, Status="Lost", mx_Custom_2="No Budget")
    as_the_person_left_it = stored(connected, lost)

    code, out, _ = run(["apply", "p.json"], capsys)

    assert code == 3
    assert "applied: 8, already current: 0, stale: 4," in out
    assert stored(connected, lost) == as_the_person_left_it
    for won in (one, three):
        held = stored(connected, won)
        assert (held["Status"], held["mx_Custom_2"], held["mx_Custom_9"]) == (
            "Won", "Closed Won", "closed by close-q4"
        )  # fmt: skip
        assert str(held["mx_Custom_8"]).startswith(CLOSED_AT[:10])
    why = 'premise changed: Status "Open" → "Lost", Stage (mx_Custom_2) "Negotiation" → "No Budget"'
    assert stale_results(capsys) == [
        (lost, "Status", "changed in LeadSquared since the plan"),
        (lost, "mx_Custom_2", "changed in LeadSquared since the plan"),
        (lost, "mx_Custom_8", why),
        (lost, "mx_Custom_9", why),
    ]
    code, out, _ = run(["state", "show", "last"], capsys)
    assert 'premise changed: Status "Open" → "Lost"' in out


def test_a_field_two_rules_set_is_not_written_when_one_rules_premise_changed(
    connected: Emulator, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = deals(connected, 2)
    for opp in (first, second):
        edit(connected, opp, Status="Open", mx_Custom_2="Proposal", mx_Custom_6="500000",
             mx_Custom_10="Low", mx_Custom_9="")  # fmt: skip
    project(here, f"""
    - name: open-high
      opportunity_type: 12003
      ids: [{first}, {second}]
      where: {{Status: Open}}
      set: {{mx_Custom_10: High}}
    - name: big-high
      opportunity_type: 12003
      ids: [{first}, {second}]
      where: {{mx_Custom_6: {{gte: 400000}}}}
      set: {{mx_Custom_10: High, mx_Custom_9: big deal}}
    """)  # fmt: skip
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    edit(connected, first, mx_Custom_6="1000")  # big-high no longer holds; open-high does

    code, _, _ = run(["apply", "p.json"], capsys)

    assert code == 3
    after_first, after_second = stored(connected, first), stored(connected, second)
    assert (after_first["mx_Custom_10"], after_first["mx_Custom_9"]) == ("Low", None)
    assert (after_second["mx_Custom_10"], after_second["mx_Custom_9"]) == ("High", "big deal")
    why = 'premise changed: Deal Value (mx_Custom_6) "500000" → "1000"'
    assert stale_results(capsys) == [(first, "mx_Custom_10", why), (first, "mx_Custom_9", why)]


def test_a_when_that_reads_a_field_a_person_changes(
    connected: Emulator, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed, kept = deals(connected, 2)
    for opp in (changed, kept):
        edit(connected, opp, mx_Custom_7="5", mx_Custom_9="", mx_Custom_11="+91 98450 12345")
    project(here, f"""
    - name: standard-discount
      opportunity_type: 12003
      ids: [{changed}, {kept}]
      when: "opp.mx_Custom_7 < 10 and opp.mx_Custom_11"
      set: {{mx_Custom_9: standard discount}}
    """, mask="[mx_Custom_11]")  # fmt: skip
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    edit(connected, changed, mx_Custom_7="25", mx_Custom_11="+91 11111 22222")

    code, _, err = run(["apply", "p.json"], capsys)

    assert code == 3
    assert stored(connected, changed)["mx_Custom_9"] is None
    assert stored(connected, kept)["mx_Custom_9"] == "standard discount"
    why = (
        "premise changed: Contact Phone (mx_Custom_11) *** → ***, "
        'Discount % (mx_Custom_7) "5" → "25"'
    )
    assert stale_results(capsys) == [(changed, "mx_Custom_9", why)]
    code, out, _ = run(["state", "show", "last", "--format", "markdown"], capsys)
    assert "Contact Phone (mx\\_Custom\\_11) \\*\\*\\* → \\*\\*\\*" in out
    shown = out + err
    assert "98450" not in shown
    assert "11111" not in shown


def test_a_template_that_reads_a_field_that_changes(
    connected: Emulator, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed, kept = deals(connected, 2)
    for opp in (changed, kept):
        edit(connected, opp, mx_Custom_6="150000", mx_Custom_9="")
    project(here, f"""
    - name: value-note
      opportunity_type: 12003
      ids: [{changed}, {kept}]
      set: {{mx_Custom_9: "worth {{{{ (opp.mx_Custom_6 / 1000) | int }}}}k"}}
    """)  # fmt: skip
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    edit(connected, changed, mx_Custom_6="175000")
    # the same value in another form is no change
    edit(connected, kept, mx_Custom_6="150000.00")

    code, _, _ = run(["apply", "p.json"], capsys)

    assert code == 3
    assert stored(connected, changed)["mx_Custom_9"] is None  # not "worth 150k"
    assert stored(connected, kept)["mx_Custom_9"] == "worth 150k"
    why = 'premise changed: Deal Value (mx_Custom_6) "150000" → "175000"'
    assert stale_results(capsys) == [(changed, "mx_Custom_9", why)]
    # planned again: the rule sees the new value, and nothing else is left to do
    assert run(["apply", "--auto-approve"], capsys)[0] == 0
    assert stored(connected, changed)["mx_Custom_9"] == "worth 175k"


def test_a_rollback_puts_back_an_opportunitys_fields_together_or_not_at_all(
    connected: Emulator, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edited, other = deals(connected, 2)
    for opp in (edited, other):
        edit(connected, opp, mx_Custom_9="before", mx_Custom_10="Low")
    project(here, f"""
    - name: flag
      opportunity_type: 12003
      ids: [{edited}, {other}]
      set: {{mx_Custom_9: flagged, mx_Custom_10: High}}
    """)  # fmt: skip
    assert run(["apply", "--auto-approve"], capsys)[0] == 0
    assert run(["rollback", "last", "--out", "back.json"], capsys)[0] == 0
    # after the rollback plan, a person raises one of the flagged deals' note again
    edit(connected, edited, mx_Custom_9="keep me flagged")

    code, _, _ = run(["apply", "back.json"], capsys)

    assert code == 3
    kept, back = stored(connected, edited), stored(connected, other)
    assert (kept["mx_Custom_9"], kept["mx_Custom_10"]) == ("keep me flagged", "High")
    assert (back["mx_Custom_9"], back["mx_Custom_10"]) == ("before", "Low")
    assert stale_results(capsys) == [
        (
            edited,
            "mx_Custom_10",
            'premise changed: Closing Note (mx_Custom_9) "flagged" → "keep me flagged"',
        ),
        (edited, "mx_Custom_9", "changed in LeadSquared since the plan"),
    ]


def test_applied_again_the_plan_does_not_take_its_own_writes_for_changed_premises(
    connected: Emulator, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (opp,) = deals(connected, 1)
    edit(connected, opp, Status="Open", mx_Custom_2="Negotiation", mx_Custom_6="500000",
         mx_Custom_10="Low")  # fmt: skip
    project(here, f"""
    - name: to-proposal
      opportunity_type: 12003
      ids: [{opp}]
      set: {{mx_Custom_2: Proposal}}
    - name: big-in-negotiation
      opportunity_type: 12003
      ids: [{opp}]
      where: {{mx_Custom_2: Negotiation, mx_Custom_6: {{gte: 400000}}}}
      set: {{mx_Custom_10: High}}
    """)  # fmt: skip
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    edit(connected, opp, mx_Custom_6="1000")  # a mistake, undone after the first apply
    assert run(["apply", "p.json"], capsys)[0] == 3
    assert (stored(connected, opp)["mx_Custom_2"], stored(connected, opp)["mx_Custom_10"]) == (
        "Proposal", "Low"
    )  # fmt: skip
    edit(connected, opp, mx_Custom_6="500000")

    code, out, _ = run(["apply", "p.json"], capsys)

    # the Stage it read is the one this plan wrote: the premise holds
    assert code == 0
    assert "applied: 1, already current: 0, stale: 0," in out
    assert stored(connected, opp)["mx_Custom_10"] == "High"
