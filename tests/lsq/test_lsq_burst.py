"""The shared limiter against the emulator's account-wide sliding window, scaled down to 25 calls
per second, with six threads calling at once. (A shorter window leaves the limiter a margin of a
few milliseconds, which a busy machine's scheduling alone can exceed.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from lsq_helpers import api_log

from lsqsync.emulator.server import Emulator
from lsqsync.errors import RateLimited
from lsqsync.lsq import LsqClient, RateLimiter

CALLS = 60
THREADS = 6


def burst(client: LsqClient) -> list[BaseException]:
    """CALLS calls from THREADS threads at once; the exceptions they raised."""

    def call(_: int) -> BaseException | None:
        try:
            client.who_am_i()
        except RateLimited as e:
            return e
        return None

    with ThreadPoolExecutor(THREADS) as pool:
        return [e for e in pool.map(call, range(CALLS)) if e is not None]


@pytest.fixture
def scaled(emu: Emulator) -> Emulator:
    # A little network jitter, so arrival order is not send order.
    emu.settings.update(
        {"rate_limit_calls": 25, "rate_limit_seconds": 1.0, "latency_ms": 10, "jitter_ms": 10}
    )
    return emu


@pytest.mark.slow
def test_a_concurrent_burst_through_the_limiter_meets_no_429(
    scaled: Emulator, make_client: Callable[..., LsqClient]
) -> None:
    # No retries: a single 429 would surface as RateLimited.
    client = make_client(limiter=RateLimiter(25, 1.0), rate_limit_retries=0)
    started = time.monotonic()
    assert burst(client) == []
    elapsed = time.monotonic() - started
    log = api_log(scaled.url)
    assert [e["status"] for e in log] == [200] * CALLS
    arrivals = sorted(float(e["arrived_at"]) for e in log)
    assert all(arrivals[i + 25] - arrivals[i] > 1.0 for i in range(CALLS - 25))
    assert 2.0 <= elapsed < 8.0  # 60 calls need two full windows after the first 25


@pytest.mark.slow
def test_the_same_burst_without_the_limiter_is_refused(
    scaled: Emulator, make_client: Callable[..., LsqClient]
) -> None:
    client = make_client(limiter=None, rate_limit_retries=0)
    errors = burst(client)
    statuses = [e["status"] for e in api_log(scaled.url)]
    assert len(statuses) == CALLS
    assert statuses.count(429) > 0
    assert statuses.count(429) == len(errors)
    assert statuses.count(200) == CALLS - len(errors)
    assert {type(e) for e in errors} == {RateLimited}
