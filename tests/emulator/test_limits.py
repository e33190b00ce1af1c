"""The emulator's rate limits as real accounts have them: the bulk window beside the account's,
the three forms a refusal takes, and the plans' documented limits."""

from __future__ import annotations

import json
import sys
import time

import pytest
import requests

from lsqsync.cli import main
from lsqsync.emulator import Emulator
from lsqsync.emulator.limits import PLANS

WHOAMI = "/v2/Authentication.svc/UserByAccessKey.Get"
BULK = "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId"
MESSAGE = "API calls exceeded the limit of {} in {} second(s)"


def log(emu: Emulator) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = requests.get(
        emu.url + "/_emulator/requests", timeout=5
    ).json()["requests"]
    return entries


@pytest.mark.parametrize(
    ("form", "body"),
    [
        (429, {"Status": "Error", "ExceptionType": "MXAPIRateLimitExceededException",
               "ExceptionMessage": MESSAGE.format(1, 60)}),
        (403, {"Message": MESSAGE.format(1, 60)}),
        (200, {"Status": "Error", "ExceptionType": "MXAPIRateLimitExceededException",
               "ExceptionMessage": MESSAGE.format(1, 60)}),
    ],
)  # fmt: skip
def test_a_call_over_the_limit_is_refused_in_the_accounts_form(
    emu: Emulator, http: requests.Session, form: int, body: dict[str, str]
) -> None:
    emu.settings.update(
        {"rate_limit_calls": 1, "rate_limit_seconds": 60.0, "rate_limit_response": form}
    )
    assert http.get(emu.url + WHOAMI, timeout=5).status_code == 200
    refused = http.get(emu.url + WHOAMI, timeout=5)
    assert (refused.status_code, refused.json()) == (form, body)
    assert [e["rate_limited"] for e in log(emu)] == [False, True]


def test_bulk_update_must_fit_the_bulk_window_too_and_a_refused_call_counts_in_neither(
    emu: Emulator, http: requests.Session
) -> None:
    emu.settings.update(
        {"rate_limit_calls": 3, "rate_limit_seconds": 60.0,
         "bulk_rate_limit_calls": 1, "bulk_rate_limit_seconds": 0.3}
    )  # fmt: skip
    assert http.post(emu.url + BULK, json=[], timeout=5).status_code == 200
    refused = http.post(emu.url + BULK, json=[], timeout=5)
    assert refused.status_code == 429
    assert refused.json()["ExceptionMessage"] == MESSAGE.format(1, 0.3)
    assert http.get(emu.url + WHOAMI, timeout=5).status_code == 200  # reads: the account's only
    time.sleep(0.35)
    assert http.post(emu.url + BULK, json=[], timeout=5).status_code == 200  # the 3rd accepted
    over = http.get(emu.url + WHOAMI, timeout=5)
    assert over.json()["ExceptionMessage"] == MESSAGE.format(3, 60)


@pytest.mark.parametrize(
    "changes",
    [{"rate_limit_response": 404}, {"rate_limit_response": "200"},
     {"bulk_rate_limit_calls": 0}, {"bulk_rate_limit_seconds": 0}],
)  # fmt: skip
def test_bad_rate_limit_settings_are_refused(emu: Emulator, changes: dict[str, object]) -> None:
    response = requests.post(emu.url + "/_emulator/settings", json=changes, timeout=5)
    assert response.status_code == 400


SETTINGS = (
    "import os, requests; s = requests.get(os.environ['LSQ_HOST'] + '/_emulator/settings', "
    "timeout=5).json(); print(s['rate_limit_calls'], s['rate_limit_seconds'], "
    "s['bulk_rate_limit_calls'], s['bulk_rate_limit_seconds'], s['rate_limit_response'])"
)


@pytest.mark.parametrize(
    ("options", "settings"),
    [
        ([], "25 5.0 None 5.0 429"),
        (["--plan", "super", "--rate-limit-response", "200"], "20 5.0 10 5.0 200"),
        (["--plan", "lite", "--rate-limit", "3/1"], "3 1.0 1 5.0 429"),
        (["--plan", "pro", "--bulk-rate-limit", "off", "--rate-limit-response", "403"],
         "10 5.0 None 5.0 403"),
        (["--bulk-rate-limit", "2/0.5"], "25 5.0 2 0.5 429"),
    ],
)  # fmt: skip
def test_the_command_line_sets_the_limits_and_the_plans_presets(
    options: list[str], settings: str, capfd: pytest.CaptureFixture[str]
) -> None:
    args = ["emulator", "run", "--opportunities", "0", *options]
    with pytest.raises(SystemExit) as done:
        main([*args, "--", sys.executable, "-c", SETTINGS])
    assert done.value.code == 0
    assert capfd.readouterr().out == settings + "\n"


def test_the_plans_are_the_documented_ones() -> None:
    assert json.loads(json.dumps(PLANS)) == {
        "lite": [[2, 5.0], [1, 5.0]],
        "pro": [[10, 5.0], [5, 5.0]],
        "super": [[20, 5.0], [10, 5.0]],
        "enterprise": [[25, 5.0], [1, 5.0]],
    }


def test_a_persons_edits_through_the_admin_surface_need_no_keys_and_no_budget(
    emu: Emulator,
) -> None:
    emu.settings.update({"rate_limit_calls": 1, "rate_limit_seconds": 60.0})
    loan = "c5a7f37c-b789-44c9-929b-74aa6250b539"
    edit = [{"ProspectOpportunityId": loan, "OpportunityEventCode": 12000,
             "Fields": [{"SchemaName": "mx_Custom_9", "Value": "by hand"}]}]  # fmt: skip
    for _ in range(2):
        done = requests.post(emu.url + "/_emulator/edits", json=edit, timeout=5)
        assert done.json() == {"Response": [{"RowNumber": 1, "OpportunityUpdated": True}]}
    stored = requests.get(f"{emu.url}/_emulator/opportunities/{loan}", timeout=5).json()
    assert stored["fields"]["mx_Custom_9"] == "by hand"
    assert log(emu) == []
    assert requests.post(emu.url + "/_emulator/edits", json={}, timeout=5).status_code == 400
