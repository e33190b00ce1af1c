"""What the planner reads from LeadSquared: each opportunity type's metadata and records, and
the users."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from lsqsync.lsq import OpportunityRecord, OpportunityType, User
from lsqsync.rules.project import Rule


@dataclass(frozen=True)
class TypeData:
    meta: OpportunityType
    # opportunities of the type in the account; None: unknown (its rules name their ids, read
    # without Advanced Search, and the keys may not use it to count them)
    total: int | None
    records: Mapping[str, OpportunityRecord]  # lower-cased id → record
    complete: bool  # every opportunity of the type was read
    auto_ids: Mapping[str, str]  # AutoId value → opportunity id (complete reads only)


@dataclass(frozen=True)
class Snapshot:
    types: Mapping[int, TypeData]
    users: tuple[User, ...] | None  # None: not needed, not read
    read_calls: int


def guid(value: str) -> str | None:
    """The opportunity id ``value`` names in its canonical form (lower case, hyphens), or None
    when it is not a GUID (an AutoId value). Ids may be written in any form uuid accepts."""
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


def selected_ids(rule: Rule) -> tuple[str, ...] | None:
    """The ids (or AutoId values) a rule names; None when it selects the whole type."""
    if rule.ids is not None:
        return rule.ids
    if rule.csv is not None:
        return tuple(row.key for row in rule.csv.rows)
    return None
