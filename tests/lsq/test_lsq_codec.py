"""The value codec: table tests of every format, and property tests that writing a value and
reading it back through the emulator — from every read endpoint — is "no change"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.emulator.model import USERS
from lsqsync.lsq import BulkUpdateItem, FieldMeta, LsqClient, OpportunityType
from lsqsync.lsq.codec import InvalidValue, read, same, to_wire

NUMBER = FieldMeta("mx_Custom_6", "Amount", "Number")
DECIMAL = FieldMeta("mx_Custom_7", "Rate", "Decimal")
DATE = FieldMeta("mx_Custom_8", "Due", "Date")
DATETIME = FieldMeta("mx_Custom_13", "Contacted", "DateTime")
BOOLEAN = FieldMeta("mx_Custom_12", "Flag", "Boolean")
TEXT = FieldMeta("mx_Custom_9", "Remarks", "String", max_length=10)
OWNER_AS_TEXT = FieldMeta("Owner", "Owner", "String")  # some tenants report Owner so
ACTIVE = {u.email: u.id for u in USERS if u.active}
GEORGE = "96105aa0-61f2-11ea-8109-022edb41208c"
NOBODY = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("field", "current", "desired"),
    [
        (NUMBER, "23500", "23,500"),
        (NUMBER, "23500.00", 23500),
        (NUMBER, "0", 0.0),
        (DECIMAL, "7.50", "7.5"),
        (DATE, "8/31/2026 12:00:00 AM", "2026-08-31"),
        (DATE, "2026-08-31", date(2026, 8, 31)),
        (DATETIME, "8/31/2026 8:38:00 AM", "2026-08-31 08:38:00"),
        (DATETIME, "8/31/2026 12:05:09 PM", "2026-08-31 12:05:09"),
        (DATETIME, "8/31/2026 12:05:09 AM", "2026-08-31 00:05:09"),
        (DATETIME, "2026-08-08 07:38:00.000", "2026-08-08T07:38:00Z"),
        (DATETIME, "2026-08-08 02:08:00", "2026-08-08T07:38:00+05:30"),
        (BOOLEAN, "1", True),
        (BOOLEAN, "0", "false"),
        (TEXT, " Won ", "Won"),
        (TEXT, None, ""),
        (TEXT, "", None),
        (OWNER_AS_TEXT, GEORGE.upper(), "george.bailey@example.com"),
        (OWNER_AS_TEXT, GEORGE, GEORGE.upper()),
    ],
)
def test_the_same_value_in_another_format_is_no_change(
    field: FieldMeta, current: Any, desired: Any
) -> None:
    assert same(field, current, to_wire(field, desired, ACTIVE))


@pytest.mark.parametrize(
    ("field", "current", "desired"),
    [
        (NUMBER, "23500", "23501"),
        (NUMBER, None, 0),
        (DATE, "2026-08-31", "2026-09-01"),
        (DATETIME, "8/31/2026 8:38:00 AM", "2026-08-31 20:38:00"),
        (BOOLEAN, None, False),
        (TEXT, "won", "Won"),
        (OWNER_AS_TEXT, GEORGE, "mary.hatch@example.com"),
    ],
)
def test_a_different_value_is_a_change(field: FieldMeta, current: Any, desired: Any) -> None:
    assert not same(field, current, to_wire(field, desired, ACTIVE))


@pytest.mark.parametrize(
    ("field", "desired", "message"),
    [
        (NUMBER, "twelve", "mx_Custom_6 (Number): 'twelve' is not a number"),
        (NUMBER, True, "mx_Custom_6 (Number): a boolean is not a number"),
        (NUMBER, float("inf"), "mx_Custom_6 (Number): 'inf' is not a finite number"),
        (NUMBER, float("nan"), "mx_Custom_6 (Number): 'nan' is not a finite number"),
        (NUMBER, "1e400", "mx_Custom_6 (Number): '1e400' is not a number"),
        (NUMBER, 99999999999999999999999999999,
         "mx_Custom_6 (Number): '99999999999999999999999999999' has 29 significant digits; a "
         "number field keeps at most 15 exactly, so it would be rounded"),
        (NUMBER, "1234567890.123456",
         "mx_Custom_6 (Number): '1234567890.123456' has 16 significant digits; a number field "
         "keeps at most 15 exactly, so it would be rounded"),
        (DATE, "31/12/2026", "mx_Custom_8 (Date): '31/12/2026' is not a date"),
        (DATETIME, "13/1/2026 1:00:00 PM",
         "mx_Custom_13 (DateTime): '13/1/2026 1:00:00 PM' is not a date"),
        (BOOLEAN, "maybe", "mx_Custom_12 (Boolean): 'maybe' is not a boolean (use true or false)"),
        (TEXT, "x" * 11, "mx_Custom_9 holds at most 10 characters, not 11"),
        (OWNER_AS_TEXT, "nobody@example.com",
         "Owner: no active user with email 'nobody@example.com' (lsqsync users list shows "
         "every user)"),
        (OWNER_AS_TEXT, "henry.potter@example.com",
         "Owner: no active user with email 'henry.potter@example.com' (lsqsync users list "
         "shows every user)"),
        # the closest active users, by the name before the @ (one domain makes all look alike)
        (OWNER_AS_TEXT, "goerge.bailey@example.com",
         "Owner: no active user with email 'goerge.bailey@example.com' (did you mean "
         "'george.bailey@example.com'? lsqsync users list shows every user)"),
        (OWNER_AS_TEXT, "george.bailey@exmaple.com",
         "Owner: no active user with email 'george.bailey@exmaple.com' (did you mean "
         "'george.bailey@example.com'? lsqsync users list shows every user)"),
        (OWNER_AS_TEXT, "George Bailey",
         "Owner: 'George Bailey' is neither an email nor a user id"),
        (OWNER_AS_TEXT, NOBODY, f"Owner: '{NOBODY}' is not the id of an active user"),
    ],
)  # fmt: skip
def test_invalid_desired_values_are_refused(field: FieldMeta, desired: Any, message: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        to_wire(field, desired, ACTIVE)
    assert str(caught.value) == message


def test_long_numbers_read_exactly_never_rounded() -> None:
    long = "99999999999999999999999999999"
    assert read(NUMBER, long) == Decimal(long)
    assert not same(NUMBER, long, "1" + "0" * 29)
    assert to_wire(NUMBER, 123456789012345) == "123456789012345"  # 15 digits: kept


def test_unparseable_current_values_compare_as_text() -> None:
    assert read(NUMBER, "n/a") == "n/a"
    assert read(DATETIME, "soon") == "soon"
    assert to_wire(NUMBER, "23,500.50") == "23500.5"
    assert to_wire(DATETIME, datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05"
    assert to_wire(BOOLEAN, True) == "true"
    assert to_wire(TEXT, False) == "false"


# -- the round trip through the emulator -----------------------------------------------------

LOAN = "c5a7f37c-b789-44c9-929b-74aa6250b539"


@pytest.fixture(scope="module")
def roundtrip() -> Iterator[tuple[LsqClient, OpportunityType]]:
    with Emulator(opportunities=0, settings=Settings(rate_limit_calls=None)) as emu:
        client = LsqClient(emu.url, DEMO_ACCESS_KEY, DEMO_SECRET_KEY, limiter=None)
        with client:
            yield client, client.opportunity_type(12000)


STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "mx_Custom_6": st.integers(-(10**12), 10**12)
    | st.decimals(-(10**9), 10**9, places=3, allow_nan=False, allow_infinity=False),
    # The emulator keeps two decimal places, as a money column does.
    "mx_Custom_7": st.decimals(0, 10**6, places=2, allow_nan=False, allow_infinity=False),
    "mx_Custom_8": st.dates(date(1970, 1, 1), date(2100, 12, 31)),
    "mx_Custom_13": st.datetimes(datetime(1970, 1, 1), datetime(2100, 12, 31)).map(
        lambda d: d.replace(microsecond=0)
    ),
    "mx_Custom_12": st.booleans(),
    "mx_Custom_9": st.text(
        st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=200
    ).filter(str.strip),
    "mx_Custom_10": st.sampled_from(["Low", "Medium", "High"]),
    "Owner": st.sampled_from(sorted(ACTIVE)),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_written_values_read_back_as_no_change(
    roundtrip: tuple[LsqClient, OpportunityType], name: str, data: st.DataObject
) -> None:
    client, loan_type = roundtrip
    field = loan_type.field(name)
    assert field is not None
    desired = data.draw(STRATEGIES[name])
    wire = to_wire(field, desired, ACTIVE)

    (result,) = client.bulk_update([BulkUpdateItem(LOAN, 12000, {name: wire})])
    assert result.outcome == "applied"

    readers: list[Callable[[], Any]] = [
        lambda: client.opportunities_by_id(12000, [LOAN], [name])[0].values[name],
        lambda: client.opportunity_details(LOAN).values[name],  # type: ignore[union-attr]
    ]
    for reader in readers:
        assert same(field, reader(), wire)
    if isinstance(desired, Decimal | int) and not isinstance(desired, bool):
        assert read(field, wire) == Decimal(desired).normalize()
