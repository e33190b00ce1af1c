"""How real accounts differ from the emulator's defaults, as options: clamped and short search
pages, a server that ignores PageIndex, reads that lag behind writes, non-administrator keys."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
import requests
from test_reads import DEAL, LOAN, OPP, advanced

from lsqsync.cli import main
from lsqsync.emulator import Emulator
from lsqsync.emulator.model import API_USER

SEARCH = OPP + "Retrieve/BySearchParameter"
BULK = OPP + "Bulk/Update/ByOpportunityId"
LOANS = 31  # 30 of the 60 generated, and the example loan


def page(http: requests.Session, emu: Emulator, index: int, size: int) -> dict[str, Any]:
    response = http.post(
        emu.url + SEARCH,
        json={
            "OpportunityEventCode": 12000,
            "AdvancedSearch": advanced(12000),
            "Paging": {"PageIndex": index, "PageSize": size},
            "Sorting": {"ColumnName": "CreatedOn", "Direction": "0"},
            "Columns": {"Include_CSV": "OpportunityId,Status"},
        },
        timeout=5,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [row["OpportunityId"] for row in body["List"]]


def read_all(http: requests.Session, emu: Emulator, size: int) -> tuple[list[int], list[str]]:
    """Page on until RecordCount is reached: the sizes of the pages and the ids read."""
    sizes: list[int] = []
    seen: list[str] = []
    for index in range(1, 50):
        body = page(http, emu, index, size)
        sizes.append(len(body["List"]))
        seen += ids(body)
        if len(seen) >= body["RecordCount"] or not body["List"]:
            break
    return sizes, seen


def test_a_page_size_above_the_cap_is_clamped_silently(
    emu: Emulator, http: requests.Session
) -> None:
    # by default the cap is the 1,000 seen on a real account: more is no error
    assert len(page(http, emu, 1, 5000)["List"]) == LOANS
    emu.settings.page_cap = 7
    sizes, seen = read_all(http, emu, 1000)
    assert sizes == [7, 7, 7, 7, 3]
    assert len(seen) == len(set(seen)) == LOANS


def test_short_pages_hold_fewer_rows_than_asked_and_lose_none(
    emu: Emulator, http: requests.Session
) -> None:
    emu.settings.short_pages = True
    assert page(http, emu, 1, 9)["RecordCount"] == LOANS
    sizes, seen = read_all(http, emu, 9)
    assert sizes == [6, 6, 6, 6, 6, 1]
    assert len(seen) == len(set(seen)) == LOANS
    emu.settings.page_cap = 3  # with a cap too: two thirds of the clamped size
    assert len(page(http, emu, 1, 1000)["List"]) == 2


def test_a_server_that_ignores_the_page_index_answers_page_one(
    emu: Emulator, http: requests.Session
) -> None:
    emu.settings.ignore_page_index = True
    first, second = page(http, emu, 1, 10), page(http, emu, 2, 10)
    assert ids(first) == ids(second)
    assert second["RecordCount"] == LOANS


def test_non_admin_keys_are_refused_advanced_search_only(
    emu: Emulator, http: requests.Session
) -> None:
    emu.settings.non_admin = True
    response = http.post(
        emu.url + SEARCH,
        json={"OpportunityEventCode": 12000, "AdvancedSearch": advanced(12000)},
        timeout=5,
    )
    assert response.status_code == 401
    assert response.json()["ExceptionType"] == "MXUnAuthorizedAccessException"
    assert "Administrator" in response.json()["ExceptionMessage"]
    me = http.get(emu.url + "/v2/Authentication.svc/UserByAccessKey.Get", timeout=5).json()
    assert me["Role"] == "Sales_User"
    users = http.get(emu.url + "/v2/UserManagement.svc/Users.Get", timeout=5).json()
    assert next(u["Role"] for u in users if u["ID"] == API_USER.id) == "Sales_User"
    by_id = http.post(
        emu.url + OPP + "GetOpportunitiesById",
        json={"SearchParameters": [{"EventCode": "12000", "ProspectActivityId": [LOAN],
                                    "Columns": {"Include_CSV": "Status"}}]},
        timeout=5,
    )  # fmt: skip
    assert by_id.status_code == 200
    assert by_id.json()[0]["RecordCount"] == 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def deal_status(http: requests.Session, emu: Emulator) -> tuple[str, str, str, str]:
    """Deal's Status as a search, a by-id read, the details and the stored record show it."""
    searched = http.post(
        emu.url + SEARCH,
        json={"OpportunityEventCode": 12003, "AdvancedSearch": advanced(12003),
              "Paging": {"PageIndex": 1, "PageSize": 1000},
              "Columns": {"Include_CSV": "OpportunityId,Status"}},
        timeout=5,
    ).json()  # fmt: skip
    by_id = http.post(
        emu.url + OPP + "GetOpportunitiesById",
        json={"SearchParameters": [{"EventCode": "12003", "ProspectActivityId": [DEAL],
                                    "Columns": {"Include_CSV": "Status"}}]},
        timeout=5,
    ).json()  # fmt: skip
    details = http.get(
        emu.url + OPP + "GetOpportunityDetails", params={"OpportunityId": DEAL}, timeout=5
    ).json()
    stored = requests.get(f"{emu.url}/_emulator/opportunities/{DEAL}", timeout=5).json()
    return (
        next(r["Status"] for r in searched["List"] if r["OpportunityId"] == DEAL),
        by_id[0]["Opportunities"][0]["Status"],
        next(f["Value"] for f in details["Fields"] if f["SchemaName"] == "Status"),
        stored["fields"]["Status"],
    )


def set_status(http: requests.Session, emu: Emulator, status: str) -> None:
    item = {"ProspectOpportunityId": DEAL, "OpportunityEventCode": 12003,
            "Fields": [{"SchemaName": "Status", "Value": status}]}  # fmt: skip
    answer = http.post(emu.url + BULK, json=[item], timeout=5).json()
    assert answer["Response"][0]["OpportunityUpdated"] is True


def test_reads_lag_behind_writes(
    emu: Emulator, http: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(emu.store, "clock", clock)
    emu.settings.read_lag_ms = 2000
    set_status(http, emu, "Won")
    # searches and by-id reads still show the value before the write; the record is written
    # (the details, like the stored values, show it: they were seen current on a real account)
    assert deal_status(http, emu) == ("Open", "Open", "Won", "Won")
    clock.now += 1.5
    set_status(http, emu, "Lost")
    assert deal_status(http, emu)[:2] == ("Open", "Open")
    clock.now += 0.5  # the first write is 2 s old, the second 0.5 s
    assert deal_status(http, emu)[:2] == ("Won", "Won")
    clock.now += 1.5
    assert deal_status(http, emu) == ("Lost", "Lost", "Lost", "Lost")
    # without a lag every write shows at once, and reads taken before are not replayed
    emu.settings.read_lag_ms = 0
    set_status(http, emu, "Open")
    assert deal_status(http, emu) == ("Open", "Open", "Open", "Open")


def test_a_lag_switched_off_shows_every_write_at_once(
    emu: Emulator, http: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emu.store, "clock", Clock())
    emu.settings.read_lag_ms = 60_000
    set_status(http, emu, "Won")
    assert deal_status(http, emu)[0] == "Open"
    emu.settings.read_lag_ms = 0
    assert deal_status(http, emu)[:2] == ("Won", "Won")


def test_edits_made_in_the_ui_lag_as_well(
    emu: Emulator, http: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emu.store, "clock", Clock())
    emu.settings.read_lag_ms = 1000
    item = {"ProspectOpportunityId": DEAL, "OpportunityEventCode": 12003,
            "Fields": [{"SchemaName": "Status", "Value": "Won"}]}  # fmt: skip
    requests.post(emu.url + "/_emulator/edits", json=[item], timeout=5)
    assert deal_status(http, emu)[:2] == ("Open", "Open")


@pytest.mark.parametrize(
    "changes", [{"page_cap": 0}, {"read_lag_ms": -1}, {"page_cap": 2.5}, {"non_admin": 1}]
)
def test_profile_settings_out_of_range_are_refused(
    emu: Emulator, changes: dict[str, object]
) -> None:
    response = requests.post(emu.url + "/_emulator/settings", json=changes, timeout=5)
    assert response.status_code == 400


def test_the_options_reach_the_emulator_that_run_starts(
    capfd: pytest.CaptureFixture[str],
) -> None:
    script = (
        "import os, urllib.request;"
        "print(urllib.request.urlopen(os.environ['LSQ_HOST'] + '/_emulator/settings').read()"
        ".decode())"
    )
    args = ["--page-cap", "7", "--short-pages", "--ignore-page-index", "--read-lag-ms", "1500",
            "--non-admin", "--opportunities", "2"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(["emulator", "run", *args, "--", sys.executable, "-c", script])
    assert exit_info.value.code == 0
    settings = json.loads(capfd.readouterr().out)  # printed by the command
    assert {k: settings[k] for k in ("page_cap", "short_pages", "ignore_page_index",
                                     "read_lag_ms", "non_admin")} == {
        "page_cap": 7, "short_pages": True, "ignore_page_index": True, "read_lag_ms": 1500.0,
        "non_admin": True,
    }  # fmt: skip


def test_emulator_options_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--page-cap", "0"], ["--read-lag-ms", "-5"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["emulator", "serve", *args])
        assert exit_info.value.code == 1
        assert "Invalid value" in capsys.readouterr().err
