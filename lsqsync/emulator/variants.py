"""How the emulated account's writes and reads may differ from the documented behaviour, one
option per variant (each off by default):

- **writes of ``""`` ignored** (``--ignore-empty-writes``): whether Bulk Update clears a field
  sent ``""`` is UNKNOWN (``UpdateEmptyFields`` exists on other endpoints, not this one). In this
  variant the row is answered ``OpportunityUpdated: true`` and the field keeps its value.
- **whole-call rejections in a 200** (``--rejection-status 200``): the documented error envelope
  ``{"Status":"Error","ExceptionType":"MX…"}`` with HTTP 200 instead of 500, for a value the
  field's type cannot take.
"""

from __future__ import annotations

REJECTION_STATUSES = (500, 200)
