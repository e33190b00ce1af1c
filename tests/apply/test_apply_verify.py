"""apply reads back what it wrote, names what needs a person, and leaves nothing unrecorded —
end to end over real HTTP against the emulator, in its variants of how real accounts differ
(reads that lag writes, ``""`` writes ignored), checking what LeadSquared holds."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import requests
from cli_helpers import run
from crm_helpers import NO_LIMIT, requests_log, write_directly, writes

from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.plan import planfile
from lsqsync.state.store import StateFile

NOW = ["--now", "2026-11-27 10:00:00"]
LOAN = "c5a7f37c-b789-44c9-929b-74aa6250b539"
BY_IDS = "/v2/OpportunityManagement.svc/GetOpportunitiesById"
BULK = "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId"


def project(root: Path, rules: str) -> Path:
    """A project with one rule file, no rate limit to wait for, no safety limits, and the PAN
    (mx_Custom_11) masked."""
    (root / "rules").mkdir(parents=True)
    (root / "lsqsync.yml").write_text(
        f"version: 1\nrate_limit: {NO_LIMIT}\nmask: [mx_Custom_11]\n"
        "safety: {max_changes: 100000, max_change_ratio: 1}\n"
    )
    (root / "rules" / "r.yml").write_text("version: 1\nrules:\n" + rules)
    return root


# every loan: a Decimal that reads back with two places, and a note
LOANS = """\
  - name: rate-and-note
    opportunity_type: 12000
    set: {mx_Custom_7: 23500, mx_Custom_9: checked}
"""


def stored(emu: Emulator, opp: str) -> dict[str, Any]:
    fields: dict[str, Any] = requests.get(
        f"{emu.url}/_emulator/opportunities/{opp}", timeout=5
    ).json()["fields"]
    return fields


def state(root: Path) -> StateFile:
    return StateFile.open(root / ".lsqsync" / "state.db", create=False)


def plan(root: Path, capsys: pytest.CaptureFixture[str]) -> planfile.Plan:
    code, _, err = run(["plan", "--out", "p.json", *NOW], capsys)
    assert code == 0, err
    return planfile.load(root / "p.json")


def reads_after_the_last_write(emu: Emulator) -> int:
    log = requests_log(emu)
    last = max(i for i, e in enumerate(log) if e["path"] == BULK)
    return sum(1 for e in log[last:] if e["path"] == BY_IDS)


def clear_log(emu: Emulator) -> None:
    requests.delete(emu.url + "/_emulator/requests", timeout=5).raise_for_status()


def test_every_field_written_is_read_back_confirmed_or_normalised(
    connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(project(tmp_path, LOANS))
    saved = plan(tmp_path, capsys)
    loans = len(saved.changes)
    clear_log(connected)

    code, out, _ = run(["apply", "p.json"], capsys)

    assert code == 0, out
    lines = out.splitlines()
    # the notes read back as sent; the Decimal 23500 as "23500.00": the same value, normalised
    assert lines[2] == f"  read back: {loans} confirmed, {loans} normalised, 0 not persisted"
    assert re.fullmatch(
        r"  (\d+) API calls \(1 to read back; 0 refused for the rate limit\) in \d+\.\d s", lines[3]
    )
    assert reads_after_the_last_write(connected) == 1  # 2,000 ids a call
    assert stored(connected, LOAN)["mx_Custom_7"] == "23500"
    # the stored form is the last value written: neither drift nor the next plan flaps
    with state(tmp_path) as st:
        written = {(w.opportunity_id, w.field): w.value for w in st.last_written_values()}
        run_id = st.run("last").id
    assert written[(LOAN, "mx_Custom_7")] == "23500.00"
    assert written[(LOAN, "mx_Custom_9")] == "checked"
    assert run(["plan", "--detailed-exitcode", *NOW], capsys)[0] == 0
    assert run(["drift"], capsys)[:2] == (
        0,
        "No drift: LeadSquared holds every value lsqsync last wrote.\n",
    )
    code, shown, _ = run(["state", "show", run_id, "--format", "json"], capsys)
    results = json.loads(shown)["results"]
    assert {(r["field"], r["verified"], r["current"]) for r in results} == {
        ("mx_Custom_7", "normalised", "23500.00"),
        ("mx_Custom_9", "confirmed", None),
    }
    code, shown, _ = run(["state", "show", run_id], capsys)
    assert f"  read back  {loans} confirmed, {loans} normalised, 0 not persisted\n" in shown
    assert '  normalised  rate-and-note  stored as "23500.00"\n' in shown
    code, shown, _ = run(["state", "show", run_id, "--format", "markdown"], capsys)
    assert f"- read back: {loans} confirmed, {loans} normalised, 0 not persisted\n" in shown


def test_a_write_that_reads_back_late_is_waited_for(
    connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(project(tmp_path, LOANS))
    saved = plan(tmp_path, capsys)
    connected.settings.read_lag_ms = 1500  # reads show a write 1.5 s after it
    clear_log(connected)

    code, out, _ = run(["apply", "p.json", "--verify-wait", "15"], capsys)

    assert code == 0, out
    loans = len(saved.changes)
    assert out.splitlines()[2] == (
        f"  read back: {loans} confirmed, {loans} normalised, 0 not persisted"
    )
    assert reads_after_the_last_write(connected) >= 2  # it read again after a pause
    seconds = float(re.findall(r" in (\d+\.\d) s\n", out)[0])
    assert seconds >= 1.5  # the whole run, waiting included


def test_a_cleared_field_that_keeps_its_value_is_not_persisted(
    connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    rules = f"""\
  - name: clear-priority
    opportunity_type: 12000
    ids: [{LOAN}]
    set: {{mx_Custom_10: null, mx_Custom_9: cleared}}
"""
    monkeypatch.chdir(project(tmp_path, rules))
    priority = stored(connected, LOAN)["mx_Custom_10"]
    assert priority
    plan(tmp_path, capsys)
    connected.settings.ignore_empty_writes = True  # "" leaves a field as it is

    code, out, _ = run(["apply", "p.json", "--verify-wait", "1"], capsys)

    assert code == 3
    assert stored(connected, LOAN)["mx_Custom_10"] == priority  # LeadSquared kept it
    lines = out.splitlines()
    assert lines[0].endswith(": partial.")
    assert lines[1].startswith("  applied: 2, already current: 0, stale: 0, failed: 0, ")
    assert lines[2] == "  read back: 1 confirmed, 0 normalised, 1 not persisted"
    assert (
        f'  not persisted  {LOAN} (12000) Priority (mx_Custom_10): "{priority}" → (empty), '
        f'now "{priority}": not persisted'
    ) in lines
    assert lines[-1].startswith("  details: lsqsync state show ")
    # not what lsqsync last wrote (no drift), and the next apply of the plan checks it again
    assert run(["drift"], capsys)[0] == 0
    code, shown, _ = run(["state", "show", "last", "--format", "markdown"], capsys)
    assert "#### Fields that need a look (1)" in shown
    assert f'| not persisted | "{priority}" | (empty) | not persisted; now "{priority}" |' in shown
    with state(tmp_path) as st:
        assert (LOAN, "mx_Custom_10") not in st.confirmed("last")
    clear_log(connected)
    assert run(["apply", "p.json", "--verify-wait", "0"], capsys)[0] == 3
    assert len(writes(connected)) == 1  # sent again: the field still held its before value


def test_no_verify_reads_nothing_back_and_the_next_apply_of_the_plan_does(
    connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(project(tmp_path, LOANS))
    saved = plan(tmp_path, capsys)
    loans = len(saved.changes)
    clear_log(connected)

    code, out, _ = run(["apply", "p.json", "--no-verify"], capsys)

    assert code == 0
    assert out.splitlines()[2] == "  read back: skipped (--no-verify)"
    assert reads_after_the_last_write(connected) == 0
    code, shown, _ = run(["state", "show", "last"], capsys)
    assert "  overrides  --no-verify\n" in shown
    assert "  read back  skipped (--no-verify)\n" in shown

    code, out, _ = run(["apply", "p.json"], capsys)  # the same plan: nothing left to send
    assert code == 0
    assert out.splitlines()[2] == (
        f"  read back: {loans} confirmed, {loans} normalised, 0 not persisted ({2 * loans} "
        "fields written by an earlier run of the plan)"
    )
    assert len(writes(connected)) == 2
    with state(tmp_path) as st:
        skipped = st.runs()[0]
    code, shown, _ = run(["state", "show", skipped.id], capsys)  # read back by the second run
    assert f"  read back  {loans} confirmed, {loans} normalised, 0 not persisted\n" in shown


def test_the_summary_names_the_fields_that_need_a_look(
    connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    rules = f"""\
  - name: note
    opportunity_type: 12000
    set: {{mx_Custom_9: noted}}
  - name: pan
    opportunity_type: 12000
    ids: [{LOAN}]
    set: {{mx_Custom_11: ABCDE0000F}}
"""
    monkeypatch.chdir(project(tmp_path, rules))
    saved = plan(tmp_path, capsys)
    pan = stored(connected, LOAN)["mx_Custom_11"]
    # people edit 24 notes and the PAN after the plan
    edited = sorted(c.id for c in saved.changes)[:24]
    write_directly(connected, [
        {"ProspectOpportunityId": i, "OpportunityEventCode": 12000,
         "Fields": [{"SchemaName": "mx_Custom_9", "Value": "by hand"}]} for i in edited
    ] + [{"ProspectOpportunityId": LOAN, "OpportunityEventCode": 12000,
          "Fields": [{"SchemaName": "mx_Custom_11", "Value": "ZZZZZ9999Z"}]}])  # fmt: skip

    code, out, _ = run(["apply", "p.json"], capsys)

    assert code == 3
    lines = out.splitlines()
    listed = [line for line in lines if line.startswith("  stale  ")]
    run_id = lines[0].split()[1].rstrip(":")
    assert len(listed) == 20  # of 25, in the order of opportunity and field
    assert lines[-1] == f"  … 5 more: lsqsync state show {run_id}"
    stale = sorted([(i, "mx_Custom_9") for i in edited] + [(LOAN, "mx_Custom_11")])
    named = {"mx_Custom_9": "Remarks (mx_Custom_9)", "mx_Custom_11": "PAN (mx_Custom_11)"}
    found = [re.match(r"  stale  (\S+) \(12000\) (.+?): ", line) for line in listed]
    assert [m.groups() if m else None for m in found] == [
        (i, named[field]) for i, field in stale[:20]
    ]
    assert (
        f'  stale  {edited[0]} (12000) Remarks (mx_Custom_9): (empty) → "noted", now "by hand": '
        "changed in LeadSquared since the plan"
    ) in listed
    # a masked field is named, its values are not
    if (LOAN, "mx_Custom_11") in stale[:20]:
        assert (
            f"  stale  {LOAN} (12000) PAN (mx_Custom_11): *** → ***, now ***: changed in "
            "LeadSquared since the plan"
        ) in listed
    assert pan not in out
    assert "ZZZZZ9999Z" not in out
    assert "ABCDE0000F" not in out


def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's retries, without their real backoff (a second and more)."""
    from functools import partial

    from lsqsync import config
    from lsqsync.lsq import LsqClient

    monkeypatch.setattr(config, "LsqClient", partial(LsqClient, backoff_base=0.01))


@pytest.fixture(scope="module")
def big() -> Iterator[Emulator]:
    """An emulator with 151 loans: seven batches."""
    with Emulator(opportunities=300, settings=Settings(rate_limit_calls=None)) as emu:
        yield emu


@pytest.fixture
def bigger(big: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    big.settings.update(asdict(Settings(rate_limit_calls=None)))
    big.reset()
    monkeypatch.setenv("LSQ_HOST", big.url)
    monkeypatch.setenv("LSQ_ACCESS_KEY", DEMO_ACCESS_KEY)
    monkeypatch.setenv("LSQ_SECRET_KEY", DEMO_SECRET_KEY)
    return big


NOTES = "  - {name: note, opportunity_type: 12000, set: {mx_Custom_9: noted}}\n"


def test_when_leadsquared_looks_down_sending_stops_and_nothing_is_lost(
    bigger: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from lsqsync.apply import engine

    monkeypatch.chdir(project(tmp_path, NOTES))
    saved = plan(tmp_path, capsys)
    batches = 1 + (len(saved.changes) - 1) // 25
    assert batches == 7
    fast_retries(monkeypatch)
    send = engine.send_batch

    def down(*args: Any) -> Any:
        bigger.settings.fault_rate = 1.0  # from the first write on, every call is a 500
        return send(*args)

    monkeypatch.setattr(engine, "send_batch", down)
    clear_log(bigger)
    code, out, _ = run(["apply", "p.json", "--workers", "1"], capsys)

    assert code == 3  # something was sent: a summary, and never exit 1
    assert "  stopped sending: 3 batches in a row failed (the last: LeadSquared failed POST " in out
    assert "LeadSquared looks down" in out
    with state(tmp_path) as st:
        journal = st.batches(st.run("last").id)
        counts = st.run("last").counts
    # one worker keeps two batches in flight: the third failure leaves one more to record
    assert [b.status for b in journal] == ["unknown"] * len(journal)
    assert len(journal) in (3, 4)
    assert counts.not_sent == len(saved.changes) - 25 * len(journal)
    # and reading their records back failed too: the next apply of the plan does it first
    assert counts.unknown == 25 * len(journal)
    pending = ", ".join(f"run {b.run_id} batch {b.batch}" for b in journal)
    assert f"  outcome unknown, records not read back: {pending} (the next apply of " in out

    bigger.settings.fault_rate = 0.0
    monkeypatch.setattr(engine, "send_batch", send)
    clear_log(bigger)
    code, out, _ = run(["apply", "p.json"], capsys)
    assert code == 0, out
    assert len(writes(bigger)) == batches  # each sent once: the faults wrote nothing
    assert all(stored(bigger, c.id)["mx_Custom_9"] == "noted" for c in saved.changes)
    with state(tmp_path) as st:
        assert st.pending_batches(saved.digest) == ()


def test_a_worker_that_crashes_leaves_its_batch_unknown_and_read_back(
    connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from lsqsync.apply import engine

    monkeypatch.chdir(project(tmp_path, LOANS))
    saved = plan(tmp_path, capsys)
    send, crashed = engine.send_batch, []

    def crash_once(*args: Any) -> Any:
        if not crashed:
            crashed.append(1)
            raise RuntimeError("a bug")
        return send(*args)

    monkeypatch.setattr(engine, "send_batch", crash_once)
    code, out, _ = run(["apply", "p.json"], capsys)

    assert code == 0, out  # read back (nothing landed), sent once more, applied
    assert out.splitlines()[1].startswith(f"  applied: {2 * len(saved.changes)}, ")
    with state(tmp_path) as st:
        run_id = st.run("last").id
        first, *others = st.batches(run_id)
    assert (first.status, first.message, first.resolved_by) == (
        "unknown", "RuntimeError: a bug", run_id,
    )  # fmt: skip
    assert {b.status for b in others} == {"done"}


def test_ctrl_c_while_unknown_outcomes_are_sent_again_says_what_the_run_did(
    connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from lsqsync.apply import engine

    monkeypatch.chdir(project(tmp_path, LOANS))
    plan(tmp_path, capsys)
    fast_retries(monkeypatch)
    read, resolve, send = engine.read_current, engine.resolve_unknown, engine.send_batch
    again: list[int] = []

    def reading(*args: Any) -> Any:
        connected.settings.fault_rate = 0.0  # reads go through
        return read(*args)

    def resolving(*args: Any) -> Any:
        again.append(1)
        return resolve(*args)

    def sending(*args: Any) -> Any:
        if again:  # sending again what did not land: Ctrl-C meanwhile
            os.kill(os.getpid(), signal.SIGINT)
        else:  # the first pass: every call a 500 until the retries run out
            connected.settings.fault_rate = 1.0
        return send(*args)

    monkeypatch.setattr(engine, "read_current", reading)
    monkeypatch.setattr(engine, "resolve_unknown", resolving)
    monkeypatch.setattr(engine, "send_batch", sending)
    clear_log(connected)

    code, out, _ = run(["apply", "p.json", "--workers", "1"], capsys)

    assert code == 130
    assert out.splitlines()[0].endswith(": interrupted.")
    calls = int(re.findall(r"  (\d+) API calls", out)[0])
    assert calls == len(requests_log(connected))  # every call of the run, both passes
    with state(tmp_path) as st:
        last = st.run("last")
        journal = st.batches(last.id)
    assert last.outcome == "interrupted"
    # the first pass (two batches, their retries ran out), then the re-send: the batch in
    # flight when Ctrl-C came was recorded, and no other was sent
    assert [b.status for b in journal][:3] == ["unknown", "unknown", "done"]
    assert len(journal) in (3, 4)
    assert last.counts.applied > 0


@pytest.mark.slow
def test_faults_and_drops_leave_no_write_unrecorded(
    bigger: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from lsqsync.apply import engine

    rules = NOTES + (
        "  - {name: raise-low, opportunity_type: 12000, where: {mx_Custom_10: Low},\n"
        "     set: {mx_Custom_10: High}}\n"
    )
    monkeypatch.chdir(project(tmp_path, rules))
    saved = plan(tmp_path, capsys)
    planned = {(c.id, f.field): f.after for c in saved.changes for f in c.changes}
    assert 180 <= len(planned) <= 230
    fast_retries(monkeypatch)
    send = engine.send_batch

    def flaky(*args: Any) -> Any:  # from the first write on (the re-read went through)
        bigger.settings.fault_rate, bigger.settings.drop_rate = 0.5, 0.3
        return send(*args)

    monkeypatch.setattr(engine, "send_batch", flaky)
    code, out, _ = run(["apply", "p.json"], capsys)
    bigger.settings.fault_rate = bigger.settings.drop_rate = 0.0
    monkeypatch.setattr(engine, "send_batch", send)

    assert code == 3 or code == 0, out  # something was sent: never exit 1
    landed = {key for key, after in planned.items() if stored(bigger, key[0])[key[1]] == after}
    with state(tmp_path) as st:
        first = st.run("last")
        applied = {(r.opportunity_id, r.field) for r in st.results(first.id)
                   if r.status == "applied"}  # fmt: skip
        pending = st.pending_batches(saved.digest)
        assert "sending" not in {b.status for b in st.batches(first.id)}
    # every write that landed is recorded as applied, or its batch is named for the next run
    in_pending = {i for b in pending for i in b.opportunity_ids}
    assert {key for key in landed if key not in applied and key[0] not in in_pending} == set()
    for b in pending:
        assert f"run {b.run_id} batch {b.batch}" in out

    code, out, _ = run(["apply", "p.json"], capsys)  # faults off: the same plan again

    assert code == 0, out
    # LeadSquared holds every planned value, and the state says so, field by field
    held = {key: stored(bigger, key[0])[key[1]] for key in planned}
    assert held == planned
    with state(tmp_path) as st:
        recorded = {
            (r.opportunity_id, r.field): r
            for run_ in st.runs()
            for r in st.results(run_.id)
            if r.status == "applied"
        }
        written = {(w.opportunity_id, w.field): w.value for w in st.last_written_values()}
        assert st.pending_batches(saved.digest) == ()
        assert st.unverified(saved.digest) == ()
    assert set(recorded) == set(planned)  # applied once each, by one run or the other
    assert {key: r.after for key, r in recorded.items()} == planned
    assert {r.verified for r in recorded.values()} == {"confirmed"}
    assert written == planned
    assert run(["drift"], capsys)[:2] == (
        0,
        "No drift: LeadSquared holds every value lsqsync last wrote.\n",
    )
    # rolling back the last run puts back everything the plan wrote, in both runs
    code, out, _ = run(["rollback", "last", "--out", "back.json"], capsys)
    assert code == 0
    back = planfile.load(tmp_path / "back.json")
    # the reads it made are counted (its types, what LeadSquared holds, the types' sizes)
    assert back.cost.read_calls >= 3
    assert f"API cost: {back.cost.read_calls} read calls made; to apply: " in out
    assert {(c.id, f.field): f.after for c in back.changes for f in c.changes} == {
        (c.id, f.field): f.before or "" for c in saved.changes for f in c.changes
    }


def test_a_read_back_that_fails_leaves_its_fields_to_the_next_apply(
    connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from lsqsync.apply import engine
    from lsqsync.errors import ServerError

    monkeypatch.chdir(project(tmp_path, LOANS))
    saved = plan(tmp_path, capsys)
    read, reads = engine.read_current, []

    def failing_the_second_time(*args: Any) -> Any:
        reads.append(1)
        if len(reads) > 1:  # reading back what was written
            raise ServerError("LeadSquared failed POST GetOpportunitiesById (HTTP 503)")
        return read(*args)

    monkeypatch.setattr(engine, "read_current", failing_the_second_time)
    code, out, _ = run(["apply", "p.json"], capsys)

    assert code == 3  # everything landed, and nobody knows yet
    fields = 2 * len(saved.changes)
    assert out.splitlines()[2] == (
        f"  read back: 0 confirmed, 0 normalised, 0 not persisted; {fields} fields not read back "
        "(LeadSquared failed POST GetOpportunitiesById (HTTP 503)): the next apply of this plan "
        "reads them"
    )
    monkeypatch.setattr(engine, "read_current", read)
    code, out, _ = run(["apply", "p.json"], capsys)
    assert code == 0
    assert f"({fields} fields written by an earlier run of the plan)" in out


def test_ctrl_c_while_waiting_for_writes_to_show_ends_the_run_interrupted(
    connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import threading

    monkeypatch.chdir(project(tmp_path, LOANS))
    saved = plan(tmp_path, capsys)
    connected.settings.read_lag_ms = 60_000  # nothing shows for a minute
    fields = 2 * len(saved.changes)
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code, out, _ = run(["apply", "p.json", "--verify-wait", "30"], capsys)
    finally:
        timer.cancel()

    assert code == 130
    lines = out.splitlines()
    assert lines[0].endswith(": interrupted.")
    assert lines[2] == (
        f"  read back: 0 confirmed, 0 normalised, 0 not persisted; {fields} fields not read back "
        "(interrupted): the next apply of this plan reads them"
    )
    connected.settings.read_lag_ms = 0
    clear_log(connected)
    code, out, _ = run(["apply", "p.json"], capsys)
    assert code == 0
    assert writes(connected) == []


def test_a_lock_taken_over_while_sending_stops_the_run_and_records_the_rest(
    bigger: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from lsqsync.errors import StateLocked

    monkeypatch.chdir(project(tmp_path, NOTES))
    saved = plan(tmp_path, capsys)
    begin, begun = StateFile.begin_batch, []

    def taken_over(self: StateFile, *args: Any) -> Any:
        if len(begun) == 2:
            raise StateLocked("another apply took over the lock")
        begun.append(1)
        return begin(self, *args)

    monkeypatch.setattr(StateFile, "begin_batch", taken_over)
    code, out, _ = run(["apply", "p.json"], capsys)

    assert code == 3
    assert "  stopped sending: another apply took over the lock\n" in out
    assert f"not sent: {len(saved.changes) - 50} (fields of" in out
    assert len(writes(bigger)) == 2


def test_a_state_that_fails_while_sending_ends_the_run_failed_naming_what_is_left(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from lsqsync.errors import StateError

    monkeypatch.chdir(project(tmp_path, LOANS))
    plan(tmp_path, capsys)
    record = StateFile.record_batch_result

    def broken(self: StateFile, *args: Any, **kwargs: Any) -> Any:
        raise StateError("state.db: the state file cannot be used (disk I/O error)")

    monkeypatch.setattr(StateFile, "record_batch_result", broken)
    code, _, err = run(["apply", "p.json"], capsys)

    assert code == 1
    assert "error: state.db: the state file cannot be used (disk I/O error)" in err
    with state(tmp_path) as st:
        failed = st.run("last")
        left = st.pending_batches(failed.id)
    assert failed.outcome == "failed"
    assert left
    assert "apply: the next apply of this plan reads back the records of run " in caplog.text
    monkeypatch.setattr(StateFile, "record_batch_result", record)
    clear_log(connected)
    code, out, _ = run(["apply", "p.json"], capsys)
    assert code == 0, out
    assert writes(connected) == []  # what the failed run sent was read back, not sent again
    with state(tmp_path) as st:
        assert st.pending_batches(failed.id) == ()
