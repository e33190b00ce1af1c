"""The process-wide client-side rate limiter.

LeadSquared counts calls by their *arrival* in a strict sliding window that covers the whole
account. The limiter keeps a sliding log of the times it granted a call and lets at most
``calls`` grants lie within ``per_seconds + margin``: a slot granted at t is reused no earlier
than t + per_seconds + margin. The margin covers the difference in *one-way* latency (grant to
arrival) between the two calls that share a slot one window apart: if the earlier one took d1
to arrive and the later one d2, they land W + margin + d2 - d1 apart, which must stay above W.

The margin starts small and adapts: a 429 means the spread was larger than the margin (or that
another integration is using the account's budget), so the margin doubles, at most once a
window and up to ``max_margin``. A run thus pays a 429 at most a few times instead of paying a
worst-case margin in every window.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

# Below this a computed wait is float noise: sleeping it could not move a coarse clock, and the
# loop in acquire() would spin.
_EPSILON = 1e-9

# The starting margin: 0.1 s covers a one-way latency spread of 100 ms (internet jitter is
# typically tens of milliseconds) and costs 2% of the documented 5 s window. For short windows
# (the emulator scaled down in tests and benchmarks) it is at most 5% of the window.
_MARGIN_SECONDS = 0.10
_MARGIN_SHARE = 0.05
# How far 429s may widen it: 0.5 s, or 10% of a short window. Past that, more margin costs
# more than the odd 429 it avoids.
_MAX_MARGIN_SECONDS = 0.50
_MAX_MARGIN_SHARE = 0.10


def default_margin(per_seconds: float) -> float:
    return min(_MARGIN_SECONDS, _MARGIN_SHARE * per_seconds)


def default_max_margin(per_seconds: float) -> float:
    return min(_MAX_MARGIN_SECONDS, _MAX_MARGIN_SHARE * per_seconds)


class RateLimiter:
    """At most ``calls`` calls per ``per_seconds`` (plus ``margin``), shared by every thread.

    ``calls=None`` (or :meth:`off`) means no limit. ``acquire()`` blocks until a call may be
    made; after a 429, ``refused()`` widens the margin and ``penalize(seconds)`` holds every
    acquisition until that time passed. ``max_margin`` bounds the widening (at least
    ``margin``; equal to it: a fixed margin).
    """

    def __init__(
        self,
        calls: int | None,
        per_seconds: float,
        *,
        margin: float | None = None,
        max_margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls is not None and calls < 1:
            raise ValueError("calls must be at least 1 (or None for no limit)")
        if per_seconds <= 0:
            raise ValueError("per_seconds must be positive")
        if (margin is not None and margin < 0) or (max_margin is not None and max_margin < 0):
            raise ValueError("margin must not be negative")
        self.calls = calls
        self.per_seconds = per_seconds
        self.margin = default_margin(per_seconds) if margin is None else margin
        self.max_margin = max(
            self.margin, default_max_margin(per_seconds) if max_margin is None else max_margin
        )
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._grants: deque[float] = deque()
        self._blocked_until = float("-inf")
        self._widened_at = float("-inf")

    @classmethod
    def off(cls) -> RateLimiter:
        """No client-side limit. It keeps no shared state, so ``penalize`` does nothing and each
        caller backs off from a 429 on its own."""
        return cls(None, 1.0)

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

    def refused(self) -> None:
        """A call was answered 429: double the margin (from at least a quarter of the maximum),
        at most once a window — the calls already granted under the old margin may be refused
        too, and they say nothing about the new one."""
        if self.calls is None:
            return
        with self._lock:
            now = self._clock()
            if self.margin >= self.max_margin or now - self._widened_at < self.window:
                return
            self.margin = min(self.max_margin, max(2 * self.margin, self.max_margin / 4))
            self._widened_at = now

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
