from __future__ import annotations

import threading
import time

import pytest
from lsq_helpers import FakeClock

from lsqsync.lsq import RateLimiter


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
