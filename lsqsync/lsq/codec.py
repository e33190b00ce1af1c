"""The value codec: the one place that knows how each kind of field is compared and written.

A field's kind (text, number, date, datetime, boolean, dropdown, multiselect, user) comes from
its metadata — data type and render type together — or from ``field_types:`` in lsqsync.yml
(``FieldMeta.kind``, ``models.derive_kind``). A field of no recognised kind is never written and
never compared: ``to_wire`` refuses it.

- ``read``: a value as an endpoint returns it (always a string or null, in a format that
  differs by endpoint) → a typed, canonical value for comparison.
- ``to_wire``: a desired value (a YAML scalar or list, or a rendered template) → the string Bulk
  Update takes; raises InvalidValue with a message for the user.
- ``same``: whether a current value and a desired one mean the same (no change is planned).

Formats, as documented or observed: numbers ``"23500"``, ``"23,500"``, ``"23500.00"``; dates
``2026-08-31 08:38:00``, ``2026-08-31T08:38``, ``2026-08-08 07:38:00.000``, ``2026-08-31`` and
US ``8/31/2026 8:38:00 AM`` (with or without seconds); all UTC with no zone marker [DOC];
Booleans ``"1"``/``"0"``; owners as user GUIDs in any case. Empty string and null both mean
"empty".

Dates [DOC: "all APIs" use UTC ``YYYY-MM-DD HH:MM:SS``]. A DateTime is an instant: compared as
one, written in that form. A Date is a calendar day of the account's zone (``timezone:``): how
LeadSquared stores one is UNKNOWN — as the day itself, or as the instant of local midnight (a
day picked in India read as ``2024-12-30 18:30:00``). So a Date value at exactly midnight UTC
names the day it shows; any other time is an instant whose day is taken in the account's zone;
and a Date is written at noon UTC of its day (``2024-12-31 12:00:00``), which falls on that day
in every zone less than 12 hours from UTC under either reading (other zones are refused).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Context, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from lsqsync.display import closest
from lsqsync.lsq.models import FieldMeta, Kind

Typed = Decimal | date | datetime | bool | str | tuple[str, ...] | None

# How many decimal places a Number field keeps is UNKNOWN (not in the metadata); reads show two
# ("23500.00"). More is refused rather than rounded silently by LeadSquared, which would read
# back different and never converge.
DECIMAL_PLACES = 2
# How many significant digits a Number field keeps is UNKNOWN (not documented). The defensive
# reading: what a double holds exactly, 15 digits; a longer number is refused rather than
# written and silently rounded by LeadSquared (or by us: Decimal's default context rounds to 28
# digits, which once planned 99999999999999999999999999999 as 1000…0).
MAX_DIGITS = 15
# How Bulk Update takes (and reads return) the values of a multi-select dropdown is UNKNOWN: no
# documentation or public client shows it. The options joined by ";" is a guess, kept here and
# nowhere else; verification (reading back what was written) shows a wrong one. An option
# holding the separator is refused, since it could not be told apart.
MULTI_SEPARATOR = ";"
# The time of day a Date is written at (see the module's docstring).
DATE_WRITE_TIME = time(12, 0)
_NUMBER = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$|^[+-]?\.\d+$")
_US = re.compile(
    r"^(\d{1,2})/(\d{1,2})/(\d{4})(?: (\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)? ?([AaPp][Mm])?)?$"
)
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?(\.\d+)?"
    r"(Z|[+-]\d{2}:?\d{2})?)?$"
)
_MIDNIGHT = time(0, 0)


class InvalidValue(ValueError):
    """A desired value the field cannot take."""


def kind(field: FieldMeta) -> Kind | None:
    """The field's kind; None when lsqsync does not recognise it."""
    return field.kind


def is_blank(value: Any) -> bool:
    """Whether a value (read or desired) is empty: null, blank text, or a list of nothing."""
    if isinstance(value, list | tuple):
        return all(is_blank(v) for v in value)
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


def parse_datetime(value: Any, *, us: bool = True) -> datetime:
    """Any documented or observed date/time format → a naive UTC datetime. ``us=False`` (values
    people write in rules) refuses ``M/D/YYYY``: ``1/3/2026`` is March to most of the world."""
    try:
        return _parse_datetime(value, us)
    except _AmbiguousDate:
        raise ValueError(
            f"'{value}': write dates as YYYY-MM-DD (a time as YYYY-MM-DD HH:MM:SS, UTC); "
            "M/D/YYYY is read one way in the US and the other way elsewhere"
        ) from None
    except ValueError:
        raise ValueError(f"'{value}' is not a date") from None


class _AmbiguousDate(ValueError):
    pass


def _parse_datetime(value: Any, us: bool) -> datetime:
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
            dt -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[-2:]))
        return dt
    if m := _US.match(text):
        if not us:
            raise _AmbiguousDate
        mo, d, y, h, mi, s, ampm = m.groups()
        hour = int(h or 0)
        if ampm:
            if not 1 <= hour <= 12:
                raise ValueError("hour out of range")
            hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
        return datetime(int(y), int(mo), int(d), hour, int(mi or 0), int(s or 0))
    raise ValueError("unknown format")


def parse_day(value: Any, timezone: str, *, us: bool = True) -> date:
    """A Date value → the calendar day it means in the account's zone: a day as such, a UTC
    midnight as the day it shows, any other instant as its day in ``timezone``."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    instant = parse_datetime(value, us=us)
    if instant.time() == _MIDNIGHT:
        return instant.date()
    return instant.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone)).date()


def parse_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise ValueError(f"'{value}' is not a boolean (use true or false)")


def parse_options(value: Any) -> tuple[str, ...]:
    """A multi-select value → its options, sorted and without repeats (order carries no
    meaning). A read is the options joined by the separator; a desired value is a list, or one
    option (the separator in it is refused: it could not be told apart)."""
    if isinstance(value, list | tuple):
        items = [_option(v) for v in value]
    else:
        items = [o.strip() for o in str(value).split(MULTI_SEPARATOR)]
    return tuple(sorted({o for o in items if o}))


def _option(value: Any) -> str:
    if isinstance(value, list | tuple | dict) or value is None or isinstance(value, bool):
        raise ValueError(f"'{value}' is not an option (a list of options holds text)")
    text = str(value).strip()
    if MULTI_SEPARATOR in text:
        raise ValueError(
            f"'{text}' holds '{MULTI_SEPARATOR}', which separates the options of a multi-select "
            "field: list the options instead"
        )
    return text


def read(field: FieldMeta, raw: Any) -> Typed:
    """A value as read from any endpoint → its canonical typed form (None when empty).

    A value that does not parse is kept as text, so that it still compares (and shows) as what
    LeadSquared holds instead of failing the whole plan. A field of no recognised kind reads as
    its text: shown, never compared (rules cannot use it).
    """
    if is_blank(raw):
        return None
    k = field.kind
    try:
        if k == "number":
            return parse_number(raw)
        if k == "date":
            return parse_day(raw, field.timezone)
        if k == "datetime":
            return parse_datetime(raw).replace(microsecond=0)
        if k == "boolean":
            return parse_boolean(raw)
        if k == "user":
            return str(raw).strip().lower()
        if k == "multiselect":
            return parse_options(raw) or None
    except ValueError:
        return str(raw).strip()
    return str(raw).strip()


def to_wire(field: FieldMeta, desired: Any, users_by_email: Mapping[str, str] | None = None) -> str:
    """The string Bulk Update takes for ``desired`` ("" clears the field).

    ``users_by_email`` maps lower-cased emails of *active* users to their ids; a User field
    accepts an email or an id.
    """
    k = field.kind
    if k is None:
        raise InvalidValue(unrecognised(field))
    if isinstance(desired, list | tuple) and k != "multiselect":
        raise InvalidValue(
            f"{field.schema_name} ({k}) holds one value, not a list: lists are for "
            "multi-select fields"
        )
    if is_blank(desired):
        return ""
    try:
        wire = _typed_wire(field, k, desired)
    except ValueError as e:
        raise InvalidValue(f"{field.schema_name} ({k}): {e}") from None
    if wire is not None:
        return wire
    text = str(desired).strip() if not isinstance(desired, bool) else str(desired).lower()
    if k == "user":
        return _user_id(field, text, users_by_email)
    if field.max_length is not None and len(text) > field.max_length:
        raise InvalidValue(
            f"{field.schema_name} holds at most {field.max_length} characters, not {len(text)}"
        )
    return text


def _typed_wire(field: FieldMeta, k: Kind, desired: Any) -> str | None:
    """The wire form of the kinds that parse; None for text, dropdown and user values."""
    if k == "number":
        return _number_wire(desired)
    if k == "date":
        return _day_wire(parse_day(desired, field.timezone, us=False), field.timezone)
    if k == "datetime":
        return parse_datetime(desired, us=False).strftime("%Y-%m-%d %H:%M:%S")
    if k == "boolean":
        return "true" if parse_boolean(desired) else "false"
    if k == "multiselect":
        listed = desired if isinstance(desired, list | tuple) else [desired]
        return MULTI_SEPARATOR.join(parse_options(listed))
    return None


def _number_wire(desired: Any) -> str:
    number = parse_number(desired)
    digits = len(number.as_tuple().digits)
    if digits > MAX_DIGITS:
        raise ValueError(
            f"'{desired}' has {digits} significant digits; a number field keeps at most "
            f"{MAX_DIGITS} exactly, so it would be rounded"
        )
    places = -int(number.as_tuple().exponent)
    if places > DECIMAL_PLACES:
        # Stored with two places, it would read back different and never converge.
        raise ValueError(
            f"'{desired}' has {places} decimal places; a number field keeps {DECIMAL_PLACES}"
        )
    return format(number, "f")


def _day_wire(day: date, timezone: str) -> str:
    """A Date as written: its day at noon UTC, which must fall on that day in the account's
    zone too (it does in every zone less than 12 hours from UTC)."""
    wire = datetime.combine(day, DATE_WRITE_TIME).strftime("%Y-%m-%d %H:%M:%S")
    if parse_day(wire, timezone) != day:
        raise ValueError(
            f"in the account's zone {timezone} (12 hours or more from UTC) no one time of day "
            f"writes {day.isoformat()} whichever way LeadSquared stores a Date; lsqsync does not "
            "write Date fields there"
        )
    return wire


def unrecognised(field: FieldMeta) -> str:
    """Why a field of no recognised kind is not written, and how to say what it is."""
    return (
        f"{field.schema_name} has data type {field.reported_type}, which lsqsync does not "
        "recognise: it is never written or compared by guesswork. If you know what it holds, "
        f"declare it in lsqsync.yml: field_types: {{{field.schema_name}: "
        "text|number|date|datetime|boolean|dropdown|multiselect|user}"
    )


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
    """A typed value as one canonical string — the wire format, so that a value shown in a plan
    (a ``before``) can be written back as it is (rollback): how plans show and keep it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return datetime.combine(value, DATE_WRITE_TIME).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, tuple):
        return MULTI_SEPARATOR.join(value)
    return value


def canonical(field: FieldMeta, raw: Any) -> str | None:
    """A value as read, in the one format plans use whatever endpoint it came from."""
    return text(read(field, raw))


def for_template(value: Typed) -> Any:
    """A typed value as templates see it: whole numbers as int (``150000``, never
    ``1.5E+5``), other numbers as plain Decimals, a multi-select's options as a list,
    everything else as read."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else Decimal(format(value, "f"))
    if isinstance(value, tuple):
        return list(value)
    return value
