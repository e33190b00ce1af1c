"""The apply engine's parts: freshness, batching, bisection, unknown outcomes — over real HTTP
against the emulator where LeadSquared is involved."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import pytest
import requests

from lsqsync.apply.engine import (
    Pending,
    batches,
    check_freshness,
    each_field,
    not_persisted,
    read_current,
    resolve_unknown,
    send_batch,
    verdict,
    verify,
)
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator
from lsqsync.emulator.model import TYPES
from lsqsync.lsq import LsqClient, OpportunityRecord, OpportunityType
from lsqsync.lsq.answers import rejects_the_call
from lsqsync.plan.model import FieldChange, OpportunityChange
from lsqsync.state.records import FieldResult, Verification

META = {code: OpportunityType.from_api(t.metadata(), code=code) for code, t in TYPES.items()}
LOAN = "c5a7f37c-b789-44c9-929b-74aa6250b539"
DEAL = "4f530c63-4c93-4150-8b8e-83487befb3b2"


def change(opp_id: str, code: int, *fields: tuple[str, str | None, str]) -> OpportunityChange:
    return OpportunityChange(
        opp_id,
        code,
        ("r",),
        tuple(FieldChange(f, b, a, "r", "rules/r.yml:3") for f, b, a in fields),
    )


@pytest.fixture
def client(emu: Emulator) -> Iterator[LsqClient]:
    with LsqClient(
        emu.url, DEMO_ACCESS_KEY, DEMO_SECRET_KEY, limiter=None, sleep=lambda _: None
    ) as c:
        yield c


def stored(emu: Emulator, opp_id: str) -> dict[str, object]:
    fields: dict[str, object] = requests.get(
        f"{emu.url}/_emulator/opportunities/{opp_id}", timeout=5
    ).json()["fields"]
    return fields


def api_calls(emu: Emulator) -> int:
    return len(requests.get(emu.url + "/_emulator/requests", timeout=5).json()["requests"])


def test_freshness_decides_each_field() -> None:
    c = change(
        LOAN, 12000,
        ("mx_Custom_6", "20000", "25000"),  # still the before value: sent
        ("mx_Custom_9", None, "note"),  # already the after value: not sent
        ("Status", "Open", "Won"),  # changed by someone since: stale
    )  # fmt: skip
    current = {LOAN: {"mx_Custom_6": "20,000.00", "mx_Custom_9": "note", "Status": "Lost"}}
    fresh = check_freshness([c], current, META)
    assert [(p.change.id, [f.field for f in p.fields]) for p in fresh.pending] == [
        (LOAN, ["mx_Custom_6"])
    ]
    assert [(r.field, r.status, r.message, r.current) for r in fresh.settled] == [
        ("mx_Custom_9", "already_current", None, None),
        ("Status", "stale", "changed in LeadSquared since the plan", "Lost"),
    ]


def test_freshness_skips_confirmed_fields_and_deleted_opportunities() -> None:
    c = change(LOAN, 12000, ("mx_Custom_6", "20000", "25000"), ("mx_Custom_9", None, "x"))
    fresh = check_freshness([c], {LOAN: {"mx_Custom_6": "20000"}}, META,
                            frozenset({(LOAN, "mx_Custom_9")}))  # fmt: skip
    assert [f.field for p in fresh.pending for f in p.fields] == ["mx_Custom_6"]
    gone = check_freshness([c], {}, META)
    assert {(r.status, r.message) for r in gone.settled} == {
        ("stale", "the opportunity no longer exists")
    }


class ReadsTogether:
    """A client whose GetOpportunitiesById calls each wait until ``parties`` of them are in
    flight: calls made one after another break the barrier instead of passing it."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)
        self.calls: list[tuple[int, int, tuple[str, ...]]] = []
        self.lock = threading.Lock()

    def opportunities_by_id(
        self, event_code: int, ids: Sequence[str], columns: Sequence[str]
    ) -> list[OpportunityRecord]:
        with self.lock:
            self.calls.append((event_code, len(ids), tuple(columns)))
        self.barrier.wait()
        return [OpportunityRecord(i, event_code, dict.fromkeys(columns, "v")) for i in ids]


def test_the_re_read_sends_its_chunks_together_with_a_pool() -> None:
    loans = [
        change(f"{i:08d}-0000-4000-8000-000000000000", 12000, ("mx_Custom_9", None, "x"))
        for i in range(4100)
    ]
    changes = [*loans, change(DEAL, 12003, ("mx_Custom_10", None, "High"))]
    reads = ReadsTogether(4)  # 2,000 + 2,000 + 100 ids of type 12000, 1 of type 12003
    with ThreadPoolExecutor(4) as pool:
        current = read_current(cast(LsqClient, reads), changes, pool)
    assert sorted(reads.calls) == [
        (12000, 100, ("mx_Custom_9",)),
        (12000, 2000, ("mx_Custom_9",)),
        (12000, 2000, ("mx_Custom_9",)),
        (12003, 1, ("mx_Custom_10",)),
    ]
    assert len(current) == 4101
    assert current[DEAL.lower()] == {"mx_Custom_10": "v"}
    # without a pool: the same calls and values, one after another
    alone = ReadsTogether(1)
    assert read_current(cast(LsqClient, alone), changes) == current
    assert sorted(alone.calls) == sorted(reads.calls)


def test_batches_hold_at_most_25_opportunities() -> None:
    pending = [
        Pending(change(f"{i:08d}-0000-4000-8000-000000000000", 12000, ("mx_Custom_9", None, "x")),
                (FieldChange("mx_Custom_9", None, "x", "r", "s"),))
        for i in range(60)
    ]  # fmt: skip
    assert [len(b) for b in batches(pending)] == [25, 25, 10]


def test_a_batch_is_applied_and_read_back(emu: Emulator, client: LsqClient) -> None:
    c = change(LOAN, 12000, ("mx_Custom_6", "20000", "25000"), ("mx_Custom_9", None, "hello"))
    fresh = check_freshness([c], read_current(client, [c]), META)
    outcome = send_batch(client, fresh.pending)
    assert [(r.field, r.status) for r in outcome.results] == [
        ("mx_Custom_6", "applied"),
        ("mx_Custom_9", "applied"),
    ]
    assert (stored(emu, LOAN)["mx_Custom_6"], stored(emu, LOAN)["mx_Custom_9"]) == (
        "25000",
        "hello",
    )
    again = check_freshness([c], read_current(client, [c]), META)
    assert again.pending == ()
    assert {r.status for r in again.settled} == {"already_current"}


@pytest.mark.parametrize("status", [500, 200])
def test_a_bad_row_is_isolated_by_splitting_the_batch(
    emu: Emulator, client: LsqClient, status: int
) -> None:
    # a whole-call rejection as an MX… 500, or in the error envelope of a 200
    emu.settings.rejection_status = status
    search = list(client.search_opportunities(12000, ["mx_Custom_6"], page_size=8))[:8]
    good = [Pending(change(r.id, 12000, ("mx_Custom_6", r.values["mx_Custom_6"], "1")),
                    (FieldChange("mx_Custom_6", r.values["mx_Custom_6"], "1", "r", "s"),))
            for r in search[:7]]  # fmt: skip
    bad = Pending(
        change(search[7].id, 12000, ("mx_Custom_6", None, "lots")),
        (FieldChange("mx_Custom_6", None, "lots", "r", "s"),),
    )
    batch = [*good[:3], bad, *good[3:]]
    requests.delete(emu.url + "/_emulator/requests", timeout=5)

    outcome = send_batch(client, batch)

    by_id = {r.opportunity_id: (r.status, r.message) for r in outcome.results}
    assert by_id[bad.change.id][0] == "failed"
    assert by_id[bad.change.id][1].startswith(
        "MXInvalidDataTypeException: Field name : 'mx_Custom_6'"
    )
    assert all(by_id[p.change.id] == ("applied", None) for p in good)
    assert all(stored(emu, p.change.id)["mx_Custom_6"] == "1" for p in good)
    # 8 rows, 1 bad: 8 → 4 + 4, 4 → 2 + 2, 2 → 1 + 1: the bad row costs 7 calls, not 8
    assert api_calls(emu) == 7
    assert outcome.unknown == []


def test_a_row_the_api_refuses_fails_alone(emu: Emulator, client: LsqClient) -> None:
    wrong_type = Pending(change(LOAN, 12003, ("mx_Custom_9", None, "x")),
                         (FieldChange("mx_Custom_9", None, "x", "r", "s"),))  # fmt: skip
    fine = Pending(change(DEAL, 12003, ("mx_Custom_9", None, "y")),
                   (FieldChange("mx_Custom_9", None, "y", "r", "s"),))  # fmt: skip
    outcome = send_batch(client, [wrong_type, fine])
    assert [(r.opportunity_id, r.status) for r in outcome.results] == [
        (LOAN, "failed"),
        (DEAL, "applied"),
    ]
    assert outcome.results[0].message.startswith("MXInvalidEntityException: Opportunity ")


def test_an_unanswered_batch_is_resolved_by_reading_back(emu: Emulator, client: LsqClient) -> None:
    c = change(LOAN, 12000, ("mx_Custom_9", None, "landed"))
    fresh = check_freshness([c], read_current(client, [c]), META)
    emu.settings.drop_rate = 1.0
    outcome = send_batch(client, fresh.pending)
    emu.settings.drop_rate = 0.0
    assert (outcome.results, [p.change.id for p in outcome.unknown]) == ([], [LOAN])

    results, resend = resolve_unknown(outcome.unknown, read_current(client, [c]), META)

    assert [(r.field, r.status) for r in results] == [("mx_Custom_9", "applied")]
    assert resend == []


def test_an_unknown_write_that_did_not_land_is_sent_again(client: LsqClient) -> None:
    c = change(LOAN, 12000, ("mx_Custom_9", None, "never sent"))
    unknown = list(check_freshness([c], read_current(client, [c]), META).pending)
    results, resend = resolve_unknown(unknown, read_current(client, [c]), META)
    assert results == []
    assert [f.field for p in resend for f in p.fields] == ["mx_Custom_9"]


def test_refusals_say_exactly_why() -> None:
    from datetime import datetime

    from lsqsync.apply.engine import refusals

    expires = datetime(2026, 11, 28, 10)
    assert (
        refusals(None, "L1", expires, datetime(2026, 11, 27), {"r.yml": "a"}, {"r.yml": "a"}) == []
    )
    reasons = refusals(
        "L0", "L1", expires, datetime(2026, 11, 28, 10), {"r.yml": "a", "d.csv": "b"},
        {"r.yml": "x", "d.csv": None},
    )  # fmt: skip
    assert reasons == [
        "the plan was made against state lineage L0, but this state file is lineage L1 "
        "(another project or a recreated state file)",
        "the plan expired at 2026-11-28T10:00:00Z; make a new plan",
        "files changed on disk since the plan: d.csv, r.yml (make a new plan, or pass "
        "--ignore-rule-changes to apply the reviewed plan anyway; it is recorded)",
    ]
    assert refusals(None, "L1", expires, datetime(2026, 11, 27), {"r.yml": "a"}, {"r.yml": "x"},
                    ignore_rule_changes=True) == []  # fmt: skip


def test_the_client_counts_the_429s_it_meets(emu: Emulator) -> None:
    from lsqsync.errors import RateLimited

    emu.settings.rate_limit_calls, emu.settings.rate_limit_seconds = 1, 60
    with LsqClient(emu.url, DEMO_ACCESS_KEY, DEMO_SECRET_KEY, limiter=None,
                   sleep=lambda _: None, rate_limit_retries=2) as c:  # fmt: skip
        c.who_am_i()
        with pytest.raises(RateLimited):
            c.who_am_i()
        assert (c.calls, c.rate_limited) == (4, 3)


@pytest.mark.parametrize(
    ("status", "exception_type", "split"),
    [
        (500, "MXInvalidDataTypeException", True),
        (502, " MXDuplicateEntryException", True),
        (200, "MXInvalidDataTypeException", True),
        (400, "MXInvalidInputException", False),  # the request's shape: no half is better
        (500, "System.TimeoutException", False),  # retried by the transport, not a verdict
        (500, None, False),
        (None, "MXInvalidDataTypeException", False),
    ],
)
def test_which_whole_call_rejections_are_split(
    status: int | None, exception_type: str | None, split: bool
) -> None:
    assert rejects_the_call(status, exception_type) is split


def test_a_batch_whose_retries_run_out_is_unknown_and_read_back(emu: Emulator) -> None:
    c = change(LOAN, 12000, ("mx_Custom_9", None, "maybe"))
    emu.settings.fault_rate = 1.0  # every call a 500 that is not a verdict
    with LsqClient(emu.url, DEMO_ACCESS_KEY, DEMO_SECRET_KEY, limiter=None,
                   sleep=lambda _: None) as c_:  # fmt: skip
        outcome = send_batch(c_, [Pending(c, c.changes)])
    assert outcome.status == "unknown"
    assert [p.change.id for p in outcome.unknown] == [LOAN]
    assert outcome.error is not None
    assert "LeadSquared failed POST /v2/OpportunityManagement.svc/Bulk/Update" in outcome.error
    assert "(gave up after 4 attempts)" in outcome.error
    assert api_calls(emu) == 4


def test_a_batch_that_never_reached_leadsquared_is_not_sent() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = change(LOAN, 12000, ("mx_Custom_9", "was", "maybe"))
    with LsqClient(f"http://127.0.0.1:{port}", DEMO_ACCESS_KEY, DEMO_SECRET_KEY, limiter=None,
                   sleep=lambda _: None) as c_:  # fmt: skip
        outcome = send_batch(c_, [Pending(c, c.changes)])
    assert (outcome.status, outcome.unknown) == ("failed", [])
    (only,) = outcome.results
    assert (only.status, only.current) == ("not_sent", "was")
    assert only.message is not None
    assert only.message.startswith("not sent: could not connect to http://127.0.0.1:")
    assert outcome.error is not None


def test_a_failed_row_records_what_leadsquared_holds() -> None:
    c = change(LOAN, 12000, ("Status", "Open", "Won"))
    (r,) = each_field(Pending(c, c.changes), "failed", "MXInvalid: no")
    assert (r.status, r.current, r.message) == ("failed", "Open", "MXInvalid: no")
    (r,) = each_field(Pending(c, c.changes), "unknown", "no answer, twice")
    assert r.current is None  # nobody knows


# -- reading back -----------------------------------------------------------------------------

LOAN_TYPE = META[12000]


@pytest.mark.parametrize(
    ("field", "raw", "sent", "found"),
    [
        ("mx_Custom_9", "hello", "hello", "confirmed"),
        ("mx_Custom_9", "hello ", "hello", "normalised"),  # trimmed: another form
        ("mx_Custom_9", "Hello", "hello", None),  # another value
        ("mx_Custom_9", None, "", "confirmed"),  # cleared
        ("mx_Custom_9", "old", "", None),  # "" did not clear it
        ("mx_Custom_7", "23500.00", "23500", "normalised"),  # a Decimal keeps two places
        ("mx_Custom_6", "23,500", "23500", "normalised"),
        ("mx_Custom_6", "23500", "23500", "confirmed"),
        ("mx_Custom_6", "23501", "23500", None),
        # the read endpoints' own formats of dates, Booleans and ids are not another form
        ("mx_Custom_8", "8/31/2026 12:00:00 AM", "2026-08-31", "confirmed"),
        ("mx_Custom_13", "8/31/2026 8:38:00 AM", "2026-08-31 08:38:00", "confirmed"),
        ("mx_Custom_13", "8/31/2026 2:08:00 PM", "2026-08-31 08:38:00", None),  # a time zone
        ("mx_Custom_12", "1", "true", "confirmed"),
        ("Owner", "96105AA0-61F2-11EA-8109-022EDB41208C", "96105aa0-61f2-11ea-8109-022edb41208c",
         "confirmed"),
        ("mx_Custom_99", "x", "x", None),  # a field the type no longer has
    ],
)  # fmt: skip
def test_what_reading_a_field_back_finds(
    field: str, raw: str | None, sent: str, found: str | None
) -> None:
    assert verdict(LOAN_TYPE.field(field), raw, sent) == found


def test_verify_sorts_written_fields_into_found_and_missing() -> None:
    written = [
        ("r1", FieldResult(LOAN, 12000, "mx_Custom_9", None, "hello", "applied", "r")),
        ("r1", FieldResult(LOAN, 12000, "mx_Custom_7", "1", "23500", "applied", "r")),
        ("r2", FieldResult(LOAN, 12000, "Status", "Open", "Won", "applied", "r")),
        ("r2", FieldResult(DEAL, 12003, "Status", "Open", "Won", "applied", "r")),
    ]
    current = {
        LOAN: {"mx_Custom_9": "hello", "mx_Custom_7": "23500.00", "Status": "Open"},
        # DEAL is gone
    }
    found, missing = verify(written, current, META)
    assert found == [
        Verification("r1", LOAN, "mx_Custom_9", "confirmed", None),
        Verification("r1", LOAN, "mx_Custom_7", "normalised", "23500.00"),
    ]
    assert missing == written[2:]
    assert not_persisted(missing, current, META) == [
        Verification("r2", LOAN, "Status", "not_persisted", "Open"),
        Verification("r2", DEAL, "Status", "not_persisted", None),
    ]
