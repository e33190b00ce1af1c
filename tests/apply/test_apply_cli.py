"""lsqsync apply, end to end over real HTTP against the emulator and a real state file."""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import sqlite3
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
from cli_helpers import run
from crm_helpers import example_project, write_directly, writes

from lsqsync.emulator import Emulator
from lsqsync.emulator.model import USERS
from lsqsync.plan.model import compute_digest, from_json
from lsqsync.state.store import StateFile

NOW = ["--now", "2026-11-27 10:00:00"]
# the loan reassigned by rules/data/reassign.csv is owned by neither George nor Sam
SAM = next(u.id for u in USERS if u.first_name == "Sam")
NO_CHANGES = "No changes. LeadSquared already matches the rules.\n"


@pytest.fixture
def project(connected: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's example project, in a temporary folder."""
    monkeypatch.chdir(tmp_path)
    return example_project(tmp_path)


def planned(out: str) -> tuple[int, int]:
    """(opportunities, fields) from a plan's last line."""
    match = re.search(r"Plan: (\d+) opportunit(?:y|ies) to change \((\d+) fields?\)\.\n$", out)
    assert match, out[-200:]
    return int(match[1]), int(match[2])


def test_a_plan_applied_end_to_end_leaves_nothing_to_do(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["plan", "--out", "p.json", "--expires-in", "168", *NOW], capsys)
    assert code == 0
    opportunities, fields = planned(out)
    assert opportunities > 0
    saved = json.loads((project / "p.json").read_text())
    stamps = [datetime.fromisoformat(saved[k]) for k in ("created_at", "expires_at")]
    assert stamps[1] - stamps[0] == timedelta(days=7)

    code, out, err = run(["apply", "p.json"], capsys)

    assert code == 0
    assert out.splitlines()[1] == (
        f"  applied: {fields}, already current: 0, stale: 0, failed: 0, unknown: 0 "
        f"(fields of {opportunities} opportunities)"
    )
    assert len(writes(connected)) == math.ceil(opportunities / 25)
    # no terminal: the first progress line, then at most one every 10 s
    assert err == f"lsqsync: re-reading {opportunities:,} opportunities\n"
    assert run(["plan", "--detailed-exitcode", *NOW], capsys)[0] == 0
    assert run(["plan", *NOW], capsys)[1].endswith(NO_CHANGES)
    with StateFile.open(project / ".lsqsync" / "state.db", create=False) as st:
        assert st.serial == 1
        (only,) = st.runs()
        assert (only.outcome, only.counts.applied) == ("succeeded", fields)
    code, out, _ = run(["state", "show", "last", "--format", "markdown"], capsys)
    assert code == 0
    assert out.startswith(f"### lsqsync apply `{only.id}`: succeeded\n")
    assert "not written" not in out


def test_a_field_edited_after_the_plan_is_stale_not_clobbered(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    loan = "c5a7f37c-b789-44c9-929b-74aa6250b539"  # reassigned by rules/data/reassign.csv
    edit = [{"ProspectOpportunityId": loan, "OpportunityEventCode": 12000,
             "Fields": [{"SchemaName": "Owner", "Value": SAM}]}]  # fmt: skip
    write_directly(connected, edit)

    code, out, _ = run(["apply", "p.json"], capsys)

    assert code == 3
    assert "stale: 1," in out
    stored = requests.get(f"{connected.url}/_emulator/opportunities/{loan}", timeout=5).json()
    assert stored["fields"]["Owner"] == SAM
    # the value that made it stale is recorded, and shown
    code, out, _ = run(["state", "show", "last", "--format", "json"], capsys)
    (stale,) = [r for r in json.loads(out)["results"] if r["status"] == "stale"]
    assert (stale["opportunity_id"], stale["field"], stale["current"]) == (loan, "Owner", SAM)
    code, out, _ = run(["state", "show", "last"], capsys)
    assert f'changed in LeadSquared since the plan; now "{SAM}"' in out


def test_faults_and_drops_end_with_every_field_applied_once(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["plan", "--out", "p.json", *NOW], capsys)
    opportunities, fields = planned(out)
    connected.settings.fault_rate = 0.1
    connected.settings.drop_rate = 0.05
    code, out, _ = run(["apply", "p.json"], capsys)
    connected.settings.fault_rate = connected.settings.drop_rate = 0.0
    assert (code, out.splitlines()[1]) == (
        0,
        f"  applied: {fields}, already current: 0, stale: 0, failed: 0, unknown: 0 "
        f"(fields of {opportunities} opportunities)",
    )
    assert run(["plan", *NOW], capsys)[1].endswith(NO_CHANGES)


def test_a_plan_whose_rules_changed_is_refused(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    with (project / "rules" / "deals.yml").open("a") as f:
        f.write("# edited after review\n")
    code, out, err = run(["apply", "p.json"], capsys)
    assert (code, out) == (1, "")
    assert err == (
        "error: p.json: refused: files changed on disk since the plan: rules/deals.yml (make a "
        "new plan, or pass --ignore-rule-changes to apply the reviewed plan anyway; it is "
        "recorded)\n"
    )
    assert writes(connected) == []
    assert run(["apply", "p.json", "--ignore-rule-changes"], capsys)[0] == 0


def test_a_plan_binds_its_files_by_their_place_in_the_project_not_the_working_directory(
    connected: Emulator,
    project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(project.parent)
    there = project.name
    plan = ["plan", "--config", f"{there}/lsqsync.yml", "--out", f"{there}/p.json", *NOW]
    assert run(plan, capsys)[0] == 0
    files = json.loads((project / "p.json").read_text())["inputs"]["files"]
    assert {"lsqsync.yml", "rules/deals.yml"} <= set(files)  # relative to the project
    assert not any(name.startswith(there) for name in files)
    monkeypatch.chdir(project)
    code, out, _ = run(["apply", "p.json"], capsys)
    assert code == 0, out
    assert writes(connected) != []


def test_a_plan_naming_files_outside_the_project_is_refused(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    (project.parent / "outside.yml").write_text("version: 1\n")
    saved = json.loads((project / "p.json").read_text())
    saved["inputs"]["files"]["../outside.yml"] = hashlib.sha256(b"version: 1\n").hexdigest()
    saved["digest"] = compute_digest(from_json(saved))
    (project / "p.json").write_text(json.dumps(saved))
    code, _, err = run(["apply", "p.json"], capsys)
    assert code == 1
    assert "files changed on disk since the plan: ../outside.yml" in err
    assert writes(connected) == []


def test_a_second_apply_waits_for_the_lock_then_names_the_holder(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    (project / ".lsqsync").mkdir(exist_ok=True)
    with StateFile.open(project / ".lsqsync" / "state.db") as holder:
        lock = holder.acquire_lock("apply")
        code, out, err = run(["apply", "p.json", "--lock-timeout", "0.2"], capsys)
        holder.release_lock(lock.id)
    assert (code, out) == (1, "")
    assert err.startswith("error: ")
    assert lock.id in err
    assert writes(connected) == []


def test_a_batch_left_unrecorded_by_a_killed_run_is_resolved_not_resent(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from lsqsync.plan import planfile

    code, out, _ = run(["plan", "--out", "p.json", *NOW], capsys)
    opportunities, fields = planned(out)
    plan = planfile.load(project / "p.json")
    # A run that journaled its only batch, sent it (it landed), and was killed before recording.
    body = [
        {"ProspectOpportunityId": c.id, "OpportunityEventCode": c.opportunity_type,
         "Fields": [{"SchemaName": f.field, "Value": f.after} for f in c.changes]}
        for c in plan.changes
    ]  # fmt: skip
    with StateFile.open(project / ".lsqsync" / "state.db") as st:
        lock = st.acquire_lock("apply")
        killed = st.begin_run(plan.digest)
        st.begin_batch(killed.id, [c.id for c in plan.changes], json.dumps(body).encode())
        st.release_lock(lock.id)
    write_directly(connected, body)
    requests.delete(connected.url + "/_emulator/requests", timeout=5)

    code, out, _ = run(["apply", "p.json"], capsys)

    assert code == 0
    assert out.splitlines()[1] == (
        f"  applied: {fields}, already current: 0, stale: 0, failed: 0, unknown: 0 "
        f"(fields of {opportunities} opportunities)"
    )
    assert writes(connected) == []  # nothing sent twice
    with StateFile.open(project / ".lsqsync" / "state.db", create=False) as st:
        assert len(st.last_written_values()) == fields
        assert st.pending_batches(plan.digest) == ()
        assert st.run(killed.id).outcome == "interrupted"


def test_drift_after_a_hand_edit_and_rollback_of_a_run(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lsqsync.plan import planfile

    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    assert run(["apply", "p.json"], capsys)[0] == 0
    assert run(["drift"], capsys)[:2] == (
        0,
        "No drift: LeadSquared holds every value lsqsync last wrote.\n",
    )
    plan = planfile.load(project / "p.json")
    edited, field = plan.changes[0], plan.changes[0].changes[0]
    hand_edit = [{"ProspectOpportunityId": edited.id, "OpportunityEventCode":
                  edited.opportunity_type, "Fields": [{"SchemaName": field.field,
                                                       "Value": "hand edit"}]}]  # fmt: skip
    write_directly(connected, hand_edit)

    code, out, _ = run(["drift"], capsys)
    assert code == 2
    assert "\nDrift: 1 field changed outside lsqsync.\n" in out
    label = plan.field_labels[edited.opportunity_type][field.field]  # as the plan recorded it
    shown = f"{label} ({field.field})" if label != field.field else field.field
    assert f"~ {edited.id} (type {edited.opportunity_type}) {shown}: wrote " in out

    with StateFile.open(project / ".lsqsync" / "state.db", create=False) as st:
        (applied_run,) = st.runs()
    code, out, _ = run(["rollback", applied_run.id, "--out", "back.json"], capsys)
    assert code == 0
    assert f"1 field changed since run {applied_run.id} is left alone: {edited.id} {shown}" in out
    _, fields = planned(out)
    code, out, _ = run(["apply", "back.json"], capsys)
    assert code == 0
    assert f"  applied: {fields}," in out
    for c in plan.changes:
        stored = requests.get(f"{connected.url}/_emulator/opportunities/{c.id}", timeout=5).json()
        for f in c.changes:
            if (c.id, f.field) == (edited.id, field.field):
                assert stored["fields"][f.field] == "hand edit"  # nobody's edit is clobbered
            else:
                back = stored["fields"][f.field]
                assert back == f.before or (back is None and f.before is None), (c.id, f.field)


def test_apply_without_a_plan_file_needs_a_yes_or_auto_approve(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # no terminal here: refused before anything is read
    code, out, err = run(["apply"], capsys)
    assert (code, out) == (1, "")
    assert err == (
        "error: apply without a plan file needs --auto-approve when there is no terminal to ask "
        "on (or make a plan with 'lsqsync plan --out FILE' and apply the file)\n"
    )
    assert requests.get(connected.url + "/_emulator/requests", timeout=5).json()["requests"] == []

    code, out, _ = run(["apply", "--auto-approve"], capsys)
    assert code == 0
    _, fields = planned(out.split("\nRun ")[0] + "\n")
    assert f"  applied: {fields}, already current: 0," in out
    code, out, _ = run(["apply", "--auto-approve"], capsys)
    assert (code, out.splitlines()[-1]) == (0, "No changes. LeadSquared already matches the rules.")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "applied"), [("no\n", False), ("\n", False), ("yes\n", True)])
def test_apply_without_a_plan_file_asks_on_a_terminal(
    connected: Emulator,
    project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    applied: bool,
) -> None:
    """Only 'yes' applies; any other answer applies nothing and exits 1, as Terraform does."""
    monkeypatch.setattr("sys.stdin", _Terminal(answer))
    code, out, err = run(["apply", "--max-details", "1"], capsys)
    assert code == (0 if applied else 1)
    assert "? Only 'yes' will be accepted: " in out
    assert out.count("\n~ opportunity ") == 1  # --max-details: one shown in detail
    assert ("Run " in out) is applied
    assert ("Not applied: the answer was not 'yes'." in err) is not applied
    assert bool(writes(connected)) is applied


def test_no_key_in_any_file_or_output_of_the_whole_story(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = [
        run(["plan", "--out", "p.json", "--format", fmt, *NOW], capsys)
        for fmt in ("text", "json", "markdown")
    ]
    outputs.append(run(["apply", "p.json"], capsys))
    with StateFile.open(project / ".lsqsync" / "state.db", create=False) as st:
        (first,) = st.runs()
    for args in (["state", "runs"], ["drift", "--format", "json"], ["show", "p.json"],
                 ["rollback", first.id, "--out", "back.json"]):  # fmt: skip
        outputs.append(run(args, capsys))
    for fmt in ("text", "json", "csv"):
        outputs.append(run(["state", "show", first.id, "--format", fmt], capsys))
    texts = [out + err for _, out, err in outputs]
    texts += [p.read_bytes().decode("latin-1") for p in project.rglob("*") if p.is_file()]
    for key in (connected.access_key, connected.secret_key):
        assert not any(key in text for text in texts)
    assert len(texts) > 12


def test_a_lock_not_refreshed_for_lock_expiry_seconds_is_taken_over(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    (project / ".lsqsync").mkdir(exist_ok=True)
    with StateFile.open(project / ".lsqsync" / "state.db") as holder:
        lock = holder.acquire_lock("apply")
        time.sleep(1.2)
        code, out, _ = run(["apply", "p.json", "--lock-expiry", "1"], capsys)
        assert code == 0
        assert "applied: " in out
        assert holder.release_lock(lock.id) is False  # it was taken over


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ({"expires_at": "2020-01-01T00:00:00Z"},
         "the plan expired at 2020-01-01T00:00:00Z; make a new plan"),
        ({"state": {"lineage": "00000000-0000-4000-8000-000000000000", "serial": 3}},
         "the plan was made against state lineage 00000000-0000-4000-8000-000000000000, but "
         "this state file is lineage "),
    ],
)  # fmt: skip
def test_expired_plans_and_plans_of_another_state_are_refused(
    connected: Emulator,
    project: Path,
    capsys: pytest.CaptureFixture[str],
    edit: dict[str, object],
    reason: str,
) -> None:
    import json

    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    saved = json.loads((project / "p.json").read_text())
    # a plan made so (the digest covers these members: edited by hand, it is refused as such)
    made = {**saved, **edit}
    made["digest"] = compute_digest(from_json(made))
    (project / "p.json").write_text(json.dumps(made))
    code, out, err = run(["apply", "p.json"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"error: p.json: refused: {reason}")
    assert writes(connected) == []


def test_a_plan_edited_after_review_is_refused(
    connected: Emulator, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    saved = json.loads((project / "p.json").read_text())
    saved["changes"][0]["fields"][0]["after"] = "something nobody reviewed"
    (project / "p.json").write_text(json.dumps(saved))
    code, out, err = run(["apply", "p.json"], capsys)
    assert (code, out) == (1, "")
    assert "the plan was modified after it was made" in err
    assert writes(connected) == []


def test_keys_refused_during_the_re_read_stop_the_run_before_any_write(
    connected: Emulator,
    project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    monkeypatch.setenv("LSQ_SECRET_KEY", "a-secret-key-that-is-not-the-account-s")
    code, out, err = run(["apply", "p.json"], capsys)
    assert (code, out) == (1, "")
    assert err.splitlines()[1].startswith("error: LeadSquared refused the keys")
    assert writes(connected) == []
    with StateFile.open(project / ".lsqsync" / "state.db", create=False) as st:
        (only,) = st.runs()
        assert (only.outcome, only.finished is not None, only.serial) == ("failed", True, None)


def test_commands_that_only_read_the_state_file_never_change_it(
    connected: Emulator,
    project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    assert run(["apply", "p.json"], capsys)[0] == 0
    path = project / ".lsqsync" / "state.db"
    with StateFile.open(path) as st:
        (applied,) = st.runs()
    path.chmod(0o644)  # loosened by hand: only a writing command tightens it
    before = path.read_bytes()
    commands = [
        ["plan", *NOW], ["plan", "--target", "close-signed-deals", *NOW], ["state", "runs"],
        ["state", "show", "last", "--format", "csv"], ["drift"],
        ["rollback", applied.id, "--out", "back.json"],
    ]  # fmt: skip
    for args in commands:
        code, _, err = run(args, capsys)
        assert code in (0, 2), (args, err)
        assert "setting it to 600" not in err
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    db = sqlite3.connect(path, isolation_level=None)  # back to the previous schema: read, not
    db.execute("ALTER TABLE results DROP COLUMN current")  # migrated, by reading commands
    db.execute("PRAGMA user_version = 1")
    db.close()
    before = path.read_bytes()
    for args in (["state", "show", "last", "--format", "json"], ["plan", *NOW]):
        code, _, err = run(args, capsys)
        assert code == 0, (args, err)
    assert json.loads(run(["state", "show", "last", "--format", "json"], capsys)[1])["results"]
    assert path.read_bytes() == before
