"""How the emulated server parses written values and renders stored ones.

This is the *server's* view, written independently of the client's codec so that tests of one
against the other mean something. Stored values are canonical strings (or None when empty):

============ ======================= =============================================
kind         accepted on write       stored
============ ======================= =============================================
Number       ``23500``, ``23,500``   ``23500`` (Decimal, normalised; a field with
                                     ``places`` reads back as ``23500.00``)
Date         ``2024-04-02``, with or ``2024-04-02``: the day (the time is dropped)
             without a time
DateTime     ``2024-04-02 12:13:44`` ``2024-04-02 12:13:44`` (UTC, as the docs require)
Boolean      true/false/1/0/yes/no   ``1`` / ``0`` (read back as "1"/"0", as observed)
ActiveUsers  a user GUID             the lower-cased GUID
multi-select ``A;B``                 the options, joined by ``;`` (the encoding is
                                     UNKNOWN; this is the client's guess, repeated)
others       any string              as given (dropdowns accept values outside their
                                     options; so does a type nobody knows)
============ ======================= =============================================

How LeadSquared stores a Date is UNKNOWN. By default the emulator keeps the day; with the
setting ``date_zone`` (an IANA zone) it behaves like an account that keeps a Date as the instant
of local midnight in that zone: a day written without a time reads back as that instant in UTC
(``2024-12-31`` in Asia/Kolkata as ``2024-12-30 18:30:00``), a written time is kept as given.

Read formats differ by endpoint, as the reference records: ``iso`` for GetOpportunityDetails
and Advanced Search (``2026-08-31 08:38:00``), ``us`` for GetOpportunitiesById
(``4/6/2023 3:23:33 PM``).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal
from zoneinfo import ZoneInfo

from lsqsync.emulator import model

Style = Literal["iso", "us"]


class InvalidValue(ValueError):
    """The value cannot be stored in the field: LeadSquared fails the whole call for this."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type


_NUMBER = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")


def _decimal(f: model.FieldDef, raw: str) -> Decimal:
    text = raw.strip()
    if not _NUMBER.match(text):
        raise _type_error(f, raw)
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise _type_error(f, raw) from None


def _type_error(f: model.FieldDef, raw: str) -> InvalidValue:
    return InvalidValue(
        "MXInvalidDataTypeException",
        f"Field name : '{f.schema_name}' of datatype : '{f.data_type}' "
        f"cannot accept the value '{raw}'.",
    )


def _plain(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def parse(
    f: model.FieldDef, raw: str, active_user_ids: frozenset[str], date_zone: str = ""
) -> str | None:
    """Canonical stored form of ``raw`` for field ``f``; raises InvalidValue.

    ``active_user_ids`` is only consulted for User fields; an unknown or inactive user is a
    per-row failure rather than a data type error, so it is raised as LookupError.
    ``date_zone``: Date fields keep instants (see the module's docstring).
    """
    if raw == "":
        return None
    t = f.kind
    if t == model.NUMBER:
        return _plain(_decimal(f, raw))
    if t == model.MULTISELECT:
        return ";".join(o.strip() for o in raw.split(";") if o.strip()) or None
    if t == model.DATE:
        return _date(f, raw, date_zone)
    if t == model.DATETIME:
        try:
            return datetime.strptime(raw.strip(), "%Y-%m-%d %H:%M:%S").strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise _type_error(f, raw) from None
    if t == model.BOOLEAN:
        lowered = raw.strip().lower()
        if lowered in ("true", "1", "yes"):
            return "1"
        if lowered in ("false", "0", "no"):
            return "0"
        raise _type_error(f, raw)
    if t == model.USER:
        try:
            user_id = str(uuid.UUID(raw.strip()))
        except ValueError:
            raise _type_error(f, raw) from None
        if user_id not in active_user_ids:
            raise LookupError(f"User with Id '{raw}' does not exist or is not active.")
        return user_id
    if f.max_length is not None and len(raw) > f.max_length:
        # Observed on a tenant: a 200-character cap on a text field. How the overflow is
        # reported is UNKNOWN; the defensive reading is that it fails the whole call.
        raise InvalidValue(
            "MXInvalidDataLengthException",
            f"Field name : '{f.schema_name}' allows at most {f.max_length} characters.",
        )
    return raw


def _date(f: model.FieldDef, raw: str, date_zone: str) -> str:
    """A Date as stored: the day; with ``date_zone``, a written time is an instant, kept."""
    for fmt in ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S"):
        try:
            written = datetime.strptime(raw.strip(), fmt)
        except ValueError:
            continue
        if date_zone and fmt != "%Y-%m-%d":
            return written.strftime("%Y-%m-%d %H:%M:%S")
        return written.date().isoformat()
    raise _type_error(f, raw)


def render(f: model.FieldDef, stored: str | None, style: Style, date_zone: str = "") -> str | None:
    """The stored value as a read endpoint returns it: always a string, or null."""
    if stored is None:
        return None
    t = f.kind
    if f.places is not None:
        return f"{Decimal(stored):.{f.places}f}"
    if t == model.DATE and (date_zone or style == "us"):
        instant = _date_instant(stored, date_zone)
        return _us(instant) if style == "us" else instant.strftime("%Y-%m-%d %H:%M:%S")
    if t == model.DATETIME and style == "us":
        return _us(datetime.strptime(stored, "%Y-%m-%d %H:%M:%S"))
    return stored


def _date_instant(stored: str, date_zone: str) -> datetime:
    """A stored Date as an instant (UTC): a day is its midnight, in ``date_zone`` if given."""
    if len(stored) > len("YYYY-MM-DD"):
        return datetime.strptime(stored, "%Y-%m-%d %H:%M:%S")
    day = date.fromisoformat(stored)
    if not date_zone:
        return datetime(day.year, day.month, day.day)
    local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(date_zone))
    return local.astimezone(UTC).replace(tzinfo=None)


def _us(dt: datetime) -> str:
    hour = dt.hour % 12 or 12
    ampm = "AM" if dt.hour < 12 else "PM"
    return f"{dt.month}/{dt.day}/{dt.year} {hour}:{dt.minute:02d}:{dt.second:02d} {ampm}"


def is_zone(name: str) -> bool:
    """Whether ``name`` is a zone of the IANA database."""
    try:
        ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return False
    return True
