"""The emulator's variants of how real accounts differ (emulator.variants), over real HTTP:
reads that lag writes, ``""`` writes ignored, whole-call rejections in a 200."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from lsqsync.emulator import Emulator, Settings

BULK = "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId"
BY_IDS = "/v2/OpportunityManagement.svc/GetOpportunitiesById"
LOAN = "c5a7f37c-b789-44c9-929b-74aa6250b539"


def write(emu: Emulator, http: requests.Session, **fields: str) -> requests.Response:
    body = [{"ProspectOpportunityId": LOAN, "OpportunityEventCode": 12000,
             "Fields": [{"SchemaName": k, "Value": v} for k, v in fields.items()]}]  # fmt: skip
    return http.post(emu.url + BULK, json=body, timeout=5)


def read(emu: Emulator, http: requests.Session, field: str) -> Any:
    body = {"SearchParameters": [{"EventCode": "12000", "ProspectActivityId": [LOAN],
                                  "Columns": {"Include_CSV": field}}]}  # fmt: skip
    return http.post(emu.url + BY_IDS, json=body, timeout=5).json()[0]["Opportunities"][0][field]


def stored(emu: Emulator, field: str) -> Any:
    return requests.get(f"{emu.url}/_emulator/opportunities/{LOAN}", timeout=5).json()["fields"][
        field
    ]


def test_reads_show_a_write_only_after_the_lag(emu: Emulator, http: requests.Session) -> None:
    emu.settings.read_lag_ms = 1000
    assert write(emu, http, mx_Custom_9="first").json()["Response"][0]["OpportunityUpdated"]
    assert stored(emu, "mx_Custom_9") == "first"  # stored at once
    assert read(emu, http, "mx_Custom_9") is None  # and not yet visible
    time.sleep(1.2)
    assert read(emu, http, "mx_Custom_9") == "first"
    emu.settings.read_lag_ms = 0
    write(emu, http, mx_Custom_9="second")
    assert read(emu, http, "mx_Custom_9") == "second"


def test_a_write_of_empty_can_leave_the_field_as_it_is(
    emu: Emulator, http: requests.Session
) -> None:
    priority = stored(emu, "mx_Custom_10")
    assert priority
    emu.settings.ignore_empty_writes = True
    answer = write(emu, http, mx_Custom_10="", mx_Custom_9="kept")
    assert answer.json() == {"Response": [{"RowNumber": 1, "OpportunityUpdated": True}]}
    assert (stored(emu, "mx_Custom_10"), stored(emu, "mx_Custom_9")) == (priority, "kept")
    emu.settings.ignore_empty_writes = False
    write(emu, http, mx_Custom_10="")
    assert stored(emu, "mx_Custom_10") is None


@pytest.mark.parametrize("status", [500, 200])
def test_a_value_the_field_cannot_take_rejects_the_call_in_the_accounts_form(
    emu: Emulator, http: requests.Session, status: int
) -> None:
    emu.settings.rejection_status = status
    answer = write(emu, http, mx_Custom_6="lots")
    assert answer.status_code == status
    assert answer.json()["Status"] == "Error"
    assert answer.json()["ExceptionType"] == "MXInvalidDataTypeException"
    assert stored(emu, "mx_Custom_6") != "lots"


def test_the_variants_are_settings(emu: Emulator) -> None:
    changes = {"read_lag_ms": 250.0, "ignore_empty_writes": True, "rejection_status": 200}
    answer = requests.post(emu.url + "/_emulator/settings", json=changes, timeout=5)
    assert {k: answer.json()[k] for k in changes} == changes
    refused = requests.post(
        emu.url + "/_emulator/settings", json={"rejection_status": 404}, timeout=5
    )
    assert refused.status_code == 400
    assert "must be one of (500, 200)" in refused.json()["ExceptionMessage"]
    assert Settings().rejection_status == 500


def test_the_metadata_can_report_other_display_names(emu: Emulator, http: requests.Session) -> None:
    metadata = "/v2/OpportunityManagement.svc/GetOpportunityTypeMetadata"

    def display_names() -> dict[str, str]:
        body = http.get(emu.url + metadata, params={"code": "12003"}, timeout=5).json()
        return {f["SchemaName"]: f["DisplayName"] for f in body["Fields"]}

    assert display_names()["mx_Custom_9"] == "Closing Note"
    settings = emu.url + "/_emulator/settings"
    answer = requests.post(
        settings, json={"display_names": {"12003.mx_Custom_9": "Stage"}}, timeout=5
    )
    assert answer.status_code == 200
    shown = display_names()
    assert (shown["mx_Custom_9"], shown["mx_Custom_2"]) == ("Stage", "Stage")
    for bad in ({"12003.mx_Custom_99": "X"}, {"99.Status": "X"}, {"12003.Status": 1}, ["x"]):
        answer = requests.post(settings, json={"display_names": bad}, timeout=5)
        assert answer.status_code == 400, bad
    assert display_names()["mx_Custom_9"] == "Stage"  # a refused change changes nothing
