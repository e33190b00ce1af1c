from __future__ import annotations

import itertools
import logging
import threading
import time

import pytest
from lsq_helpers import FakeClock

from lsqsync.lsq import Budget, Limit, RateLimiter
from lsqsync.lsq.ledger import Lesson, MemoryLedger
from lsqsync.lsq.ratelimit import _percentiles, is_refusal, named_limit


def limiter(calls: int = 3, per: float = 1.0, margin: float = 0.1) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(calls, per, margin=margin, clock=clock, sleep=clock.sleep), clock


def test_calls_within_the_budget_do_not_wait() -> None:
    lim, clock = limiter(calls=3)
    assert [lim.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert clock.sleeps == []


def test_a_slot_is_reused_one_window_plus_margin_after_it_was_granted() -> None:
    lim, clock = limiter(calls=3, per=1.0, margin=0.1)
    start = clock.now
    lim.acquire()
    clock.now += 0.4
    lim.acquire()
    lim.acquire()
    # the first grant (at start) frees at start + 1.1; the second (start + 0.4) at start + 1.5
    assert lim.acquire() == pytest.approx(0.7)
    assert clock.now == pytest.approx(start + 1.1)
    assert lim.acquire() == pytest.approx(0.4)
    assert clock.now == pytest.approx(start + 1.5)
    assert clock.sleeps == pytest.approx([0.7, 0.4])


def test_no_window_ever_holds_more_than_the_budget() -> None:
    lim, clock = limiter(calls=5, per=1.0, margin=0.05)
    grants = []
    for _ in range(23):
        lim.acquire()
        grants.append(clock.now)
    for i in range(len(grants) - 5):
        assert grants[i + 5] - grants[i] >= 1.05 - 1e-9
    assert grants[-1] - grants[0] == pytest.approx(4 * 1.05)


def test_default_margin_starts_at_a_tenth_of_a_second_or_5_percent_of_a_short_window() -> None:
    assert RateLimiter(25, 5.0).margin == pytest.approx(0.1)
    assert RateLimiter(25, 5.0).window == pytest.approx(5.1)
    assert RateLimiter(25, 5.0).max_margin == pytest.approx(0.5)
    assert RateLimiter(25, 0.5).margin == pytest.approx(0.025)
    assert RateLimiter(25, 0.5).max_margin == pytest.approx(0.05)
    assert RateLimiter(25, 60.0).margin == pytest.approx(0.1)
    assert RateLimiter(25, 60.0).max_margin == pytest.approx(0.5)
    assert RateLimiter(25, 5.0, margin=0.0).margin == 0.0
    # an explicit margin above the default maximum is never narrowed
    assert RateLimiter(25, 5.0, margin=0.8).max_margin == pytest.approx(0.8)


def test_a_429_doubles_the_margin_at_most_once_a_window_up_to_the_maximum() -> None:
    lim, clock = limiter(calls=3, per=5.0, margin=0.1)
    lim.max_margin = 0.5
    lim.refused()
    assert lim.margin == pytest.approx(0.2)
    # more 429s for calls granted under the old margin: no further widening
    lim.refused()
    clock.now += 5.0
    lim.refused()
    assert lim.margin == pytest.approx(0.2)
    clock.now += 0.2  # a whole window (5.2 s) after the widening
    lim.refused()
    assert lim.margin == pytest.approx(0.4)
    clock.now += 10
    lim.refused()
    assert lim.margin == pytest.approx(0.5)
    clock.now += 10
    lim.refused()
    assert lim.margin == pytest.approx(0.5)
    assert clock.sleeps == []  # widening never waits by itself


def test_a_zero_margin_widens_from_a_quarter_of_the_maximum() -> None:
    lim = RateLimiter(25, 5.0, margin=0.0, max_margin=0.4, clock=FakeClock())
    lim.refused()
    assert lim.margin == pytest.approx(0.1)


def test_a_fixed_margin_never_widens() -> None:
    lim = RateLimiter(25, 5.0, margin=0.25, max_margin=0.25, clock=FakeClock())
    lim.refused()
    assert lim.margin == 0.25
    off = RateLimiter.off()
    off.refused()
    assert off.unlimited


def test_a_widened_margin_delays_the_reuse_of_slots_already_granted() -> None:
    lim, clock = limiter(calls=2, per=1.0, margin=0.05)
    lim.max_margin = 0.2
    start = clock.now
    lim.acquire()
    lim.acquire()
    lim.refused()  # 0.05 → 0.1
    assert lim.acquire() == pytest.approx(1.1)
    assert clock.now == pytest.approx(start + 1.1)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((0, 5.0), {}),
        ((25, 0.0), {}),
        ((25, -1.0), {}),
        ((25, 5.0), {"margin": -0.1}),
        ((25, 5.0), {"max_margin": -0.1}),
    ],
)
def test_invalid_settings_are_refused(args: tuple[int, float], kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RateLimiter(*args, **kwargs)


def test_penalize_holds_every_acquisition_until_it_has_passed() -> None:
    lim, clock = limiter(calls=10)
    lim.acquire()
    lim.penalize(2.0)
    lim.penalize(0.5)  # a shorter penalty never shortens a longer one
    assert lim.acquire() == pytest.approx(2.0)
    assert clock.sleeps == pytest.approx([2.0])
    assert lim.acquire() == 0.0


def test_penalize_of_zero_or_less_changes_nothing() -> None:
    lim, clock = limiter(calls=10)
    lim.penalize(0)
    lim.penalize(-3)
    assert lim.acquire() == 0.0
    assert clock.sleeps == []


def test_off_never_waits_and_ignores_penalties() -> None:
    off = RateLimiter.off()
    off.penalize(100)
    assert off.unlimited
    assert [off.acquire() for _ in range(1000)] == [0.0] * 1000
    assert repr(off) == "RateLimiter.off()"
    assert repr(RateLimiter(25, 5.0)) == "RateLimiter(calls=25, per_seconds=5, margin=0.1)"


def test_the_lock_is_not_held_while_sleeping() -> None:
    clock = FakeClock()
    others_finished: list[bool] = []

    def sleep(seconds: float) -> None:
        # Another thread must be able to use the limiter while this one waits.
        other = threading.Thread(target=lim.penalize, args=(0.0,))
        other.start()
        other.join(timeout=2)
        others_finished.append(not other.is_alive())
        clock.sleep(seconds)

    lim = RateLimiter(1, 1.0, margin=0.0, clock=clock, sleep=sleep)
    lim.acquire()
    assert lim.acquire() == pytest.approx(1.0)
    assert others_finished == [True]


@pytest.mark.slow
def test_real_clock_and_threads_keep_every_window_within_the_budget() -> None:
    lim = RateLimiter(5, 0.2)  # margin 0.01 s
    grants: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            lim.acquire()
            with lock:
                grants.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    grants.sort()
    assert len(grants) == 15
    for i in range(len(grants) - 5):
        assert grants[i + 5] - grants[i] >= 0.21 - 0.005
    # 15 calls at 5 per 0.21 s: the last batch starts two windows after the first
    assert 0.42 <= time.monotonic() - started < 1.5


# -- what a refusal says ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exception_type", "message", "refused"),
    [
        (429, None, "", True),
        (200, "MXAPIRateLimitExceededException", "", True),
        (403, None, "API calls exceeded the limit of 20 in 5 second(s)", True),
        (500, None, "Rate limit exceeded, slow down", True),
        (403, None, "You have exceeded the rate-limit", True),
        (500, "MXInvalidDataTypeException", "value exceeds the maximum length limit of 200", False),
        (403, "MXAccessDenied", "Only admins", False),
        (200, None, "", False),
    ],
)
def test_a_refusal_is_recognised_whatever_its_status(
    status: int, exception_type: str | None, message: str, refused: bool
) -> None:
    assert is_refusal(status, exception_type, message) is refused


@pytest.mark.parametrize(
    ("message", "limit"),
    [
        ("API calls exceeded the limit of 20 in 5 second(s)", Limit(20, 5.0)),
        ("api calls exceeded the LIMIT of 2 in 0.25 seconds", Limit(2, 0.25)),
        ("Rate limit exceeded, slow down", None),
        ("API calls exceeded the limit of 0 in 5 second(s)", None),
    ],
)
def test_the_limit_a_refusal_names_is_read(message: str, limit: Limit | None) -> None:
    assert named_limit(message) == limit


def test_limits_compare_by_calls_per_window_and_pace() -> None:
    assert Limit(10, 5.0).stricter_than(Limit(20, 5.0))
    assert not Limit(20, 5.0).stricter_than(Limit(20, 5.0))
    assert Limit(20, 60.0).stricter_than(Limit(20, 5.0))  # the same burst, a slower pace
    assert Limit(2, 0.25).stricter_than(Limit(25, 5.0))  # a smaller burst, though faster
    assert str(Limit(1, 5.0)) == "1 call per 5 s"
    assert str(Limit(20, 2.5)) == "20 calls per 2.5 s"
    with pytest.raises(ValueError, match="at least 1"):
        Limit(0, 5.0)
    with pytest.raises(ValueError, match="positive"):
        Limit(5, 0.0)


# -- learning ---------------------------------------------------------------------------------

ASSUMED = Budget.assumed()


class Recording(MemoryLedger):
    """A process's ledger that notes each lesson it is given: (bucket, limit, evidence)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.taught: list[tuple[str, Limit, str]] = []

    def learn(self, bucket: str, lesson: Lesson) -> None:
        super().learn(bucket, lesson)
        self.taught.append((bucket, Limit(lesson.calls, lesson.per_seconds), lesson.evidence))


def auto(
    start: Budget = ASSUMED, bulk: Budget | None = None
) -> tuple[RateLimiter, FakeClock, list[tuple[str, Limit, str]]]:
    clock = FakeClock()
    ledger = Recording(clock)
    lim = RateLimiter(
        start.limit.calls, start.limit.per_seconds, kind=start.kind, origin=start.origin,
        bulk=bulk, clock=clock, sleep=clock.sleep, ledger=ledger,
    )  # fmt: skip
    return lim, clock, ledger.taught


def grants_in(lim: RateLimiter, clock: FakeClock, seconds: float, bulk: bool = False) -> int:
    """How many calls the limiter grants within ``seconds`` of fake time."""
    end = clock.now + seconds
    granted = 0
    while True:
        lim.acquire(bulk)
        if clock.now >= end - 1e-9:
            return granted
        granted += 1


def test_the_named_limit_is_adopted_at_once_and_remembered() -> None:
    lim, clock, lessons = auto()
    assert lim.refused(named=Limit(10, 5.0), evidence="HTTP 200: …limit of 10…") == "learned"
    assert (lim.calls, lim.per_seconds) == (10, 5.0)
    assert lessons == [("account", Limit(10, 5.0), "HTTP 200: …limit of 10…")]
    assert lim.budgets()["account"].startswith("10 calls per 5 s (learned ")
    assert grants_in(lim, clock, 5.0) == 10
    assert lim.margin == pytest.approx(0.1)  # a refusal the limit explains widens nothing


def test_a_learned_limit_is_only_ever_lowered_by_later_refusals() -> None:
    lim, _, lessons = auto(Budget.learned(Limit(10, 5.0), "2026-12-01T00:00:00Z", "x"))
    assert lim.refused(named=Limit(20, 5.0)) == "slowed"  # somebody else spends the budget
    assert lim.calls == 10
    assert lim.refused(named=Limit(5, 5.0)) == "learned"
    assert lim.calls == 5
    assert [lesson[1] for lesson in lessons] == [Limit(5, 5.0)]


def test_a_configured_limit_is_never_raised_and_a_lower_one_is_kept_beside_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lim, clock, _ = auto(Budget.configured(Limit(5, 5.0)))
    assert lim.refused(named=Limit(20, 5.0)) == "slowed"
    assert lim.calls == 5
    lim, clock, _ = auto(Budget.configured(Limit(25, 5.0)))
    assert lim.refused(named=Limit(2, 0.25), evidence="HTTP 429: …") == "learned"
    assert "rate_limit in lsqsync.yml allows 25 calls per 5 s, but LeadSquared refused" in (
        caplog.text
    )
    assert "Set rate_limit to {calls: 2, per_seconds: 0.25} in lsqsync.yml" in caplog.text
    # both hold: 2 per 0.25 s, and never more than 25 in 5 s (which 2 per 0.25 s alone allows)
    assert grants_in(lim, clock, 5.0) == 25
    assert lim.budgets()["account"].startswith("2 calls per 0.25 s (configured 25 calls per 5 s")


def test_the_same_limit_named_again_is_jitter_and_widens_the_margin_only() -> None:
    lim, _, lessons = auto(Budget.learned(Limit(20, 5.0), "t", "x"))
    assert lim.refused(named=Limit(20, 5.0)) == "margin"
    assert (lim.calls, lim.margin) == (20, pytest.approx(0.2))
    assert lessons == []


def test_a_bulk_refusal_below_the_accounts_known_limit_is_the_bulk_buckets() -> None:
    lim, clock, lessons = auto(Budget.learned(Limit(20, 5.0), "t", "x"))
    assert lim.refused(bulk=True, named=Limit(5, 5.0)) == "learned"
    assert lessons[0][:2] == ("bulk", Limit(5, 5.0))
    assert lim.calls == 20
    assert set(lim.budgets()) == {"account", "bulk"}
    assert grants_in(lim, clock, 5.0, bulk=True) == 5
    clock.now += 10
    assert grants_in(lim, clock, 5.0) == 20  # reads draw from the account bucket only
    clock.now += 10
    for _ in range(20):
        lim.acquire()
    # a bulk call draws from both: the reads have used the account's window
    assert lim.acquire(bulk=True) == pytest.approx(5.1)
    assert lim.refused(bulk=True, named=Limit(5, 5.0)) == "margin"
    assert lim.refused(bulk=True, named=Limit(2, 5.0)) == "learned"
    assert lim.write_pace() == Limit(2, 5.0)


def test_while_the_accounts_limit_is_only_assumed_a_bulk_refusal_is_taken_as_the_accounts() -> None:
    lim, _, lessons = auto()
    assert lim.refused(bulk=True, named=Limit(10, 5.0)) == "learned"
    assert lessons[0][:2] == ("account", Limit(10, 5.0))
    assert set(lim.budgets()) == {"account"}


def test_a_configured_bulk_limit_is_drawn_from_by_bulk_calls_only() -> None:
    bulk = Budget.configured(Limit(2, 5.0), "rate_limit.bulk")
    lim, clock, _ = auto(Budget.configured(Limit(10, 5.0)), bulk)
    assert grants_in(lim, clock, 5.0, bulk=True) == 2
    assert lim.budgets()["bulk"] == "2 calls per 5 s (configured: rate_limit.bulk in lsqsync.yml)"
    assert lim.write_pace() == Limit(2, 5.0)


def test_refusals_naming_no_limit_halve_the_pace_and_each_quiet_window_gives_a_call_back() -> None:
    lim, clock, _ = auto(Budget.configured(Limit(20, 5.0)))
    assert lim.refused() == "slowed"
    assert lim.refused() == "slowed"  # the same window: no second halving
    assert "slowed to 10 by refusals that named no limit" in lim.budgets()["account"]
    clock.now += 5.0
    lim.refused()  # a window later: halved again
    assert "slowed to 5 " in lim.budgets()["account"]
    clock.now += 5.0 * 3  # three quiet windows: three calls back
    assert "slowed to 8 " in lim.budgets()["account"]
    clock.now += 5.0 * 20
    assert "slowed" not in lim.budgets()["account"]
    assert lim.calls == 20


def test_the_pace_never_drops_below_one_call_a_window() -> None:
    lim, clock, _ = auto(Budget.configured(Limit(2, 5.0)))
    for _ in range(5):
        clock.now += 5.0
        lim.refused()
    assert "slowed to 1 " in lim.budgets()["account"]
    assert grants_in(lim, clock, 5.0) == 1


def test_learning_a_window_of_another_length_rescales_the_default_margin() -> None:
    lim, _, _ = auto()
    lim.refused(named=Limit(2, 0.25))
    assert lim.margin == pytest.approx(0.0125)
    assert lim.max_margin == pytest.approx(0.025)


def test_an_unlimited_limiter_learns_nothing() -> None:
    off = RateLimiter.off()
    assert off.refused(named=Limit(2, 5.0)) == "margin"
    assert off.budgets() == {}
    assert off.write_pace() is None
    assert (off.calls, off.per_seconds) == (None, 1.0)


def test_a_call_granted_before_the_last_lesson_is_explained_by_it() -> None:
    lim, _, _ = auto()
    granted = lim.lessons
    assert lim.refused(named=Limit(10, 5.0)) == "learned"
    # another call of the same burst, refused too: nothing new, no margin, no slowing down
    assert lim.refused(named=Limit(10, 5.0), granted_after=granted) == "learned"
    assert lim.refused(granted_after=granted) == "learned"
    assert (lim.calls, lim.margin) == (10, pytest.approx(0.1))
    # a call granted at the learned pace and refused: the margin's doing
    assert lim.refused(named=Limit(10, 5.0), granted_after=lim.lessons) == "margin"
    assert lim.margin == pytest.approx(0.2)


# -- lessons shared through the ledger ----------------------------------------------------------


def sharing(ledger: MemoryLedger, clock: FakeClock, start: Budget = ASSUMED) -> RateLimiter:
    """A limiter of one more user of ``ledger`` (another process, another runner)."""
    return RateLimiter(
        start.limit.calls, start.limit.per_seconds, kind=start.kind, origin=start.origin,
        ledger=ledger, clock=clock, sleep=clock.sleep,
    )  # fmt: skip


def test_what_another_user_of_the_ledger_learns_is_adopted_before_its_next_grant() -> None:
    clock = FakeClock()
    ledger = MemoryLedger(clock)
    first, second = sharing(ledger, clock), sharing(ledger, clock)
    stricter = sharing(ledger, clock, Budget.learned(Limit(5, 5.0), "2026-12-01T00:00:00Z", "x"))
    granted = second.lessons
    evidence = "HTTP 200: API calls exceeded the limit of 10 in 5 second(s)"
    assert first.refused(named=Limit(10, 5.0), evidence=evidence) == "learned"
    assert second.calls == 25  # it has not asked for a grant since
    second.acquire()
    assert (second.calls, second.per_seconds) == (10, 5.0)
    assert second.budgets()["account"].startswith("10 calls per 5 s (learned 20")
    assert second.budgets()["account"].endswith(f"from LeadSquared's refusal: {evidence})")
    # its call granted before it knew, refused: nothing new — no margin, no slowing down
    assert second.refused(named=Limit(10, 5.0), granted_after=granted) == "learned"
    assert second.margin == pytest.approx(0.1)
    stricter.acquire()
    assert stricter.calls == 5  # a looser lesson is older news
    # together they keep to the lesson: 10 grants a window, whoever asks
    clock.now += 6.0
    end, granted_now = clock.now + 5.0, 0
    for lim in itertools.cycle((first, second)):
        lim.acquire()
        if clock.now >= end:
            break
        granted_now += 1
    assert granted_now == 10


def test_lessons_from_before_the_start_leave_a_configured_limit_alone_but_new_ones_lower_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    ledger = MemoryLedger(clock)
    ledger.learn("account", Lesson(10, 5.0, "2026-12-01T00:00:00Z", "an old refusal"))
    configured = sharing(ledger, clock, Budget.configured(Limit(25, 5.0)))
    configured.acquire()
    assert configured.calls == 25  # the configured limit wins over what was known at the start
    ledger.learn("account", Lesson(20, 5.0, "2026-12-02T00:00:00Z", "limit of 20 in 5"))
    ledger.learn("bulk", Lesson(2, 5.0, "2026-12-02T00:00:00Z", "limit of 2 in 5"))
    with caplog.at_level(logging.INFO):
        configured.acquire()
    assert configured.calls == 20  # as if it had met the refusal itself
    assert configured.budgets() == {
        "account": "20 calls per 5 s (configured 25 calls per 5 s in lsqsync.yml, lowered "
        "2026-12-02T00:00:00Z: limit of 20 in 5)",
        "bulk": "2 calls per 5 s (learned 2026-12-02T00:00:00Z from LeadSquared's refusal: "
        "limit of 2 in 5)",
    }
    assert "rate_limit in lsqsync.yml allows 25 calls per 5 s, but LeadSquared refused" in (
        caplog.text
    )
    assert "rate limit learned from the ledger bucket=bulk limit=2 calls per 5 s" in caplog.text


def test_each_grant_transaction_is_timed_and_the_figures_logged_when_the_limiter_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lim, _, _ = auto()
    assert lim.grant_latency() is None
    for _ in range(3):
        lim.acquire()
    count, median, p99 = lim.grant_latency() or (0, -1.0, -1.0)
    assert count == 3
    assert 0.0 <= median <= p99 < 1.0
    with caplog.at_level(logging.INFO):
        lim.close()
    assert "lsq: rate-limit ledger: 3 grant transactions, median " in caplog.text
    assert lim.where == "this process's memory (forgotten when it ends)"


def test_the_median_and_99th_percentile_are_by_nearest_rank() -> None:
    assert _percentiles([]) is None
    assert _percentiles([3.0]) == (1, 3.0, 3.0)
    assert _percentiles([4.0, 1.0, 3.0, 2.0]) == (4, 2.5, 4.0)
    many = [float(n) for n in range(1, 201)]
    assert _percentiles(many) == (200, 100.5, 198.0)
