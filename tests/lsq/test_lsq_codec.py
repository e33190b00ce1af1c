"""The value codec: table tests of every format, and property tests that writing a value and
reading it back through the emulator — from every read endpoint — is "no change"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsqsync.emulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings
from lsqsync.emulator.model import USERS
from lsqsync.lsq import BulkUpdateItem, FieldMeta, FieldSettings, LsqClient, OpportunityType
from lsqsync.lsq.codec import InvalidValue, read, same, to_wire

NUMBER = FieldMeta("mx_Custom_6", "Amount", "Number")
DECIMAL = FieldMeta("mx_Custom_7", "Rate", "Number")  # read back with two places
DATE = FieldMeta("mx_Custom_8", "Due", "Date", render_type="Date")
DATETIME = FieldMeta("mx_Custom_13", "Contacted", "Date", render_type="DateTime")
BOOLEAN = FieldMeta("mx_Custom_12", "Flag", "Boolean", render_type="CheckBox")
TEXT = FieldMeta("mx_Custom_9", "Remarks", "String", max_length=10)
OWNER_AS_TEXT = FieldMeta("Owner", "Owner", "String")  # some tenants report Owner so
MANAGER = FieldMeta("mx_Custom_16", "Manager", "ActiveUsers")
DOCUMENTS = FieldMeta("mx_Custom_17", "Docs", "Select", render_type="Dropdown", multi_select=True)
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
        (DATE, "2026-08-31 00:00:00", "2026-08-31"),
        (DATE, "2026-08-31 12:00:00", "2026-08-31"),
        (DATETIME, "8/31/2026 8:38:00 AM", "2026-08-31 08:38:00"),
        (DATETIME, "8/31/2026 8:38 AM", "2026-08-31 08:38:00"),
        (DATETIME, "2026-08-31T08:38", "2026-08-31 08:38:00"),
        (DATETIME, "2024-12-31 18:00:00", "2024-12-31T18:00:00"),
        (DATETIME, "12/31/2024 6:00:00 PM", "2024-12-31 18:00:00"),
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
        (MANAGER, GEORGE.upper(), "george.bailey@example.com"),
        (DOCUMENTS, "PAN;Aadhaar", ["Aadhaar", "PAN"]),
        (DOCUMENTS, " Aadhaar ; PAN;PAN", ("PAN", "Aadhaar", "PAN")),
        (DOCUMENTS, "PAN", "PAN"),
        (DOCUMENTS, None, []),
        (DOCUMENTS, ";", None),
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
        (DOCUMENTS, "PAN;Aadhaar", ["PAN"]),
        (DOCUMENTS, "PAN", []),
    ],
)
def test_a_different_value_is_a_change(field: FieldMeta, current: Any, desired: Any) -> None:
    assert not same(field, current, to_wire(field, desired, ACTIVE))


@pytest.mark.parametrize(
    ("field", "desired", "message"),
    [
        (NUMBER, "twelve", "mx_Custom_6 (number): 'twelve' is not a number"),
        (NUMBER, True, "mx_Custom_6 (number): a boolean is not a number"),
        (NUMBER, float("inf"), "mx_Custom_6 (number): 'inf' is not a finite number"),
        (NUMBER, float("nan"), "mx_Custom_6 (number): 'nan' is not a finite number"),
        (NUMBER, "1e400", "mx_Custom_6 (number): '1e400' is not a number"),
        (NUMBER, 99999999999999999999999999999,
         "mx_Custom_6 (number): '99999999999999999999999999999' has 29 significant digits; a "
         "number field keeps at most 15 exactly, so it would be rounded"),
        (NUMBER, "1234567890.123456",
         "mx_Custom_6 (number): '1234567890.123456' has 16 significant digits; a number field "
         "keeps at most 15 exactly, so it would be rounded"),
        (DATE, "31.12.2026", "mx_Custom_8 (date): '31.12.2026' is not a date"),
        (DATE, "2026-02-30", "mx_Custom_8 (date): '2026-02-30' is not a date"),
        (DATE, "12/31/2026",
         "mx_Custom_8 (date): '12/31/2026': write dates as YYYY-MM-DD (a time as YYYY-MM-DD "
         "HH:MM:SS, UTC); M/D/YYYY is read one way in the US and the other way elsewhere"),
        (DATETIME, "1/3/2026 1:00:00 PM",
         "mx_Custom_13 (datetime): '1/3/2026 1:00:00 PM': write dates as YYYY-MM-DD (a time as "
         "YYYY-MM-DD HH:MM:SS, UTC); M/D/YYYY is read one way in the US and the other way "
         "elsewhere"),
        (DATETIME, "2026-13-01 10:00:00",
         "mx_Custom_13 (datetime): '2026-13-01 10:00:00' is not a date"),
        (DECIMAL, "4.615",
         "mx_Custom_7 (number): '4.615' has 3 decimal places; a number field keeps 2"),
        (NUMBER, [1, 2], "mx_Custom_6 (number) holds one value, not a list: lists are for "
         "multi-select fields"),
        (DOCUMENTS, "PAN;Aadhaar",
         "mx_Custom_17 (multiselect): 'PAN;Aadhaar' holds ';', which separates the options of a "
         "multi-select field: list the options instead"),
        (DOCUMENTS, [["PAN"]],
         "mx_Custom_17 (multiselect): '['PAN']' is not an option (a list of options holds text)"),
        (DOCUMENTS, [True],
         "mx_Custom_17 (multiselect): 'True' is not an option (a list of options holds text)"),
        (BOOLEAN, "maybe", "mx_Custom_12 (boolean): 'maybe' is not a boolean (use true or false)"),
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


def test_the_wire_forms_of_every_kind() -> None:
    """What Bulk Update is sent: dates in the documented UTC ``YYYY-MM-DD HH:MM:SS`` (a Date at
    noon), a multi-select's options sorted and joined by ';' (an UNKNOWN encoding)."""
    assert to_wire(DATE, "2024-12-31") == "2024-12-31 12:00:00"
    assert to_wire(DATE, date(2024, 12, 31)) == "2024-12-31 12:00:00"
    assert to_wire(DATETIME, "2024-12-31T23:30:00+05:30") == "2024-12-31 18:00:00"
    assert to_wire(DOCUMENTS, ["PAN", "Aadhaar", "PAN", " "]) == "Aadhaar;PAN"
    assert to_wire(DOCUMENTS, []) == ""
    assert to_wire(MANAGER, "George.Bailey@example.com", ACTIVE) == GEORGE
    assert read(DOCUMENTS, "PAN;Aadhaar") == ("Aadhaar", "PAN")


# -- problem 3 of issue 13: dates are calendar days in the account's zone, or instants --------


def _date_field(timezone: str) -> FieldMeta:
    raw = {"SchemaName": "mx_Custom_8", "DataType": "Date", "RenderType": "Date"}
    return FieldMeta.from_api(raw, FieldSettings(timezone=timezone))


@pytest.mark.parametrize(
    ("timezone", "current", "day"),
    [
        # A day picked in the UI of an account in India, kept as the instant of local midnight
        ("Asia/Kolkata", "2024-12-30 18:30:00", "2024-12-31"),
        ("Asia/Kolkata", "12/30/2024 6:30:00 PM", "2024-12-31"),
        ("Asia/Kolkata", "2024-12-30T18:30", "2024-12-31"),
        # … and in New York (local midnight is 05:00 UTC)
        ("America/New_York", "2024-12-31 05:00:00", "2024-12-31"),
        ("America/New_York", "12/31/2024 5:00 AM", "2024-12-31"),
        # A day kept as a day, with or without a midnight time, in any zone
        ("America/New_York", "12/31/2024 12:00:00 AM", "2024-12-31"),
        ("America/New_York", "2024-12-31", "2024-12-31"),
        ("Asia/Kolkata", "2024-12-31 00:00:00", "2024-12-31"),
        # What lsqsync writes (noon UTC), read back in either zone
        ("Asia/Kolkata", "2024-12-31 12:00:00", "2024-12-31"),
        ("America/Los_Angeles", "12/31/2024 12:00:00 PM", "2024-12-31"),
    ],
)
def test_a_date_is_the_calendar_day_of_the_accounts_zone(
    timezone: str, current: str, day: str
) -> None:
    field = _date_field(timezone)
    wire = to_wire(field, day)
    assert wire == f"{day} 12:00:00"  # the documented format, at noon UTC
    assert same(field, current, wire)
    assert read(field, current) == date.fromisoformat(day)


def test_the_zone_decides_which_day_an_instant_is() -> None:
    assert not same(
        _date_field("UTC"), "2024-12-30 18:30:00", to_wire(_date_field("UTC"), "2024-12-31")
    )
    # `now` in a rule is UTC: 20:00 UTC on the 30th is already the 31st in India
    assert to_wire(_date_field("Asia/Kolkata"), "2024-12-30 20:00:00") == "2024-12-31 12:00:00"
    assert to_wire(_date_field("UTC"), "2024-12-30 20:00:00") == "2024-12-30 12:00:00"


def test_a_date_is_not_written_where_no_time_of_day_names_one_day() -> None:
    with pytest.raises(InvalidValue, match=r"Pacific/Kiritimati .* does not write Date fields"):
        to_wire(_date_field("Pacific/Kiritimati"), "2024-12-31")  # UTC+14


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
    | st.decimals(-(10**9), 10**9, places=2, allow_nan=False, allow_infinity=False),
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
    "mx_Custom_16": st.sampled_from(sorted(ACTIVE)),  # ActiveUsers
    "mx_Custom_17": st.lists(st.sampled_from(["PAN", "Aadhaar", "Salary Slips"]), unique=True),
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


@pytest.mark.parametrize("client_zone", ["Asia/Kolkata", "UTC"])
def test_dates_round_trip_through_an_account_that_keeps_instants(client_zone: str) -> None:
    """The emulator as an account in India that keeps a Date as the instant of local midnight
    (``date_zone``): a day written by a person in its UI reads back as 18:30 UTC the day before.
    With ``timezone: Asia/Kolkata`` that is the day picked, and what lsqsync writes reads back
    as what it wrote from every endpoint; read in UTC, the person's day is the day before."""
    settings = Settings(rate_limit_calls=None, date_zone="Asia/Kolkata")
    with Emulator(opportunities=0, settings=settings) as emu:
        edit = [{"ProspectOpportunityId": LOAN, "OpportunityEventCode": 12000,
                 "Fields": [{"SchemaName": "mx_Custom_8", "Value": "2024-12-31"}]}]  # fmt: skip
        requests.post(emu.url + "/_emulator/edits", json=edit, timeout=10).raise_for_status()
        client = LsqClient(
            emu.url,
            DEMO_ACCESS_KEY,
            DEMO_SECRET_KEY,
            limiter=None,
            field_settings=FieldSettings(timezone=client_zone),
        )
        with client:
            field = client.opportunity_type(12000).field("mx_Custom_8")
            assert field is not None
            by_id = client.opportunities_by_id(12000, [LOAN], ["mx_Custom_8"])[0].values
            (searched,) = [
                r.values
                for r in client.search_opportunities(12000, ["mx_Custom_8"])
                if r.id == LOAN
            ]
            assert (by_id["mx_Custom_8"], searched["mx_Custom_8"]) == (
                "12/30/2024 6:30:00 PM",
                "2024-12-30 18:30:00",
            )
            picked = same(field, searched["mx_Custom_8"], to_wire(field, "2024-12-31"))
            assert picked is (client_zone == "Asia/Kolkata")
            wire = to_wire(field, "2025-03-01")
            (result,) = client.bulk_update([BulkUpdateItem(LOAN, 12000, {"mx_Custom_8": wire})])
            assert result.outcome == "applied"
            again = client.opportunities_by_id(12000, [LOAN], ["mx_Custom_8"])[0].values
            details = client.opportunity_details(LOAN)
            assert details is not None
            (described,) = [f for f in details.fields if f.schema_name == "mx_Custom_8"]
            assert (described.kind, described.timezone) == ("date", client_zone)
            for value in (again["mx_Custom_8"], details.values["mx_Custom_8"]):
                assert same(field, value, wire)
