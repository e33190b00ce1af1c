"""``lsqsync --trace FILE`` on every command that talks to LeadSquared: each exchange a JSON line,
the file private, no key and no value of a ``mask:`` field in it."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run
from crm_helpers import example_project, writes

from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator
from lsqsync.plan.model import from_json

PHONE = "+91-98450 12345"
PHONE_RULE = f"""version: 1
rules:
  - name: set-phone
    opportunity_type: 12003
    set:
      mx_Custom_11: "{PHONE}"
"""


def traced(path: Path) -> list[dict[str, Any]]:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert entries, f"{path.name} is empty"
    return entries


def test_every_command_that_reads_or_writes_leadsquared_is_traced(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    example_project(tmp_path)  # mask: [mx_Custom_11]
    (tmp_path / "rules" / "phone.yml").write_text(PHONE_RULE)
    commands = {
        "validate": ["validate", "--online"],
        "plan": ["plan", "--out", "p.json", "--allow-large"],
        "apply": ["apply", "p.json", "--workers", "4"],
        "drift": ["drift"],
        "whoami": ["whoami"],
        "types": ["types", "show", "12003"],
        "list": ["opportunities", "list", "--type", "12003", "--columns", "mx_Custom_11"],
        "doctor": ["doctor"],
    }
    for name, args in commands.items():
        code, _, err = run(["--trace", f"{name}.jsonl", *args], capsys)
        assert code in (0, 2), (name, err)
    code, out, _ = run(["state", "runs", "--format", "json"], capsys)
    run_id = json.loads(out)["runs"][-1]["id"]
    assert run(["--trace", "rollback.jsonl", "rollback", run_id, "--out", "r.json"], capsys)[0] == 0

    plan = from_json(json.loads((tmp_path / "p.json").read_text()))
    phones = {
        value
        for change in plan.changes
        for f in change.changes
        if f.field == "mx_Custom_11"
        for value in (f.before, f.after)
        if value
    }
    assert PHONE in phones
    assert len(phones) > 1  # the values read from the CRM too
    for name in [*commands, "rollback"]:
        path = tmp_path / f"{name}.jsonl"
        text = path.read_text()
        for secret in (DEMO_ACCESS_KEY, DEMO_SECRET_KEY, *phones):
            assert secret not in text, (name, secret)
        entries = traced(path)
        assert all(e["status"] == 200 for e in entries), name

    sent = [e for e in traced(tmp_path / "apply.jsonl") if e["path"].endswith("ByOpportunityId")]
    assert len(sent) == len(writes(connected)) >= 2  # several batches, from 4 workers
    fields = [f for e in sent for item in e["request"] for f in item["Fields"]]
    assert {"SchemaName": "mx_Custom_11", "Value": "***"} in fields
    searched = next(
        e for e in traced(tmp_path / "plan.jsonl") if e["path"].endswith("BySearchParameter")
    )
    assert {row.get("mx_Custom_11") for row in searched["response"]["List"]} <= {"***", None}


def test_a_trace_file_that_cannot_be_written_stops_the_command_before_anything_is_done(
    connected: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["--trace", str(tmp_path / "no" / "t.jsonl"), "whoami"], capsys)
    assert code == 1
    assert out == ""
    assert err.startswith(f"error: --trace {tmp_path}/no/t.jsonl: cannot write: ")
    assert writes(connected) == []
