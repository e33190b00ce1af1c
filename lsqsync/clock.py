"""Times as lsqsync writes them: plans and the state file stamp UTC to the second
(``2026-12-03T09:30:00Z``); templates see ``now`` as ``2026-12-03 09:30:00``."""

from __future__ import annotations

from datetime import UTC, datetime

TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"
NOW_FORMAT = "%Y-%m-%d %H:%M:%S"


def utcnow() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    """``moment`` as a UTC timestamp (an aware ``moment`` is converted; a naive one is UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(TIMESTAMP)


def parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, TIMESTAMP).replace(tzinfo=UTC)
