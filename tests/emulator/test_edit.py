"""emulator edit (a person's edit of a running emulator, from the command line) and the
scenarios of emulator serve/run, end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import requests
from cli_helpers import run

from lsqsync.cli import main
from lsqsync.emulator import Emulator
from lsqsync.emulator.model import USERS
from lsqsync.emulator.store import Store

MARY = next(u for u in USERS if u.first_name == "Mary")
SAM = next(u for u in USERS if u.first_name == "Sam")


def stored(emu: Emulator, opportunity: str) -> dict[str, str | None]:
    fields: dict[str, str | None] = requests.get(
        f"{emu.url}/_emulator/opportunities/{opportunity}", timeout=5
    ).json()["fields"]
    return fields


def test_an_edit_is_a_persons_and_is_what_lsqsync_reads(
    connected: Emulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    deal = "4f530c63-4c93-4150-8b8e-83487befb3b2"  # DEAL-000001: the Bulk Update page's example
    code, out, err = run(
        ["emulator", "edit", "DEAL-000001", "mx_Custom_10=High", "mx_Custom_9=called: keen"],
        capsys,
    )
    assert (code, err) == (0, "")
    fields = stored(connected, deal)
    assert (fields["mx_Custom_10"], fields["mx_Custom_9"]) == ("High", "called: keen")
    assert fields["ModifiedBy"] == MARY.id  # a person, not the API user the keys belong to
    lines = out.splitlines()
    assert lines[1] == (
        f'~ {deal} (type 12003 Enterprise Deal) mx_Custom_9: (empty) -> "called: keen"'
    )
    assert lines[2] == (
        f"Edited by Mary Hatch <mary.hatch@example.com> at {fields['ModifiedOn']} (UTC), as a "
        "person's edit in LeadSquared."
    )
    # FIELD= clears; --as names the person
    code, out, _ = run(
        ["emulator", "edit", deal, "mx_Custom_9=", "--as", SAM.email, "--url", connected.url],
        capsys,
    )
    assert code == 0
    assert out.splitlines()[0].endswith('mx_Custom_9: "called: keen" -> (empty)')
    assert stored(connected, deal)["ModifiedBy"] == SAM.id
    # what lsqsync reads back is the person's edit
    code, out, _ = run(
        ["opportunities", "list", "--type", "12003", "--where", "mx_Custom_15=DEAL-000001",
         "--columns", "mx_Custom_10,ModifiedBy", "--format", "json"],
        capsys,
    )  # fmt: skip
    assert json.loads(out) == [{"id": deal, "mx_Custom_10": "High", "ModifiedBy": SAM.email}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["DEAL-000001", "Stauts=Won"],
         "error: emulator edit: 'Stauts' is not a field of type 12003 (did you mean 'Status'?)"),
        (["DEAL-000001", "Status"],
         "error: emulator edit: 'Status': expected FIELD=VALUE (FIELD= clears it)"),
        (["DEAL-999999", "Status=Won"], "emulator at URL: no opportunity 'DEAL-999999'"),
        (["DEAL-000001", "mx_Custom_6=lots"],
         "emulator at URL: Field name : 'mx_Custom_6' of datatype : 'Number' cannot accept the "
         "value 'lots'."),
        (["DEAL-000001", "mx_Custom_1="],
         "error: emulator: MXMandatoryAttributeMissingException: Field name : 'mx_Custom_1' of "
         "datatype : 'String' is mandatory."),
        (["DEAL-000001", "Status=Won", "--as", "henry.potter@example.com"],
         "emulator at URL: henry.potter@example.com is an inactive user: inactive users cannot "
         "sign in"),
    ],
)  # fmt: skip
def test_a_bad_edit_is_an_error_and_changes_nothing(
    connected: Emulator, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = stored(connected, "DEAL-000001")
    code, out, err = run(["emulator", "edit", *args], capsys)
    assert (code, out) == (1, "")
    assert message.replace("URL", connected.url) in err
    assert stored(connected, "DEAL-000001") == before


def test_edit_needs_a_running_emulator(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LSQ_HOST", raising=False)
    code, _, err = run(["emulator", "edit", "DEAL-000001", "Status=Won"], capsys)
    assert code == 1
    assert "the emulator's URL: set LSQ_HOST (emulator serve prints it) or pass --url" in err
    code, _, err = run(
        ["emulator", "edit", "DEAL-000001", "Status=Won", "--url", "http://127.0.0.1:9"], capsys
    )
    assert code == 1
    assert err.startswith("error: cannot reach an emulator at http://127.0.0.1:9 (")
    assert err.endswith("is `lsqsync emulator serve` running?\n")


def _rows(tmp_path: Path, scenario: str) -> dict[str, dict[str, str | None]]:
    """Every opportunity of the data set (seed 3, 200 opportunities) as ``scenario`` has it."""
    store = Store(tmp_path / f"{scenario}.db", seed=3, opportunities=200, scenario=scenario)
    try:
        return {
            o.id: o.fields
            for code in (12000, 12003)
            for o, _ in store.search(
                code, page_index=1, page_size=1000, sort_column="CreatedOn", desc=False
            )[1]
        }
    finally:
        store.close()


@pytest.mark.parametrize(
    ("scenario", "status", "share", "changed"),
    [
        ("empty-priority", "Open", 3, {"mx_Custom_10": None}),
        ("stage-mismatch", "Won", 4, {"mx_Custom_2": "Sanctioned|Negotiation"}),
    ],
)
def test_a_scenario_changes_a_share_of_the_data_and_nothing_else(
    tmp_path: Path, scenario: str, status: str, share: int, changed: dict[str, str | None]
) -> None:
    plain, preset = _rows(tmp_path, "default"), _rows(tmp_path, scenario)
    assert plain.keys() == preset.keys()
    differ = {i for i in plain if plain[i] != preset[i]}
    candidates = [i for i in plain if plain[i]["Status"] == status]
    assert len(differ) == -(-len(candidates) // share)  # one in `share`, the first included
    (field, value), *_ = changed.items()
    for i in differ:
        assert plain[i]["Status"] == status
        assert {k for k in plain[i] if plain[i][k] != preset[i][k]} == {field}
        assert preset[i][field] in (value.split("|") if value else [None])
    with pytest.raises(ValueError, match="no scenario 'nope'"):
        Store(tmp_path / "x.db", seed=1, opportunities=1, scenario="nope")


def test_emulator_run_serves_the_scenario_asked_for(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # the data `emulator run --opportunities 20 --scenario stage-mismatch` (seed 1) serves
    store = Store(tmp_path / "s.db", seed=1, opportunities=20, scenario="stage-mismatch")
    plain = Store(tmp_path / "p.db", seed=1, opportunities=20)
    try:
        changed = [
            o.id
            for o, _ in store.search(
                12003, page_index=1, page_size=100, sort_column="CreatedOn", desc=False
            )[1]
            if (p := plain.get(o.id)) is not None and p.fields != o.fields
        ]
    finally:
        store.close()
        plain.close()
    script = (
        "import os, requests; f = requests.get(os.environ['LSQ_HOST'] + "
        f"'/_emulator/opportunities/{changed[0]}', timeout=5).json()['fields'];"
        "print(f['Status'], f['mx_Custom_2'])"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["emulator", "run", "--opportunities", "20", "--scenario", "stage-mismatch",
              "--rate-limit", "off", "--", sys.executable, "-c", script])  # fmt: skip
    assert exit_info.value.code == 0
    assert capfd.readouterr().out == "Won Negotiation\n"
