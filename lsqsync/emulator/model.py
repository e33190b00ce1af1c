"""The emulated tenant's schema: opportunity types, their fields, and the users.

Everything here is fixed data. The two opportunities, their types (12000 and 12003) and the
owner user of the Bulk Update page's example are part of it, so that example works as printed.

Field metadata follows GetOpportunityTypeMetadata / GetOpportunityDetails as documented:
``OptionSet`` is a JSON *string* holding an array of options. The shape of
``DependentOptionSet`` is not documented [UNKNOWN]; the emulator uses a JSON string holding
``[{"ParentValue": "<Status option>", "Options": [<option>, …]}, …]`` and the client reads it
defensively.

This model repeats, on purpose, what the client's `lsqsync.lsq.models` also knows (system
fields, data types, which fields are read-only): the emulator is a second, independent reading of
LeadSquared's documentation, so a client assumption is not true here merely because the client
holds it. Never import the client's model here (an import-linter contract forbids it).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

# What a field holds, in the emulator's own words, and how GetOpportunityTypeMetadata reports
# it: (DataType, RenderType). The names follow LeadSquared's documentation (Create a Custom Lead
# Field: data types Text, Number, Email, Phone, Website, Date, Time, Select, Boolean; a Date
# rendered as Date or DateTime; CheckBox for Boolean; Dropdown and SearchableDropdown for
# Select) and its opportunity metadata example (String, SearchableDropdown); ActiveUsers was seen
# for user-valued fields on real accounts. The full list of opportunity DataType values is
# UNKNOWN. AutoId is this emulator's name for the field whose value Bulk Update accepts as the
# opportunity id (how LeadSquared marks it is UNKNOWN), and "Lookup" a data type nobody knows.
STRING = "text"
NUMBER = "number"
DATE = "date"
DATETIME = "datetime"
BOOLEAN = "boolean"
DROPDOWN = "dropdown"
SELECT = "select"  # a dropdown reported as Select/Dropdown (Status and Stage are Searchable)
MULTISELECT = "multiselect"
USER = "user"
AUTO_ID = "auto_id"
UNKNOWN = "unknown"

REPORTED: dict[str, tuple[str, str]] = {
    STRING: ("String", "Textbox"),
    NUMBER: ("Number", "Textbox"),
    DATE: ("Date", "Date"),
    DATETIME: ("Date", "DateTime"),
    BOOLEAN: ("Boolean", "CheckBox"),
    DROPDOWN: ("SearchableDropdown", "SearchableDropdown"),
    SELECT: ("Select", "Dropdown"),
    MULTISELECT: ("Select", "Dropdown"),
    USER: ("ActiveUsers", "Dropdown"),
    AUTO_ID: ("AutoId", "Textbox"),
    UNKNOWN: ("Lookup", "Lookup"),
}
OPTION_KINDS = (DROPDOWN, SELECT, MULTISELECT)

SYSTEM_FIELDS = ("CreatedOn", "ModifiedOn", "CreatedBy", "ModifiedBy")


@dataclass(frozen=True)
class FieldDef:
    schema_name: str
    display_name: str
    kind: str  # one of REPORTED's keys
    mandatory: bool = False
    read_only: bool = False
    max_length: int | None = None
    options: tuple[str, ...] = ()
    parent_field: str | None = None
    # parent option value -> the options allowed under it (a dependent dropdown such as Stage)
    dependent_options: tuple[tuple[str, tuple[str, ...]], ...] = ()
    places: int | None = None  # a number read back with this many decimals ("12.50")

    @property
    def is_system(self) -> bool:
        return self.schema_name in SYSTEM_FIELDS

    @property
    def data_type(self) -> str:
        return REPORTED[self.kind][0]

    @property
    def render_type(self) -> str:
        return REPORTED[self.kind][1]

    def metadata(self, sequence: int, value: str | None = None) -> dict[str, Any]:
        """The field as GetOpportunityTypeMetadata / GetOpportunityDetails describe it."""
        return {
            "SchemaName": self.schema_name,
            "InternalName": self.schema_name,
            "DisplayName": self.display_name,
            "Value": value,
            "DataType": self.data_type,
            "IsMandatory": self.mandatory,
            "ShowInForm": not self.is_system,
            "Sequence": sequence,
            # As documented: "" (not null) where a field has no parent or options.
            "ParentField": self.parent_field or "",
            "OptionSet": _option_set(self.all_options) if self.kind in OPTION_KINDS else "",
            "DependentOptionSet": (
                json.dumps(
                    [
                        {"ParentValue": parent, "Options": _options(children)}
                        for parent, children in self.dependent_options
                    ]
                )
                if self.dependent_options
                else ""
            ),
            "IsDefault": self.is_system or self.schema_name in ("Status", "Owner"),
            "IsReadOnly": self.read_only or self.is_system,
            "RenderType": self.render_type,
            "ExportAsPlainText": False,
            "IsMultiSelectDropdown": self.kind == MULTISELECT,
            "IncludeOthersOption": False,
            "BehaviorOnMissingDropdownOption": None,
            "IsOthersValue": False,
            "InternalSchemaName": self.schema_name,
            "CustomObjectType": 2,
            "MaxFieldLength": self.max_length,
        }

    @property
    def all_options(self) -> tuple[str, ...]:
        if self.dependent_options:
            return tuple(o for _, children in self.dependent_options for o in children)
        return self.options


def _options(values: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {
            "IsDefault": i == 0,
            "Text": value,
            "Value": value,
            "CanDelete": False,
            "CanEdit": False,
            "IsLastOption": i == len(values) - 1,
            "Order": i,
            "BackgroundColor": None,
            "FontColor": None,
        }
        for i, value in enumerate(values)
    ]


def _option_set(values: tuple[str, ...]) -> str:
    return json.dumps(_options(values))


@dataclass(frozen=True)
class OpportunityTypeDef:
    code: int
    name: str
    fields: tuple[FieldDef, ...]
    description: str = ""
    fields_by_name: dict[str, FieldDef] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields_by_name", {f.schema_name: f for f in self.fields})

    @property
    def auto_id_field(self) -> FieldDef | None:
        return next((f for f in self.fields if f.kind == AUTO_ID), None)

    def metadata(self) -> dict[str, Any]:
        return {
            "AllowAttachments": False,
            "CanDelete": False,
            "Description": self.description,
            "DisplayName": self.name,
            "EventCode": self.code,
            "Fields": [f.metadata(i + 1) for i, f in enumerate(self.fields)],
        }


STATUS_OPTIONS = ("Open", "Won", "Lost")
DOCUMENTS = ("PAN", "Aadhaar", "Salary Slips", "Bank Statement", "Property Papers")


def _common_fields(stages: dict[str, tuple[str, ...]]) -> tuple[FieldDef, ...]:
    return (
        FieldDef("Status", "Status", DROPDOWN, mandatory=True, options=STATUS_OPTIONS),
        FieldDef("mx_Custom_1", "Opportunity Name", STRING, mandatory=True, max_length=200),
        FieldDef(
            "mx_Custom_2",
            "Stage",
            DROPDOWN,
            parent_field="Status",
            dependent_options=tuple((s, stages[s]) for s in STATUS_OPTIONS),
        ),
        FieldDef("Owner", "Owner", USER),
    )


def _system_fields() -> tuple[FieldDef, ...]:
    return (
        FieldDef("CreatedOn", "Created On", DATETIME, read_only=True),
        FieldDef("ModifiedOn", "Modified On", DATETIME, read_only=True),
        FieldDef("CreatedBy", "Created By", USER, read_only=True),
        FieldDef("ModifiedBy", "Modified By", USER, read_only=True),
    )


HOME_LOAN = OpportunityTypeDef(
    code=12000,
    name="Home Loan",
    description="Home loan applications",
    fields=(
        *_common_fields(
            {
                "Open": ("New", "Documentation", "Credit Review", "Sanctioned"),
                "Won": ("Disbursed",),
                "Lost": ("Rejected", "Withdrawn", "Not Eligible"),
            }
        ),
        FieldDef("mx_Custom_6", "Loan Amount", NUMBER),
        FieldDef("mx_Custom_7", "Interest Rate", NUMBER, places=2),
        FieldDef("mx_Custom_8", "Expected Disbursal", DATE),
        FieldDef("mx_Custom_9", "Remarks", STRING, max_length=200),
        FieldDef("mx_Custom_10", "Priority", DROPDOWN, options=("Low", "Medium", "High")),
        FieldDef("mx_Custom_11", "PAN", STRING, max_length=10),
        FieldDef("mx_Custom_12", "Has Co-applicant", BOOLEAN),
        FieldDef("mx_Custom_13", "Last Contacted", DATETIME),
        FieldDef("mx_Custom_14", "Channel", STRING, read_only=True, max_length=50),
        FieldDef("mx_Custom_16", "Relationship Manager", USER),
        FieldDef("mx_Custom_17", "Documents Received", MULTISELECT, options=DOCUMENTS),
        FieldDef("mx_Custom_18", "Branch", UNKNOWN),
        *_system_fields(),
    ),
)

ENTERPRISE_DEAL = OpportunityTypeDef(
    code=12003,
    name="Enterprise Deal",
    description="B2B subscription deals",
    fields=(
        *_common_fields(
            {
                "Open": ("Prospecting", "Qualification", "Proposal", "Negotiation"),
                "Won": ("Closed Won", "Onboarding"),
                "Lost": ("Lost to Competitor", "No Budget", "No Response"),
            }
        ),
        FieldDef("mx_Custom_6", "Deal Value", NUMBER),
        FieldDef("mx_Custom_7", "Discount %", NUMBER, places=2),
        FieldDef("mx_Custom_8", "Closed On", DATETIME),
        FieldDef("mx_Custom_9", "Closing Note", STRING, max_length=200),
        FieldDef("mx_Custom_10", "Priority", SELECT, options=("Low", "Medium", "High")),
        FieldDef("mx_Custom_11", "Contact Phone", STRING, max_length=20),
        FieldDef("mx_Custom_12", "Renewal Date", DATE),
        FieldDef("mx_Custom_13", "Is Renewal", BOOLEAN),
        FieldDef("mx_Custom_14", "Lead Source", STRING, read_only=True, max_length=50),
        FieldDef("mx_Custom_15", "Deal Number", AUTO_ID, read_only=True, max_length=20),
        *_system_fields(),
    ),
)

TYPES: dict[int, OpportunityTypeDef] = {t.code: t for t in (HOME_LOAN, ENTERPRISE_DEAL)}


@dataclass(frozen=True)
class User:
    id: str
    first_name: str
    last_name: str
    email: str
    role: str = "Sales_User"
    active: bool = True

    def users_get(self) -> dict[str, Any]:
        """The row shape of UserManagement.svc/Users.Get (note the upper-case ``ID``)."""
        return {
            "ID": self.id,
            "FirstName": self.first_name,
            "LastName": self.last_name,
            "EmailAddress": self.email,
            "Role": self.role,
            "StatusCode": 0 if self.active else 1,
            "MemberOfGroups": [],
            "Tag": None,
            "IsPhoneCallAgent": False,
        }

    def by_email(self) -> dict[str, Any]:
        """The row shape of User/Retrieve/ByEmailAddress (here the key is ``UserId``)."""
        return {
            "UserId": self.id,
            "FirstName": self.first_name,
            "LastName": self.last_name,
            "EmailAddress": self.email,
            "Role": self.role,
            "OrgId": ORG_ID,
            "ManagerUserId": None,
            "Groups": [],
            "TeamId": None,
            "TeamName": None,
        }


ORG_ID = 22824


def _user_id(email: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, "users.emulator.lsqsync/" + email))


def _user(first: str, last: str, role: str = "Sales_User", active: bool = True) -> User:
    email = f"{first}.{last}@example.com".lower()
    return User(_user_id(email), first, last, email, role, active)


# The owner in the Bulk Update page's example ("Owner to George Bailey").
GEORGE_BAILEY = User(
    "96105aa0-61f2-11ea-8109-022edb41208c", "George", "Bailey", "george.bailey@example.com"
)
# The user the demo access key belongs to. Opportunity Advanced Search needs an administrator.
API_USER = _user("Ada", "Admin", role="Administrator")

USERS: tuple[User, ...] = (
    API_USER,
    GEORGE_BAILEY,
    _user("Mary", "Hatch"),
    _user("Clarence", "Odbody"),
    _user("Violet", "Bick"),
    _user("Ernie", "Bishop"),
    _user("Bert", "Nolan"),
    _user("Sam", "Wainwright", role="Sales_Manager"),
    _user("Henry", "Potter", active=False),
    _user("Harry", "Bailey", active=False),
)

# The two opportunities of the Bulk Update page's example.
EXAMPLE_OPPORTUNITIES = (
    ("4f530c63-4c93-4150-8b8e-83487befb3b2", 12003),
    ("c5a7f37c-b789-44c9-929b-74aa6250b539", 12000),
)
