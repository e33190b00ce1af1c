"""How the emulated server parses written values and renders stored ones.

This is the *server's* view, written independently of the client's codec so that tests of one
against the other mean something. Stored values are canonical strings (or None when empty):

========== ======================= ===============================================
DataType   accepted on write       stored
========== ======================= ===============================================
Number     ``23500``, ``23,500``   ``23500`` (Decimal, normalised)
Decimal    ``12.5``, ``1,012.50``  ``12.5`` (rendered with two decimals)
Date       ``2024-04-02``          ``2024-04-02``
DateTime   ``2024-04-02 12:13:44`` ``2024-04-02 12:13:44`` (UTC, as the docs require)
Boolean    true/false/1/0/yes/no   ``1`` / ``0`` (read back as "1"/"0", as observed)
User       a user GUID             the lower-cased GUID
others     any string              as given (dropdowns accept values outside their options)
========== ======================= ===============================================

Read formats differ by endpoint, as the reference records: ``iso`` for GetOpportunityDetails
and Advanced Search (``2026-08-31 08:38:00``), ``us`` for GetOpportunitiesById
(``4/6/2023 3:23:33 PM``).
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal

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


def parse(f: model.FieldDef, raw: str, active_user_ids: frozenset[str]) -> str | None:
    """Canonical stored form of ``raw`` for field ``f``; raises InvalidValue.

    ``active_user_ids`` is only consulted for User fields; an unknown or inactive user is a
    per-row failure rather than a data type error, so it is raised as LookupError.
    """
    if raw == "":
        return None
    t = f.data_type
    if t in (model.NUMBER, model.DECIMAL):
        return _plain(_decimal(f, raw))
    if t == model.DATE:
        for fmt in ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S"):
            try:
                return datetime.strptime(raw.strip(), fmt).date().isoformat()
            except ValueError:
                continue
        raise _type_error(f, raw)
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


def render(f: model.FieldDef, stored: str | None, style: Style) -> str | None:
    """The stored value as a read endpoint returns it: always a string, or null."""
    if stored is None:
        return None
    t = f.data_type
    if t == model.DECIMAL:
        return f"{Decimal(stored):.2f}"
    if t == model.DATETIME and style == "us":
        return _us(datetime.strptime(stored, "%Y-%m-%d %H:%M:%S"))
    if t == model.DATE and style == "us":
        d = date.fromisoformat(stored)
        return _us(datetime(d.year, d.month, d.day))
    return stored


def _us(dt: datetime) -> str:
    hour = dt.hour % 12 or 12
    ampm = "AM" if dt.hour < 12 else "PM"
    return f"{dt.month}/{dt.day}/{dt.year} {hour}:{dt.minute:02d}:{dt.second:02d} {ampm}"
