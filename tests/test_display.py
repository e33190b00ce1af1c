"""How outputs for people name a field: its display name and schema name, once each."""

from __future__ import annotations

import pytest

from lsqsync.display import LABEL_LIMIT, FieldNames, field_name


@pytest.mark.parametrize(
    ("schema", "display", "shown"),
    [
        ("mx_Custom_2", "Stage", "Stage (mx_Custom_2)"),
        ("Status", "Status", "Status"),  # the same name: said once
        ("OwnerId", "ownerid", "OwnerId"),  # the same but for case: the schema name rules use
        ("mx_Custom_9", "", "mx_Custom_9"),  # no display name
        ("mx_Custom_9", None, "mx_Custom_9"),  # not known
        ("mx_Custom_9", "  Remarks ", "Remarks (mx_Custom_9)"),
        # an account's name cannot forge a line or colour a terminal
        ("mx_Custom_9", "Notes\n\x1b[31m", "Notes\\n\\u001b[31m (mx_Custom_9)"),
    ],
)
def test_field_name(schema: str, display: str | None, shown: str) -> None:
    assert field_name(schema, display) == shown


def test_a_long_display_name_is_capped() -> None:
    shown = field_name("mx_Custom_9", "x" * 500)
    assert shown.startswith("x" * LABEL_LIMIT + "… (440 more characters) (mx_Custom_9)")


def test_field_names_per_type_and_across_types() -> None:
    names = FieldNames(
        {
            12000: {"mx_Custom_6": "Loan Amount", "Status": "Status"},
            12003: {"mx_Custom_6": "Deal Value"},
        }
    )
    assert names("mx_Custom_6", 12000) == "Loan Amount (mx_Custom_6)"
    assert names("mx_Custom_6", 12003) == "Deal Value (mx_Custom_6)"
    assert names("mx_Custom_6") == "Deal Value / Loan Amount (mx_Custom_6)"  # every type's
    assert names("Status") == "Status"
    assert names("mx_Custom_7", 12003) == "mx_Custom_7"  # not labelled
    assert names("mx_Custom_6", 99999) == "mx_Custom_6"  # a type it does not know
    assert names.label("mx_Custom_6", 12003) == "Deal Value"
    assert names.label("mx_Custom_7") is None
    assert FieldNames()("mx_Custom_2", 12003) == "mx_Custom_2"


def test_each_name_is_formatted_once() -> None:
    names = FieldNames({12003: {"mx_Custom_2": "Stage"}})
    assert names("mx_Custom_2", 12003) is names("mx_Custom_2", 12003)
