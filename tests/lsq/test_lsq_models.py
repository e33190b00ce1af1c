from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from lsqsync.lsq import BulkUpdateItem, FieldMeta, OpportunityType, RowResult, User, WhoAmI
from lsqsync.lsq.models import (
    OpportunityDetails,
    OpportunityRecord,
    UnexpectedResponse,
    parse_bulk_results,
    parse_dependent_option_set,
    parse_option_set,
)

STATUS = {
    "SchemaName": "Status",
    "DisplayName": "Status",
    "DataType": "SearchableDropdown",
    "IsMandatory": True,
    "IsReadOnly": False,
    "MaxFieldLength": None,
    "ParentField": None,
    # As documented: a JSON *string*; Text may be empty, Value is the option.
    "OptionSet": json.dumps(
        [
            {"IsDefault": True, "Text": "", "Value": "Open", "Order": 0},
            {"Text": "Won", "Value": "Won"},
            {"Text": "Lost", "Value": "Lost"},
        ]
    ),
    "DependentOptionSet": None,
}


def test_option_set_is_read_from_its_json_string() -> None:
    assert FieldMeta.from_api(STATUS).options == ("Open", "Won", "Lost")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ()),
        ("", ()),
        ("not json", ()),
        ('{"Value": "Only"}', ("Only",)),
        (
            [{"Value": "A"}, {"Text": "B"}, "C", {"Other": 1}, 7, {"Value": "A"}],
            ("A", "B", "C", "7"),
        ),
    ],
)
def test_option_sets_in_other_shapes_are_read_defensively(
    raw: Any, expected: tuple[str, ...]
) -> None:
    assert parse_option_set(raw) == expected


def test_dependent_option_set_maps_each_parent_value_to_its_options() -> None:
    raw = json.dumps(
        [
            {"ParentValue": "Open", "Options": [{"Value": "New"}, {"Value": "Review"}]},
            {"ParentValue": "Won", "Options": [{"Value": "Disbursed"}]},
            {"ParentValue": "Lost", "Options": []},
        ]
    )
    assert dict(parse_dependent_option_set(raw)) == {
        "Open": ("New", "Review"),
        "Won": ("Disbursed",),
        "Lost": (),
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, {}),
        ("{not json", {}),
        ("42", {}),
        # entries it cannot read are skipped, the rest kept
        (
            json.dumps(
                [
                    "junk",
                    {"Options": [{"Value": "x"}]},
                    {"ParentValue": "Open", "Options": "not a list"},
                    {"ParentValue": "Won", "Options": [{"Value": "Closed"}]},
                ]
            ),
            {"Won": ("Closed",)},
        ),
        ({"Open": ["A", {"Value": "B"}], "Won": "junk"}, {"Open": ("A", "B")}),
        ({"ParentValue": "Won", "Options": [{"Value": "Closed"}]}, {"Won": ("Closed",)}),
        ('[{"ParentValue": "Won", "Options": "[\\"Closed\\"]"}]', {"Won": ("Closed",)}),
    ],
)
def test_dependent_option_sets_in_other_shapes_are_read_defensively(
    raw: Any, expected: dict[str, tuple[str, ...]]
) -> None:
    assert dict(parse_dependent_option_set(raw)) == expected


def test_field_flags_and_kinds() -> None:
    def meta(name: str, data_type: str, **extra: Any) -> FieldMeta:
        return FieldMeta.from_api({"SchemaName": name, "DataType": data_type, **extra})

    owner_as_string = meta("Owner", "String")
    assert owner_as_string.is_user_valued  # Owner is a user GUID whatever type is reported
    assert meta("mx_Custom_20", "User").is_user_valued
    assert meta("CreatedBy", "String").is_user_valued
    assert not meta("mx_Custom_1", "String").is_user_valued
    assert meta("ModifiedOn", "DateTime").is_system
    assert not meta("Status", "SearchableDropdown").is_system
    assert meta("mx_Custom_15", "AutoId").is_auto_id
    assert not meta("mx_Custom_15", "String").is_auto_id
    flags = meta("mx_Custom_9", "String", IsMandatory="true", IsReadOnly=1, MaxFieldLength="200")
    assert (flags.mandatory, flags.read_only, flags.max_length) == (True, True, 200)
    assert meta("mx_Custom_9", "String", MaxFieldLength=0).max_length is None
    assert meta("X", "String").display_name == "X"


def test_field_without_schema_name_is_an_unexpected_response() -> None:
    with pytest.raises(UnexpectedResponse):
        FieldMeta.from_api({"DataType": "String"})


def test_opportunity_type_lookup_and_auto_id() -> None:
    raw = {
        "DisplayName": "Deal",
        "EventCode": 12003,
        "Fields": [
            STATUS,
            {"SchemaName": "mx_Custom_15", "DataType": "AutoId"},
            {"DataType": "String"},  # no SchemaName: skipped
            "junk",
        ],
    }
    t = OpportunityType.from_api(raw, code=12003)
    assert (t.code, t.name, [f.schema_name for f in t.fields]) == (
        12003,
        "Deal",
        ["Status", "mx_Custom_15"],
    )
    assert t.field("Status") == FieldMeta.from_api(STATUS)
    assert t.field("status") is None
    assert t.auto_id_field is not None
    assert t.auto_id_field.schema_name == "mx_Custom_15"
    assert OpportunityType.from_api({"Fields": []}, code=5).auto_id_field is None
    with pytest.raises(UnexpectedResponse, match="asked for type 12000"):
        OpportunityType.from_api(raw, code=12000)
    with pytest.raises(UnexpectedResponse):
        OpportunityType.from_api({"Fields": "nope"}, code=12003)


def test_values_are_frozen_and_hashable() -> None:
    raw = {**STATUS, "DependentOptionSet": json.dumps([{"ParentValue": "A", "Options": ["x"]}])}
    f, same = FieldMeta.from_api(raw), FieldMeta.from_api(raw)
    assert f == same
    assert hash(f) == hash(same)
    assert f != FieldMeta.from_api({**raw, "DependentOptionSet": None})
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.schema_name = "Other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        f.dependent_options["B"] = ()  # type: ignore[index]
    record = OpportunityRecord("id-1", 12003, {"Status": "Open"})
    assert record == OpportunityRecord("id-1", 12003, {"Status": "Open"})
    assert record != OpportunityRecord("id-1", 12003, {"Status": "Won"})
    assert len({record, OpportunityRecord("id-1", 12003, {"Status": "Open"})}) == 1
    with pytest.raises(TypeError):
        record.values["Status"] = "Won"  # type: ignore[index]


def test_bulk_update_item_serialises_as_the_documented_body() -> None:
    item = BulkUpdateItem("4f530c63", 12003, {"Status": "Won", "Owner": "96105aa0"})
    assert item.to_api() == {
        "ProspectOpportunityId": "4f530c63",
        "OpportunityEventCode": 12003,
        "Fields": [
            {"SchemaName": "Status", "Value": "Won"},
            {"SchemaName": "Owner", "Value": "96105aa0"},
        ],
    }
    with pytest.raises(TypeError, match="must be strings: mx_Custom_6"):
        BulkUpdateItem("x", 12003, {"mx_Custom_6": 23500})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="needs an opportunity id"):
        BulkUpdateItem("", 12003, {})


def test_users_from_each_endpoint_shape() -> None:
    listed = User.from_api(
        {
            "ID": "u1",
            "FirstName": "Mary",
            "LastName": "Hatch",
            "EmailAddress": "m@x",
            "Role": "R",
            "StatusCode": 0,
        }
    )
    assert listed == User("u1", "m@x", "Mary", "Hatch", "R", True)
    assert listed.name == "Mary Hatch"
    assert not User.from_api({"ID": "u2", "StatusCode": 1}).active
    assert not User.from_api({"ID": "u3"}).active  # no StatusCode: not assumed active
    assert User.from_api({"UserId": "u4"}, active=True).id == "u4"
    with pytest.raises(UnexpectedResponse):
        User.from_api({"FirstName": "Nobody"})


def test_who_am_i_reads_the_api_host() -> None:
    me = WhoAmI.from_api(
        {
            "Id": "u1",
            "EmailAddress": "a@x",
            "OrgId": 22824,
            "LSQCommonServiceURLs": {"API": "https://h"},
        }
    )
    assert (me.user.id, me.user.active, me.api_host, me.org_id) == (
        "u1",
        True,
        "https://h",
        "22824",
    )
    assert WhoAmI.from_api({"Id": "u1"}).api_host is None


def test_who_am_i_reads_the_documented_body() -> None:
    # the example of the user-authentication page, trimmed
    me = WhoAmI.from_api(
        {
            "Id": "1a50c565-8525-11ea-a93b-0aa4c559f4ca",
            "Name": "Yogesh",
            "PassPhrase": "sri.sudhan@leadsquared.com",
            "Role": "Administrator",
            "EmailAddress": None,
            "OrgId": "3b1041a3-8374-11e7-8758-0a106ee76b21",
            "LSQCommonServiceURLs": {"api": "api-in21.leadsquared.com", "app": "app.x"},
        }
    )
    assert (me.user.name, me.user.email, me.user.role) == (
        "Yogesh",
        "sri.sudhan@leadsquared.com",
        "Administrator",
    )
    assert me.api_host == "api-in21.leadsquared.com"
    assert me.org_id == "3b1041a3-8374-11e7-8758-0a106ee76b21"
    # a PassPhrase that is no email address is never taken for one (nor shown)
    other = WhoAmI.from_api({"Id": "u1", "Name": "X", "PassPhrase": "s3cret words"})
    assert other.user.email == ""
    with pytest.raises(UnexpectedResponse):
        WhoAmI.from_api([])


def test_opportunity_details_empty_envelope_is_none() -> None:
    assert OpportunityDetails.from_api({}) is None
    assert OpportunityDetails.from_api(None) is None
    assert OpportunityDetails.from_api({"Status": "Success"}) is None
    details = OpportunityDetails.from_api(
        {
            "ID": "o1",
            "Name": "Loan",
            "RelatedProspectId": "l1",
            "Fields": [{**STATUS, "Value": "Won"}, {"SchemaName": "mx_Custom_6", "Value": 5}],
        }
    )
    assert details is not None
    assert (details.id, details.type_name, details.lead_id) == ("o1", "Loan", "l1")
    assert dict(details.values) == {"Status": "Won", "mx_Custom_6": "5"}


# -- bulk update results (reference §8: parsed defensively) ---------------------------------


def test_documented_response_is_all_applied() -> None:
    payload = {
        "Response": [
            {"RowNumber": 1, "OpportunityUpdated": True},
            {"RowNumber": 2, "OpportunityUpdated": True},
        ]
    }
    assert parse_bulk_results(payload, 2) == [RowResult(1, "applied"), RowResult(2, "applied")]


def test_results_are_matched_by_row_number_not_position() -> None:
    payload = [
        {"RowNumber": 3, "OpportunityUpdated": True},
        {
            "RowNumber": 1,
            "OpportunityUpdated": False,
            "ExceptionType": "MXE",
            "ExceptionMessage": "bad",
        },
        # no result for row 2
        {"RowNumber": 9, "OpportunityUpdated": True},  # out of range: ignored
        {"OpportunityUpdated": True},  # no RowNumber: cannot be matched
    ]
    assert parse_bulk_results(payload, 3) == [
        RowResult(1, "failed", "MXE", "bad"),
        RowResult(2, "unknown", None, "the response has no result for this row"),
        RowResult(3, "applied"),
    ]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            {"OpportunityUpdated": True, "ExceptionType": None, "Message": ""},
            RowResult(1, "applied"),
        ),
        ({"OpportunityUpdated": "true"}, RowResult(1, "applied")),
        (
            {"OpportunityUpdated": False},
            RowResult(1, "failed", None, "OpportunityUpdated is not true"),
        ),
        ({}, RowResult(1, "failed", None, "OpportunityUpdated is not true")),
        (
            {"OpportunityUpdated": True, "Message": "Field is invalid"},
            RowResult(1, "failed", None, "Field is invalid"),
        ),
        (
            {"OpportunityUpdated": True, "ErrorMessage": "nope"},
            RowResult(1, "failed", None, "nope"),
        ),
        ({"ExceptionType": "MXX"}, RowResult(1, "failed", "MXX", "OpportunityUpdated is not true")),
    ],
)
def test_a_row_is_failed_unless_updated_and_error_free(
    row: dict[str, Any], expected: RowResult
) -> None:
    assert parse_bulk_results([{"RowNumber": 1, **row}], 1) == [expected]


@pytest.mark.parametrize("payload", [{}, {"Response": None}, {"Response": "x"}, None, "ok", 3])
def test_unreadable_result_shapes_make_every_row_unknown(payload: Any) -> None:
    assert [r.outcome for r in parse_bulk_results(payload, 2)] == ["unknown", "unknown"]


def test_two_results_for_one_row_make_it_unknown() -> None:
    payload = {
        "response": [
            {"RowNumber": "1", "OpportunityUpdated": True},
            {"RowNumber": 1, "OpportunityUpdated": False},
        ]
    }
    assert parse_bulk_results(payload, 1) == [
        RowResult(1, "unknown", None, "the response has several results for this row")
    ]
