"""The process-wide client-side rate limiter.

LeadSquared counts calls by their *arrival* in a strict sliding window that covers the whole
account. The limiter keeps a sliding log of the times it granted a call and lets at most
``calls`` grants lie within ``per_seconds + margin``: a slot granted at t is reused no earlier
than t + per_seconds + margin, so network jitter cannot make two arrivals land inside one
window.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

# Below this a computed wait is float noise: sleeping it could not move a coarse clock, and the
# loop in acquire() would spin.
_EPSILON = 1e-9

# Default margin: the spread of one-way latency between two calls (send scheduling, network
# jitter, queueing before the server stamps the arrival). Internet jitter is tens of
# milliseconds and rarely exceeds 0.2 s, so 0.25 s covers it and costs 5% of the documented
# 5 s window. For short windows (the emulator scaled down in tests and benchmarks) jitter is
# loopback-small, so the margin is capped at 10% of the window instead of swallowing it.
_MARGIN_SECONDS = 0.25
_MARGIN_SHARE = 0.10


def default_margin(per_seconds: float) -> float:
    return min(_MARGIN_SECONDS, _MARGIN_SHARE * per_seconds)


class RateLimiter:
    """At most ``calls`` calls per ``per_seconds`` (plus ``margin``), shared by every thread.

    ``calls=None`` (or :meth:`off`) means no limit. ``acquire()`` blocks until a call may be
    made; ``penalize(seconds)`` (after a 429) holds every acquisition until that time passed.
    """

    def __init__(
        self,
        calls: int | None = 25,
        per_seconds: float = 5.0,
        *,
        margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls is not None and calls < 1:
            raise ValueError("calls must be at least 1 (or None for no limit)")
        if per_seconds <= 0:
            raise ValueError("per_seconds must be positive")
        if margin is not None and margin < 0:
            raise ValueError("margin must not be negative")
        self.calls = calls
        self.per_seconds = per_seconds
        self.margin = default_margin(per_seconds) if margin is None else margin
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._grants: deque[float] = deque()
        self._blocked_until = float("-inf")

    @classmethod
    def off(cls) -> RateLimiter:
        """No client-side limit. It keeps no shared state, so ``penalize`` does nothing and each
        caller backs off from a 429 on its own."""
        return cls(None)

    @property
    def unlimited(self) -> bool:
        return self.calls is None

    @property
    def window(self) -> float:
        return self.per_seconds + self.margin

    def __repr__(self) -> str:
        if self.calls is None:
            return "RateLimiter.off()"
        return (
            f"RateLimiter(calls={self.calls}, per_seconds={self.per_seconds:g}, "
            f"margin={self.margin:g})"
        )

    def acquire(self) -> float:
        """Block until a call may be made, record it, and return the seconds waited."""
        if self.calls is None:
            return 0.0
        start = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait(now)
                if wait <= _EPSILON:
                    self._grants.append(now)
                    return max(0.0, now - start)
            # Never sleep holding the lock: penalize() and the other threads' bookkeeping must
            # go on while this one waits.
            self._sleep(wait)

    def penalize(self, seconds: float) -> None:
        """Hold every acquisition until ``seconds`` from now (never shortens a longer hold)."""
        if self.calls is None or seconds <= 0:
            return
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def _wait(self, now: float) -> float:
        window = self.window
        while self._grants and now - self._grants[0] >= window - _EPSILON:
            self._grants.popleft()
        if self._blocked_until - now > _EPSILON:
            return self._blocked_until - now
        if self.calls is None or len(self._grants) < self.calls:
            return 0.0
        return self._grants[0] + window - now
