"""The trace of HTTP exchanges (``--trace FILE``): one JSON line per attempt, private, masked,
whole under concurrency, and never in the way of the call it records."""

from __future__ import annotations

import json
import logging
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lsq_helpers import Reply, Serve, closed_port_url

from lsqsync.emulator.server import Emulator
from lsqsync.errors import ApiError, ConfigError
from lsqsync.lsq import BulkUpdateItem, LsqClient
from lsqsync.lsq.trace import Exchange, TraceFile, mask_body

PHONE = "+91-98450 12345"
MASK = ("mx_custom_11",)  # masks mx_Custom_11 whatever the case


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def trace(tmp_path: Path) -> Iterator[TraceFile]:
    tracing = TraceFile(tmp_path / "trace.jsonl")
    yield tracing
    tracing.close()


def test_every_exchange_is_one_private_json_line_with_masked_fields(
    make_client: Callable[..., LsqClient], trace: TraceFile
) -> None:
    client = make_client(observers=[trace.observer(MASK)])
    client.who_am_i()
    client.opportunity_type(12003)
    first = next(client.search_opportunities(12003, ["Status", "mx_Custom_11"], 1))
    phone = first.values["mx_Custom_11"]
    assert phone
    (read,) = client.opportunities_by_id(12003, [first.id], ["mx_Custom_11"])
    assert read.values["mx_Custom_11"] == phone
    (result,) = client.bulk_update([BulkUpdateItem(first.id, 12003, {"mx_Custom_11": PHONE})])
    assert result.outcome == "applied"
    trace.close()

    text = trace.path.read_text()
    assert stat.S_IMODE(trace.path.stat().st_mode) == 0o600
    assert PHONE not in text
    assert phone not in text
    entries = lines(trace.path)
    assert [(e["method"], e["path"].rsplit("/", 1)[-1], e["status"]) for e in entries] == [
        ("GET", "UserByAccessKey.Get", 200),
        ("GET", "GetOpportunityTypeMetadata?code=12003", 200),
        ("POST", "BySearchParameter", 200),
        ("POST", "GetOpportunitiesById", 200),
        ("POST", "ByOpportunityId", 200),
    ]
    assert list(entries[0]) == [
        "time", "method", "path", "attempt", "status", "duration_ms", "error", "request",
        "response_headers", "response",
    ]  # fmt: skip
    assert entries[0]["time"].endswith("Z")
    assert entries[0]["response"]["Name"].endswith("Admin")
    assert "Date" in entries[0]["response_headers"]
    assert entries[2]["response"]["List"][0]["mx_Custom_11"] == "***"
    assert entries[2]["response"]["List"][0]["Status"] in ("Open", "Won", "Lost")
    assert entries[3]["response"][0]["Opportunities"][0]["mx_Custom_11"] == "***"
    assert entries[4]["request"][0]["Fields"] == [{"SchemaName": "mx_Custom_11", "Value": "***"}]


def test_refusals_retries_and_lost_connections_are_lines_too(
    serve: Serve, make_client: Callable[..., LsqClient], emu: Emulator, trace: TraceFile
) -> None:
    _, client = serve(
        Reply(429, {"Status": "Error", "ExceptionMessage": "Too many calls"}),
        Reply(200, [{"ID": "u1", "EmailAddress": "a@example.com", "StatusCode": 0}]),
        observers=[trace.observer()],
    )
    assert len(client.users()) == 1
    emu.settings.drop_rate = 1.0
    dropped = make_client(observers=[trace.observer()], max_retries=1)
    with pytest.raises(ApiError):
        dropped.users()
    refused = make_client(host=closed_port_url(), observers=[trace.observer()], max_retries=0)
    with pytest.raises(ApiError):
        refused.who_am_i()
    trace.close()

    entries = lines(trace.path)
    assert [(e["attempt"], e["status"], (e["error"] or "").split(":")[0]) for e in entries] == [
        (1, 429, "http_429_rate_limited"),
        (2, 200, ""),
        (1, None, "connection_dropped"),
        (2, None, "connection_dropped"),
        (1, None, "connect_error"),
    ]
    assert entries[0]["response"]["ExceptionMessage"] == "Too many calls"
    assert entries[2]["response"] is None


def test_concurrent_calls_write_whole_lines(
    make_client: Callable[..., LsqClient], trace: TraceFile
) -> None:
    client = make_client(observers=[trace.observer()])

    def work() -> None:
        for _ in range(6):
            client.users()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    trace.close()
    entries = lines(trace.path)  # every line parses: none was interleaved with another
    assert len(entries) == 48
    assert {e["status"] for e in entries} == {200}


def test_an_existing_file_is_emptied_and_made_private(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text("an older trace\n")
    path.chmod(0o644)
    TraceFile(path).close()
    assert path.read_text() == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_trace_that_cannot_be_opened_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--trace .*/missing/t.jsonl: cannot write: "):
        TraceFile(tmp_path / "missing" / "t.jsonl")


def test_a_trace_that_cannot_be_written_stops_without_failing_the_call(
    make_client: Callable[..., LsqClient], trace: TraceFile, caplog: pytest.LogCaptureFixture
) -> None:
    class Full:
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            pass

    trace.close()
    trace._file = Full()  # type: ignore[assignment]
    client = make_client(observers=[trace.observer()])
    assert client.who_am_i().user.name.endswith("Admin")
    assert client.who_am_i().user.name.endswith("Admin")
    assert caplog.text.count("trace: stopped writing") == 1


def test_an_observer_that_breaks_does_not_fail_the_call(
    make_client: Callable[..., LsqClient], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(exchange: Exchange) -> None:
        raise RuntimeError("observer bug")

    client = make_client(observers=[broken])
    assert client.who_am_i().user.name.endswith("Admin")
    assert "lsq: observer failed: RuntimeError: observer bug" in caplog.text


def test_masking_reaches_every_shape_and_the_echo_of_a_written_value(tmp_path: Path) -> None:
    details = {"Fields": [{"SchemaName": "MX_CUSTOM_11", "Value": PHONE, "DataType": "String"}]}
    assert mask_body(details, MASK) == {
        "Fields": [{"SchemaName": "MX_CUSTOM_11", "Value": "***", "DataType": "String"}]
    }
    empty = [{"mx_Custom_11": None, "mx_Custom_9": ""}]
    assert mask_body(empty, MASK) == empty  # an empty value is no secret
    tracing = TraceFile(tmp_path / "t.jsonl")
    tracing.write(
        Exchange(
            0.0,
            "POST",
            "/v2/x",
            request=[{"Fields": [{"SchemaName": "mx_Custom_11", "Value": PHONE}]}],
            status=200,
            response={"Response": [{"Message": f"'{PHONE}' is too long for mx_Custom_11"}]},
            error=f"row failed: {PHONE}",
        ),
        MASK,
    )
    tracing.close()
    (entry,) = lines(tracing.path)
    assert entry["time"] == "1970-01-01T00:00:00.000Z"
    assert entry["response"] == {"Response": [{"Message": "'***' is too long for mx_Custom_11"}]}
    assert entry["error"] == "row failed: ***"


def test_trace_lines_name_no_key_even_when_the_server_echoes_them(
    serve: Serve, trace: TraceFile, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    from lsq_helpers import OTHER_ACCESS_KEY, OTHER_SECRET_KEY

    _, client = serve(
        Reply(200, {"Id": "u1", "Echo": {OTHER_ACCESS_KEY: OTHER_SECRET_KEY}}),
        observers=[trace.observer()],
    )
    client.who_am_i()
    trace.close()
    text = trace.path.read_text()
    assert '{"***": "***"}' in text
    for key in (OTHER_ACCESS_KEY, OTHER_SECRET_KEY):
        assert key not in text
