"""Every endpoint method against the emulator, over real loopback HTTP."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from lsq_helpers import api_log, stored

from lsqsync.emulator import model
from lsqsync.emulator.server import Emulator
from lsqsync.errors import ApiRejected
from lsqsync.lsq import BulkUpdateItem, LsqClient, RowResult

DEAL = "4f530c63-4c93-4150-8b8e-83487befb3b2"  # 12003 Enterprise Deal
LOAN = "c5a7f37c-b789-44c9-929b-74aa6250b539"  # 12000 Home Loan
GEORGE = "96105aa0-61f2-11ea-8109-022edb41208c"
MARY = model.USERS[2].id
US_DATETIME = re.compile(r"^\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2} [AP]M$")
ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def test_who_am_i(client: LsqClient, emu: Emulator) -> None:
    me = client.who_am_i()
    assert me.user.id == model.API_USER.id
    # the documented body: one Name, the email as PassPhrase, a bare host name
    assert (me.user.email, me.user.name) == ("ada.admin@example.com", "Ada Admin")
    assert (me.user.role, me.user.active) == ("Administrator", True)
    assert me.api_host == emu.url.removeprefix("http://")
    assert me.org_id is not None
    assert len(me.org_id) == 36


def test_users(client: LsqClient) -> None:
    users = client.users()
    assert [u.id for u in users] == [u.id for u in model.USERS]
    george = next(u for u in users if u.id == GEORGE)
    assert (george.email, george.name, george.role, george.active) == (
        "george.bailey@example.com",
        "George Bailey",
        "Sales_User",
        True,
    )
    assert {u.email for u in users if not u.active} == {
        "henry.potter@example.com",
        "harry.bailey@example.com",
    }


def test_user_by_email(client: LsqClient, emu: Emulator) -> None:
    george = client.user_by_email("George.Bailey@example.com")
    assert george is not None
    assert (george.id, george.first_name, george.active) == (GEORGE, "George", True)
    assert client.user_by_email("henry.potter@example.com") is None  # inactive: hidden
    assert client.user_by_email("nobody@example.com") is None
    assert [e["query"] for e in api_log(emu.url)] == [
        {"emailaddress": "George.Bailey@example.com"},
        {"emailaddress": "henry.potter@example.com"},
        {"emailaddress": "nobody@example.com"},
    ]


def test_opportunity_type_metadata(client: LsqClient) -> None:
    deal = client.opportunity_type(12003)
    assert (deal.code, deal.name) == (12003, "Enterprise Deal")
    assert [f.schema_name for f in deal.fields] == [
        f.schema_name for f in model.ENTERPRISE_DEAL.fields
    ]
    status = deal.field("Status")
    assert status is not None
    assert (status.data_type, status.mandatory, status.options) == (
        "SearchableDropdown",
        True,
        ("Open", "Won", "Lost"),
    )
    stage = deal.field("mx_Custom_2")
    assert stage is not None
    assert stage.parent_field == "Status"
    assert dict(stage.dependent_options) == {
        "Open": ("Prospecting", "Qualification", "Proposal", "Negotiation"),
        "Won": ("Closed Won", "Onboarding"),
        "Lost": ("Lost to Competitor", "No Budget", "No Response"),
    }
    owner = deal.field("Owner")
    assert owner is not None
    assert owner.is_user_valued
    assert not owner.is_system
    created_on = deal.field("CreatedOn")
    assert created_on is not None
    assert (created_on.is_system, created_on.read_only) == (True, True)
    assert deal.field("mx_Custom_14").read_only  # type: ignore[union-attr]
    assert deal.field("mx_Custom_9").max_length == 200  # type: ignore[union-attr]
    assert deal.auto_id_field is not None
    assert deal.auto_id_field.schema_name == "mx_Custom_15"
    loan = client.opportunity_type(12000)
    assert (loan.name, len(loan.fields), loan.auto_id_field) == ("Home Loan", 20, None)
    kinds = {f.schema_name: f.kind for f in loan.fields}
    assert [kinds[n] for n in ("mx_Custom_7", "mx_Custom_8", "mx_Custom_13")] == [
        "number",
        "date",
        "datetime",
    ]
    assert [kinds[n] for n in ("mx_Custom_16", "mx_Custom_17", "mx_Custom_18")] == [
        "user",
        "multiselect",
        None,  # a data type nobody knows
    ]
    assert [f.schema_name for f in loan.unrecognised] == ["mx_Custom_18"]


def test_unknown_opportunity_type_is_rejected_without_retry(
    client: LsqClient, emu: Emulator
) -> None:
    with pytest.raises(ApiRejected) as caught:
        client.opportunity_type(99999)
    assert (caught.value.status, caught.value.exception_type) == (500, "MXInvalidEntityException")
    assert caught.value.endpoint == "/v2/OpportunityManagement.svc/GetOpportunityTypeMetadata"
    assert "Opportunity type with code '99999' does not exist." in str(caught.value)
    assert len(api_log(emu.url)) == 1


def test_opportunity_details(client: LsqClient) -> None:
    details = client.opportunity_details(DEAL)
    assert details is not None
    assert (details.id, details.type_name) == (DEAL, "Enterprise Deal")
    assert details.values["Status"] == "Open"
    assert details.values["mx_Custom_2"] == "Negotiation"
    assert details.values["Owner"] == MARY
    assert details.values["mx_Custom_8"] is None
    assert ISO_DATETIME.match(details.values["CreatedOn"] or "")
    assert [f.schema_name for f in details.fields] == list(details.values)
    assert {f.schema_name: f.data_type for f in details.fields}["mx_Custom_6"] == "Number"


def test_missing_opportunity_details_are_rejected(client: LsqClient) -> None:
    with pytest.raises(ApiRejected) as caught:
        client.opportunity_details(str(uuid.uuid4()))
    assert caught.value.exception_type == "MXInvalidEntityException"
    assert caught.value.exception_message == "Opportunity does not exist."


def test_opportunities_by_id(client: LsqClient, emu: Emulator) -> None:
    records = client.opportunities_by_id(
        12003,
        [DEAL, LOAN, "missing-id", DEAL],
        ["Status", "Owner", "CreatedOn", "mx_Custom_8", "Nope"],
    )
    # LOAN is of type 12000 and "missing-id" does not exist: both absent; DEAL once.
    assert [r.id for r in records] == [DEAL]
    (deal,) = records
    assert deal.event_code == 12003
    assert set(deal.values) == {"Status", "Owner", "CreatedOn", "mx_Custom_8"}  # "Nope" absent
    assert (deal.values["Status"], deal.values["Owner"], deal.values["mx_Custom_8"]) == (
        "Open",
        MARY,
        None,
    )
    assert US_DATETIME.match(deal.values["CreatedOn"] or "")  # this endpoint's US format
    (entry,) = api_log(emu.url)
    assert (entry["method"], entry["path"], entry["status"]) == (
        "POST",
        "/v2/OpportunityManagement.svc/GetOpportunitiesById",
        200,
    )


def test_more_than_2000_ids_are_read_in_chunks(client: LsqClient, emu: Emulator) -> None:
    every = [r.id for r in client.search_opportunities(12000, [])]
    emu.reset()
    ids = [str(uuid.uuid4()) for _ in range(4100)] + every
    records = client.opportunities_by_id(12000, ids, ["Status"])
    assert sorted(r.id for r in records) == sorted(every)
    assert len(every) == 26
    calls = api_log(emu.url)
    assert [(e["path"].rsplit("/", 1)[-1], e["status"]) for e in calls] == [
        ("GetOpportunitiesById", 200)
    ] * 3  # 2000 + 2000 + 126


def test_search_pages_through_every_opportunity_of_a_type(client: LsqClient, emu: Emulator) -> None:
    records = list(
        client.search_opportunities(12003, ["Status", "CreatedOn", "mx_Custom_15"], page_size=10)
    )
    assert len(records) == 26
    assert len({r.id for r in records}) == 26
    assert all(r.event_code == 12003 for r in records)
    created = [r.values["CreatedOn"] or "" for r in records]
    assert all(ISO_DATETIME.match(c) for c in created)
    assert created == sorted(created)  # oldest first
    deal = next(r for r in records if r.id == DEAL)
    assert dict(deal.values) == {
        "Status": "Open",
        "CreatedOn": stored(emu.url, DEAL)["CreatedOn"],
        "mx_Custom_15": stored(emu.url, DEAL)["mx_Custom_15"],
    }
    searches = [e for e in api_log(emu.url) if e["path"].endswith("BySearchParameter")]
    assert len(searches) == 3  # 10 + 10 + 6


def test_search_stops_when_the_record_count_is_reached(client: LsqClient, emu: Emulator) -> None:
    assert len(list(client.search_opportunities(12000, ["Status"], page_size=13))) == 26
    assert len(api_log(emu.url)) == 2  # two full pages make 26: no third call


def test_search_checks_its_arguments_before_calling(client: LsqClient, emu: Emulator) -> None:
    with pytest.raises(ValueError, match="page_size"):
        client.search_opportunities(12003, [], page_size=1001)
    with pytest.raises(ValueError, match="column"):
        client.search_opportunities(12003, ["Status,Owner"])
    assert api_log(emu.url) == []


def test_count_opportunities(client: LsqClient, emu: Emulator) -> None:
    assert client.count_opportunities(12003) == 26
    assert client.count_opportunities(12000) == 26
    assert len(api_log(emu.url)) == 2


def test_bulk_update_of_the_documented_example(client: LsqClient, emu: Emulator) -> None:
    results = client.bulk_update(
        [
            BulkUpdateItem(DEAL, 12003, {"Status": "Won", "Owner": GEORGE}),
            BulkUpdateItem(LOAN, 12000, {"mx_Custom_6": "23500"}),
        ]
    )
    assert results == [RowResult(1, "applied"), RowResult(2, "applied")]
    deal, loan = stored(emu.url, DEAL), stored(emu.url, LOAN)
    assert (deal["Status"], deal["Owner"]) == ("Won", GEORGE)
    assert loan["mx_Custom_6"] == "23500"
    assert deal["ModifiedBy"] == model.API_USER.id


def test_per_row_failures_come_back_on_their_rows(client: LsqClient, emu: Emulator) -> None:
    missing = str(uuid.uuid4())
    results = client.bulk_update(
        [
            BulkUpdateItem(DEAL, 12003, {"mx_Custom_9": "first"}),
            BulkUpdateItem(missing, 12003, {"Status": "Won"}),
            BulkUpdateItem(LOAN, 12003, {"Status": "Won"}),  # LOAN is a 12000
            BulkUpdateItem(DEAL, 12003, {"mx_Custom_99": "x"}),
            BulkUpdateItem(LOAN, 12000, {"CreatedOn": "2024-04-02 12:13:44"}),
            BulkUpdateItem(LOAN, 12000, {"mx_Custom_9": "last"}),
        ]
    )
    assert results == [
        RowResult(1, "applied"),
        RowResult(
            2,
            "failed",
            "MXInvalidEntityException",
            f"Opportunity with Id '{missing}' does not exist.",
        ),
        RowResult(
            3,
            "failed",
            "MXInvalidEntityException",
            f"Opportunity '{LOAN}' is not of opportunity type '12003'.",
        ),
        RowResult(
            4,
            "failed",
            "MXInvalidAttributeException",
            "Field 'mx_Custom_99' does not exist for opportunity type '12003'.",
        ),
        RowResult(
            5,
            "failed",
            "MXReadOnlyAttributeException",
            "Field 'CreatedOn' is a system or read-only field and cannot be updated.",
        ),
        RowResult(6, "applied"),
    ]
    assert stored(emu.url, DEAL)["mx_Custom_9"] == "first"
    assert stored(emu.url, LOAN)["mx_Custom_9"] == "last"
    assert stored(emu.url, LOAN)["Status"] == "Open"


def test_a_value_of_the_wrong_type_fails_the_whole_call_without_retry(
    client: LsqClient, emu: Emulator, sleeps: list[float]
) -> None:
    with pytest.raises(ApiRejected) as caught:
        client.bulk_update(
            [
                BulkUpdateItem(DEAL, 12003, {"Status": "Won"}),
                BulkUpdateItem(LOAN, 12000, {"mx_Custom_6": "lots"}),
            ]
        )
    error = caught.value
    assert (error.status, error.exception_type) == (500, "MXInvalidDataTypeException")
    assert error.endpoint == "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId"
    assert "cannot accept the value 'lots'" in str(error)
    assert [e["status"] for e in api_log(emu.url)] == [500]
    assert sleeps == []
    assert stored(emu.url, DEAL)["Status"] == "Open"  # nothing written


def test_bulk_update_limits(client: LsqClient, emu: Emulator) -> None:
    with pytest.raises(ValueError, match="at most 25 items, got 26"):
        client.bulk_update([BulkUpdateItem(DEAL, 12003, {"Status": "Won"})] * 26)
    assert client.bulk_update([]) == []
    assert api_log(emu.url) == []


def test_twenty_five_items_go_in_one_call(client: LsqClient, emu: Emulator) -> None:
    results = client.bulk_update(
        [BulkUpdateItem(DEAL, 12003, {"mx_Custom_9": f"v{i}"}) for i in range(25)]
    )
    assert [r.outcome for r in results] == ["applied"] * 25
    assert [r.row_number for r in results] == list(range(1, 26))
    assert stored(emu.url, DEAL)["mx_Custom_9"] == "v24"  # applied in order
    assert len(api_log(emu.url)) == 1


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("who_am_i", ()),
        ("users", ()),
        ("opportunity_type", (12003,)),
    ],
)
def test_every_call_is_logged_once_with_its_path(
    make_client: Callable[..., LsqClient], emu: Emulator, method: str, args: tuple[object, ...]
) -> None:
    getattr(make_client(), method)(*args)
    (entry,) = api_log(emu.url)
    assert (entry["method"], entry["status"], entry["dropped"]) == ("GET", 200, False)
    assert entry["path"].startswith("/v2/")
