"""plan → apply → plan, end to end through the CLI, against every emulator profile of
``profiles.py`` (clamped and short search pages, a server that ignores PageIndex, reads that lag
behind writes, keys that are no administrator's). What each plan must change is worked out from
the emulator's stored data, not from lsqsync's reads: a read that loses records fails here."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from crm_helpers import writes
from profiles import PROFILES, Profile

from lsqsync.cli import main
from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator
from lsqsync.emulator.model import GEORGE_BAILEY
from lsqsync.emulator.store import Opportunity

NOW = ["--now", "2026-11-27 10:00:00"]
CONFIG = """version: 1
rules: [rules/]
state: .lsqsync/state.db
rate_limit: {calls: 1000, per_seconds: 1}
safety: {max_changes: 1000, max_change_ratio: 1.0}
"""
APPLIED = re.compile(r"applied: (\d+), already current: 0, stale: 0, failed: 0, unknown: 0 ")

Run = Callable[[list[str]], tuple[int, str, str]]
PARAMS = [pytest.param(p, id=p.name) for p in PROFILES]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def cli(args: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        out, err = capsys.readouterr()
        return int(exit_info.value.code or 0), out, err

    return cli


@pytest.fixture
def start(
    profiled_emulator: Callable[[Profile], Emulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[Profile], Emulator]:
    """The profile's emulator, connected, with the working directory a new project folder."""

    def connect(profile: Profile) -> Emulator:
        emu = profiled_emulator(profile)
        monkeypatch.setenv("LSQ_HOST", emu.url)
        monkeypatch.setenv("LSQ_ACCESS_KEY", DEMO_ACCESS_KEY)
        monkeypatch.setenv("LSQ_SECRET_KEY", DEMO_SECRET_KEY)
        monkeypatch.chdir(tmp_path)
        (tmp_path / "rules").mkdir()
        (tmp_path / "lsqsync.yml").write_text(CONFIG + profile.config)
        return emu

    return connect


def stored(emu: Emulator, code: int) -> list[Opportunity]:
    """Every opportunity of a type as stored: the truth, whatever the reads show."""
    _, rows = emu.store.search(code, page_index=1, page_size=10**6, sort_column="", desc=False)
    return [opp for opp, _ in rows]


def plan_and_apply(
    run: Run, emu: Emulator, profile: Profile, expected: set[tuple[str, str]]
) -> dict[str, Any]:
    """Plan (it must change exactly the ``expected`` (id, field) pairs), apply, and plan again
    once reads show the writes: nothing is left to do. Returns the saved plan."""
    code, _, err = run(["plan", "--out", "p.json", *NOW])
    assert code == 0, err
    plan = json.loads(Path("p.json").read_text())
    planned = {(c["id"], f["field"]) for c in plan["changes"] for f in c["fields"]}
    assert planned == expected
    code, out, err = run(["apply", "p.json"])
    applied = time.monotonic()
    assert code == 0, out + err
    match = APPLIED.search(out)
    assert match, out
    assert int(match[1]) == len(expected)
    time.sleep(max(0.0, profile.read_lag + 0.1 - (time.monotonic() - applied)))
    code, out, err = run(["plan", "--detailed-exitcode", *NOW])
    assert code == 0, out + err
    return dict(plan)


def pairs(opportunities: Iterable[Opportunity], field: str) -> set[tuple[str, str]]:
    return {(o.id, field) for o in opportunities}


@pytest.mark.parametrize("profile", PARAMS)
def test_rules_over_whole_types(
    profile: Profile, start: Callable[[Profile], Emulator], run: Run
) -> None:
    emu = start(profile)
    Path("rules/rules.yml").write_text(
        """version: 1
rules:
  - name: flag-open-deals
    opportunity_type: 12003
    where: {Status: Open, mx_Custom_10: {ne: High}}
    set: {mx_Custom_10: High}
  - name: note-lost-loans
    opportunity_type: 12000
    where: {Status: Lost, mx_Custom_9: {empty: true}}
    set: {mx_Custom_9: "Lost at stage {{ opp.mx_Custom_2 }}", mx_Custom_8: "2026-12-31"}
"""
    )
    deals = [o for o in stored(emu, 12003) if o.fields["Status"] == "Open"]
    deals = [o for o in deals if o.fields["mx_Custom_10"] != "High"]
    loans = [o for o in stored(emu, 12000) if o.fields["Status"] == "Lost"]
    loans = [o for o in loans if not o.fields.get("mx_Custom_9")]
    assert len(deals) > 4  # pages of 4 must not hold them all
    assert loans
    expected = pairs(deals, "mx_Custom_10") | pairs(loans, "mx_Custom_9")
    expected |= pairs(loans, "mx_Custom_8")  # a Date: the seeded ones are all in 2025 or 2026

    if profile.search_error is not None:
        code, out, err = run(["plan", *NOW])
        assert (code, out) == (1, "")
        assert profile.search_error in err
        assert writes(emu) == []
        return
    plan_and_apply(run, emu, profile, expected)
    after = {o.id: o.fields for o in stored(emu, 12003) + stored(emu, 12000)}
    assert all(after[o.id]["mx_Custom_10"] == "High" for o in deals)
    assert all(after[o.id]["mx_Custom_9"] for o in loans)


@pytest.mark.parametrize("profile", PARAMS)
def test_rules_that_name_their_opportunities(
    profile: Profile, start: Callable[[Profile], Emulator], run: Run
) -> None:
    emu = start(profile)
    deals = [o for o in stored(emu, 12003) if o.fields["mx_Custom_10"] != "High"][:3]
    loans = [o for o in stored(emu, 12000) if o.fields["Owner"] != GEORGE_BAILEY.id][:2]
    Path("rules/data.csv").write_text(
        "opportunity_id,new_owner\n" + "".join(f"{o.id},{GEORGE_BAILEY.email}\n" for o in loans)
    )
    Path("rules/rules.yml").write_text(
        f"""version: 1
rules:
  - name: three-deals
    opportunity_type: 12003
    ids: [{", ".join(o.id for o in deals)}]
    set: {{mx_Custom_10: High}}
  - name: loans-from-a-sheet
    opportunity_type: 12000
    csv: {{path: rules/data.csv, key: opportunity_id}}
    set: {{Owner: "{{{{ row.new_owner }}}}"}}
"""
    )
    expected = pairs(deals, "mx_Custom_10") | pairs(loans, "Owner")
    plan = plan_and_apply(run, emu, profile, expected)
    warned = [w for w in plan["warnings"] if "safety.max_change_ratio not checked" in w]
    totals = {t["opportunity_type"]: t["total"] for t in plan["summary"]["types"]}
    if profile.ids_warning is None:
        assert warned == []
        assert totals == {12000: 21, 12003: 21}
    else:
        assert any(profile.ids_warning in w for w in warned)
        assert totals == {12000: None, 12003: None}
    assert all(emu.store.get(o.id).fields["Owner"] == GEORGE_BAILEY.id for o in loans)  # type: ignore[union-attr]
