"""plan, apply, drift and rollback against accounts whose rate limit is not the documented one,
refusing in each of the forms real accounts use (429, 403, 200), end to end over real HTTP.

Windows are scaled down (2 calls per 0.25 s stands for 2 per 5 s) except where a case says
otherwise; the data set is the example project's (two batches)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cli_helpers import run
from crm_helpers import NO_LIMIT, example_project, requests_log, write_directly, writes

from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.lsq import LsqClient
from lsqsync.state.store import StateFile

NOW = ["--now", "2026-11-27 10:00:00"]


@pytest.fixture(scope="module")
def account_emulator() -> Iterator[Emulator]:
    # 200 opportunities: the example rules change 39 of them, two batches
    with Emulator(opportunities=200, settings=Settings(rate_limit_calls=None)) as emu:
        yield emu


@pytest.fixture
def connected(account_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The module's emulator with fresh data, and the connection to it in the environment."""
    account_emulator.settings.update(asdict(Settings(rate_limit_calls=None)))
    account_emulator.reset()
    monkeypatch.setenv("LSQ_HOST", account_emulator.url)
    monkeypatch.setenv("LSQ_ACCESS_KEY", DEMO_ACCESS_KEY)
    monkeypatch.setenv("LSQ_SECRET_KEY", DEMO_SECRET_KEY)
    return account_emulator


def refused(emu: Emulator) -> int:
    """Calls the emulator refused for the rate limit since its log was last cleared."""
    return sum(1 for e in requests_log(emu) if e["rate_limited"])


def lessons(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The limits refusals taught (what a refusal at the pace already in force never does)."""
    return [r.getMessage() for r in caplog.records if "rate limit learned" in r.getMessage()]


def clear_log(emu: Emulator) -> None:
    requests.delete(emu.url + "/_emulator/requests", timeout=5).raise_for_status()


def results(project: Path) -> list[str]:
    with StateFile.open(project / ".lsqsync" / "state.db", create=False) as st:
        return [r.status for run in st.runs() for r in st.results(run.id)]


STORY = [
    (["plan", "--out", "p.json", *NOW], 0),
    (["apply", "p.json"], 0),
    (["drift"], 0),
    (["rollback", "last", "--out", "back.json"], 0),
    (["apply", "back.json"], 0),
]


@dataclass(frozen=True)
class Account:
    form: int  # how the account refuses: 429, 403 or 200
    calls: int
    seconds: float
    bulk: tuple[int, float] | None = None

    def settings(self) -> dict[str, Any]:
        bulk = self.bulk or (None, 5.0)
        return {
            "rate_limit_calls": self.calls, "rate_limit_seconds": self.seconds,
            "bulk_rate_limit_calls": bulk[0], "bulk_rate_limit_seconds": bulk[1],
            "rate_limit_response": self.form,
        }  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("form", [429, 403, 200])
def test_every_command_learns_the_limit_from_a_refusal_in_any_form_and_loses_nothing(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    form: int,
) -> None:
    project = example_project(tmp_path / "project", rate_limit="auto")
    monkeypatch.chdir(project)
    connected.settings.update(Account(form, 2, 0.25).settings())
    for step, (args, expected) in enumerate(STORY):
        # a cache of its own: each command starts at the documented 25 calls per 5 s, is
        # refused, and must learn
        monkeypatch.setenv("LSQSYNC_CACHE_DIR", str(tmp_path / f"cache{step}"))
        clear_log(connected)
        code, out, err = run(args, capsys)
        assert code == expected, (args, out, err)
        assert refused(connected) >= 1, args
        if args[0] == "apply":
            assert "  rate limit: 2 calls per 0.25 s (learned " in out
            assert f"from LeadSquared's refusal: HTTP {form}: API calls exceeded the limit " in out
    assert set(results(project)) == {"applied"}


@pytest.mark.parametrize(
    ("account", "rate_limit", "bulk_line"),
    [
        # 10 per 5 s (scaled): the story's commands, run back to back, go over it once (a
        # window of a second: on a busy machine, half a second could see the calls spread out)
        (Account(200, 10, 1.0), "auto", None),
        # a bulk bucket below the account's: Bulk Update refused at its limit, reads are not
        (Account(200, 10, 0.5, bulk=(1, 0.5)), "{calls: 10, per_seconds: 0.5}",
         "  bulk limit: 1 call per 0.5 s (learned "),
        # the real 5 s form, at the top tier: the documented limit is right, nothing is refused
        (Account(200, 25, 5.0), "auto", None),
    ],
    ids=["10-per-window", "bulk-below-account", "25-per-5s"],
)  # fmt: skip
def test_the_story_against_accounts_of_10_and_25_calls_and_a_bulk_bucket(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    account: Account,
    rate_limit: str,
    bulk_line: str | None,
) -> None:
    project = example_project(tmp_path / "project", rate_limit=rate_limit)
    monkeypatch.chdir(project)
    connected.settings.update(account.settings())
    caplog.set_level(logging.INFO, logger="lsqsync")
    story = STORY if account.calls < 25 else STORY[:2]
    outputs = [run(args, capsys) for args, _ in story]
    assert [code for code, _, _ in outputs] == [expected for _, expected in story]
    assert set(results(project)) == {"applied"}
    if account.calls == 25:
        assert refused(connected) == 0  # the story's 10 calls never fill a window of 25
        assert "  rate limit: 25 calls per 5 s (assumed: " in outputs[1][1]
    else:
        # refused until learned, once: the commands after the lesson start at its pace
        assert refused(connected) >= 1
        assert len(lessons(caplog)) == 1
    if bulk_line:
        assert bulk_line in outputs[1][1]


def test_the_learned_limit_is_used_from_the_second_run_on(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(example_project(tmp_path / "project", rate_limit="auto"))
    connected.settings.update(Account(200, 2, 0.25).settings())
    caplog.set_level(logging.INFO, logger="lsqsync")
    assert run(["plan", *NOW], capsys)[0] == 0
    assert refused(connected) >= 1
    assert len(lessons(caplog)) == 1
    caplog.clear()
    assert run(["plan", *NOW], capsys)[0] == 0
    # nothing to learn: it started at the pace learned before (on a busy machine a call may
    # still arrive early enough to be refused — at the same limit, the margin's doing)
    assert lessons(caplog) == []
    code, out, _ = run(["whoami"], capsys)
    assert code == 0
    assert "rate:  2 calls per 0.25 s (learned 20" in out
    assert "bulk:  none known: Bulk Update is paced by the account's limit" in out
    assert re.search(r"cache: .*accounts\.json \(what refusals taught", out)


def test_a_configured_limit_above_the_accounts_is_lowered_for_the_run_with_a_warning(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    project = example_project(tmp_path / "project", rate_limit="{calls: 25, per_seconds: 5}")
    monkeypatch.chdir(project)
    connected.settings.update(Account(429, 2, 0.25).settings())
    for _ in range(2):  # the file wins again in the next run: it is never overruled silently
        caplog.clear()
        assert run(["plan", *NOW], capsys)[0] == 0
        assert (
            "lsq: rate_limit in lsqsync.yml allows 25 calls per 5 s, but LeadSquared "
            "refused a call at 2 calls per 0.25 s (HTTP 429: API calls exceeded the limit of 2 "
            "in 0.25 second(s)): pacing at that for the rest of this run. Set rate_limit to "
            "{calls: 2, per_seconds: 0.25} in lsqsync.yml"
        ) in caplog.text


def stamping_project(root: Path) -> Path:
    """A project whose one rule stamps every opportunity of type 12000 (101 here: 5 batches)."""
    (root / "rules").mkdir(parents=True)
    (root / "lsqsync.yml").write_text(
        f"version: 1\nrate_limit: {NO_LIMIT}\nsafety: {{max_changes: 1000, max_change_ratio: 1}}\n"
    )
    (root / "rules" / "stamp.yml").write_text(
        "version: 1\nrules:\n  - {name: stamp, opportunity_type: 12000, set: {mx_Custom_9: x}}\n"
    )
    return root


def test_a_batch_still_refused_after_every_retry_is_not_sent_and_the_next_apply_sends_it(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from lsqsync.apply import runner

    project = stamping_project(tmp_path / "project")
    monkeypatch.chdir(project)
    code, out, _ = run(["plan", "--out", "p.json", *NOW], capsys)
    assert code == 0
    # Another integration has spent the account's bulk budget for the next minute, and the
    # client gives up at the first refusal (its retry budget is spent).
    connected.settings.update(Account(200, 1000, 1.0, bulk=(1, 60.0)).settings())
    write_directly(connected, [])
    opened: Callable[..., LsqClient] = runner.open_client

    def impatient(config: Any) -> LsqClient:
        client = opened(config)
        client._transport._rate_limit_retries = 0
        return client

    monkeypatch.setattr(runner, "open_client", impatient)
    clear_log(connected)

    code, out, _ = run(["apply", "p.json", "--workers", "1"], capsys)

    assert code == 3
    lines = out.splitlines()
    assert lines[0].endswith(": partial.")
    assert lines[1] == (
        "  applied: 0, already current: 0, stale: 0, failed: 0, unknown: 0, not sent: 101 "
        "(fields of 101 opportunities)"
    )
    assert "  bulk limit: 1 call per 60 s (learned " in out
    assert "apply the same plan again to send the fields not sent" in out
    # the first batch was refused; the second, already handed to the worker, was not sent, and
    # the other three were not even journaled
    assert "not sending the other 3 batches; apply the plan again to send them" in caplog.text
    assert len(writes(connected)) == 1
    assert set(results(project)) == {"not_sent"}
    code, shown, _ = run(["state", "show", "last", "--format", "json"], capsys)
    assert {r["message"] for r in json.loads(shown)["results"]} == {
        "not sent: LeadSquared kept refusing the call for the account's rate limit (API calls "
        "exceeded the limit of 1 in 60 second(s))"
    }
    with StateFile.open(project / ".lsqsync" / "state.db", create=False) as st:
        assert [b.status for b in st.batches(st.run("last").id)] == ["failed", "failed"]

    # The account is quiet again (and this is another machine, which learned nothing).
    monkeypatch.setattr(runner, "open_client", opened)
    monkeypatch.setenv("LSQSYNC_CACHE_DIR", str(tmp_path / "another-cache"))
    connected.settings.update(Account(429, 1000, 1.0).settings())
    clear_log(connected)
    code, out, _ = run(["apply", "p.json"], capsys)
    assert code == 0
    assert out.splitlines()[1].startswith("  applied: 101, already current: 0, ")
    assert len(writes(connected)) == 5


def test_unanswered_writes_whose_re_read_is_refused_stay_unknown(
    connected: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lsqsync.apply import engine
    from lsqsync.errors import RateLimited

    monkeypatch.chdir(example_project(tmp_path / "project"))
    assert run(["plan", "--out", "p.json", *NOW], capsys)[0] == 0
    reads: list[int] = []
    read, send = engine.read_current, engine.send_batch

    def refused_the_second_time(*args: Any) -> Any:
        reads.append(1)
        if len(reads) > 1:  # reading back what the unanswered writes did
            raise RateLimited("refused", status=429)
        return read(*args)

    def unanswered(*args: Any) -> Any:
        connected.settings.drop_rate = 1.0  # every write lands, and its answer never arrives
        return send(*args)

    monkeypatch.setattr(engine, "read_current", refused_the_second_time)
    monkeypatch.setattr(engine, "send_batch", unanswered)
    code, out, _ = run(["apply", "p.json"], capsys)
    assert code == 3
    assert ", unknown: 91 (fields of 39 opportunities)" in out.splitlines()[1]
    code, shown, _ = run(["state", "show", "last", "--format", "json"], capsys)
    assert {r["message"] for r in json.loads(shown)["results"]} == {
        "no answer, and re-reading was refused for the account's rate limit (429)"
    }
