"""Read what the rules need from LeadSquared into a Snapshot (the planner's only input from
the network): each type's metadata once, the users once if a user-valued field or ``user()`` is
involved, and the current values of the fields the rules read — every opportunity of a type
through Advanced Search, or only the listed ids through GetOpportunitiesById.

Advanced Search is for administrators only. A type whose rules all list ids (or read a CSV) is
read without it, and only counted with it: for keys that may not search, the number of its
opportunities is unknown (``TypeData.total`` None) and the planner skips the ratio check for
it, saying so in the plan."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from lsqsync.lsq import LsqClient, OpportunityRecord, OpportunityType, SearchRefused
from lsqsync.plan.snapshot import Snapshot, TypeData, guid, selected_ids
from lsqsync.rules.project import Rule

Progress = Callable[[str], None]


def fetch(
    client: LsqClient,
    rules: Sequence[Rule],
    progress: Progress | None = None,
    metas: Mapping[int, OpportunityType] | None = None,
) -> Snapshot:
    """``metas``: the types' metadata when the caller read it already (``read_types``)."""
    say = progress or (lambda _: None)
    calls_before = client.calls
    types: dict[int, TypeData] = {}
    need_users = any(r.uses_user for r in rules)
    known = metas or {}
    for code in sorted({r.opportunity_type for r in rules}):
        meta = known.get(code) or read_types(client, [code], say)[code]
        of_type = [r for r in rules if r.opportunity_type == code]
        wanted = set().union(*(r.read_fields for r in of_type))
        need_users = need_users or any(
            (f := meta.field(name)) is not None and f.is_user_valued for name in wanted
        )
        try:
            types[code] = _read_type(client, meta, of_type, wanted, say)
        except SearchRefused as e:
            metas = {c: t.meta for c, t in types.items()} | {code: meta}
            raise SearchRefused(
                f"{e}. {_needing_search(rules, metas)}",
                role=e.role,
                endpoint=e.endpoint,
                status=e.status,
                exception_type=e.exception_type,
                exception_message=e.exception_message,
            ) from None
    users = None
    if need_users:
        say("reading the users")
        users = tuple(client.users())
    return Snapshot(types, users, client.calls - calls_before)


def read_types(
    client: LsqClient, codes: Iterable[int], progress: Progress | None = None
) -> dict[int, OpportunityType]:
    """The metadata of each type, by code."""
    say = progress or (lambda _: None)
    out = {}
    for code in sorted(set(codes)):
        say(f"reading the metadata of type {code}")
        out[code] = client.opportunity_type(code)
    return out


def _read_type(
    client: LsqClient, meta: OpportunityType, rules: Sequence[Rule], wanted: set[str], say: Progress
) -> TypeData:
    """The records of one type the rules need: all of them (Advanced Search) when a rule selects
    the whole type or names AutoId values, else only the ids named (GetOpportunitiesById)."""
    code = meta.code
    auto_id = meta.auto_id_field
    if auto_id is not None:
        wanted = wanted | {auto_id.schema_name}
    columns = sorted(name for name in wanted if meta.field(name) is not None)
    if not any(search_reason(r, meta) for r in rules):
        named = {i for r in rules for i in selected_ids(r) or ()}
        say(f"reading {len(named):,} opportunities of type {code}")
        listed = client.opportunities_by_id(
            code, sorted({g for i in named if (g := guid(i)) is not None}), columns
        )
        try:
            total: int | None = client.count_opportunities(code)
        except SearchRefused:
            total = None  # the keys' user is no administrator: the plan says what it skipped
        return TypeData(meta, total, _by_id(listed), False, {})
    records: list[OpportunityRecord] = []
    for record in client.search_opportunities(code, columns):
        records.append(record)
        if len(records) % 5000 == 0:
            say(f"reading type {code}: {len(records):,} opportunities")
    auto_ids = (
        {
            r.values[auto_id.schema_name] or "": r.id
            for r in records
            if r.values.get(auto_id.schema_name)
        }
        if auto_id is not None
        else {}
    )
    return TypeData(meta, len(records), _by_id(records), True, auto_ids)


def _by_id(records: Sequence[OpportunityRecord]) -> dict[str, OpportunityRecord]:
    """The records by lower-cased id (the id itself where it is in lower case already, as
    LeadSquared's are: not a second copy of every id)."""
    out = {}
    for r in records:
        key = r.id.lower()
        out[r.id if key == r.id else key] = r
    return out


def search_reason(rule: Rule, meta: OpportunityType | None) -> str | None:
    """Why reading ``rule``'s opportunities needs Advanced Search (None: it does not). With
    ``meta`` None (a type whose metadata was not read) an id that is no GUID is taken for an
    AutoId value."""
    ids = selected_ids(rule)
    if ids is None:
        where = " with where:" if rule.where else ""
        return f"selects every opportunity of type {rule.opportunity_type}{where}"
    # AutoId values can only be resolved by reading the type: whether GetOpportunitiesById
    # accepts them is UNKNOWN, so the defensive reading is that it does not.
    auto_ids = meta is None or meta.auto_id_field is not None
    if auto_ids and any(guid(i) is None for i in ids):
        return f"names opportunities of type {rule.opportunity_type} by AutoId value"
    return None


def _needing_search(rules: Sequence[Rule], metas: Mapping[int, OpportunityType]) -> str:
    """The rules that need Advanced Search (``metas``: the types read so far), and what to do
    about them."""
    needing = [
        f"'{r.name}' ({r.location.file}:{r.location.line}) {reason}"
        for r in rules
        if (reason := search_reason(r, metas.get(r.opportunity_type)))
    ]
    return (
        f"Rules that need it: {'; '.join(needing)}. Use an administrator's keys, or select "
        "these rules' opportunities with ids: or csv: (read without Advanced Search)"
    )
