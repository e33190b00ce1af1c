"""The one way to put a value on screen: escape control characters, quote, cap, mask, and lay
out tables."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence

MARKDOWN_LIMIT = 60_000  # characters; GitHub refuses comments over 65,536
MASKED = "***"
EMPTY = "(empty)"


def is_masked(field: str, mask: Collection[str]) -> bool:
    """Whether ``mask:`` hides the values of ``field``. Entries match schema names whatever
    their case (``mx_custom_11`` masks ``mx_Custom_11``): a mask that misses by a letter's case
    would print what it was written to hide. Every output asks this, and only this."""
    folded = field.casefold()
    return any(folded == entry.casefold() for entry in mask)


def masked(field: str, value: str | None, mask: Collection[str]) -> str | None:
    """``value`` as machine-readable output (JSON, CSV) carries it: MASKED when ``mask`` hides
    the field and there is a value; None stays None (an empty field is not a secret)."""
    return MASKED if value is not None and is_masked(field, mask) else value


_CELL = 40


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], cut: int | None = _CELL) -> str:
    """Left-aligned columns of escaped cells (`clean`); cells longer than ``cut`` characters end
    in an ellipsis."""
    cells = [list(headers)] + [
        [c if cut is None or len(c) <= cut else c[: cut - 1] + "…" for c in map(clean, row)]
        for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in cells
    )


def clean(text: str) -> str:
    """``text`` with control and invisible characters escaped (``\\n``, ``\\u202e``…), so that it
    stays on one line and cannot move the cursor or colour a terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if ch in named:
        return named[ch]
    return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"


MESSAGE_LIMIT = 1_000  # characters of one message line; the rest is "… (N more)"


def capped(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def shown(value: str | None, hidden: bool = False) -> str:
    """A field's value for people: EMPTY when there is none, MASKED when ``hidden`` (its field
    is masked), else quoted and escaped."""
    if not value:
        return EMPTY
    return MASKED if hidden else quote(value)


def quote(value: str) -> str:
    """A value in double quotes, escaped like a JSON string (``"a \\"b\\"\\nc"``)."""
    return '"' + clean(value.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def plural(count: int, singular: str, many: str | None = None, *, grouped: bool = False) -> str:
    """``1 field``, ``2 fields``; ``grouped``: with thousands separators (``2,500 fields``)."""
    number = f"{count:,}" if grouped else str(count)
    return f"{number} {singular if count == 1 else many or singular + 's'}"


def percent(share: float) -> str:
    return f"{round(share * 100, 1):g}%"


def seconds(value: float) -> str:
    # a lower bound: round down, so that "≥" stays true (but 3 * 0.1 is still 0.3)
    tenths = math.floor(value * 10 + 1e-9)
    return f"{tenths / 10:g}" if value < 100 else str(tenths // 10)


_MD_SPECIAL = frozenset("\\`*_[]<>|~&@#$")


def md(text: str) -> str:
    """Text for a Markdown paragraph or table cell: every character Markdown (or GitHub: mentions,
    math, issue links) could act on is backslash-escaped; the text is already on one line."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def closest(word: str, candidates: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The ``n`` candidates most like ``word`` (case ignored), best first: for "did you mean"."""
    by_folded: dict[str, str] = {}
    for candidate in candidates:
        by_folded.setdefault(candidate.casefold(), candidate)
    found = difflib.get_close_matches(word.casefold(), list(by_folded), n=n, cutoff=cutoff)
    return [by_folded[f] for f in found]


def did_you_mean(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    """`` (did you mean 'X'?)`` for the candidate closest to ``word``, or "" when none is."""
    found = closest(word, candidates, cutoff=cutoff)
    return f" (did you mean '{found[0]}'?)" if found else ""


_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def csv_cell(value: str | None) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with = + - @ (a formula to Excel
    and LibreOffice) gets a leading apostrophe, unless it is just a number."""
    if not value:
        return ""
    if value[0] in "=+-@\t\r" and _NUMBER.fullmatch(value) is None:
        return "'" + value
    return value


# -- field names for people -------------------------------------------------------------------

LABEL_LIMIT = 60  # characters of a display name shown; the account chooses them


def field_name(schema: str, display: str | None) -> str:
    """How outputs for people name a field: ``Stage (mx_Custom_2)`` — LeadSquared's display name,
    then the schema name rules and the API use — or just ``Status`` when the display name is
    the schema name (in any case), empty or unknown. Escaped, the display name capped."""
    if not display or display.casefold() == schema.casefold():
        return clean(schema)
    return f"{capped(clean(display.strip()), LABEL_LIMIT)} ({clean(schema)})"


class FieldNames:
    """``field_name`` for the fields of several opportunity types, from ``labels`` (type code →
    schema name → display name), each name formatted once: outputs call it per field shown.

    A schema name may mean another field in each type (``mx_Custom_6`` is "Loan Amount" in one,
    "Deal Value" in another): asked without a type, the name gives every display name the
    types have for it (``Deal Value / Loan Amount (mx_Custom_6)``)."""

    def __init__(self, labels: Mapping[int, Mapping[str, str]] | None = None) -> None:
        self._labels = labels or {}
        self._names: dict[tuple[int | None, str], str] = {}

    def __call__(self, field: str, opportunity_type: int | None = None) -> str:
        key = (opportunity_type, field)
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = field_name(field, self.label(field, opportunity_type))
        return name

    def label(self, field: str, opportunity_type: int | None = None) -> str | None:
        """The display name of ``field`` (in ``opportunity_type``, or in every type), or None."""
        if opportunity_type is not None:
            return self._labels.get(opportunity_type, {}).get(field)
        found = sorted({t[field] for t in self._labels.values() if t.get(field)}, key=str.casefold)
        return " / ".join(found) if found else None
