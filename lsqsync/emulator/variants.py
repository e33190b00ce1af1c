"""How the emulated account's writes and reads may differ from the documented behaviour, one
option per variant (each off by default):

- **read lag** (``--read-lag-ms``): real accounts were seen to show an update in reads only
  seconds after the write was answered. Reads see each opportunity as it was ``lag`` ago: the
  values it held before every write of the last ``lag``.
- **writes of ``""`` ignored** (``--ignore-empty-writes``): whether Bulk Update clears a field
  sent ``""`` is UNKNOWN (``UpdateEmptyFields`` exists on other endpoints, not this one). In this
  variant the row is answered ``OpportunityUpdated: true`` and the field keeps its value.
- **whole-call rejections in a 200** (``--rejection-status 200``): the documented error envelope
  ``{"Status":"Error","ExceptionType":"MX…"}`` with HTTP 200 instead of 500, for a value the
  field's type cannot take.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

REJECTION_STATUSES = (500, 200)
_KEPT = 600.0  # seconds of history kept: more than any lag a test or a demo sets

Fields = Mapping[str, str | None]


class History:
    """What each opportunity held before its recent writes, so that reads can lag them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writes: dict[str, list[tuple[float, dict[str, str | None]]]] = {}

    def wrote(self, opportunity_id: str, before: Fields, at: float) -> None:
        """``opportunity_id`` held ``before`` until a write at time ``at``."""
        with self._lock:
            kept = [w for w in self._writes.get(opportunity_id, []) if w[0] > at - _KEPT]
            self._writes[opportunity_id] = [*kept, (at, dict(before))]

    def as_of(self, opportunity_id: str, fields: Fields, at: float) -> Fields:
        """The fields as a read at time ``at`` sees them: before the first write after ``at``."""
        with self._lock:
            later = [w for w in self._writes.get(opportunity_id, []) if w[0] > at]
        return later[0][1] if later else fields

    def clear(self) -> None:
        with self._lock:
            self._writes.clear()
