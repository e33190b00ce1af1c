"""Bulk/Update/ByOpportunityId as the emulator serves it, over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from lsqsync.emulator import Emulator
from lsqsync.emulator.model import API_USER, GEORGE_BAILEY, USERS

URL = "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId"
DEAL = "4f530c63-4c93-4150-8b8e-83487befb3b2"  # type 12003, from the Bulk Update page
LOAN = "c5a7f37c-b789-44c9-929b-74aa6250b539"  # type 12000
REFERENCE = Path(__file__).parents[2].parent / "shared/reference/bulk-update-opportunities.txt"

EXAMPLE_REQUEST = [
    {
        "ProspectOpportunityId": DEAL,
        "OpportunityEventCode": 12003,
        "Fields": [
            {"SchemaName": "Status", "Value": "Won"},
            {"SchemaName": "Owner", "Value": "96105aa0-61f2-11ea-8109-022edb41208c"},
        ],
    },
    {
        "ProspectOpportunityId": LOAN,
        "OpportunityEventCode": 12000,
        "Fields": [{"SchemaName": "mx_Custom_6", "Value": "23500"}],
    },
]
EXAMPLE_RESPONSE = {
    "Response": [
        {"RowNumber": 1, "OpportunityUpdated": True},
        {"RowNumber": 2, "OpportunityUpdated": True},
    ]
}


def stored(emu: Emulator, opp_id: str) -> dict[str, Any]:
    fields: dict[str, Any] = requests.get(
        f"{emu.url}/_emulator/opportunities/{opp_id}", timeout=5
    ).json()["fields"]
    return fields


def post(emu: Emulator, http: requests.Session, body: Any) -> requests.Response:
    return http.post(emu.url + URL, json=body, timeout=5)


def item(opp_id: str, code: int, **fields: str) -> dict[str, Any]:
    return {
        "ProspectOpportunityId": opp_id,
        "OpportunityEventCode": code,
        "Fields": [{"SchemaName": k, "Value": v} for k, v in fields.items()],
    }


def _json_blocks(text: str) -> list[Any]:
    """Every top-level JSON value printed on the reference page."""
    decoder, blocks, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i] in "[{":
            try:
                value, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                i += 1
                continue
            blocks.append(value)
            i = end
        else:
            i += 1
    return blocks


def test_the_reference_page_examples_are_the_ones_tested() -> None:
    if not REFERENCE.exists():
        pytest.skip("the shared reference folder is not beside this checkout")
    blocks = _json_blocks(REFERENCE.read_text())
    assert EXAMPLE_REQUEST in blocks
    assert EXAMPLE_RESPONSE in blocks


def test_bulk_update_page_example_works_as_printed(emu: Emulator, http: requests.Session) -> None:
    before = stored(emu, DEAL)
    assert (before["Status"], before["Owner"]) != ("Won", GEORGE_BAILEY.id)
    assert stored(emu, LOAN)["mx_Custom_6"] != "23500"

    response = post(emu, http, EXAMPLE_REQUEST)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == EXAMPLE_RESPONSE
    deal, loan = stored(emu, DEAL), stored(emu, LOAN)
    assert (deal["Status"], deal["Owner"]) == ("Won", GEORGE_BAILEY.id)
    assert loan["mx_Custom_6"] == "23500"


def test_a_write_stamps_modified_on_and_by(emu: Emulator, http: requests.Session) -> None:
    before = stored(emu, LOAN)
    post(emu, http, [item(LOAN, 12000, mx_Custom_9="called back")])
    after = stored(emu, LOAN)
    assert after["ModifiedBy"] == API_USER.id != before["ModifiedBy"]
    assert after["ModifiedOn"] > before["ModifiedOn"]
    assert after["mx_Custom_9"] == "called back"


@pytest.mark.parametrize(
    ("row", "exception_type", "message"),
    [
        (
            item("00000000-0000-4000-8000-000000000000", 12000, Status="Won"),
            "MXInvalidEntityException",
            "does not exist",
        ),
        (item(LOAN, 12003, Status="Won"), "MXInvalidEntityException", "is not of opportunity type"),
        (item(LOAN, 12000, mx_Custom_99="x"), "MXInvalidAttributeException", "does not exist"),
        (item(LOAN, 12000, Stauts="Won"), "MXInvalidAttributeException", "'Stauts'"),
        (
            item(LOAN, 12000, CreatedOn="2024-04-02 12:13:44"),
            "MXReadOnlyAttributeException",
            "system",
        ),
        (item(LOAN, 12000, ModifiedBy=GEORGE_BAILEY.id), "MXReadOnlyAttributeException", "system"),
        (item(LOAN, 12000, mx_Custom_14="Website"), "MXReadOnlyAttributeException", "read-only"),
        (item(DEAL, 12003, mx_Custom_15="DEAL-999"), "MXReadOnlyAttributeException", "read-only"),
        (
            item(LOAN, 12000, Owner="00000000-0000-4000-8000-000000000000"),
            "MXInvalidEntityException",
            "not active",
        ),
        (item(LOAN, 12000, Owner=USERS[-1].id), "MXInvalidEntityException", "not active"),
        (
            {"OpportunityEventCode": 12000, "Fields": []},
            "MXMandatoryAttributeMissingException",
            "'ProspectOpportunityId' is mandatory",
        ),
        (
            {"ProspectOpportunityId": LOAN, "Fields": []},
            "MXMandatoryAttributeMissingException",
            "'OpportunityEventCode' is mandatory",
        ),
    ],
)
def test_a_bad_row_fails_alone_and_the_others_apply(
    emu: Emulator, http: requests.Session, row: dict[str, Any], exception_type: str, message: str
) -> None:
    before = stored(emu, LOAN)
    good = item(DEAL, 12003, mx_Custom_9="good row")

    response = post(emu, http, [good, row, good])

    assert response.status_code == 200
    rows = response.json()["Response"]
    assert rows[0] == {"RowNumber": 1, "OpportunityUpdated": True}
    assert rows[2] == {"RowNumber": 3, "OpportunityUpdated": True}
    assert [r["RowNumber"] for r in rows] == [1, 2, 3]
    assert rows[1]["OpportunityUpdated"] is False
    assert rows[1]["ExceptionType"] == exception_type
    assert message in rows[1]["ExceptionMessage"]
    assert stored(emu, DEAL)["mx_Custom_9"] == "good row"
    assert stored(emu, LOAN) == before


@pytest.mark.parametrize(
    ("code", "fields", "exception_type"),
    [
        (12000, {"mx_Custom_6": "twenty"}, "MXInvalidDataTypeException"),
        (12000, {"mx_Custom_7": "1.2.3"}, "MXInvalidDataTypeException"),
        (12000, {"mx_Custom_8": "31/12/2026"}, "MXInvalidDataTypeException"),
        (12000, {"mx_Custom_13": "2026-12-31T10:00:00Z"}, "MXInvalidDataTypeException"),
        (12000, {"mx_Custom_12": "maybe"}, "MXInvalidDataTypeException"),
        (12000, {"Owner": "george.bailey@example.com"}, "MXInvalidDataTypeException"),
        (12000, {"mx_Custom_11": "ABCDE12345FGH"}, "MXInvalidDataLengthException"),
    ],
)
def test_an_unparseable_value_fails_the_whole_call(
    emu: Emulator, http: requests.Session, code: int, fields: dict[str, str], exception_type: str
) -> None:
    deal_before, loan_before = stored(emu, DEAL), stored(emu, LOAN)

    response = post(emu, http, [item(DEAL, 12003, Status="Lost"), item(LOAN, code, **fields)])

    assert response.status_code == 500
    body = response.json()
    assert body["Status"] == "Error"
    assert body["ExceptionType"] == exception_type
    assert next(iter(fields)) in body["ExceptionMessage"]
    assert (stored(emu, DEAL), stored(emu, LOAN)) == (deal_before, loan_before)


@pytest.mark.parametrize(
    ("field", "written", "kept"),
    [
        ("mx_Custom_6", "23,500", "23500"),
        ("mx_Custom_6", "23500.00", "23500"),
        ("mx_Custom_7", "7.50", "7.5"),
        ("mx_Custom_8", "2026-12-31", "2026-12-31"),
        ("mx_Custom_8", "2026-12-31 00:00:00", "2026-12-31"),
        ("mx_Custom_13", "2026-12-31 23:59:58", "2026-12-31 23:59:58"),
        ("mx_Custom_12", "true", "1"),
        ("mx_Custom_12", "False", "0"),
        ("Owner", GEORGE_BAILEY.id.upper(), GEORGE_BAILEY.id),
        ("mx_Custom_9", "", None),
        # Dropdowns accept values outside their options, as real tenants do.
        ("mx_Custom_10", "Urgent", "Urgent"),
        ("Status", "Closed", "Closed"),
        # ... and a Stage that does not belong to the Status.
        ("mx_Custom_2", "Disbursed", "Disbursed"),
    ],
)
def test_values_are_stored_canonically(
    emu: Emulator, http: requests.Session, field: str, written: str, kept: str | None
) -> None:
    response = post(emu, http, [item(LOAN, 12000, **{field: written})])
    assert response.json() == {"Response": [{"RowNumber": 1, "OpportunityUpdated": True}]}
    assert stored(emu, LOAN)[field] == kept


def test_autoid_value_is_accepted_as_the_opportunity_id(
    emu: Emulator, http: requests.Session
) -> None:
    response = post(emu, http, [item("DEAL-000001", 12003, mx_Custom_9="by auto id")])
    assert response.json()["Response"][0]["OpportunityUpdated"] is True
    assert stored(emu, DEAL)["mx_Custom_9"] == "by auto id"


def test_created_on_is_writable_only_when_the_account_allows_it(
    emu: Emulator, http: requests.Session
) -> None:
    emu.settings.allow_created_on = True
    response = post(emu, http, [item(LOAN, 12000, CreatedOn="2024-04-02 12:13:44")])
    assert response.json()["Response"][0]["OpportunityUpdated"] is True
    assert stored(emu, LOAN)["CreatedOn"] == "2024-04-02 12:13:44"


def test_the_same_opportunity_twice_in_one_call_applies_in_order(
    emu: Emulator, http: requests.Session
) -> None:
    post(
        emu,
        http,
        [
            item(LOAN, 12000, mx_Custom_9="first", mx_Custom_6="1"),
            item(LOAN, 12000, mx_Custom_9="second"),
        ],
    )
    assert (stored(emu, LOAN)["mx_Custom_9"], stored(emu, LOAN)["mx_Custom_6"]) == ("second", "1")


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (json.dumps([item(LOAN, 12000, Status="Won")] * 26), "application/json", "at most 25"),
        ("[{", "application/json", "Unexpected character"),
        (json.dumps(item(LOAN, 12000, Status="Won")), "application/json", "requires a JSON array"),
        (json.dumps(["not an object"]), "application/json", "Cannot deserialize"),
        (
            json.dumps(
                [{"ProspectOpportunityId": LOAN, "OpportunityEventCode": 12000, "Fields": "x"}]
            ),
            "application/json",
            "Cannot deserialize",
        ),
        (json.dumps([item(LOAN, 12000, Status="Won")]), "text/plain", "content type"),
        (b"\xff\xfe[]", "application/json", "UTF-8"),
    ],
)
def test_malformed_calls_are_400(
    emu: Emulator, http: requests.Session, data: str | bytes, content_type: str, message: str
) -> None:
    before = stored(emu, LOAN)
    response = http.post(
        emu.url + URL, data=data, headers={"Content-Type": content_type}, timeout=5
    )
    assert response.status_code == 400
    assert response.json()["Status"] == "Error"
    assert message in response.json()["ExceptionMessage"]
    assert stored(emu, LOAN) == before


def test_exactly_25_items_are_accepted(emu: Emulator, http: requests.Session) -> None:
    response = post(emu, http, [item(LOAN, 12000, mx_Custom_6=str(i)) for i in range(25)])
    assert [r["RowNumber"] for r in response.json()["Response"]] == list(range(1, 26))
    assert stored(emu, LOAN)["mx_Custom_6"] == "24"
