"""A saved plan is applied only as it was made: every member bound by its digest, and only to
the host it was made against — checked by ``show`` and ``apply`` through the real CLI against
the emulator."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import requests
from cli_helpers import run
from crm_helpers import example_project, requests_log, writes

from lsqsync.emulator import Emulator, Settings

NOW = ["--now", "2026-11-27 10:00:00"]
DEAL = "4f530c63-4c93-4150-8b8e-83487befb3b2"  # the documentation's deal: in every emulator


def stored(emu: Emulator, opp_id: str) -> dict[str, str | None]:
    answer = requests.get(f"{emu.url}/_emulator/opportunities/{opp_id}", timeout=5)
    fields: dict[str, str | None] = answer.json()["fields"]
    return fields


@pytest.fixture
def here(connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def project(root: Path, rules: str) -> None:
    (root / "rules").mkdir(parents=True)
    (root / "lsqsync.yml").write_text(
        "version: 1\nrules: [rules/]\nstate: .lsqsync/state.db\n"
        "rate_limit: {calls: 1000, per_seconds: 1}\n"
    )
    (root / "rules" / "r.yml").write_text("version: 1\nrules:\n" + textwrap.indent(
        textwrap.dedent(rules).strip("\n") + "\n", "  "))  # fmt: skip


# Each member of a saved plan the issue names, edited as a hand (or a script) might.
EDITS: list[Any] = [
    pytest.param(lambda d: d.update(expires_at="2099-01-01T00:00:00Z"), id="expiry"),
    pytest.param(lambda d: d["state"].update(lineage=None), id="lineage"),
    pytest.param(lambda d: d["inputs"].update(host="http://127.0.0.1:1"), id="host"),
    pytest.param(lambda d: d["labels"].update({"x": "Ernie <ernie@example.com>"}), id="labels"),
    pytest.param(lambda d: d.update(mask=[]), id="mask"),
    pytest.param(lambda d: d["summary"]["types"][0].update(name="Ernie"), id="summary"),
    pytest.param(lambda d: d["cost"].update(read_calls=0), id="cost"),
    pytest.param(lambda d: d.update(created_at="2026-01-01T00:00:00Z"), id="created_at"),
]


def test_an_edit_of_any_member_is_refused_by_show_and_by_apply(
    connected: Emulator, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example_project(here)
    # a first apply gives the state file a lineage and a serial, which the next plan records
    assert run(["apply", "--auto-approve", "--target", "flag-high-value"], capsys)[0] == 0
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    saved = json.loads((here / "p.json").read_text())
    assert saved["state"]["lineage"] is not None
    assert saved["mask"] == ["mx_Custom_11"]
    writes_before = len(writes(connected))
    for param in EDITS:
        (edit,), name = param.values, param.id
        data = json.loads(json.dumps(saved))
        edit(data)
        assert data != saved, name
        (here / "edited.json").write_text(json.dumps(data, indent=2))
        for command in (["show", "edited.json"], ["apply", "edited.json"]):
            code, out, err = run(command, capsys)
            assert (code, out) == (1, ""), (name, command)
            assert err.startswith(
                f"error: edited.json: the plan was modified after it was made: its digest is "
                f"{saved['digest'][:8]}… but its content hashes to "
            ), (name, command, err)
            assert err.endswith("…; make a new plan\n"), (name, command, err)
    assert len(writes(connected)) == writes_before
    # the plan itself, untouched, is shown and applied
    assert run(["show", "p.json"], capsys)[0] == 0
    assert run(["apply", "p.json"], capsys)[0] == 0


def test_a_plan_of_the_first_format_is_refused_by_show_and_by_apply(
    connected: Emulator, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example_project(here)
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    saved = json.loads((here / "p.json").read_text())
    saved["format_version"] = 1
    for change in saved["changes"]:
        del change["premises"]
    (here / "p.json").write_text(json.dumps(saved))
    for command in (["show", "p.json"], ["apply", "p.json"]):
        code, out, err = run(command, capsys)
        assert (code, out) == (1, "")
        assert err.startswith("error: p.json: a plan of format_version 1, which lsqsync ")
        assert err.endswith("Make a new plan (lsqsync plan --out FILE) and review it\n")
    assert writes(connected) == []


def test_a_plan_applied_to_another_host_is_refused_naming_both(
    connected: Emulator, here: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    opp = DEAL  # the documentation's deal: in every emulator's data
    project(here, f"""
    - name: note
      opportunity_type: 12003
      ids: [{opp}]
      set: {{mx_Custom_9: from the plan}}
    """)  # fmt: skip
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    with Emulator(opportunities=4, settings=Settings(rate_limit_calls=None)) as other:
        assert other.store.get(opp) is not None  # it would have been written
        monkeypatch.setenv("LSQ_HOST", other.url)
        code, out, err = run(["apply", "p.json"], capsys)
        assert (code, out) == (1, "")
        assert err == (
            f"error: p.json: refused: the plan was made against {connected.url}, but apply would "
            f"write to {other.url} (LSQ_HOST or host: in lsqsync.yml): apply it with the host it "
            "was made for, or make a new plan against this one\n"
        )
        assert requests_log(other) == []
        assert stored(other, opp)["mx_Custom_9"] != "from the plan"
    # the same host, spelt another way
    monkeypatch.setenv("LSQ_HOST", connected.url.replace("http://", "HTTP://") + "/")
    assert run(["apply", "p.json"], capsys)[0] == 0
    assert stored(connected, opp)["mx_Custom_9"] == "from the plan"
