"""No key in any exception text, log line, repr or trace file, whatever goes wrong."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from lsq_helpers import (
    OTHER_ACCESS_KEY,
    OTHER_SECRET_KEY,
    FakeClock,
    Reply,
    Serve,
    Sleeps,
    api_log,
    closed_port_url,
    wait_for_log,
)

from lsqsync.emulator.server import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator
from lsqsync.errors import ApiError
from lsqsync.lsq import BulkUpdateItem, LsqClient, RateLimiter
from lsqsync.lsq.trace import TraceFile

KEYS = (DEMO_ACCESS_KEY, DEMO_SECRET_KEY, OTHER_ACCESS_KEY, OTHER_SECRET_KEY)
ITEM = BulkUpdateItem("4f530c63-4c93-4150-8b8e-83487befb3b2", 12003, {"Status": "Won"})


def texts_of(error: ApiError) -> list[str]:
    return [
        str(error),
        repr(error),
        str(error.args),
        error.endpoint,
        error.exception_type or "",
        error.exception_message or "",
    ]


def test_no_key_in_anything_the_error_cases_produce(
    make_client: Callable[..., LsqClient],
    emu: Emulator,
    serve: Serve,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3's connection and request lines too
    texts: list[str] = []
    errors: list[ApiError] = []
    trace = TraceFile(tmp_path / "trace.jsonl")  # every client below writes its exchanges
    traced = [trace.observer()]

    def make(**options: object) -> LsqClient:
        return make_client(observers=traced, **options)

    def expect_error(call: Callable[[], object]) -> None:
        with pytest.raises(ApiError) as caught:
            call()
        errors.append(caught.value)

    # Refused keys (the server rejects the non-demo keys).
    wrong = make(access_key=OTHER_ACCESS_KEY, secret_key=OTHER_SECRET_KEY)
    expect_error(wrong.who_am_i)
    texts += [repr(wrong), repr(vars(wrong)), repr(vars(wrong._transport))]

    # The demo keys, accepted, through every failure the emulator can inject.
    # a fake clock: the limit of 1 call per 60 s learned below costs no real minute
    clock = FakeClock()
    limiter = RateLimiter(25, 5.0, clock=clock, sleep=clock.sleep)
    client = make(max_retries=1, rate_limit_retries=1, limiter=limiter)
    texts += [repr(client), repr(client.limiter), repr(vars(client._transport))]
    emu.settings.fault_rate = 1.0
    expect_error(client.users)
    emu.settings.fault_rate = 0.0
    emu.settings.drop_rate = 1.0
    expect_error(lambda: client.bulk_update([ITEM]))
    expect_error(client.who_am_i)
    emu.settings.drop_rate = 0.0
    expect_error(
        lambda: client.bulk_update(
            [BulkUpdateItem(ITEM.opportunity_id, 12003, {"mx_Custom_6": "x"})]
        )
    )
    expect_error(lambda: client.opportunity_type(1))
    expect_error(lambda: client._transport.send("GET", "/v2/Nowhere.svc/Get"))
    emu.settings.latency_ms = 400
    expect_error(make(timeout=(1.0, 0.05), max_retries=0).who_am_i)
    emu.settings.latency_ms = 0
    wait_for_log(emu.url, len(api_log(emu.url)) + 1)  # let the timed-out call finish
    emu.settings.update({"rate_limit_calls": 1, "rate_limit_seconds": 60.0})
    expect_error(lambda: [client.who_am_i() for _ in range(3)])
    expect_error(make(host=closed_port_url()).who_am_i)

    # A server that echoes the keys back in every place it can.
    echo = f"bad key {OTHER_ACCESS_KEY} / {quote(OTHER_SECRET_KEY, safe='')}"
    _, echoing = serve(
        Reply(
            500,
            {"Status": "Error", "ExceptionType": f"MX{OTHER_SECRET_KEY}", "ExceptionMessage": echo},
        ),
        Reply(302, b"", {"Location": f"https://x.example.com/?secretKey={OTHER_SECRET_KEY}"}),
        Reply(400, echo.encode(), {"Content-Type": "text/plain"}),
        observers=traced,
    )
    for _ in range(3):
        expect_error(echoing.users)
    for error in errors:
        texts += texts_of(error)
    texts.append(caplog.text)
    trace.close()
    traced_text = trace.path.read_text()
    texts.append(traced_text)

    everything = "\n".join(texts)
    assert len(errors) == 13
    assert traced_text.count("\n") > len(errors)  # each case, with its retries, is traced
    assert "MX***" in traced_text  # the echoed key was scrubbed from the traced body too
    assert "lsq: retry" in caplog.text  # the retries were logged
    assert "***" in str(errors[-1])  # the echoed key was scrubbed, not just absent
    for key in KEYS:
        assert key not in everything
        assert quote(key, safe="") not in everything


def test_no_key_in_what_the_emulator_logged(client: LsqClient, emu: Emulator) -> None:
    client.who_am_i()
    client.user_by_email("george.bailey@example.com")
    logged = repr(emu.requests)
    assert "UserByAccessKey.Get" in logged
    for key in KEYS:
        assert key not in logged


def test_no_key_in_the_retry_log_of_a_connection_failure(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = LsqClient(
        closed_port_url(), DEMO_ACCESS_KEY, DEMO_SECRET_KEY, limiter=None, sleep=Sleeps()
    )
    with client, pytest.raises(ApiError):
        client.who_am_i()
    assert caplog.text.count("lsq: retry") == 3
    for key in KEYS:
        assert key not in caplog.text


ODD_ACCESS = "u$r-access\\key\"quoted'-0000"
ODD_SECRET = "secret\\with\"quotes'and\\backslashes-0000000000"


def _fragments(key: str, size: int = 8) -> set[str]:
    return {key[i : i + size] for i in range(len(key) - size + 1)}


@pytest.mark.parametrize(
    "body",
    [
        # an error page that echoes the request's headers, with the key where the 160-character
        # snippet is cut
        lambda: (
            "<html><body><h1>Bad gateway</h1><p>"
            + "x" * 120
            + "</p><pre>x-LSQ-AccessKey: "
            + ODD_ACCESS
            + "\nx-LSQ-SecretKey: "
            + ODD_SECRET
            + "</pre></body></html>"
        ).encode(),
        # the same echo, escaped as JSON and as Python would quote it
        lambda: ("echo: " + json.dumps(ODD_SECRET) + " " + json.dumps(ODD_ACCESS)).encode(),
        lambda: ("echo: " + repr(ODD_SECRET) + " " + repr(ODD_ACCESS)).encode(),
    ],
    ids=["html-cut", "json-escaped", "repr-escaped"],
)
def test_keys_are_removed_before_a_body_is_cut_or_quoted(
    serve: Serve, body: Callable[[], bytes], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    stub, _ = serve(Reply(502, body()))
    trace = TraceFile(tmp_path / "trace.jsonl")
    client = LsqClient(
        stub.url, ODD_ACCESS, ODD_SECRET, limiter=None, max_retries=0, observers=[trace.observer()]
    )
    with pytest.raises(ApiError) as caught:
        client.who_am_i()
    trace.close()
    traced = trace.path.read_text()
    assert "***" in traced  # the whole body is traced, less the keys
    shown = "\n".join([*texts_of(caught.value), caplog.text, traced])
    assert "Bad gateway" in shown or "echo:" in shown  # the body is shown, less the keys
    leaked = {f for key in (ODD_ACCESS, ODD_SECRET) for f in _fragments(key) if f in shown}
    assert leaked == set()
    client.close()
