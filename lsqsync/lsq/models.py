"""Plain, frozen values the client returns, and how they are read from LeadSquared's bodies.

Every ``from_api`` constructor reads one documented (or observed) response shape and nothing
else; where the reference marks a shape UNKNOWN the reading is defensive and says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

SYSTEM_FIELDS = frozenset({"CreatedOn", "ModifiedOn", "CreatedBy", "ModifiedBy"})
# Fields whose value is a user GUID whatever DataType a tenant reports for them.
USER_VALUED_FIELDS = frozenset({"Owner", "CreatedBy", "ModifiedBy"})

# What a field holds, as lsqsync compares and writes it (``field_types:`` in lsqsync.yml names
# these). A field whose metadata maps to none of them is *unrecognised*: never written, never
# compared (kind None).
Kind = Literal["text", "number", "date", "datetime", "boolean", "dropdown", "multiselect", "user"]
KINDS: tuple[Kind, ...] = (
    "text", "number", "date", "datetime", "boolean", "dropdown", "multiselect", "user",
)  # fmt: skip

# DataType names (compared in lower case) and where each was seen. [DOC] is the field APIs'
# list (Create a Custom Lead Field: Text, Number, Email, Phone, Website, Date, Time, Select,
# Boolean, with render types Textbox, TextArea, Email, Phone, URL, Date and DateTime for Date,
# Time, RadioButton and CheckBox for Boolean, Dropdown and SearchableDropdown for Select) and
# the opportunity metadata example. The full list of opportunity DataType values is UNKNOWN; a
# name not here is unrecognised, whatever it sounds like.
_TEXT_TYPES = frozenset(
    {
        "string",  # [DOC] the opportunity metadata example
        "text", "email", "phone", "website",  # [DOC] the field APIs' data types
    }
)  # fmt: skip
_DROPDOWN_TYPES = frozenset(
    {
        "searchabledropdown",  # [DOC] the opportunity metadata example (Status)
        "select",  # [DOC] the field APIs' data types; lead metadata
        "dropdown",  # [DOC] the render type of Select, which some metadata reports as the type
    }
)
_USER_TYPES = frozenset(
    {
        "activeusers",  # [CODE] user-valued fields of real accounts
        "user",  # the user-valued fields of the Bulk Update page's example (Owner)
    }
)
_SIMPLE_TYPES: Mapping[str, Kind] = MappingProxyType(
    {
        **dict.fromkeys(_TEXT_TYPES, "text"),
        **dict.fromkeys(_USER_TYPES, "user"),
        "number": "number",  # [DOC] the field APIs' data types
        "boolean": "boolean",  # [DOC] the field APIs' data types
        # The AutoId field ProspectOpportunityId accepts [DOC]: read-only, compared as text.
        "autoid": "text",
    }
)
# [DOC] Date is the one date data type; its render type tells a day (Date) from an instant
# (DateTime). A Date field rendered otherwise (Time, or not said) is unrecognised.
_DATE_RENDER: Mapping[str, Kind] = MappingProxyType({"date": "date", "datetime": "datetime"})


def derive_kind(
    schema_name: str, data_type: str, render_type: str, multi_select: bool
) -> Kind | None:
    """The kind LeadSquared's metadata describes, from the data type and render type together;
    None when lsqsync does not recognise it (the field is never written by guesswork)."""
    t, render = data_type.strip().lower(), render_type.strip().lower()
    if schema_name in USER_VALUED_FIELDS:
        return "user"  # tenants report Owner under different DataTypes; it holds a user GUID
    if t in _DROPDOWN_TYPES:
        if multi_select:
            return "multiselect"
        # A checkbox group may hold several values without the flag saying so: UNKNOWN.
        return None if render == "checkbox" else "dropdown"
    if multi_select:
        return None  # a multi-select flag on a type that is no dropdown: contradictory
    if t == "date":
        return _DATE_RENDER.get(render)
    return _SIMPLE_TYPES.get(t)


@dataclass(frozen=True)
class FieldSettings:
    """How the account's values are read beyond what its metadata says (lsqsync.yml):
    ``field_types`` declares the kind of fields by schema name, ``timezone`` is the account's
    IANA zone (Date fields compare as calendar days there)."""

    field_types: Mapping[str, Kind] = field(default_factory=lambda: _frozen({}), hash=False)
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_types", _frozen(self.field_types))


Outcome = Literal["applied", "failed", "unknown"]


class UnexpectedResponse(ValueError):
    """A body whose shape the client cannot read (the client turns it into an ApiError)."""


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


def value_text(value: Any) -> str | None:
    """A read value as the string LeadSquared means by it (reads are documented as strings or
    null; anything else is rendered so that no value is silently dropped)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _str(raw: Mapping[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` holding a non-empty value, as a string."""
    for key in keys:
        value = raw.get(key)
        if value is not None and value != "":
            return str(value)
    return None


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return value is True or (isinstance(value, int) and value == 1)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _json_list(value: Any) -> list[Any]:
    """OptionSet is documented as a JSON *string* holding an array; accept an already-decoded
    array (or a lone option) too, and read anything else as no options rather than failing."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            return []
    if isinstance(value, dict):
        return [value]
    return value if isinstance(value, list) else []


def _option_values(items: Iterable[Any]) -> tuple[str, ...]:
    """Option ``Value`` strings (``Text`` can be empty: the docs' Status options have
    ``"Text": ""``), falling back to ``Text`` or a bare string; unreadable items are skipped."""
    out: list[str] = []
    for item in items:
        value = _str(item, "Value", "Text") if isinstance(item, dict) else value_text(item)
        if value is not None and value not in out:
            out.append(value)
    return tuple(out)


def parse_option_set(value: Any) -> tuple[str, ...]:
    return _option_values(_json_list(value))


def parse_dependent_option_set(value: Any) -> Mapping[str, tuple[str, ...]]:
    """The shape of DependentOptionSet is UNKNOWN. Read the emulator's
    ``[{"ParentValue": …, "Options": [option, …]}]`` and a plain ``{parent: [option, …]}``
    object; ignore entries in any other shape rather than guess at them."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            return _frozen({})
    if isinstance(value, dict) and ("ParentValue" in value or "ParentOptionValue" in value):
        value = [value]  # a lone entry, not a {parent: options} object
    out: dict[str, tuple[str, ...]] = {}
    if isinstance(value, dict):
        for parent, options in value.items():
            if isinstance(options, list):
                out[str(parent)] = _option_values(options)
    elif isinstance(value, list):
        for entry in value:
            if not isinstance(entry, dict):
                continue
            parent = _str(entry, "ParentValue", "ParentOptionValue")
            options = entry.get("Options")
            if isinstance(options, str):
                try:
                    options = json.loads(options)
                except json.JSONDecodeError:
                    continue
            # An unreadable list is skipped, never read as "no options allowed".
            if parent is not None and isinstance(options, list):
                out[parent] = _option_values(options)
    return _frozen(out)


@dataclass(frozen=True)
class User:
    id: str
    email: str
    first_name: str
    last_name: str
    role: str
    active: bool

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @classmethod
    def from_api(cls, raw: Mapping[str, Any], *, active: bool | None = None) -> User:
        """A user row. The id key differs by endpoint (``ID`` in Users.Get, ``UserId`` in
        Retrieve/ByEmailAddress, ``Id`` in UserByAccessKey.Get), so all three are read.

        ``StatusCode`` 0 is active and 1 inactive; a row without it counts as inactive unless
        the caller knows better (``active=``), so an unknown user is never assigned records.
        """
        user_id = _str(raw, "ID", "UserId", "Id")
        if user_id is None:
            raise UnexpectedResponse("a user without an ID")
        if active is None:
            active = _int(raw.get("StatusCode")) == 0
        return cls(
            id=user_id,
            email=_str(raw, "EmailAddress") or "",
            first_name=_str(raw, "FirstName") or "",
            last_name=_str(raw, "LastName") or "",
            role=_str(raw, "Role") or "",
            active=active,
        )


@dataclass(frozen=True)
class WhoAmI:
    """The user the access key belongs to, the tenant's API host as ``LSQCommonServiceURLs``
    names it (None when the body does not say; documented as a bare host name such as
    ``api-in21.leadsquared.com``) and the organisation's id (documented as a GUID string)."""

    user: User
    api_host: str | None
    org_id: str | None

    @classmethod
    def from_api(cls, raw: Any) -> WhoAmI:
        if not isinstance(raw, dict):
            raise UnexpectedResponse("expected a JSON object")
        # Keys stop working when their user is deactivated, so the caller is active unless the
        # body says otherwise.
        active = None if "StatusCode" in raw else True
        user = User.from_api(raw, active=active)
        # The documented body names the user in one ``Name`` and carries the email address as
        # ``PassPhrase`` (``EmailAddress`` is null there).
        if not user.name:
            user = replace(user, first_name=_str(raw, "Name") or "")
        passphrase = (_str(raw, "PassPhrase") or "").strip()
        # Taken only when it is an email address: a field of that name may hold a secret on
        # an account that does not follow the documented example.
        if not user.email and _EMAIL.fullmatch(passphrase):
            user = replace(user, email=passphrase)
        urls = raw.get("LSQCommonServiceURLs")
        api_host = None
        if isinstance(urls, dict):
            by_key = {str(k).lower(): v for k, v in urls.items()}
            api_host = value_text(by_key.get("api")) or None
        return cls(user, api_host, _str(raw, "OrgId"))


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class FieldMeta:
    schema_name: str
    display_name: str
    data_type: str
    mandatory: bool = False
    read_only: bool = False
    max_length: int | None = None
    options: tuple[str, ...] = ()
    parent_field: str | None = None
    # parent option value -> the options allowed under it (a dependent dropdown such as Stage);
    # excluded from the hash (a mapping is not hashable) but part of equality.
    dependent_options: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: _frozen({}), hash=False
    )
    render_type: str = ""
    multi_select: bool = False  # IsMultiSelectDropdown
    declared_kind: Kind | None = None  # field_types: in lsqsync.yml, which overrules the metadata
    timezone: str = "UTC"  # the account's (lsqsync.yml): Date values are days in this zone
    # What the field holds: declared, else derived from the metadata; None: unrecognised.
    kind: Kind | None = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dependent_options", _frozen(self.dependent_options))
        derived = derive_kind(self.schema_name, self.data_type, self.render_type, self.multi_select)
        object.__setattr__(self, "kind", self.declared_kind or derived)

    @property
    def is_system(self) -> bool:
        return self.schema_name in SYSTEM_FIELDS

    @property
    def is_user_valued(self) -> bool:
        return self.kind == "user"

    @property
    def is_recognised(self) -> bool:
        return self.kind is not None

    @property
    def reported_type(self) -> str:
        """The data type (and render type) as LeadSquared reported them, for messages."""
        shown = repr(self.data_type)
        if self.render_type:
            shown += f" (render type {self.render_type!r})"
        if self.multi_select:
            shown += " (multi-select)"
        return shown

    @property
    def all_options(self) -> tuple[str, ...]:
        """Every value a dropdown allows (for a dependent one, under any parent value)."""
        return self.options or tuple(o for opts in self.dependent_options.values() for o in opts)

    @property
    def is_auto_id(self) -> bool:
        return self.data_type.replace("_", "").lower() == "autoid"

    @classmethod
    def from_api(cls, raw: Mapping[str, Any], settings: FieldSettings | None = None) -> FieldMeta:
        """One ``Fields[]`` item of GetOpportunityTypeMetadata / GetOpportunityDetails, read with
        the account's ``settings`` (field_types, timezone) when given."""
        name = _str(raw, "SchemaName")
        if name is None:
            raise UnexpectedResponse("a field without a SchemaName")
        settings = settings or FieldSettings()
        max_length = _int(raw.get("MaxFieldLength"))
        return cls(
            schema_name=name,
            display_name=_str(raw, "DisplayName") or name,
            data_type=_str(raw, "DataType") or "",
            mandatory=_flag(raw.get("IsMandatory")),
            read_only=_flag(raw.get("IsReadOnly")),
            # 0 or less cannot be a real cap; read it as "no cap stated".
            max_length=max_length if max_length and max_length > 0 else None,
            options=parse_option_set(raw.get("OptionSet")),
            parent_field=_str(raw, "ParentField"),
            dependent_options=parse_dependent_option_set(raw.get("DependentOptionSet")),
            render_type=_str(raw, "RenderType") or "",
            multi_select=_flag(raw.get("IsMultiSelectDropdown")),
            declared_kind=settings.field_types.get(name),
            timezone=settings.timezone,
        )


def _fields(raw: Any, settings: FieldSettings | None = None) -> tuple[FieldMeta, ...]:
    if not isinstance(raw, list):
        raise UnexpectedResponse("'Fields' is not an array")
    # A field the client cannot name is of no use to any rule; skip it instead of failing the
    # whole type.
    return tuple(
        FieldMeta.from_api(f, settings)
        for f in raw
        if isinstance(f, dict) and _str(f, "SchemaName")
    )


@dataclass(frozen=True)
class OpportunityType:
    code: int
    name: str
    fields: tuple[FieldMeta, ...]
    _by_name: Mapping[str, FieldMeta] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", _frozen({f.schema_name: f for f in self.fields}))

    def field(self, name: str) -> FieldMeta | None:
        """The field with this schema name (exact, as LeadSquared matches it), or None."""
        return self._by_name.get(name)

    @property
    def auto_id_field(self) -> FieldMeta | None:
        return next((f for f in self.fields if f.is_auto_id), None)

    @property
    def display_names(self) -> dict[str, str]:
        """Schema name → display name (the name LeadSquared's screens show), for the fields
        that have one."""
        return {f.schema_name: f.display_name for f in self.fields if f.display_name}

    @property
    def unrecognised(self) -> tuple[FieldMeta, ...]:
        """The fields whose kind lsqsync does not recognise (and lsqsync.yml does not declare)."""
        return tuple(f for f in self.fields if f.kind is None)

    @classmethod
    def from_api(
        cls, raw: Any, *, code: int, settings: FieldSettings | None = None
    ) -> OpportunityType:
        """GetOpportunityTypeMetadata's body. ``code`` is the one asked for, used when the body
        does not restate it; ``settings``: the account's field_types and timezone."""
        if not isinstance(raw, dict):
            raise UnexpectedResponse("expected a JSON object")
        body_code = _int(raw.get("EventCode"))
        if body_code is not None and body_code != code:
            raise UnexpectedResponse(f"asked for type {code}, got type {body_code}")
        name = _str(raw, "DisplayName", "Name") or str(code)
        return cls(code=code, name=name, fields=_fields(raw.get("Fields"), settings))


@dataclass(frozen=True, slots=True)  # slots: a plan holds 100,000 and more of them
class OpportunityRecord:
    """One opportunity as a bulk read returns it: its id, its type, and the values of the
    columns asked for that the API returned (a column the API left out is absent, not None)."""

    id: str
    event_code: int
    values: Mapping[str, str | None] = field(hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _frozen(self.values))


@dataclass(frozen=True)
class OpportunityDetails:
    """GetOpportunityDetails: one opportunity with every field's metadata and value. The body
    names the type, not its code."""

    id: str
    type_name: str
    lead_id: str | None
    fields: tuple[FieldMeta, ...]
    values: Mapping[str, str | None] = field(hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _frozen(self.values))

    @classmethod
    def from_api(cls, raw: Any, settings: FieldSettings | None = None) -> OpportunityDetails | None:
        """None for the empty envelope LeadSquared has been seen to return for a deleted
        opportunity. ``settings``: the account's field_types and timezone."""
        if raw is None or raw == {} or raw == []:
            return None
        if not isinstance(raw, dict):
            raise UnexpectedResponse("expected a JSON object")
        opp_id = _str(raw, "ID", "Id", "OpportunityId", "ProspectOpportunityId")
        if opp_id is None and not raw.get("Fields"):
            return None
        if opp_id is None:
            raise UnexpectedResponse("an opportunity without an ID")
        items = raw.get("Fields")
        fields = _fields(items, settings)
        values = {
            str(f["SchemaName"]): value_text(f.get("Value"))
            for f in items or ()
            if isinstance(f, dict) and _str(f, "SchemaName")
        }
        return cls(
            id=opp_id,
            type_name=_str(raw, "DisplayName", "Name") or "",
            lead_id=_str(raw, "RelatedProspectId"),
            fields=fields,
            values=values,
        )


@dataclass(frozen=True)
class BulkUpdateItem:
    """One element of a Bulk Update call. Every value is a string, as the API requires."""

    opportunity_id: str
    event_code: int
    fields: Mapping[str, str] = field(hash=False)

    def __post_init__(self) -> None:
        if not self.opportunity_id:
            raise ValueError("a bulk update item needs an opportunity id")
        bad = [k for k, v in self.fields.items() if not isinstance(v, str)]
        if bad:
            raise TypeError(f"bulk update values must be strings: {', '.join(map(str, bad))}")
        object.__setattr__(self, "fields", _frozen(self.fields))

    def to_api(self) -> dict[str, Any]:
        return {
            "ProspectOpportunityId": self.opportunity_id,
            # A JSON number here (the documented example), unlike GetOpportunitiesById.
            "OpportunityEventCode": int(self.event_code),
            "Fields": [{"SchemaName": k, "Value": v} for k, v in self.fields.items()],
        }


@dataclass(frozen=True)
class RowResult:
    """What Bulk Update said about one input row; ``row_number`` is its 1-based position."""

    row_number: int
    outcome: Outcome
    exception_type: str | None = None
    message: str | None = None


_ROW_ERROR_KEYS = ("ExceptionType", "ExceptionMessage", "Message", "ErrorMessage")


def parse_bulk_results(payload: Any, count: int) -> list[RowResult]:
    """Per-row results of a Bulk Update of ``count`` items, in input order.

    The failure shape is UNKNOWN (reference §8), so: rows come from a bare array or from
    ``{"Response": […]}``; they are matched by ``RowNumber`` (1-based within the call), never by
    position; a row is failed unless ``OpportunityUpdated`` is true and no error key carries a
    value; an input row without exactly one matching result is "unknown" (re-read it).
    """
    rows: Any = payload
    if isinstance(payload, dict):
        rows = next((v for k, v in payload.items() if k.lower() == "response"), None)
    by_number: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows if isinstance(rows, list) else []:
        number = _int(row.get("RowNumber")) if isinstance(row, dict) else None
        if number is not None and 1 <= number <= count:
            by_number.setdefault(number, []).append(row)
    return [_row_result(n, by_number.get(n, [])) for n in range(1, count + 1)]


def _row_result(number: int, rows: Sequence[Mapping[str, Any]]) -> RowResult:
    if not rows:
        return RowResult(number, "unknown", None, "the response has no result for this row")
    if len(rows) > 1:
        return RowResult(number, "unknown", None, "the response has several results for this row")
    row = rows[0]
    # A key that is present but null or empty carries no error: .NET serialisers emit every
    # property, so success rows may well carry "ExceptionType": null.
    errors = {k: value_text(row[k]) for k in _ROW_ERROR_KEYS if row.get(k) not in (None, "")}
    updated = row.get("OpportunityUpdated")
    if (updated is True or value_text(updated) in ("true", "True")) and not errors:
        return RowResult(number, "applied")
    message = (
        errors.get("ExceptionMessage")
        or errors.get("ErrorMessage")
        or errors.get("Message")
        or "OpportunityUpdated is not true"
    )
    return RowResult(number, "failed", errors.get("ExceptionType"), message)
