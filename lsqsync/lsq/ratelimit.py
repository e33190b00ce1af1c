"""The account's rate limit: what it is, how LeadSquared says a call went over it, and pacing
every call of every thread — and, through a shared ``Ledger``, of every process — to it.

LeadSquared counts calls by their *arrival* in a strict sliding window that covers the whole
account. The limiter lets at most ``calls`` grants lie within ``per_seconds + margin``: a slot
granted at t is reused no earlier than t + per_seconds + margin. The margin covers the
difference in *one-way* latency (grant to arrival) between the two calls that share a slot one
window apart: if the earlier one took d1 to arrive and the later one d2, they land
W + margin + d2 - d1 apart, which must stay above W. It starts small and doubles after a
refusal that the limit does not explain, at most once a window, up to ``max_margin``.

**Where the limit comes from** (``Budget.kind``):

- *configured* — ``rate_limit:`` in lsqsync.yml. Never raised: a refusal naming a lower limit
  adds that limit for the rest of the run (both are kept) and warns to fix the file.
- *learned* — named by one of the account's refusals ("API calls exceeded the limit of 20 in 5
  second(s)"), in this run or an earlier one, by this process or by another user of the ledger
  (``Ledger.lessons``). A refusal naming a lower limit replaces it at once, for every thread,
  and the ledger passes it on: every other user adopts it before its next grant.
- *assumed* — nothing known: LeadSquared's documented 25 calls per 5 s, the top tier, until the
  first refusal names the account's own limit.

A refusal that names no limit, or names one the pace already keeps to (another integration is
spending the budget), halves the pace of the buckets the call drew from — at most once a window —
and every window without one gives a call back: multiplicative decrease, slow recovery.

**Buckets.** Every call draws from the ``account`` bucket; Bulk Update also draws from the
``bulk`` bucket once one is known: configured, or learned from a Bulk Update refusal naming a
limit below the account's known one.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from lsqsync.clock import stamp, utcnow
from lsqsync.lsq.ledger import EPSILON, Ledger, Lesson, Lessons, MemoryLedger, Window, Windows

log = logging.getLogger(__name__)

Kind = Literal["configured", "learned", "assumed"]
BucketName = Literal["account", "bulk"]
# What a refusal changed: a limit was learned, or it is explained by the last one (the retry
# just waits for its slot); the pace was slowed; or nothing but the margin (jitter).
Verdict = Literal["learned", "slowed", "margin"]

# The starting margin: 0.1 s covers a one-way latency spread of 100 ms (internet jitter is
# typically tens of milliseconds) and costs 2% of the documented 5 s window. For short windows
# (the emulator scaled down in tests and benchmarks) it is at most 5% of the window.
_MARGIN_SECONDS = 0.10
_MARGIN_SHARE = 0.05
# How far refusals may widen it: 0.5 s, or 10% of a short window. Past that, more margin costs
# more than the odd refusal it avoids.
_MAX_MARGIN_SECONDS = 0.50
_MAX_MARGIN_SHARE = 0.10


def default_margin(per_seconds: float) -> float:
    return min(_MARGIN_SECONDS, _MARGIN_SHARE * per_seconds)


def default_max_margin(per_seconds: float) -> float:
    return min(_MAX_MARGIN_SECONDS, _MAX_MARGIN_SHARE * per_seconds)


@dataclass(frozen=True)
class Limit:
    """At most ``calls`` calls in any ``per_seconds``."""

    calls: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.calls < 1:
            raise ValueError("calls must be at least 1")
        if not (0 < self.per_seconds < math.inf):
            raise ValueError("per_seconds must be positive")

    def __str__(self) -> str:
        return f"{self.calls} call{'s' if self.calls != 1 else ''} per {self.per_seconds:g} s"

    def stricter_than(self, other: Limit) -> bool:
        """Fewer calls in a window, or a slower pace."""
        return (
            self.calls < other.calls
            or self.calls * other.per_seconds < other.calls * self.per_seconds
        )


# Every endpoint page: "25 calls in 5 seconds"; the plans' table puts it at the top tier.
DOCUMENTED = Limit(25, 5.0)


def slowest(limits: Iterable[Limit]) -> Limit | None:
    """The limit with the slowest pace (calls per second) among ``limits``."""
    return min(limits, key=lambda x: x.calls / x.per_seconds, default=None)


@dataclass(frozen=True)
class Budget:
    """What one bucket allows when a run starts, and why (shown by apply and whoami)."""

    limit: Limit
    kind: Kind
    origin: str

    @classmethod
    def configured(cls, limit: Limit, where: str = "rate_limit") -> Budget:
        return cls(limit, "configured", f"configured: {where} in lsqsync.yml")

    @classmethod
    def assumed(cls) -> Budget:
        return cls(
            DOCUMENTED,
            "assumed",
            "assumed: LeadSquared's documented top tier, until the account names its own",
        )

    @classmethod
    def learned(cls, limit: Limit, when: str, evidence: str) -> Budget:
        return cls(limit, "learned", f"learned {when} from LeadSquared's refusal: {evidence}")

    @classmethod
    def lesson(cls, lesson: Lesson) -> Budget:
        return cls.learned(Limit(lesson.calls, lesson.per_seconds), lesson.learned, lesson.evidence)


# -- recognising a refusal -------------------------------------------------------------------

RATE_LIMIT_EXCEPTION = "MXAPIRateLimitExceededException"
_NAMED = re.compile(r"limit\s+of\s+(\d{1,6})\s+in\s+(\d{1,6}(?:\.\d{1,6})?)\s*sec", re.I)
# "API calls exceeded the limit …", "Rate limit exceeded", "exceeded the rate limit": but not
# "exceeds the maximum length limit", which is a verdict on a value.
_OVER = re.compile(
    r"\bcalls?\b.{0,40}\bexceed|\bexceed\w*\b.{0,40}\brate[\s-]?limit|\brate[\s-]?limit\w*\b"
    r".{0,40}\bexceed",
    re.I | re.S,
)


def is_refusal(status: int, exception_type: str | None, message: str) -> bool:
    """Whether an answer says the call went over the rate limit — and so was not processed —
    whatever its HTTP status: 429; ``MXAPIRateLimitExceededException`` (seen with 200 and 403);
    or a message saying the calls exceeded a limit."""
    return (
        status == 429
        or (exception_type or "").strip() == RATE_LIMIT_EXCEPTION
        or _OVER.search(message) is not None
    )


def named_limit(message: str) -> Limit | None:
    """The limit a refusal names ("… exceeded the limit of 20 in 5 second(s)"), if it does."""
    found = _NAMED.search(message)
    if found is None:
        return None
    try:
        return Limit(int(found[1]), float(found[2]))
    except ValueError:  # "limit of 0 in 5": nothing to learn
        return None


# -- the limiter -----------------------------------------------------------------------------


class _Bucket:
    """One bucket's limits, where they come from, and its slow-down factor."""

    def __init__(self, budget: Budget, now: float) -> None:
        self.limits: tuple[Limit, ...] = (budget.limit,)
        self.kind: Kind = budget.kind
        self.origin = budget.origin
        self.factor = 1.0  # < 1 after refusals that named no limit
        self.slowed_at = float("-inf")
        self.changed_at = now

    @property
    def current(self) -> Limit:
        """The limit the pace is set by: the last one learned, else the first."""
        return self.limits[-1]

    def calls(self, limit: Limit) -> int:
        return max(1, math.floor(limit.calls * self.factor + 1e-9))

    def recover(self, now: float) -> None:
        """Every whole window since the last change gives back one call."""
        if self.factor >= 1.0:
            return
        window = self.current.per_seconds
        steps = math.floor((now - self.changed_at) / window)
        if steps > 0:
            self.factor = min(1.0, self.factor + steps / self.current.calls)
            self.changed_at += steps * window

    def slow(self, now: float) -> None:
        """Halve the pace, at most once a window: calls granted before the first refusal
        came back say nothing about the slower pace."""
        if now - self.slowed_at < self.current.per_seconds:
            return
        self.factor = max(1.0 / self.current.calls, self.factor / 2)
        self.slowed_at = self.changed_at = now

    def adopt(self, limit: Limit, origin: str, now: float) -> None:
        if self.kind == "configured":
            self.limits = (self.limits[0], limit)  # the configured limit still holds too
        else:
            self.limits, self.kind = (limit,), "learned"
        self.origin = origin
        self.factor, self.changed_at = 1.0, now

    def describe(self) -> str:
        text = f"{self.current} ({self.origin})"
        slowed = self.calls(self.current)
        if slowed < self.current.calls:
            text += f"; slowed to {slowed} by refusals that named no limit"
        return text


BUCKETS: tuple[BucketName, ...] = ("account", "bulk")
# How many grant transactions' durations are kept for the run's latency figures.
_TIMED = 100_000


class RateLimiter:
    """Paces every call to the account's limit, shared by every thread (and, with a shared
    ledger, by every process using the account).

    ``calls``/``per_seconds`` is the account bucket's starting limit (``calls=None`` or
    :meth:`off`: no limit), ``kind`` and ``origin`` say where it comes from; ``bulk`` is the bulk
    bucket's, if one is known. ``acquire(bulk)`` blocks until a call may be made; after a
    refusal, ``refused(bulk, named, evidence)`` learns or slows down, and ``penalize(seconds)``
    holds every acquisition (in every process sharing the ledger) until that time passed. Each
    limit a refusal teaches goes to the ledger, which remembers it for every user; before each
    grant the limiter adopts what the other users learned. ``close`` closes the ledger.
    """

    def __init__(
        self,
        calls: int | None,
        per_seconds: float,
        *,
        kind: Kind = "configured",
        origin: str | None = None,
        bulk: Budget | None = None,
        margin: float | None = None,
        max_margin: float | None = None,
        ledger: Ledger | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls is not None and calls < 1:
            raise ValueError("calls must be at least 1 (or None for no limit)")
        if per_seconds <= 0:
            raise ValueError("per_seconds must be positive")
        if (margin is not None and margin < 0) or (max_margin is not None and max_margin < 0):
            raise ValueError("margin must not be negative")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._ledger: Ledger = ledger if ledger is not None else MemoryLedger(clock)
        # the ledger's lessons when the run started (the starting budgets took them into
        # account), then as last caught up with
        self._seen: Lessons = self._ledger.lessons()
        self._timed: deque[float] = deque(maxlen=_TIMED)  # seconds each grant transaction took
        now = clock()
        self._buckets: dict[BucketName, _Bucket] = {}
        if calls is not None:
            account = Budget(Limit(calls, per_seconds), kind, origin or kind)
            self._buckets["account"] = _Bucket(account, now)
            if bulk is not None:
                self._buckets["bulk"] = _Bucket(bulk, now)
        self._fixed_margin = margin is not None
        self.margin = default_margin(per_seconds) if margin is None else margin
        self.max_margin = max(
            self.margin, default_max_margin(per_seconds) if max_margin is None else max_margin
        )
        self._widened_at = float("-inf")
        self._lessons = 0

    @classmethod
    def off(cls) -> RateLimiter:
        """No client-side limit. It keeps no shared state, so ``penalize`` does nothing and each
        caller backs off from a refusal on its own."""
        return cls(None, 1.0)

    @property
    def unlimited(self) -> bool:
        return not self._buckets

    @property
    def calls(self) -> int | None:
        """The account bucket's limit, calls per window (None: no limit)."""
        return self._buckets["account"].current.calls if self._buckets else None

    @property
    def per_seconds(self) -> float:
        return self._buckets["account"].current.per_seconds if self._buckets else 1.0

    @property
    def window(self) -> float:
        return self.per_seconds + self.margin

    def __repr__(self) -> str:
        if self.unlimited:
            return "RateLimiter.off()"
        return (
            f"RateLimiter(calls={self.calls}, per_seconds={self.per_seconds:g}, "
            f"margin={self.margin:g})"
        )

    def acquire(self, bulk: bool = False) -> float:
        """Block until a call may be made (a Bulk Update call: ``bulk``), record it, and return
        the seconds waited."""
        if self.unlimited:
            return 0.0
        start = self._clock()
        while True:
            self._catch_up()
            windows = self._windows(bulk)
            # Never sleep holding a lock: refusals and the other threads' grants must go on
            # while this one waits.
            began = time.perf_counter()
            wait = self._ledger.grant(windows)
            self._timed.append(time.perf_counter() - began)
            if wait <= EPSILON:
                return max(0.0, self._clock() - start)
            self._sleep(wait)

    @property
    def lessons(self) -> int:
        """How many limits refusals have taught so far: read it before a call is granted, and
        pass it to ``refused`` if the call is refused."""
        return self._lessons

    def refused(
        self,
        bulk: bool = False,
        named: Limit | None = None,
        evidence: str = "",
        granted_after: int | None = None,
    ) -> Verdict:
        """A call was refused for the rate limit; ``named`` is the limit the refusal named (if
        any), ``evidence`` what it said, ``granted_after`` the ``lessons`` before the call was
        granted. Learn the limit, or slow down, or widen the margin."""
        if self.unlimited:
            return "margin"
        lesson: tuple[BucketName, Lesson] | None = None
        with self._lock:
            now = self._clock()
            target, verdict = self._judge(bulk, named)
            if verdict != "learned" and granted_after is not None and granted_after < self._lessons:
                # granted before the last lesson, at the pace it corrected: nothing new
                return "learned"
            if verdict == "learned" and named is not None:
                when = stamp(utcnow())
                lesson = (target, Lesson(named.calls, named.per_seconds, when, evidence))
                self._adopt(target, named, when, evidence, now)
                log.info("lsq: rate limit learned bucket=%s limit=%s (%s)", target, named, evidence)
            elif verdict == "slowed":
                for name in self._drawn(bulk):
                    self._buckets[name].slow(now)
            if verdict != "learned":
                self._widen(now)
        if lesson is not None:
            self._ledger.learn(*lesson)  # outside the lock: it may take a transaction
        return verdict

    def penalize(self, seconds: float) -> None:
        """Hold every acquisition until ``seconds`` from now (never shortens a longer hold)."""
        if self.unlimited or seconds <= 0:
            return
        self._ledger.hold(seconds)

    def budgets(self) -> dict[BucketName, str]:
        """Each known bucket's limit and where it comes from, for people."""
        with self._lock:
            now = self._clock()
            for b in self._buckets.values():
                b.recover(now)
            return {name: b.describe() for name, b in self._buckets.items()}

    def write_pace(self) -> Limit | None:
        """The strictest limit a Bulk Update call meets (None: no limit)."""
        with self._lock:
            return slowest(lim for b in self._buckets.values() for lim in b.limits)

    @property
    def where(self) -> str:
        """Where the ledger keeps the lessons, and how to forget them, for people."""
        return self._ledger.where

    def grant_latency(self) -> tuple[int, float, float] | None:
        """How many grant transactions this limiter made, and the median and 99th percentile
        of their durations in seconds (None before the first)."""
        return _percentiles(list(self._timed))

    def close(self) -> None:
        """Log the grant latency (``-v`` shows it) and close the ledger."""
        figures = self.grant_latency()
        if figures is not None:
            log.info(
                "lsq: rate-limit ledger: %d grant transactions, median %.2f ms, 99th percentile "
                "%.2f ms",
                figures[0], figures[1] * 1000, figures[2] * 1000,
            )  # fmt: skip
        self._ledger.close()

    def _catch_up(self) -> None:
        """Adopt what other users of the ledger learned since the run started, as if this
        process had met the refusal: each new lesson stricter than the limit its bucket paces
        to (a looser one is older news). Lessons from before the start were the starting
        budgets' business (a configured limit wins over them). A grant already decided at the
        old pace is not taken back: a lesson reaches each thread at its next grant."""
        lessons = self._ledger.lessons()
        if lessons is self._seen:
            return
        with self._lock:
            seen, self._seen = self._seen, lessons
            now = self._clock()
            for name in BUCKETS:
                lesson = lessons.get(name)
                if lesson is None or lesson == seen.get(name):
                    continue
                limit = Limit(lesson.calls, lesson.per_seconds)
                bucket = self._buckets.get(name)
                if bucket is not None and not limit.stricter_than(bucket.current):
                    continue
                self._adopt(name, limit, lesson.learned, lesson.evidence, now)
                log.info(
                    "lsq: rate limit learned from the ledger bucket=%s limit=%s (%s)",
                    name, limit, lesson.evidence,
                )  # fmt: skip

    # -- inside the lock ---------------------------------------------------------------

    def _drawn(self, bulk: bool) -> tuple[BucketName, ...]:
        return ("account", "bulk") if bulk and "bulk" in self._buckets else ("account",)

    def _windows(self, bulk: bool) -> Windows:
        with self._lock:
            now = self._clock()
            # A bulk call is recorded in the bulk bucket even while no bulk limit is known: once
            # a refusal names one, the calls already made count against it.
            windows: dict[str, list[Window]] = {"bulk": []} if bulk else {}
            for name in self._drawn(bulk):
                b = self._buckets[name]
                b.recover(now)
                windows[name] = [
                    Window(b.calls(lim), lim.per_seconds + self._margin(lim)) for lim in b.limits
                ]
            return windows

    def _margin(self, limit: Limit) -> float:
        """The margin, kept to a share of a short window unless it was given."""
        if self._fixed_margin:
            return self.margin
        return min(self.margin, _MAX_MARGIN_SHARE * limit.per_seconds)

    def _judge(self, bulk: bool, named: Limit | None) -> tuple[BucketName, Verdict]:
        """Which bucket a refusal is about and what it means.

        UNKNOWN whether opportunity Bulk Update counts as one of the "bulk APIs" with their own,
        lower limit: the refusal says only "the limit of N". A Bulk Update refusal naming a limit
        below the account's *known* one can only be a bulk limit; while the account's limit is
        only assumed, it is taken as the account's — the defensive reading, which paces reads
        too.
        """
        account = self._buckets["account"]
        if named is None:
            return "account", "slowed"
        held = self._buckets.get("bulk") if bulk else None
        if held is not None:
            if named == held.current:
                return "bulk", "margin"
            if named.stricter_than(held.current):
                return "bulk", "learned"
        if named == account.current:
            return "account", "margin"
        if not named.stricter_than(account.current):
            # refused while keeping to a stricter pace: someone else is spending the budget
            return "account", "slowed"
        if bulk and held is None and account.kind != "assumed":
            return "bulk", "learned"
        return "account", "learned"

    def _adopt(
        self, target: BucketName, limit: Limit, when: str, evidence: str, now: float
    ) -> None:
        """Pace ``target`` to ``limit``, which a refusal named (``when``, saying ``evidence``);
        the calls granted before count as granted before a lesson."""
        self._lessons += 1
        learned = Budget.learned(limit, when, evidence)
        bucket = self._buckets.get(target)
        if bucket is None:
            self._buckets[target] = _Bucket(learned, now)
        elif bucket.kind == "configured":
            configured = bucket.limits[0]
            where = "rate_limit" if target == "account" else "rate_limit.bulk"
            log.warning(
                "lsq: %s in lsqsync.yml allows %s, but LeadSquared refused a call at %s (%s): "
                "pacing at that for the rest of this run. Set %s to {calls: %d, per_seconds: "
                "%g} in lsqsync.yml",
                where, configured, limit, evidence, where, limit.calls, limit.per_seconds,
            )  # fmt: skip
            bucket.adopt(
                limit, f"configured {configured} in lsqsync.yml, lowered {when}: {evidence}", now
            )
        else:
            bucket.adopt(limit, learned.origin, now)
        if target == "account" and not self._fixed_margin:
            # the margin is a share of a short window: a window of another length needs its own
            self.margin = default_margin(limit.per_seconds)
            self.max_margin = max(self.margin, default_max_margin(limit.per_seconds))

    def _widen(self, now: float) -> None:
        """Double the margin (from at least a quarter of the maximum), at most once a window —
        the calls already granted under the old margin may be refused too, and they say
        nothing about the new one."""
        if self.margin >= self.max_margin or now - self._widened_at < self.window:
            return
        self.margin = min(self.max_margin, max(2 * self.margin, self.max_margin / 4))
        self._widened_at = now


def _percentiles(durations: Sequence[float]) -> tuple[int, float, float] | None:
    """(count, median, 99th percentile) of ``durations`` (nearest rank)."""
    if not durations:
        return None
    ordered = sorted(durations)
    n = len(ordered)
    median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
    return n, median, ordered[max(0, math.ceil(0.99 * n) - 1)]
