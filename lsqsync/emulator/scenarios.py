"""Preset data sets for the documentation's recipes (``emulator serve --scenario NAME``): the
generated data, then a deterministic change that gives a recipe something to do.

Each scenario changes the rows ``store.generate`` made, in their order, by their position: the
same seed, count and scenario always give the same data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

Row = tuple[Any, ...]  # (id, event_code, auto_id, lead_id, created_on, fields as JSON)

DEFAULT = "default"


Fields = dict[str, Any]


def _every_nth(
    rows: Sequence[Row],
    n: int,
    wanted: Callable[[Fields], bool],
    change: Callable[[int, Fields], Fields],
) -> list[Row]:
    """The rows, with the fields ``change(event_code, fields)`` returns merged into every
    ``n``-th row ``wanted`` picks (the first, the n+1-th …)."""
    out, seen = [], 0
    for row in rows:
        fields = json.loads(row[5])
        if wanted(fields):
            if seen % n == 0:
                row = (*row[:5], json.dumps({**fields, **change(row[1], fields)}))
            seen += 1
        out.append(row)
    return out


def _empty_priority(rows: Sequence[Row]) -> list[Row]:
    return _every_nth(
        rows, 3, lambda f: f["Status"] == "Open", lambda code, f: {"mx_Custom_10": None}
    )


# a stage of an open opportunity, per type
_OPEN_STAGE = {12000: "Sanctioned", 12003: "Negotiation"}


def _stage_mismatch(rows: Sequence[Row]) -> list[Row]:
    # as a broken migration leaves them: won, in a stage of an open opportunity
    return _every_nth(
        rows, 4, lambda f: f["Status"] == "Won", lambda code, f: {"mx_Custom_2": _OPEN_STAGE[code]}
    )


SCENARIOS: dict[str, tuple[str, Callable[[Sequence[Row]], list[Row]]]] = {
    DEFAULT: ("the generated data as it is", list),
    "empty-priority": (
        "every third open opportunity has no Priority (mx_Custom_10): fill an empty field",
        _empty_priority,
    ),
    "stage-mismatch": (
        "every fourth won opportunity has an open Stage (mx_Custom_2), as a broken migration "
        "leaves them: fix a field a migration got wrong",
        _stage_mismatch,
    ),
}


def apply(name: str, rows: Sequence[Row]) -> list[Row]:
    """The rows as scenario ``name`` has them."""
    return SCENARIOS[name][1](rows)
