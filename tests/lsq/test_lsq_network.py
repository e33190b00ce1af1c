"""Transport failures: refused connections, dropped connections and timeouts, for reads
(idempotent: retried) and for the write (never re-sent: its outcome is unknown)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from lsq_helpers import (
    OTHER_ACCESS_KEY,
    OTHER_SECRET_KEY,
    Reply,
    Serve,
    Sleeps,
    api_log,
    closed_port_url,
    stored,
    wait_for_log,
)

from lsqsync.emulator.server import Emulator
from lsqsync.errors import ConnectionFailed, OutcomeUnknown
from lsqsync.lsq import BulkUpdateItem, LsqClient

DEAL = "4f530c63-4c93-4150-8b8e-83487befb3b2"
WRITE = "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId"


def retry_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage().split(" reason=")[1].split(" ")[0]
        for r in caplog.records
        if r.getMessage().startswith("lsq: retry ")
    ]


def test_a_dropped_write_is_an_unknown_outcome_after_one_request(
    client: LsqClient, emu: Emulator, sleeps: Sleeps
) -> None:
    emu.settings.drop_rate = 1.0
    with pytest.raises(OutcomeUnknown) as caught:
        client.bulk_update(
            [BulkUpdateItem(DEAL, 12003, {"Status": "Won", "mx_Custom_9": "dropped"})]
        )
    error = caught.value
    assert "the outcome is unknown" in str(error)
    assert "may or may not have been applied" in str(error)
    assert (error.endpoint, error.status) == (WRITE, None)
    assert [(e["path"], e["dropped"]) for e in api_log(emu.url)] == [(WRITE, True)]
    assert sleeps == []
    # The work was done before the connection was cut: the change did land.
    assert stored(emu.url, DEAL)["mx_Custom_9"] == "dropped"
    assert stored(emu.url, DEAL)["Status"] == "Won"


def test_dropped_reads_are_retried_then_an_unknown_outcome(
    make_client: Callable[..., LsqClient],
    emu: Emulator,
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emu.settings.drop_rate = 1.0
    client = make_client(max_retries=2)
    with pytest.raises(OutcomeUnknown, match="the outcome is unknown") as caught:
        client.users()
    assert "gave up after 3 attempts" in str(caught.value)
    assert [e["dropped"] for e in api_log(emu.url)] == [True] * 3
    assert len(sleeps) == 2
    reasons = retry_reasons(caplog)
    assert len(reasons) == 2
    # RemoteDisconnected here; a reset connection would read ConnectionResetError
    assert all(r.startswith("connection_dropped:") for r in reasons)


def test_a_dropped_read_that_then_succeeds(
    make_client: Callable[..., LsqClient], emu: Emulator, sleeps: Sleeps
) -> None:
    emu.settings.drop_rate = 0.5
    client = make_client(max_retries=30, backoff_base=0.0)
    assert [len(client.users()) for _ in range(6)] == [10] * 6
    dropped = [e["dropped"] for e in api_log(emu.url)]
    assert dropped.count(False) == 6
    assert dropped.count(True) == len(sleeps)


def test_a_write_that_times_out_is_an_unknown_outcome_after_one_request(
    make_client: Callable[..., LsqClient], emu: Emulator, sleeps: Sleeps
) -> None:
    emu.settings.latency_ms = 600  # 0.3 s before the emulator even looks at the call
    client = make_client(timeout=(2.0, 0.1))
    with pytest.raises(OutcomeUnknown, match=r"no answer within 0.1s: the outcome is unknown"):
        client.bulk_update([BulkUpdateItem(DEAL, 12003, {"mx_Custom_9": "late"})])
    assert sleeps == []
    (entry,) = wait_for_log(emu.url, 1)
    assert (entry["path"], entry["status"]) == (WRITE, 200)  # it was processed all the same
    assert stored(emu.url, DEAL)["mx_Custom_9"] == "late"


def test_reads_that_time_out_are_retried_then_an_unknown_outcome(
    make_client: Callable[..., LsqClient],
    emu: Emulator,
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emu.settings.latency_ms = 600
    client = make_client(timeout=(2.0, 0.1), max_retries=1)
    with pytest.raises(OutcomeUnknown, match="gave up after 2 attempts"):
        client.who_am_i()
    assert len(sleeps) == 1
    assert retry_reasons(caplog) == ["read_timeout"]
    assert len(wait_for_log(emu.url, 2)) == 2


def test_a_refused_connection_is_retried_then_connection_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sleeps = Sleeps()
    url = closed_port_url()
    client = LsqClient(
        url, OTHER_ACCESS_KEY, OTHER_SECRET_KEY, limiter=None, sleep=sleeps, max_retries=3
    )
    with client, pytest.raises(ConnectionFailed) as caught:
        client.bulk_update([BulkUpdateItem(DEAL, 12003, {"Status": "Won"})])
    error = caught.value
    assert f"could not connect to {url}" in str(error)
    assert "nothing was sent" in str(error)
    assert "ConnectionRefusedError" in str(error)
    assert "gave up after 4 attempts" in str(error)
    assert (error.endpoint, error.status) == (WRITE, None)
    assert len(sleeps) == 3  # a write is retried too: nothing reached the server
    assert retry_reasons(caplog) == ["connect_error:ConnectionRefusedError"] * 3


def test_a_dropped_write_on_a_scripted_server_is_sent_once(serve: Serve, sleeps: Sleeps) -> None:
    stub, client = serve(Reply(drop=True), Reply(body={"Response": []}))
    with pytest.raises(OutcomeUnknown):
        client.bulk_update([BulkUpdateItem(DEAL, 12003, {"Status": "Won"})])
    assert len(stub.seen) == 1
    assert sleeps == []


def test_a_tls_failure_is_connection_failed_at_once(serve: Serve, sleeps: Sleeps) -> None:
    stub, _ = serve(Reply(body=[]))
    # https:// to a plain-HTTP server: the handshake fails before any request is sent.
    tls_url = stub.url.replace("http://", "https://")
    client = LsqClient(tls_url, OTHER_ACCESS_KEY, OTHER_SECRET_KEY, limiter=None, sleep=sleeps)
    with (
        client,
        pytest.raises(ConnectionFailed, match=re.escape(f"TLS with {tls_url} failed")) as caught,
    ):
        client.users()
    assert "nothing was sent" in str(caught.value)
    assert "Certificate verification stays on" in str(caught.value)
    assert stub.seen == []
    assert sleeps == []
