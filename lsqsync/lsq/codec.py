"""The value codec: the one place that knows each LeadSquared data type.

- ``read``: a value as an endpoint returns it (always a string or null, in a format that
  differs by endpoint) → a typed, canonical value for comparison.
- ``to_wire``: a desired value (a YAML scalar or a rendered template) → the string Bulk Update
  takes; raises InvalidValue with a message for the user.
- ``same``: whether a current value and a desired one mean the same (no change is planned).

Formats, as documented or observed: numbers ``"23500"``, ``"23,500"``, ``"23500.00"``; dates
``2026-08-31 08:38:00``, ``2026-08-08 07:38:00.000`` and US ``8/31/2026 8:38:00 AM``; all UTC
with no zone marker; Booleans ``"1"``/``"0"``; owners as user GUIDs in any case. Empty string and
null both mean "empty".
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from lsqsync.display import closest
from lsqsync.lsq.models import FieldMeta

Typed = Decimal | date | datetime | bool | str | None

# A Decimal field keeps two places (as read back: "23500.00"). How many places a tenant keeps
# is UNKNOWN; two is what every read shows, so more is refused rather than rounded silently.
DECIMAL_PLACES = 2
# How many significant digits a Number or Decimal field keeps is UNKNOWN (not documented). The
# defensive reading: what a double holds exactly, 15 digits; a longer number is refused rather
# than written and silently rounded by LeadSquared (or by us: Decimal's default context rounds to
# 28 digits, which once planned 99999999999999999999999999999 as 1000…0).
MAX_DIGITS = 15
NUMERIC = frozenset({"number", "decimal", "currency", "integer"})
_NUMBER = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$|^[+-]?\.\d+$")
_US = re.compile(
    r"^(\d{1,2})/(\d{1,2})/(\d{4})(?: (\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)? ?([AaPp][Mm])?)?$"
)
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?(\.\d+)?"
    r"(Z|[+-]\d{2}:?\d{2})?)?$"
)


class InvalidValue(ValueError):
    """A desired value the field cannot take."""


_KINDS: dict[tuple[str, str], str] = {}


def kind(field: FieldMeta) -> str:
    """The comparison family of a field: number, date, datetime, boolean, user or text."""
    key = (field.schema_name, field.data_type)
    found = _KINDS.get(key)
    if found is None:
        found = _KINDS[key] = _kind(field)
    return found


def _kind(field: FieldMeta) -> str:
    t = field.data_type.lower()
    if field.is_user_valued:
        return "user"
    if t in NUMERIC:
        return "number"
    if t == "date":
        return "date"
    if t == "datetime":
        return "datetime"
    if t == "boolean":
        return "boolean"
    return "text"


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_number(value: Any) -> Decimal:
    """A number, exactly (never rounded), in its shortest form: ``20,000.00`` → ``2E+4``."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        text = str(value).strip()
        if not _NUMBER.match(text):
            raise ValueError(f"'{value}' is not a number")
        try:
            number = Decimal(text.replace(",", ""))
        except InvalidOperation:  # pragma: no cover - the pattern admits valid decimals only
            raise ValueError(f"'{value}' is not a number") from None
    if not number.is_finite():
        raise ValueError(f"'{value}' is not a finite number")
    return number.normalize(Context(prec=max(28, len(number.as_tuple().digits))))


def parse_datetime(value: Any) -> datetime:
    """Any documented or observed date/time format → a naive UTC datetime."""
    try:
        return _parse_datetime(value)
    except ValueError:
        raise ValueError(f"'{value}' is not a date") from None


def _parse_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    text = str(value).strip()
    if m := _ISO.match(text):
        y, mo, d, h, mi, s, frac, zone = m.groups()
        dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
        if frac:
            dt = dt.replace(microsecond=int(Decimal(frac) * 1_000_000))
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            hours, minutes = int(zone[1:3]), int(zone[-2:])
            dt = dt - sign * (datetime(2000, 1, 1, hours, minutes) - datetime(2000, 1, 1))
        return dt
    if m := _US.match(text):
        mo, d, y, h, mi, s, ampm = m.groups()
        hour = int(h or 0)
        if ampm:
            if not 1 <= hour <= 12:
                raise ValueError("hour out of range")
            hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
        return datetime(int(y), int(mo), int(d), hour, int(mi or 0), int(s or 0))
    raise ValueError("unknown format")


def parse_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise ValueError(f"'{value}' is not a boolean (use true or false)")


def read(field: FieldMeta, raw: Any) -> Typed:
    """A value as read from any endpoint → its canonical typed form (None when empty).

    A value that does not parse is kept as text, so that it still compares (and shows) as what
    LeadSquared holds instead of failing the whole plan.
    """
    if _blank(raw):
        return None
    k = kind(field)
    try:
        if k == "number":
            return parse_number(raw)
        if k == "date":
            return parse_datetime(raw).date()
        if k == "datetime":
            return parse_datetime(raw).replace(microsecond=0)
        if k == "boolean":
            return parse_boolean(raw)
        if k == "user":
            return str(raw).strip().lower()
    except ValueError:
        return str(raw).strip()
    return str(raw).strip()


def to_wire(field: FieldMeta, desired: Any, users_by_email: Mapping[str, str] | None = None) -> str:
    """The string Bulk Update takes for ``desired`` ("" clears the field).

    ``users_by_email`` maps lower-cased emails of *active* users to their ids; a User field
    accepts an email or an id.
    """
    if _blank(desired):
        return ""
    k = kind(field)
    try:
        if k == "number":
            number = parse_number(desired)
            digits = len(number.as_tuple().digits)
            if digits > MAX_DIGITS:
                raise ValueError(
                    f"'{desired}' has {digits} significant digits; a number field keeps at most "
                    f"{MAX_DIGITS} exactly, so it would be rounded"
                )
            places = -int(number.as_tuple().exponent)
            if field.data_type.lower() == "decimal" and places > DECIMAL_PLACES:
                # Stored with two places, it would read back different and never converge.
                raise ValueError(
                    f"'{desired}' has {places} decimal places; the field keeps {DECIMAL_PLACES}"
                )
            return format(number, "f")
        if k == "date":
            return parse_datetime(desired).date().isoformat()
        if k == "datetime":
            return parse_datetime(desired).strftime("%Y-%m-%d %H:%M:%S")
        if k == "boolean":
            return "true" if parse_boolean(desired) else "false"
    except ValueError as e:
        raise InvalidValue(f"{field.schema_name} ({field.data_type}): {e}") from None
    text = str(desired).strip() if not isinstance(desired, bool) else str(desired).lower()
    if k == "user":
        return _user_id(field, text, users_by_email)
    if field.max_length is not None and len(text) > field.max_length:
        raise InvalidValue(
            f"{field.schema_name} holds at most {field.max_length} characters, not {len(text)}"
        )
    return text


def _user_id(field: FieldMeta, text: str, users_by_email: Mapping[str, str] | None) -> str:
    if users_by_email is None:
        raise InvalidValue(f"{field.schema_name}: users are needed to resolve '{text}'")
    if "@" in text:
        found = users_by_email.get(text.lower())
        if found is None:
            raise InvalidValue(
                f"{field.schema_name}: no active user with email '{text}'"
                + closest_users(text, users_by_email)
            )
        return found.lower()
    try:
        user_id = str(uuid.UUID(text))
    except ValueError:
        raise InvalidValue(
            f"{field.schema_name}: '{text}' is neither an email nor a user id"
        ) from None
    if user_id not in {v.lower() for v in users_by_email.values()}:
        raise InvalidValue(f"{field.schema_name}: '{text}' is not the id of an active user")
    return user_id


def closest_users(email: str, active_emails: Iterable[str]) -> str:
    """`` (did you mean …?)`` naming the active users whose email is closest to ``email``, and
    where to see them all."""
    # By the part before the @: one domain shared by every user would make them all look alike.
    by_name: dict[str, list[str]] = {}
    for known in active_emails:
        by_name.setdefault(known.partition("@")[0], []).append(known)
    name = email.strip().partition("@")[0]
    close = closest(name, by_name, n=3, cutoff=0.7)
    found = [known for c in close for known in by_name[c]][:3]
    where = "lsqsync users list shows every user"
    if not found:
        return f" ({where})"
    return f" (did you mean {' or '.join(repr(e) for e in found)}? {where})"


def same(field: FieldMeta, current_raw: Any, wire: str) -> bool:
    """Whether writing ``wire`` would leave ``current_raw`` as it is."""
    return read(field, current_raw) == read(field, wire)


def text(value: Typed) -> str | None:
    """A typed value as one canonical string (the wire format): how plans show and keep it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return value


def canonical(field: FieldMeta, raw: Any) -> str | None:
    """A value as read, in the one format plans use whatever endpoint it came from."""
    return text(read(field, raw))


def for_template(value: Typed) -> Any:
    """A typed value as templates see it: whole numbers as int (``150000``, never
    ``1.5E+5``), other numbers as plain Decimals, everything else as read."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else Decimal(format(value, "f"))
    return value
