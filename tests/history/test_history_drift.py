"""drift's report: masked like every other output, escaped, JSON and text."""

from __future__ import annotations

import json

import pytest

from lsqsync.history.drift import Drifted, render_drift

OPP = "4f530c63-4c93-4150-8b8e-83487befb3b2"
PHONE = Drifted(OPP, 12003, "mx_Custom_11", "+91-98450 12345", "+91-98450 00000", "20240501-1")
NOTE = Drifted(OPP, 12003, "mx_Custom_9", "closed\nby q4", None, "20240501-1")


@pytest.mark.parametrize("mask", [("mx_Custom_11",), ("mx_custom_11",), ("MX_CUSTOM_11",)])
def test_a_masked_field_is_hidden_whatever_the_case_of_the_mask_entry(mask: tuple[str]) -> None:
    text = render_drift([PHONE, NOTE], "text", mask)
    assert "98450" not in text
    assert text.splitlines()[0] == (
        f"~ {OPP} (type 12003) mx_Custom_11: wrote *** (run 20240501-1), now ***"
    )
    rows = json.loads(render_drift([PHONE, NOTE], "json", mask))
    assert [(r["field"], r["written"], r["current"]) for r in rows] == [
        ("mx_Custom_11", "***", "***"),  # *** as `state show` writes it, not null
        ("mx_Custom_9", "closed\nby q4", None),  # null: the field is empty now
    ]


def test_values_are_quoted_and_escaped_and_an_empty_field_says_so() -> None:
    text = render_drift([NOTE], "text")
    assert text == (
        f'~ {OPP} (type 12003) mx_Custom_9: wrote "closed\\nby q4" (run 20240501-1), now (empty)\n'
        "Drift: 1 field changed outside lsqsync.\n"
        "To take LeadSquared's values as the known ones: lsqsync drift --accept RUN (the fields "
        "that run wrote) or --accept --all.\n"
    )
