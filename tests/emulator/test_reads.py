"""The read endpoints, in the shapes and formats of the reference."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests

from lsqsync.emulator import Emulator
from lsqsync.emulator.model import GEORGE_BAILEY, USERS

OPP = "/v2/OpportunityManagement.svc/"
DEAL = "4f530c63-4c93-4150-8b8e-83487befb3b2"
LOAN = "c5a7f37c-b789-44c9-929b-74aa6250b539"


def advanced(code: int | str, *extra: dict[str, str]) -> str:
    rows = [
        {
            "SubConOp": "And",
            "LSO": "ActivityEvent",
            "LSO_Type": "PAEvent",
            "Operator": "eq",
            "RSO": str(code),
        },
        *extra,
    ]
    return json.dumps(
        {
            "GrpConOp": "And",
            "Conditions": [{"Type": "Activity", "ConOp": "and", "RowCondition": rows}],
        }
    )


def search(emu: Emulator, http: requests.Session, **body: Any) -> requests.Response:
    return http.post(emu.url + OPP + "Retrieve/BySearchParameter", json=body, timeout=5)


def by_ids(emu: Emulator, http: requests.Session, *params: Any) -> requests.Response:
    return http.post(
        emu.url + OPP + "GetOpportunitiesById", json={"SearchParameters": list(params)}, timeout=5
    )


def test_metadata_describes_every_field(emu: Emulator, http: requests.Session) -> None:
    response = http.get(emu.url + OPP + "GetOpportunityTypeMetadata", params={"code": 12003})
    body = response.json()
    assert response.status_code == 200
    assert (body["EventCode"], body["DisplayName"]) == (12003, "Enterprise Deal")
    fields = {f["SchemaName"]: f for f in body["Fields"]}
    status = fields["Status"]
    assert status["DataType"] == "SearchableDropdown"
    assert status["IsMandatory"] is True
    # OptionSet is a JSON *string* holding the options, as documented.
    assert [o["Value"] for o in json.loads(status["OptionSet"])] == ["Open", "Won", "Lost"]
    stage = fields["mx_Custom_2"]
    assert stage["ParentField"] == "Status"
    dependent = {
        d["ParentValue"]: [o["Value"] for o in d["Options"]]
        for d in json.loads(stage["DependentOptionSet"])
    }
    assert dependent["Won"] == ["Closed Won", "Onboarding"]
    assert fields["Owner"]["DataType"] == "ActiveUsers"
    assert fields["mx_Custom_15"]["DataType"] == "AutoId"
    assert fields["mx_Custom_15"]["IsReadOnly"]
    assert fields["mx_Custom_9"]["MaxFieldLength"] == 200
    # The documented data type names, with the render type that tells a Date from a DateTime
    assert {(f["DataType"], f["RenderType"]) for f in body["Fields"]} == {
        ("String", "Textbox"),
        ("Number", "Textbox"),
        ("Date", "Date"),
        ("Date", "DateTime"),
        ("Boolean", "CheckBox"),
        ("SearchableDropdown", "SearchableDropdown"),
        ("Select", "Dropdown"),
        ("ActiveUsers", "Dropdown"),
        ("AutoId", "Textbox"),
    }
    # "" (not null) where a field has no parent or options, as documented
    assert (fields["mx_Custom_9"]["ParentField"], fields["mx_Custom_9"]["OptionSet"]) == ("", "")
    assert fields["mx_Custom_9"]["IsMultiSelectDropdown"] is False
    for name in ("CreatedOn", "ModifiedOn", "CreatedBy", "ModifiedBy"):
        assert fields[name]["IsReadOnly"] is True
    assert all(f["Value"] is None for f in body["Fields"])


def test_home_loans_have_a_multi_select_a_user_and_a_type_nobody_knows(
    emu: Emulator, http: requests.Session
) -> None:
    body = http.get(emu.url + OPP + "GetOpportunityTypeMetadata", params={"code": 12000}).json()
    fields = {f["SchemaName"]: f for f in body["Fields"]}
    documents = fields["mx_Custom_17"]
    assert (documents["DataType"], documents["IsMultiSelectDropdown"]) == ("Select", True)
    assert [o["Value"] for o in json.loads(documents["OptionSet"])][:2] == ["PAN", "Aadhaar"]
    assert fields["mx_Custom_16"]["DataType"] == "ActiveUsers"
    assert fields["mx_Custom_18"]["DataType"] == "Lookup"
    rows = http.post(
        emu.url + OPP + "GetOpportunitiesById",
        json={"SearchParameters": [{"EventCode": "12000", "ProspectActivityId": [LOAN],
              "Columns": {"Include_CSV": "mx_Custom_16,mx_Custom_17,mx_Custom_18"}}]},
    ).json()[0]["Opportunities"]  # fmt: skip
    (row,) = rows
    assert row["mx_Custom_18"].startswith("BR-")
    assert row["mx_Custom_16"] in {u.id for u in USERS}


def test_metadata_of_an_unknown_type_is_a_500(emu: Emulator, http: requests.Session) -> None:
    response = http.get(emu.url + OPP + "GetOpportunityTypeMetadata", params={"code": 99999})
    assert response.status_code == 500
    assert response.json()["ExceptionType"] == "MXInvalidEntityException"
    missing = http.get(emu.url + OPP + "GetOpportunityTypeMetadata")
    assert missing.status_code == 500
    assert missing.json()["ExceptionMessage"] == "'code' is mandatory"


def test_details_return_values_with_metadata(emu: Emulator, http: requests.Session) -> None:
    # the parameter name is case-insensitive, as observed
    response = http.get(emu.url + OPP + "GetOpportunityDetails", params={"opportunityId": LOAN})
    body = response.json()
    assert body["ID"] == LOAN
    assert body["Name"] == "Home Loan"
    assert body["RelatedProspectId"]
    values = {f["SchemaName"]: f["Value"] for f in body["Fields"]}
    assert values["mx_Custom_6"] == "20000"
    assert len(values["CreatedOn"]) == len("2026-08-31 08:38:00")
    assert values["mx_Custom_7"].count(".") == 1
    assert len(values["mx_Custom_7"].split(".")[1]) == 2
    assert len(values["mx_Custom_8"]) == len("2026-08-31")


def test_details_of_a_missing_opportunity_is_a_500(emu: Emulator, http: requests.Session) -> None:
    response = http.get(
        emu.url + OPP + "GetOpportunityDetails",
        params={"OpportunityId": "00000000-0000-4000-8000-000000000000"},
    )
    assert response.status_code == 500
    assert response.json()["ExceptionType"] == "MXInvalidEntityException"


def test_get_by_ids_groups_by_event_code_in_us_dates(emu: Emulator, http: requests.Session) -> None:
    stored = requests.get(f"{emu.url}/_emulator/opportunities/{DEAL}", timeout=5).json()
    response = by_ids(
        emu,
        http,
        {
            "EventCode": "12003",
            "ProspectActivityId": [DEAL.upper(), LOAN, "nope"],
            "Columns": {"Include_CSV": "CreatedOn,Status,mx_Custom_12,Owner,EmailAddress,Nope"},
        },
        {
            "EventCode": 12000,
            "ProspectActivityId": [LOAN],
            "Columns": {"Include_CSV": "mx_Custom_6"},
        },
    )
    deals, loans = response.json()
    assert deals["EventCode"] == "12003"
    assert deals["RecordCount"] == 1
    (row,) = deals["Opportunities"]  # unknown ids and other types are left out
    assert row["ProspectActivityId"] == DEAL
    assert row["ProspectId"] == stored["lead_id"]
    date, _time = stored["fields"]["CreatedOn"].split(" ")
    y, m, d = (int(p) for p in date.split("-"))
    assert row["CreatedOn"].startswith(f"{m}/{d}/{y} ")
    assert row["CreatedOn"].endswith((" AM", " PM"))
    assert row["mx_Custom_12"].endswith(" 12:00:00 AM")
    assert row["Status"] == "Open"
    assert row["EmailAddress"].endswith("@example.org")
    assert "Nope" not in row
    assert loans["Opportunities"][0]["mx_Custom_6"] == "20000"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {
                "SearchParameters": [
                    {
                        "EventCode": "12003",
                        "ProspectActivityId": ["x"] * 2001,
                        "Columns": {"Include_CSV": "Status"},
                    }
                ]
            },
            400,
            "at most 2000",
        ),
        (
            {"SearchParameters": [{"EventCode": "12003", "ProspectActivityId": [DEAL]}]},
            500,
            "mandatory",
        ),
        ({}, 500, "'SearchParameters' is mandatory"),
        (
            {"SearchParameters": [{"EventCode": "x", "ProspectActivityId": [DEAL], "Columns": {}}]},
            500,
            "not a valid opportunity type",
        ),
    ],
)
def test_get_by_ids_refuses_bad_calls(
    emu: Emulator, http: requests.Session, body: Any, status: int, message: str
) -> None:
    response = http.post(emu.url + OPP + "GetOpportunitiesById", json=body, timeout=5)
    assert response.status_code == status
    assert message in response.json()["ExceptionMessage"]


def test_search_pages_through_every_opportunity_of_a_type(
    emu: Emulator, http: requests.Session
) -> None:
    seen: list[str] = []
    total = None
    for page in range(1, 20):
        body = search(
            emu,
            http,
            OpportunityEventCode=12000,
            AdvancedSearch=advanced(12000),
            Paging={"PageIndex": page, "PageSize": 7},
            Sorting={"ColumnName": "CreatedOn", "Direction": "0"},
            Columns={"Include_CSV": "ProspectOpportunityId,Status,mx_Custom_6,mx_Custom_13"},
        ).json()
        total = body["RecordCount"]
        seen += [row["ProspectOpportunityId"] for row in body["List"]]
        if len(body["List"]) < 7:
            break
    assert total == 31  # 30 of the 60 generated, plus the example loan
    assert len(seen) == len(set(seen)) == total
    assert LOAN in seen


def test_search_rows_are_flat_with_iso_dates(emu: Emulator, http: requests.Session) -> None:
    body = search(
        emu,
        http,
        OpportunityEventCode=12000,
        AdvancedSearch=advanced(12000),
        Paging={"PageIndex": 1, "PageSize": 1000},
        Columns={"Include_CSV": "mx_Custom_13,Owner"},
    ).json()
    row = next(r for r in body["List"] if r["mx_Custom_13"])
    assert set(row) == {"OpportunityId", "mx_Custom_13", "Owner"}
    assert len(row["mx_Custom_13"]) == len("2026-08-31 08:38:00")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"OpportunityEventCode": 12000}, 500, "mandatory"),
        (
            {"OpportunityEventCode": 12000, "AdvancedSearch": advanced(12003)},
            500,
            "ActivityEvent eq 12000",
        ),
        ({"OpportunityEventCode": 12000, "AdvancedSearch": "{not json"}, 500, "not a valid"),
        (
            {
                "OpportunityEventCode": 12000,
                "AdvancedSearch": advanced(12000),
                "Paging": {"PageIndex": 1, "PageSize": 0},
            },
            400,
            "PageSize at least 1",
        ),
        (
            {
                "OpportunityEventCode": 12000,
                "AdvancedSearch": advanced(12000),
                "Paging": {"PageIndex": "one"},
            },
            400,
            "must be numbers",
        ),
        (
            {
                "OpportunityEventCode": 12000,
                "AdvancedSearch": advanced(
                    12000, {"LSO": "Status", "Operator": "eq", "RSO": "Won"}
                ),
            },
            400,
            "only the ActivityEvent",
        ),
        ({"OpportunityEventCode": 99, "AdvancedSearch": advanced(99)}, 500, "does not exist"),
        ([], 400, "JSON object"),
        (
            {"OpportunityEventCode": 12000, "AdvancedSearch": advanced(12000), "Sorting": "x"},
            400,
            "Sorting must be an object",
        ),
        (
            {
                "OpportunityEventCode": 12000,
                "AdvancedSearch": advanced(12000),
                "Paging": {"PageIndex": 10**20, "PageSize": 10},
            },
            400,
            "PageIndex must be",
        ),
    ],
)
def test_search_refuses_bad_calls(
    emu: Emulator, http: requests.Session, body: Any, status: int, message: str
) -> None:
    response = http.post(emu.url + OPP + "Retrieve/BySearchParameter", json=body, timeout=5)
    assert response.status_code == status
    assert message in response.json()["ExceptionMessage"]


def test_users(emu: Emulator, http: requests.Session) -> None:
    users = http.get(emu.url + "/v2/UserManagement.svc/Users.Get", timeout=5).json()
    assert len(users) == len(USERS)
    george = next(u for u in users if u["ID"] == GEORGE_BAILEY.id)
    assert george["EmailAddress"] == "george.bailey@example.com"
    assert george["StatusCode"] == 0
    assert sum(u["StatusCode"] == 1 for u in users) == 2


@pytest.mark.parametrize(
    ("email", "found"),
    [
        ("George.Bailey@example.com", GEORGE_BAILEY.id),
        ("henry.potter@example.com", None),
        ("nobody@example.com", None),
    ],
)
def test_user_by_email_hides_inactive_users(
    emu: Emulator, http: requests.Session, email: str, found: str | None
) -> None:
    rows = http.get(
        emu.url + "/v2/UserManagement.svc/User/Retrieve/ByEmailAddress",
        params={"emailAddress": email},
        timeout=5,
    ).json()
    assert [r["UserId"] for r in rows] == ([found] if found else [])


def test_user_by_access_key_answers_the_documented_body(
    emu: Emulator, http: requests.Session
) -> None:
    body = http.get(emu.url + "/v2/Authentication.svc/UserByAccessKey.Get", timeout=5).json()
    # as the user-authentication page shows it: one Name, the email as PassPhrase, no
    # EmailAddress, the organisation as a GUID string and the API host as a bare host name
    assert (body["Name"], body["PassPhrase"], body["EmailAddress"]) == (
        "Ada Admin",
        "ada.admin@example.com",
        None,
    )
    assert body["Role"] == "Administrator"
    assert str(uuid.UUID(body["OrgId"])) == body["OrgId"]
    assert "FirstName" not in body
    assert body["LSQCommonServiceURLs"]["api"] == emu.url.removeprefix("http://")
