"""Auth, the rate limit, injected faults, drops and latency, the admin surface and the data."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.emulator.store import generate

WHOAMI = "/v2/Authentication.svc/UserByAccessKey.Get"
USERS = "/v2/UserManagement.svc/Users.Get"
BULK = "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId"
LOAN = "c5a7f37c-b789-44c9-929b-74aa6250b539"


def log(emu: Emulator) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = requests.get(
        emu.url + "/_emulator/requests", timeout=5
    ).json()["requests"]
    return entries


def stored_amount(emu: Emulator) -> str:
    fields = requests.get(f"{emu.url}/_emulator/opportunities/{LOAN}", timeout=5).json()["fields"]
    return str(fields["mx_Custom_6"])


def amount_update(value: str) -> list[dict[str, object]]:
    return [
        {
            "ProspectOpportunityId": LOAN,
            "OpportunityEventCode": 12000,
            "Fields": [{"SchemaName": "mx_Custom_6", "Value": value}],
        }
    ]


def test_query_parameter_auth_works_and_is_never_logged(emu: Emulator) -> None:
    response = requests.get(
        emu.url + WHOAMI,
        params={"accessKey": DEMO_ACCESS_KEY, "secretKey": DEMO_SECRET_KEY, "x": "1"},
        timeout=5,
    )
    assert response.status_code == 200
    text = json.dumps(log(emu))
    assert DEMO_SECRET_KEY not in text
    assert DEMO_ACCESS_KEY not in text
    assert log(emu)[0]["query"] == {"x": "1"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-LSQ-AccessKey": DEMO_ACCESS_KEY},
        {"x-LSQ-AccessKey": DEMO_ACCESS_KEY, "x-LSQ-SecretKey": "wrong"},
    ],
)
def test_missing_or_wrong_keys_are_401(emu: Emulator, headers: dict[str, str]) -> None:
    response = requests.get(emu.url + USERS, headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json() == {
        "Status": "Error",
        "ExceptionType": "MXUnAuthorizedAccessException",
        "ExceptionMessage": "Invalid access key or secret key",
    }


def test_unknown_paths_are_404_and_wrong_methods_405(emu: Emulator, http: requests.Session) -> None:
    assert http.get(emu.url + "/v2/Nope.svc/Thing", timeout=5).status_code == 404
    wrong = http.get(emu.url + BULK, timeout=5)
    assert wrong.status_code == 405
    assert wrong.json()["ExceptionMessage"] == f"Use POST for {BULK}."
    assert http.delete(emu.url + USERS, timeout=5).status_code == 405


def test_the_window_counts_every_endpoint_by_arrival(emu: Emulator, http: requests.Session) -> None:
    emu.settings.rate_limit_calls, emu.settings.rate_limit_seconds = 3, 0.4
    statuses = [
        http.get(emu.url + WHOAMI, timeout=5).status_code,
        http.get(emu.url + USERS, timeout=5).status_code,
        http.post(emu.url + BULK, json=[], timeout=5).status_code,
    ]
    refused = http.get(emu.url + USERS, timeout=5)
    requests.get(emu.url + "/_emulator/settings", timeout=5)  # the admin surface never counts
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert (
        refused.json()["ExceptionMessage"] == "API calls exceeded the limit of 3 in 0.4 second(s)"
    )
    first = float(log(emu)[0]["arrived_at"])  # type: ignore[arg-type]
    time.sleep(max(0.0, first + 0.45 - time.time()))
    assert http.get(emu.url + USERS, timeout=5).status_code == 200


def test_unauthenticated_calls_do_not_use_the_budget(emu: Emulator) -> None:
    emu.settings.rate_limit_calls, emu.settings.rate_limit_seconds = 1, 60
    assert requests.get(emu.url + USERS, timeout=5).status_code == 401
    assert (
        requests.get(
            emu.url + USERS,
            headers={"x-LSQ-AccessKey": DEMO_ACCESS_KEY, "x-LSQ-SecretKey": DEMO_SECRET_KEY},
            timeout=5,
        ).status_code
        == 200
    )


def test_an_injected_fault_is_a_transient_500_and_writes_nothing(
    emu: Emulator, http: requests.Session
) -> None:
    before = stored_amount(emu)
    emu.settings.fault_rate = 1.0
    response = http.post(emu.url + BULK, json=amount_update("777"), timeout=5)
    assert response.status_code == 500
    assert not response.json()["ExceptionType"].startswith("MX")
    assert stored_amount(emu) == before


def test_a_dropped_connection_happens_after_the_write(
    emu: Emulator, http: requests.Session
) -> None:
    emu.settings.drop_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        http.post(emu.url + BULK, json=amount_update("888"), timeout=5)
    assert stored_amount(emu) == "888"
    (entry,) = log(emu)
    assert entry["dropped"] is True
    assert entry["status"] is None


def test_latency_is_served_in_parallel(emu: Emulator) -> None:
    emu.settings.latency_ms, emu.settings.jitter_ms = 400, 100
    headers = {"x-LSQ-AccessKey": DEMO_ACCESS_KEY, "x-LSQ-SecretKey": DEMO_SECRET_KEY}

    def call(_: int) -> float:
        started = time.perf_counter()
        requests.get(emu.url + WHOAMI, headers=headers, timeout=5).raise_for_status()
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        durations = list(pool.map(call, range(8)))
    elapsed = time.perf_counter() - started
    assert min(durations) >= 0.3  # 400 ms +/- 100 ms of jitter
    assert elapsed < 8 * 0.3  # parallel, not one after another


def test_the_request_log_records_every_api_call(emu: Emulator, http: requests.Session) -> None:
    http.get(emu.url + USERS, timeout=5)
    http.post(emu.url + BULK, json="{}", timeout=5)
    entries = log(emu)
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("GET", USERS, 200),
        ("POST", BULK, 400),
    ]
    assert all(isinstance(e["arrived_at"], float) for e in entries)
    requests.delete(emu.url + "/_emulator/requests", timeout=5)
    assert log(emu) == []


def test_settings_change_at_run_time(emu: Emulator, http: requests.Session) -> None:
    changed = requests.post(
        emu.url + "/_emulator/settings", json={"fault_rate": 1.0, "latency_ms": 1}, timeout=5
    ).json()
    assert changed["fault_rate"] == 1.0
    assert changed["latency_ms"] == 1
    assert http.get(emu.url + USERS, timeout=5).status_code == 500
    bad = requests.post(emu.url + "/_emulator/settings", json={"nope": 1}, timeout=5)
    assert bad.status_code == 400
    assert "unknown setting 'nope'" in bad.json()["ExceptionMessage"]
    assert requests.post(emu.url + "/_emulator/settings", json=[1], timeout=5).status_code == 400
    assert requests.get(emu.url + "/_emulator/nope", timeout=5).status_code == 404
    missing = requests.get(emu.url + "/_emulator/opportunities/nope", timeout=5)
    assert missing.status_code == 404


def test_reset_restores_the_seeded_data(emu: Emulator, http: requests.Session) -> None:
    before = stored_amount(emu)
    http.post(emu.url + BULK, json=amount_update("999"), timeout=5)
    assert requests.post(emu.url + "/_emulator/reset", timeout=5).json() == {"reset": True}
    assert stored_amount(emu) == before
    assert log(emu) == []


def test_generated_data_is_deterministic() -> None:
    assert generate(7, 40) == generate(7, 40)
    assert generate(7, 40) != generate(8, 40)
    leads, opps = generate(7, 40)
    assert len(opps) == 42
    assert {o[1] for o in opps} == {12000, 12003}
    assert len({o[3] for o in opps}) == len(leads)  # every lead has an opportunity


def test_a_db_file_keeps_its_data_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "emu.db"
    settings = Settings(rate_limit_calls=None)
    headers = {"x-LSQ-AccessKey": DEMO_ACCESS_KEY, "x-LSQ-SecretKey": DEMO_SECRET_KEY}
    with Emulator(db=db, opportunities=4, settings=settings) as emu:
        requests.post(emu.url + BULK, json=amount_update("4242"), headers=headers, timeout=5)
    with Emulator(db=db, opportunities=4, settings=settings) as emu:
        assert stored_amount(emu) == "4242"
    assert db.exists()


@pytest.mark.parametrize(
    "changes",
    [{"fault_rate": "high"}, {"allow_created_on": 1}, {"latency_ms": True}, {"_x": 1},
     {"rate_limit_calls": 2.5}, {"date_zone": 5}, {"date_zone": "Mars/Olympus_Mons"},
     {"date_zone": "../../etc/passwd"}],
)  # fmt: skip
def test_settings_of_the_wrong_type_are_refused(emu: Emulator, changes: dict[str, object]) -> None:
    response = requests.post(emu.url + "/_emulator/settings", json=changes, timeout=5)
    assert response.status_code == 400
    assert emu.settings == Settings(rate_limit_calls=None)


def test_date_zone_is_an_iana_zone_or_nothing(emu: Emulator) -> None:
    for zone in ("Asia/Kolkata", ""):
        response = requests.post(
            emu.url + "/_emulator/settings", json={"date_zone": zone}, timeout=5
        )
        assert response.json()["date_zone"] == zone


def test_the_rate_limit_can_be_switched_off_at_run_time(emu: Emulator) -> None:
    emu.settings.rate_limit_calls = 5
    response = requests.post(
        emu.url + "/_emulator/settings", json={"rate_limit_calls": None}, timeout=5
    )
    assert response.json()["rate_limit_calls"] is None


@pytest.mark.parametrize(
    "changes",
    [{"fault_rate": 7}, {"rate_limit_calls": 0}, {"latency_ms": -1}, {"drop_rate": -0.5}],
)
def test_settings_out_of_range_are_refused(emu: Emulator, changes: dict[str, object]) -> None:
    response = requests.post(emu.url + "/_emulator/settings", json=changes, timeout=5)
    assert response.status_code == 400
    assert "must be in" in response.json()["ExceptionMessage"]


def test_a_bad_content_length_is_400(emu: Emulator) -> None:
    import socket

    host, port = emu.httpd.server_address[:2]
    with socket.create_connection((str(host), port), timeout=5) as conn:
        conn.sendall(f"POST {BULK} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".encode())
        chunks = []
        while chunk := conn.recv(4096):  # the server closes the connection after answering
            chunks.append(chunk)
        answer = b"".join(chunks).decode()
    assert answer.startswith("HTTP/1.1 400 ")
    assert "Invalid Content-Length." in answer


def test_clearing_a_mandatory_field_fails_the_row(emu: Emulator, http: requests.Session) -> None:
    body = [
        {
            "ProspectOpportunityId": LOAN,
            "OpportunityEventCode": 12000,
            "Fields": [{"SchemaName": "Status", "Value": ""}],
        }
    ]
    (row,) = http.post(emu.url + BULK, json=body, timeout=5).json()["Response"]
    assert row["OpportunityUpdated"] is False
    assert row["ExceptionType"] == "MXMandatoryAttributeMissingException"


def test_autoid_values_count_per_type() -> None:
    _, opps = generate(1, 10)
    assert [o[2] for o in opps if o[1] == 12003] == [f"DEAL-{i:06d}" for i in range(1, 7)]


def test_an_emulator_bound_to_every_interface_is_reached_on_loopback() -> None:
    with Emulator(host="0.0.0.0", opportunities=0) as emu:  # noqa: S104
        assert emu.url.startswith("http://127.0.0.1:")
