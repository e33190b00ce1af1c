"""Issue 13, problems 2 and 3: field kinds from the data type *and* render type LeadSquared
documents (metadata as GetOpportunityTypeMetadata returns it), a type nobody knows never written
by guesswork, and dates as calendar days of the account's zone or as instants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lsqsync.config import load_config
from lsqsync.lsq import FieldMeta
from lsqsync.lsq.codec import InvalidValue, read, same, to_wire

GEORGE = "96105aa0-61f2-11ea-8109-022edb41208c"
ACTIVE = {"george.bailey@example.com": GEORGE}


def meta(**raw: Any) -> FieldMeta:
    return FieldMeta.from_api({"SchemaName": "mx_Custom_20", **raw})


DATETIME = {"DataType": "Date", "RenderType": "DateTime"}  # [DOC] a Date rendered as DateTime
DATE = {"DataType": "Date", "RenderType": "Date"}
MULTI = {"DataType": "Select", "RenderType": "Dropdown", "IsMultiSelectDropdown": True}


# -- problem 2: field kinds --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "current", "desired"),
    [
        ({"DataType": "Number", "RenderType": "Textbox"}, "23500.00", 23500),
        ({"DataType": "Number"}, "23,500", "23500.00"),
        (DATETIME, "12/31/2024 6:00:00 PM", "2024-12-31 18:00:00"),  # by id vs search
        (DATETIME, "2024-12-31 18:00:00.000", "2024-12-31T18:00:00Z"),
        ({"DataType": "ActiveUsers"}, GEORGE.upper(), "george.bailey@example.com"),
        ({"DataType": "User"}, GEORGE, GEORGE.upper()),
        ({"DataType": "Boolean", "RenderType": "RadioButton"}, "1", True),
        ({"DataType": "Text", "RenderType": "TextArea"}, " note ", "note"),
        ({"DataType": "Email"}, "a@example.com", "a@example.com"),
        ({"DataType": "Select", "RenderType": "Dropdown"}, "Won", "Won"),
        ({"DataType": "SearchableDropdown", "OptionSet": ""}, "Won", "Won"),
        (MULTI, "PAN;Aadhaar", ["Aadhaar", "PAN"]),
        (MULTI, "", []),
    ],
)
def test_a_documented_kind_compares_by_what_it_holds(
    raw: dict[str, Any], current: str, desired: Any
) -> None:
    assert same(meta(**raw), current, to_wire(meta(**raw), desired, ACTIVE))


def test_a_datetime_keeps_its_time_and_a_user_field_takes_an_id() -> None:
    assert to_wire(meta(**DATETIME), "2024-12-31 18:00:00") == "2024-12-31 18:00:00"
    assert to_wire(meta(DataType="ActiveUsers"), "george.bailey@example.com", ACTIVE) == GEORGE
    assert to_wire(meta(**MULTI), ["PAN", "Aadhaar"]) == "Aadhaar;PAN"
    assert read(meta(**MULTI), "PAN;Aadhaar") == ("Aadhaar", "PAN")


@pytest.mark.parametrize(
    "raw",
    [
        {"DataType": "Lookup"},  # a name nobody documented
        {"DataType": "Decimal"},  # names only lsqsync's own emulator used to report
        {"DataType": "DateTime"},
        {"DataType": "Time", "RenderType": "Time"},  # documented, but its format is not
        {"DataType": "Date"},  # a Date that does not say whether it is a day or an instant
        {"DataType": "Date", "RenderType": "Time"},
        {"DataType": "Select", "RenderType": "CheckBox"},  # may hold several values
        {"DataType": "String", "IsMultiSelectDropdown": True},
        {"DataType": ""},
    ],
)
def test_an_unrecognised_type_is_never_written(raw: dict[str, Any]) -> None:
    field = meta(**raw)
    with pytest.raises(InvalidValue, match="which lsqsync does not recognise") as caught:
        to_wire(field, "23500")
    assert "field_types: {mx_Custom_20: text|number|" in str(caught.value)


def test_field_types_in_lsqsync_yml_say_what_a_field_holds(tmp_path: Path) -> None:
    (tmp_path / "lsqsync.yml").write_text(
        "version: 1\nfield_types: {mx_Custom_20: number, Owner: text}\n", encoding="utf-8"
    )
    settings = load_config(tmp_path / "lsqsync.yml").field_settings
    declared = FieldMeta.from_api({"SchemaName": "mx_Custom_20", "DataType": "Lookup"}, settings)
    assert to_wire(declared, "23,500.00") == "23500"
    assert same(declared, "23500.00", "23500")
    # a declaration overrules the metadata, even for Owner
    owner = FieldMeta.from_api({"SchemaName": "Owner", "DataType": "ActiveUsers"}, settings)
    assert to_wire(owner, "Nobody") == "Nobody"


# -- problem 3: dates ---------------------------------------------------------------------------


def test_dates_are_written_in_the_documented_utc_format() -> None:
    """[DOC] "all APIs" take UTC ``YYYY-MM-DD HH:MM:SS``: a DateTime as the instant, a Date as
    noon UTC of its day (the same day in every zone less than 12 hours from UTC)."""
    assert to_wire(meta(**DATE), "2024-12-31") == "2024-12-31 12:00:00"
    assert to_wire(meta(**DATETIME), "2024-12-31T23:30:00+05:30") == "2024-12-31 18:00:00"


@pytest.mark.parametrize(
    "current",
    [
        "2024-12-31 18:00:00",
        "2024-12-31T18:00:00",
        "2024-12-31T18:00",
        "2024-12-31 18:00:00.000",
        "12/31/2024 6:00:00 PM",
        "12/31/2024 6:00 PM",
        "12/31/2024 18:00:00",
    ],
)
def test_every_form_seen_reads_as_the_same_instant(current: str) -> None:
    assert same(meta(**DATETIME), current, "2024-12-31 18:00:00")


def test_the_accounts_zone_decides_the_day_of_a_date(tmp_path: Path) -> None:
    (tmp_path / "lsqsync.yml").write_text("version: 1\ntimezone: Asia/Kolkata\n", encoding="utf-8")
    config = load_config(tmp_path / "lsqsync.yml")
    assert config.timezone == "Asia/Kolkata"
    field = FieldMeta.from_api({"SchemaName": "mx_Custom_8", **DATE}, config.field_settings)
    # 31 December picked in India, kept as the instant of local midnight
    assert same(field, "2024-12-30 18:30:00", to_wire(field, "2024-12-31"))
    assert same(field, "12/30/2024 6:30:00 PM", to_wire(field, "2024-12-31"))
    # … and a day kept as a day, whatever the endpoint
    assert same(field, "12/31/2024 12:00:00 AM", to_wire(field, "2024-12-31"))
    assert same(field, "2024-12-31", to_wire(field, "2024-12-31"))
    # in UTC the same instant is the 30th
    utc = FieldMeta.from_api({"SchemaName": "mx_Custom_8", **DATE})
    assert not same(utc, "2024-12-30 18:30:00", to_wire(utc, "2024-12-31"))
