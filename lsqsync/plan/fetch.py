"""Read what the rules need from LeadSquared into a Snapshot (the planner's only input from
the network): each type's metadata once, the users once if a user-valued field or ``user()`` is
involved, and the current values of the fields the rules read — every opportunity of a type
through Advanced Search, or only the listed ids through GetOpportunitiesById."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lsqsync.lsq import LsqClient, OpportunityRecord
from lsqsync.plan.snapshot import Snapshot, TypeData, guid, selected_ids
from lsqsync.rules.project import Rule

Progress = Callable[[str], None]


def fetch(client: LsqClient, rules: Sequence[Rule], progress: Progress | None = None) -> Snapshot:
    say = progress or (lambda _: None)
    calls_before = client.calls
    types: dict[int, TypeData] = {}
    need_users = any(r.uses_user for r in rules)
    for code in sorted({r.opportunity_type for r in rules}):
        of_type = [r for r in rules if r.opportunity_type == code]
        say(f"reading the metadata of type {code}")
        meta = client.opportunity_type(code)
        wanted = set().union(*(r.read_fields for r in of_type))
        need_users = need_users or any(
            (f := meta.field(name)) is not None and f.is_user_valued for name in wanted
        )
        auto_id = meta.auto_id_field
        if auto_id is not None:
            wanted.add(auto_id.schema_name)
        columns = sorted(name for name in wanted if meta.field(name) is not None)
        selections = [selected_ids(r) for r in of_type]
        named = {i for ids in selections if ids is not None for i in ids}
        # AutoId values can only be resolved by reading the type: whether GetOpportunitiesById
        # accepts them is UNKNOWN, so the defensive reading is that it does not.
        complete = any(ids is None for ids in selections) or (
            auto_id is not None and any(guid(i) is None for i in named)
        )
        if complete:
            records: list[OpportunityRecord] = []
            for record in client.search_opportunities(code, columns):
                records.append(record)
                if len(records) % 5000 == 0:
                    say(f"reading type {code}: {len(records):,} opportunities")
            total = len(records)
        else:
            say(f"reading {len(named):,} opportunities of type {code}")
            records = client.opportunities_by_id(
                code, sorted({g for i in named if (g := guid(i)) is not None}), columns
            )
            total = client.count_opportunities(code)
        auto_ids = (
            {
                r.values[auto_id.schema_name] or "": r.id
                for r in records
                if r.values.get(auto_id.schema_name)
            }
            if auto_id is not None and complete
            else {}
        )
        types[code] = TypeData(meta, total, {r.id.lower(): r for r in records}, complete, auto_ids)
    users = None
    if need_users:
        say("reading the users")
        users = tuple(client.users())
    return Snapshot(types, users, client.calls - calls_before)
