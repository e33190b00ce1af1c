"""Plans for the plan tests, built the way the planner builds them: summary and digest computed
from the changes, never written by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from lsqsync.plan.model import (
    Cost,
    FieldChange,
    Inputs,
    OpportunityChange,
    Plan,
    Premise,
    compute_digest,
    named_fields,
    sort_changes,
    summarise,
)

CLOSE = "close-signed-deals"
OWNERS = "reassign-enterprise"
NOTES = "q4-notes"
RULE_SOURCES = {
    CLOSE: "rules/q4.yml:3",
    NOTES: "rules/q4.yml:21",
    OWNERS: "rules/owners.yml:1",
}
TYPES = {12003: ("Enterprise Deal", 40), 12004: ("Renewal", 10)}

GEORGE = "5f0c2a9e-6c1b-4d6e-9a51-3b7d1e2f4a10"
MARY = "a41d7c3b-0e2f-4b8a-8c6d-9e1f2a3b4c5d"
LABELS = {
    GEORGE: "George Bailey <george.bailey@example.com>",
    MARY: "Mary Hatch <mary.hatch@example.com>",
}
MASK = ("mx_Revenue",)
# The masked field's values: they must never appear in text or Markdown.
SECRET_VALUES = ("231500.75", "98000.5", "412777.25")


def opp_id(n: int) -> str:
    return f"0d9c{n:04x}-7b1e-4f3a-9c2d-5e6f7a8b9c0d"


def change(
    field: str, before: str | None, after: str, rule: str, line: int | None = None
) -> FieldChange:
    file, _, rule_line = RULE_SOURCES[rule].partition(":")
    return FieldChange(field, before, after, rule, f"{file}:{line or int(rule_line) + 4}")


def opportunity(
    n: int, opportunity_type: int, *changes: FieldChange, premises: tuple[Premise, ...] = ()
) -> OpportunityChange:
    return OpportunityChange(
        opp_id(n), opportunity_type, tuple(c.rule for c in changes), changes, premises
    )


def premise(rule: str, *holds: str, **read: str | None) -> Premise:
    """``rule``'s premise: it holds the fields ``holds`` and read ``read``."""
    return Premise(rule, tuple(sorted(holds)), tuple(sorted(read.items())))


def sample_changes() -> list[OpportunityChange]:
    """Six opportunities of two types, three rules: owners by label, a masked field, empty
    values, and notes full of Markdown and line breaks."""
    return [
        opportunity(
            1,
            12003,
            change("Status", "Open", "Won", CLOSE, 7),
            change("mx_Stage", "Negotiation", "Closed Won", CLOSE, 8),
            change("mx_Revenue", "231500.75", "412777.25", CLOSE, 9),
            premises=(
                premise(
                    CLOSE,
                    "Status",
                    "mx_Stage",
                    "mx_Revenue",
                    Status="Open",
                    mx_Stage="Negotiation",
                    mx_Revenue="231500.75",
                ),
            ),
        ),
        opportunity(
            2,
            12003,
            change("Status", "Open", "Won", CLOSE, 7),
            change("mx_Stage", None, "Closed Won", CLOSE, 8),
            change("Owner", GEORGE.upper(), MARY, OWNERS, 5),
            premises=(
                premise(CLOSE, "Status", "mx_Stage", Status="Open", mx_Stage=None),
                premise(OWNERS, "Owner", Owner=GEORGE),
            ),
        ),
        opportunity(3, 12003, change("Owner", None, MARY, OWNERS, 5)),
        opportunity(
            4,
            12003,
            change("Status", "Open", "Won", CLOSE, 7),
            change("mx_Revenue", "98000.5", "", CLOSE, 9),
            change(
                "mx_Notes",
                "Discount | 10% *approved* <b>",
                'Line one\nLine two: "quoted" | @reviewer #12 $x$ `code` \\ done',
                NOTES,
                24,
            ),
        ),
        opportunity(5, 12004, change("Owner", MARY, GEORGE, OWNERS, 5)),
        opportunity(
            6,
            12004,
            change("mx_Notes", "", "Renewal\tQ1 \u202eevil\u202c\x1b[31m", NOTES, 24),
            change("Status", "Lost", "Open", CLOSE, 7),
        ),
    ]


# Display names as the metadata gives them: Status is its own, mx_Notes means another field in
# each type, and one name carries what Markdown and a terminal must not act on.
FIELD_LABELS = {
    12003: {"Status": "Status", "Owner": "Owner", "mx_Revenue": "Revenue", "mx_Notes": "Notes"},
    12004: {"Status": "Status", "mx_Notes": "Renewal *notes* | \u202eQ1"},
}


def make_plan(
    changes: Sequence[OpportunityChange] | None = None,
    *,
    types: dict[int, tuple[str, int | None]] | None = None,
    warnings: tuple[str, ...] = (),
    allow_large: bool = False,
    targets: tuple[str, ...] = (),
    mask: tuple[str, ...] = MASK,
    labels: dict[str, str] | None = None,
    read_calls: int = 7,
    field_labels: dict[int, dict[str, str]] | None = None,
) -> Plan:
    sorted_changes = sort_changes(sample_changes() if changes is None else changes)
    inputs = Inputs(
        files={
            "lsqsync.yml": "1" * 64,
            "rules/owners.yml": "2" * 64,
            "rules/q4.yml": "3" * 64,
        },
        vars={"quarter": "Q4", "year": 2024},
        now="2024-12-02T09:30:00Z",
        host="https://api-in21.leadsquared.com",
        targets=targets,
        allow_large=allow_large,
    )
    write_calls = math.ceil(len(sorted_changes) / 25)
    plan = Plan(
        lsqsync_version="0.1.0",
        created_at="2024-12-02T09:30:04Z",
        expires_at="2024-12-03T09:30:04Z",
        inputs=inputs,
        summary=summarise(sorted_changes, RULE_SOURCES, TYPES if types is None else types),
        cost=Cost(read_calls=read_calls, write_calls=write_calls, min_seconds=write_calls * 0.2),
        changes=sorted_changes,
        digest="",
        git_commit="9fceb02d0ae598e95dc970b74767f19372d61af8",
        warnings=warnings,
        labels=LABELS if labels is None else labels,
        mask=mask,
        field_labels=named_fields(
            sorted_changes, FIELD_LABELS if field_labels is None else field_labels
        ),
    )
    return replace(plan, digest=compute_digest(plan))


def many_changes(count: int, opportunity_type: int = 12003) -> list[OpportunityChange]:
    """``count`` opportunities, each closing with a note long enough to matter for size caps."""
    return [
        opportunity(
            n,
            opportunity_type,
            change("Status", "Open", "Won", CLOSE, 7),
            change("mx_Notes", None, f"Signed in batch {n % 7} | see contract *{n}*", NOTES, 24),
        )
        for n in range(1, count + 1)
    ]
