"""What lsqsync remembers per account: the cache folder, the account's fingerprint (never its
key), the limits learned, and the limiter each run starts with — real files throughout."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from lsqsync.lsq import Limit, account_limiter, cache_dir
from lsqsync.lsq.accounts import ACCOUNTS_FILE, AccountCache, fingerprint
from lsqsync.lsq.ledger import Lesson

HOST = "https://api-in21.leadsquared.com"
KEY = "u$r$a7f3c0e9b8d14f2a9c6e5d4b3a2f1e0d9"
OTHER_KEY = "u$r$00000000111111112222222233333333"


def test_the_cache_folder_is_lsqsync_cache_dir_else_the_users_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cache_dir({"LSQSYNC_CACHE_DIR": str(tmp_path)}) == tmp_path
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir({"LSQSYNC_CACHE_DIR": " "}) == tmp_path / "xdg" / "lsqsync"


def test_the_fingerprint_names_host_and_key_and_tells_nothing_of_the_key() -> None:
    print_ = fingerprint(HOST, KEY)
    assert len(print_) == 16
    assert int(print_, 16) >= 0
    assert fingerprint(HOST + "/", f" {KEY} ") == print_
    assert fingerprint(HOST, OTHER_KEY) != print_
    assert fingerprint("https://api-us11.leadsquared.com", KEY) != print_
    assert not any(KEY[i : i + 6] in print_ for i in range(len(KEY) - 5))


def test_what_a_refusal_teaches_is_used_from_the_next_run_on(tmp_path: Path) -> None:
    first = account_limiter(HOST, KEY, configured=None, directory=tmp_path)
    assert first.budgets() == {
        "account": "25 calls per 5 s (assumed: LeadSquared's documented top tier, until the "
        "account names its own)"
    }
    evidence = "HTTP 200: API calls exceeded the limit of 10 in 5 second(s)"
    first.refused(named=Limit(10, 5.0), evidence=evidence)

    second = account_limiter(HOST + "/", KEY, configured=None, directory=tmp_path)
    assert (second.calls, second.per_seconds) == (10, 5.0)
    assert second.budgets()["account"].startswith("10 calls per 5 s (learned 20")
    assert second.budgets()["account"].endswith(f"from LeadSquared's refusal: {evidence})")
    # another account (another key) knows nothing of it
    assert account_limiter(HOST, OTHER_KEY, configured=None, directory=tmp_path).calls == 25


def test_the_cache_holds_the_host_and_a_fingerprint_never_a_key(tmp_path: Path) -> None:
    limiter = account_limiter(HOST, KEY, configured=None, directory=tmp_path)
    limiter.refused(named=Limit(20, 5.0), evidence="HTTP 429: limit of 20 in 5 second(s)")
    limiter.refused(bulk=True, named=Limit(10, 5.0), evidence="HTTP 429: limit of 10 in 5")
    path = tmp_path / ACCOUNTS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) in (0o700, 0o755)  # made by pytest, or by us
    raw = path.read_bytes()
    stored = json.loads(raw)["accounts"]
    assert list(stored) == [fingerprint(HOST, KEY)]
    entry = stored[fingerprint(HOST, KEY)]
    assert entry["host"] == HOST
    assert (entry["account"]["calls"], entry["bulk"]["calls"]) == (20, 10)
    every_file = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for i in range(len(KEY) - 5):
        assert KEY[i : i + 6].encode() not in every_file


def test_a_configured_limit_wins_over_what_was_learned_and_is_never_raised(tmp_path: Path) -> None:
    learned = account_limiter(HOST, KEY, configured=None, directory=tmp_path)
    learned.refused(named=Limit(20, 5.0))
    learned.refused(bulk=True, named=Limit(10, 5.0))
    lower = account_limiter(HOST, KEY, configured=Limit(5, 5.0), directory=tmp_path)
    assert lower.calls == 5
    assert lower.budgets()["account"] == "5 calls per 5 s (configured: rate_limit in lsqsync.yml)"
    assert lower.refused(named=Limit(20, 5.0)) == "slowed"
    assert lower.calls == 5
    # the bulk bucket the account showed is kept unless one is configured
    assert lower.budgets()["bulk"].startswith("10 calls per 5 s (learned ")
    configured_bulk = account_limiter(
        HOST, KEY, configured=Limit(5, 5.0), configured_bulk=Limit(2, 5.0), directory=tmp_path
    )
    assert configured_bulk.budgets()["bulk"] == (
        "2 calls per 5 s (configured: rate_limit.bulk in lsqsync.yml)"
    )


def test_an_unreadable_cache_is_ignored_and_an_unwritable_one_only_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / ACCOUNTS_FILE).write_text("{not json")
    limiter = account_limiter(HOST, KEY, configured=None, directory=tmp_path)
    assert limiter.calls == 25
    (tmp_path / ACCOUNTS_FILE).write_text(json.dumps({"accounts": {fingerprint(HOST, KEY): {
        "account": {"calls": "many"}, "bulk": {"calls": 0, "per_seconds": 5}}}}))  # fmt: skip
    assert account_limiter(HOST, KEY, configured=None, directory=tmp_path).budgets().keys() == {
        "account"
    }
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING):
        AccountCache(blocked).put("x", HOST, "account", Lesson(5, 5.0, "t", "e"))
    assert "cannot remember the learned rate limit" in caplog.text


def test_the_cache_keeps_the_hundred_accounts_used_last(tmp_path: Path) -> None:
    cache = AccountCache(tmp_path)
    for n in range(105):
        cache.put(f"acct{n}", HOST, "account", Lesson(5, 5.0, "t", "e"))
    cache.put("acct10", HOST, "bulk", Lesson(1, 5.0, "t", "e"))
    stored = json.loads((tmp_path / ACCOUNTS_FILE).read_text())["accounts"]
    assert len(stored) == 100
    assert list(stored)[-1] == "acct10"
    assert "acct5" in stored
    assert "acct4" not in stored
    assert set(cache.get("acct10")) == {"account", "bulk"}


def test_processes_on_one_machine_share_what_one_learns_while_they_run(tmp_path: Path) -> None:
    first = account_limiter(HOST, KEY, configured=None, directory=tmp_path)
    second = account_limiter(HOST, KEY, configured=None, directory=tmp_path)
    other_account = account_limiter(HOST, OTHER_KEY, configured=None, directory=tmp_path)
    second.acquire()
    first.refused(named=Limit(10, 5.0), evidence="HTTP 429: limit of 10 in 5 second(s)")
    second.acquire()  # it reads accounts.json again, which changed
    other_account.acquire()
    assert (second.calls, other_account.calls) == (10, 25)
    assert second.where == (
        f"{tmp_path / ACCOUNTS_FILE} (what refusals taught; delete it to forget)"
    )
