"""The emulator's rate limits, as real accounts have them: an account-wide strict sliding window
by arrival time, the bulk APIs' own lower one, the three forms a refusal takes, and the plans'
limits as LeadSquared documents them.

The plans' limits, per 5 s (LeadSquared's rate-limit page, in the two versions found):

========== ======= ====== ===============================================================
plan       account bulk   source
========== ======= ====== ===============================================================
lite       2       1      older version only ("all Bulk APIs": 1 call in 5 s)
pro        10      5      newer version (the older one said 5, bulk 1)
super      20      10     newer version (the older one said 10, bulk 1)
enterprise 25      1      older version only (bulk: "all Bulk APIs", 1 call in 5 s)
========== ======= ====== ===============================================================

UNKNOWN whether opportunity Bulk Update is one of the "bulk APIs" (both versions list only
lead and activity ones): the emulator takes the reading that is harder on a client, and counts
it against the bulk window too when one is set.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# (calls, seconds) of the account and of the bulk APIs
Limit = tuple[int, float]
PLANS: dict[str, tuple[Limit, Limit]] = {
    "lite": ((2, 5.0), (1, 5.0)),
    "pro": ((10, 5.0), (5, 5.0)),
    "super": ((20, 5.0), (10, 5.0)),
    "enterprise": ((25, 5.0), (1, 5.0)),
}
# How a refusal comes back: seen on real accounts as HTTP 429, as a 403 with a limit message,
# and as an HTTP 200 carrying the error envelope.
RESPONSES = (429, 403, 200)
RATE_LIMIT_EXCEPTION = "MXAPIRateLimitExceededException"


@dataclass
class Windows:
    """At most N accepted calls whose *arrival* lies within the last W seconds, account-wide; a
    bulk call must fit the bulk window too, and counts in both. Whether refused calls count
    against a window is UNKNOWN; the docs say the API "stops processing" until time has passed,
    so only accepted calls count. (A client that paces itself, as lsqsync's does, never meets
    the difference.) The arrival time is taken under the lock, so arrivals are stored in order."""

    account: deque[float] = field(default_factory=deque)
    bulk: deque[float] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, account: Limit | None, bulk: Limit | None) -> Limit | None:
        """Admit one call (``bulk``: the bulk window's limit, for a bulk call; None for any other
        or when there is none), or return the limit it would exceed: nothing is counted then."""
        with self.lock:
            now = time.monotonic()
            checks = [(self.account, account), (self.bulk, bulk)]
            for arrivals, limit in checks:
                if limit is not None:
                    while arrivals and arrivals[0] <= now - limit[1]:
                        arrivals.popleft()
                    if len(arrivals) >= limit[0]:
                        return limit
            for arrivals, limit in checks:
                if limit is not None:
                    arrivals.append(now)
            return None

    def clear(self) -> None:
        with self.lock:
            self.account.clear()
            self.bulk.clear()


def refusal(form: int, limit: Limit) -> tuple[int, dict[str, Any]]:
    """The answer to a call over ``limit``, in the account's ``form`` (429, 403 or 200), with the
    limit named in the message, as real accounts name it."""
    message = f"API calls exceeded the limit of {limit[0]} in {limit[1]:g} second(s)"
    if form == 403:
        # UNKNOWN: the body of the 403 form, seen only as "a 403 with a limit message". The
        # harder reading for a client: no ExceptionType to go by, the message alone.
        return 403, {"Message": message}
    return form, {
        "Status": "Error",
        "ExceptionType": RATE_LIMIT_EXCEPTION,
        "ExceptionMessage": message,
    }
