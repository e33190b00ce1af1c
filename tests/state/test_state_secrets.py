"""The state never holds a key, on either backend: the module never receives one, and this
checks the bytes (the file, or every row of the database) anyway after a realistic run made
with the keys in the environment."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from state_helpers import DIGEST, OPP_A, OPP_B, OPP_C, Place, result

from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY
from lsqsync.lsq import BulkUpdateItem
from lsqsync.state.report import RUN_FORMATS, render_run, render_runs

KEYS = (DEMO_ACCESS_KEY, DEMO_SECRET_KEY)


def test_no_key_in_the_state_after_a_realistic_run(
    place: Place,
    state_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LSQ_ACCESS_KEY", DEMO_ACCESS_KEY)
    monkeypatch.setenv("LSQ_SECRET_KEY", DEMO_SECRET_KEY)
    monkeypatch.setenv("LSQ_HOST", "http://127.0.0.1:8080")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/crm-rules")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    items = [
        BulkUpdateItem(o, 12003, {"Status": "Won", "mx_Custom_1": "x"}) for o in (OPP_A, OPP_B)
    ]
    payload = json.dumps([i.to_api() for i in items], separators=(",", ":")).encode()
    outputs: list[str] = []
    with place.open() as sf:
        sf.acquire_lock("apply")
        run = sf.begin_run(DIGEST, overrides=["ignore-rule-changes"])
        batch = sf.begin_batch(run.id, [OPP_A, OPP_B], payload)
        sf.record_batch_result(
            run.id,
            batch.batch,
            "done",
            [
                result(OPP_A),
                result(OPP_A, "mx_Custom_1", before=None, after="x"),
                result(OPP_B, status="failed", message="MXInvalidInputException: Status"),
                result(OPP_B, "mx_Custom_1", status="failed", message="row failed"),
            ],
        )
        unknown = sf.begin_batch(run.id, [OPP_C], b"[]")
        sf.record_batch_result(run.id, unknown.batch, "unknown", [], message="read timed out")
        sf.resolve_batches(run.id, [unknown], [result(OPP_C)])
        sf.finish_run(run.id, "partial")
        for fmt in RUN_FORMATS:
            outputs.append(render_run(sf.run(run.id), sf.results(run.id), fmt))
        outputs.append(render_runs(sf.runs()))
        outputs.append(repr((sf.runs(), sf.batches(run.id), sf.last_written_values())))
    if place.postgres_url is None:  # closed: all of it is in the file
        assert sorted(state_path.parent.iterdir()) == [state_path]
    data = place.dump()
    assert b"acme/crm-rules/actions/runs/42" in data  # the run was recorded...
    for key in KEYS:
        for form in (key.encode(), key.encode("utf-16-le"), key.replace("$", "%24").encode()):
            assert form not in data  # ...without a key in any form
        for text in [*outputs, caplog.text]:
            assert key not in text
