"""The pure planner, as tables: rules + current values → expected changes or problems.

No network: the snapshot is built in memory from the emulator's own type definitions (their
metadata as GetOpportunityTypeMetadata returns it) and hand-written records.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from lsqsync.config import load_config
from lsqsync.documents.problems import ProjectInvalid
from lsqsync.emulator.model import TYPES, USERS
from lsqsync.lsq import OpportunityRecord, OpportunityType, User
from lsqsync.plan import planner
from lsqsync.plan.model import Plan, dumps
from lsqsync.plan.planner import PlanOptions, UnsafePlan, build_plan
from lsqsync.plan.snapshot import Snapshot, TypeData
from lsqsync.rules.project import load_project

META = {code: OpportunityType.from_api(t.metadata(), code=code) for code, t in TYPES.items()}
ALL_USERS = tuple(User(u.id, u.email, u.first_name, u.last_name, u.role, u.active) for u in USERS)
GEORGE = "96105aa0-61f2-11ea-8109-022edb41208c"
MARY = next(u.id for u in USERS if u.first_name == "Mary")
HENRY = next(u.id for u in USERS if u.first_name == "Henry")  # inactive
A, B, C = (f"0000000{i}-0000-4000-8000-000000000000" for i in (1, 2, 3))
NOW = "2026-11-27 10:00:00"


def deal(opp_id: str, **values: str | None) -> OpportunityRecord:
    base: dict[str, str | None] = {
        "Status": "Open", "mx_Custom_2": "Negotiation", "Owner": MARY, "mx_Custom_6": "150000",
        "mx_Custom_8": None, "mx_Custom_9": None, "mx_Custom_10": "Low",
        "mx_Custom_12": "2027-01-01", "mx_Custom_13": "0", "mx_Custom_15": "DEAL-" + opp_id[7],
    }  # fmt: skip
    return OpportunityRecord(opp_id, 12003, {**base, **values})


def snapshot(
    records: Sequence[OpportunityRecord], total: int | None = None, *, counted: bool = True
) -> Snapshot:
    """The records as read; ``counted=False``: the types' totals are unknown (keys that may not
    use Advanced Search)."""
    by_type: dict[int, list[OpportunityRecord]] = {12000: [], 12003: []}
    for r in records:
        by_type[r.event_code].append(r)
    return Snapshot(
        {
            code: TypeData(
                META[code],
                (total if total is not None else len(rs)) if counted else None,
                {r.id.lower(): r for r in rs},
                True,
                {
                    str(r.values.get("mx_Custom_15")): r.id
                    for r in rs
                    if r.values.get("mx_Custom_15")
                },
            )
            for code, rs in by_type.items()
        },
        ALL_USERS,
        read_calls=3,
    )


def plan(
    tmp_path: Path,
    rules: str,
    records: Sequence[OpportunityRecord],
    *,
    config: str = "",
    total: int | None = None,
    counted: bool = True,
    **options: Any,
) -> Plan:
    os.chdir(tmp_path)  # messages name files relative to the working directory
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "lsqsync.yml").write_text("version: 1\nvars: {region: APAC}\n" + config)
    (tmp_path / "rules" / "r.yml").write_text("version: 1\nrules:\n" + textwrap.indent(
        textwrap.dedent(rules).strip("\n") + "\n", "  "))  # fmt: skip
    project = load_project(load_config(tmp_path / "lsqsync.yml")).only(options.get("targets", ()))
    defaults: dict[str, Any] = {
        "now": NOW, "created_at": datetime(2026, 11, 27, 9), "lsqsync_version": "test",
        "input_files": {"lsqsync.yml": "x"},
    }  # fmt: skip
    return build_plan(project, snapshot(records, total, counted=counted), "https://api.example",
                      PlanOptions(**{**defaults, **options}))  # fmt: skip


def changes(p: Plan) -> list[tuple[str, str, str | None, str]]:
    return [(c.id, f.field, f.before, f.after) for c in p.changes for f in c.changes]


def problems(excinfo: pytest.ExceptionInfo[ProjectInvalid]) -> list[str]:
    return [str(p) for p in excinfo.value.problems]


CASES: list[tuple[str, str, list[OpportunityRecord], list[tuple[str, str, str | None, str]]]] = [
    (
        "literal values; equal values in another format are not changes",
        """
        - name: r
          opportunity_type: 12003
          set: {Status: Won, mx_Custom_2: Closed Won, mx_Custom_6: "150,000.00",
                Owner: mary.hatch@example.com}
        """,
        [deal(A), deal(B, Status="Won", mx_Custom_2="Closed Won")],
        [(A, "Status", "Open", "Won"), (A, "mx_Custom_2", "Negotiation", "Closed Won")],
    ),
    (
        "where: eq shorthand and gt compared as numbers",
        """
        - name: r
          opportunity_type: 12003
          where: {Status: Open, mx_Custom_6: {gt: 99999}}
          set: {mx_Custom_10: High}
        """,
        [deal(A, mx_Custom_6="100000"), deal(B, mx_Custom_6="99999"), deal(C, Status="Won")],
        [(A, "mx_Custom_10", "Low", "High")],
    ),
    (
        "where: in, not_in, ne, contains, startswith, empty",
        """
        - name: r
          opportunity_type: 12003
          where:
            mx_Custom_2: {in: [Negotiation, Proposal]}
            mx_Custom_10: {not_in: [High]}
            Status: {ne: Lost}
            mx_Custom_15: {startswith: DEAL-}
            mx_Custom_12: {contains: "2027"}
            mx_Custom_9: {empty: true}
          set: {mx_Custom_9: checked}
        """,
        [deal(A), deal(B, mx_Custom_10="High"), deal(C, mx_Custom_9="noted")],
        [(A, "mx_Custom_9", None, "checked")],
    ),
    (
        "where: dates compare as dates, booleans as booleans, owners by email",
        """
        - name: r
          opportunity_type: 12003
          where:
            mx_Custom_12: {lt: "2027-06-01"}
            mx_Custom_13: false
            Owner: MARY.HATCH@example.com
          set: {mx_Custom_13: "yes"}
        """,
        [deal(A), deal(B, mx_Custom_12="8/31/2027 12:00:00 AM"), deal(C, Owner=GEORGE)],
        [(A, "mx_Custom_13", "false", "true")],
    ),
    (
        "where on an inactive owner selects their opportunities",
        """
        - name: r
          opportunity_type: 12003
          where: {Owner: henry.potter@example.com}
          set: {Owner: george.bailey@example.com}
        """,
        [deal(A, Owner=HENRY), deal(B)],
        [(A, "Owner", HENRY, GEORGE)],
    ),
    (
        "when and templates over opp, vars, now and rule",
        """
        - name: close
          opportunity_type: 12003
          when: "opp.mx_Custom_6 > 100000 and vars.region == 'APAC'"
          set:
            mx_Custom_8: "{{ now }}"
            mx_Custom_9: "{{ rule.name }}: {{ opp.mx_Custom_6 }} was {{ opp.Status }}"
        """,
        [deal(A), deal(B, mx_Custom_6="100000")],
        [(A, "mx_Custom_8", None, NOW), (A, "mx_Custom_9", None, "close: 150000 was Open")],
    ),
    (
        "ids and AutoId values; a null or empty template clears a field",
        """
        - name: r
          opportunity_type: 12003
          ids: [DEAL-2, "00000001-0000-4000-8000-000000000000"]
          set: {mx_Custom_10: null, mx_Custom_9: "{{ '' }}"}
        """,
        [deal(A, mx_Custom_9="x"), deal(B), deal(C)],
        [
            (A, "mx_Custom_10", "Low", ""),
            (A, "mx_Custom_9", "x", ""),
            (B, "mx_Custom_10", "Low", ""),
        ],
    ),
    (
        "two rules that want the same value are fine",
        """
        - name: one
          opportunity_type: 12003
          set: {mx_Custom_10: High}
        - name: two
          opportunity_type: 12003
          where: {Status: Open}
          set: {mx_Custom_10: High}
        """,
        [deal(A)],
        [(A, "mx_Custom_10", "Low", "High")],
    ),
]


@pytest.mark.parametrize(
    ("title", "rules", "records", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_plans(
    tmp_path: Path,
    title: str,
    rules: str,
    records: list[OpportunityRecord],
    expected: list[tuple[str, str, str | None, str]],
) -> None:
    assert changes(plan(tmp_path, rules, records)) == sorted(expected)


PROBLEMS: list[tuple[str, str, list[OpportunityRecord], list[str]]] = [
    (
        "conflicting rules name both",
        """
        - name: one
          opportunity_type: 12003
          set: {mx_Custom_10: High}
        - name: two
          opportunity_type: 12003
          set: {mx_Custom_10: Low}
        """,
        [deal(A, mx_Custom_10="Medium")],
        [
            f"rules/r.yml:8:25: opportunity {A}: rules 'one' (rules/r.yml:5) and 'two' "
            "(rules/r.yml:8) want different values for mx_Custom_10: 'High' and 'Low'"
        ],
    ),
    (
        "a templated dropdown value outside the options",
        """
        - name: r
          opportunity_type: 12003
          set: {mx_Custom_10: "{{ opp.mx_Custom_10 | upper }}"}
        """,
        [deal(A), deal(B)],
        [
            f"rules/r.yml:5:25: opportunities {A}, {B}: 'LOW' is not an option of mx_Custom_10 "
            "(Low, Medium, High) (did you mean 'Low'?); LeadSquared would store it anyway"
        ],
    ),
    (
        "Stage not allowed under the planned Status",
        """
        - name: r
          opportunity_type: 12003
          set: {Status: Won}
        """,
        [deal(A)],
        [
            f"rules/r.yml:5:19: opportunity {A}: mx_Custom_2 'Negotiation' is not allowed under "
            "Status 'Won' (allowed: Closed Won, Onboarding); set mx_Custom_2 too"
        ],
    ),
    (
        "values the field cannot take, and a user that is not active",
        """
        - name: r
          opportunity_type: 12003
          set:
            mx_Custom_6: "{{ opp.Status }}"
            mx_Custom_9: "{{ 'x' * 201 }}"
            mx_Custom_12: "{{ opp.mx_Custom_2 }}"
            Owner: henry.potter@example.com
        """,
        [deal(A)],
        [
            f"rules/r.yml:6:20: opportunity {A}: mx_Custom_6 (number): 'Open' is not a number",
            f"rules/r.yml:7:20: opportunity {A}: mx_Custom_9 holds at most 200 characters, not 201",
            f"rules/r.yml:8:21: opportunity {A}: mx_Custom_12 (date): 'Negotiation' is not a date",
            # a literal is wrong whatever the opportunity: reported once, at the rule
            "rules/r.yml:9:14: rules[0].set.Owner: Owner: no active user with email "
            "'henry.potter@example.com' (lsqsync users list shows every user)",
        ],
    ),
    (
        "unknown, read-only and AutoId fields are refused before any opportunity is read",
        """
        - name: r
          opportunity_type: 12003
          where: {Stauts: Open}
          set: {mx_Custom_14: Web, mx_Custom_15: DEAL-9, mx_Custom_99: x}
        """,
        [deal(A)],
        [
            "rules/r.yml:5:21: rules[0].where.Stauts: 'Stauts' is not a field of opportunity "
            "type 12003 (Enterprise Deal) (did you mean 'Status'?)",
            "rules/r.yml:6:25: rules[0].set.mx_Custom_14: 'mx_Custom_14' is read-only in "
            "opportunity type 12003",
            "rules/r.yml:6:44: rules[0].set.mx_Custom_15: 'mx_Custom_15' is read-only in "
            "opportunity type 12003",
            "rules/r.yml:6:66: rules[0].set.mx_Custom_99: 'mx_Custom_99' is not a field of "
            "opportunity type 12003 (Enterprise Deal) (did you mean 'mx_Custom_9'?)",
        ],
    ),
    (
        "a template that fails at render time names the opportunity",
        """
        - name: r
          opportunity_type: 12003
          when: "opp.mx_Custom_6 / 0 > 1"
          set: {mx_Custom_9: "{{ user('nobody@example.com') }}"}
        """,
        [deal(A)],
        [
            f"rules/r.yml:5:11: rules[0].when: opportunity {A}: template error: division by "
            "zero (guard the divisor: {{ a / b if b else 0 }})"
        ],
    ),
    (
        "a template's error is reported at the template's own line",
        """
        - name: r
          opportunity_type: 12003
          set:
            mx_Custom_9: |
              Value {{ opp.mx_Custom_6 }}
              per seat {{ opp.mx_Custom_6 / opp.mx_Custom_7 }}
        """,
        [deal(A, mx_Custom_7="0")],
        [
            f"rules/r.yml:8:9: opportunity {A}: template error: division by zero (guard the "
            "divisor: {{ a / b if b else 0 }})"
        ],
    ),
    (
        # `when` and templates are evaluated once per tuple of the values they read: a failure
        # shared by opportunities with the same values is still reported for each of them
        "an evaluation's failure names every opportunity it is the outcome of",
        """
        - name: r
          opportunity_type: 12003
          when: "opp.mx_Custom_6 / opp.mx_Custom_7 > 1"
          set:
            mx_Custom_9: "{{ opp.mx_Custom_6 // (opp.mx_Custom_7 - 5) }}"
        """,
        [deal(A, mx_Custom_7="0"), deal(B, mx_Custom_7="5"), deal(C, mx_Custom_7="0")],
        [
            f"rules/r.yml:5:11: rules[0].when: opportunities {A}, {C}: template error: "
            "division by zero (guard the divisor: {{ a / b if b else 0 }})",
            f"rules/r.yml:7:20: opportunity {B}: template error: division by zero (guard the "
            "divisor: {{ a / b if b else 0 }})",
        ],
    ),
]


@pytest.mark.parametrize(
    ("title", "rules", "records", "expected"), PROBLEMS, ids=[c[0] for c in PROBLEMS]
)
def test_problems(
    tmp_path: Path, title: str, rules: str, records: list[OpportunityRecord], expected: list[str]
) -> None:
    with pytest.raises(ProjectInvalid) as caught:
        plan(tmp_path, rules, records)
    assert problems(caught) == expected


def test_unknown_ids_are_warned_about(tmp_path: Path) -> None:
    p = plan(tmp_path, """
        - name: r
          opportunity_type: 12003
          ids: [DEAL-9, "00000001-0000-4000-8000-000000000000",
                "0000000f-0000-4000-8000-000000000000"]
          set: {mx_Custom_10: High}
        """, [deal(A)])  # fmt: skip
    assert p.warnings == (
        "rule 'r': 2 of its opportunities were not found in type 12003: DEAL-9, "
        "0000000f-0000-4000-8000-000000000000",
    )
    assert changes(p) == [(A, "mx_Custom_10", "Low", "High")]


SAFE = """
- name: r
  opportunity_type: 12003
  set: {mx_Custom_10: High}
"""


def test_a_plan_over_max_changes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafePlan) as caught:
        plan(tmp_path, SAFE, [deal(A), deal(B), deal(C)], config="safety: {max_changes: 2}\n")
    assert str(caught.value) == (
        "plan refused: it changes 3 opportunities, more than safety.max_changes (2). Review the "
        "rules, or pass --allow-large if this is intended (the override is recorded in the plan)."
    )


def test_a_plan_over_the_change_ratio_is_refused(tmp_path: Path) -> None:
    records = [deal(f"{i:08d}-0000-4000-8000-000000000000") for i in range(4)]
    assert len(plan(tmp_path, SAFE, records[:3], total=10).changes) == 3  # 30% is allowed
    with pytest.raises(UnsafePlan) as caught:
        plan(tmp_path, SAFE, records, total=10)
    assert str(caught.value) == (
        "plan refused: it changes 4 of the 10 opportunities of type 12003 (40%), more than "
        "safety.max_change_ratio (30%). Review the rules, or pass --allow-large if this is "
        "intended (the override is recorded in the plan)."
    )


def test_an_unknown_number_of_opportunities_skips_the_ratio_with_a_warning(tmp_path: Path) -> None:
    records = [deal(f"{i:08d}-0000-4000-8000-000000000000") for i in range(12)]
    p = plan(tmp_path, SAFE, records, counted=False)
    assert len(p.changes) == 12  # 100% of what was read: no ratio can be worked out
    assert p.warnings == (
        "safety.max_change_ratio not checked for type 12003: the number of its opportunities is "
        "unknown, as these keys cannot use Opportunity Advanced Search (administrators only); "
        "safety.max_changes (1,000) still holds",
    )
    assert [(t.opportunity_type, t.total, t.changing) for t in p.summary.types] == [
        (12000, None, 0),
        (12003, None, 12),
    ]
    with pytest.raises(UnsafePlan, match=r"more than safety\.max_changes"):
        plan(tmp_path, SAFE, records, counted=False, config="safety: {max_changes: 11}\n")
    assert plan(tmp_path, SAFE, records, counted=False, allow_large=True).warnings == ()


def test_the_ratio_counts_only_from_ten_opportunities(tmp_path: Path) -> None:
    assert len(plan(tmp_path, SAFE, [deal(A), deal(B), deal(C)], total=9).changes) == 3


def test_allow_large_is_recorded(tmp_path: Path) -> None:
    p = plan(tmp_path, SAFE, [deal(A), deal(B), deal(C)], config="safety: {max_changes: 2}\n",
             allow_large=True)  # fmt: skip
    assert p.inputs.allow_large is True
    assert len(p.changes) == 3


def test_same_inputs_same_digest_and_now_is_an_input(tmp_path: Path) -> None:
    records = [deal(A), deal(B)]
    rules = "- name: r\n  opportunity_type: 12003\n  set: {mx_Custom_8: '{{ now }}'}\n"
    first = plan(tmp_path, rules, records)
    again = plan(tmp_path, rules, list(reversed(records)), created_at=datetime(2030, 1, 1))
    later = plan(tmp_path, rules, records, now="2026-11-28 10:00:00")
    same = plan(tmp_path, rules, list(reversed(records)))
    assert same.digest == first.digest
    # the digest covers the whole plan, its time too; the changes stay byte-identical
    assert again.digest != first.digest
    assert dumps(first).replace(first.digest, "") != dumps(again).replace(again.digest, "")
    assert json.loads(dumps(first))["changes"] == json.loads(dumps(again))["changes"]
    assert later.digest != first.digest


# -- premises ---------------------------------------------------------------------------------

CLOSE_Q4 = """
- name: close-q4
  opportunity_type: 12003
  where: {Status: Open, mx_Custom_6: {gt: 100000}}
  when: "opp.mx_Custom_2 == 'Negotiation'"
  set:
    Status: Won
    mx_Custom_2: Closed Won
    mx_Custom_8: "{{ now }}"
    mx_Custom_9: "closed by {{ rule.name }} at {{ opp.mx_Custom_6 }}"
"""


def premises(p: Plan) -> list[tuple[str, str, tuple[str, ...], dict[str, str | None]]]:
    return [(c.id, pr.rule, pr.holds, dict(pr.read)) for c in p.changes for pr in c.premises]


def test_a_premise_is_what_where_when_and_templates_read(tmp_path: Path) -> None:
    p = plan(tmp_path, CLOSE_Q4, [deal(A, mx_Custom_6="150,000.00"), deal(B, Status="Lost")])
    # the values as LeadSquared returned them (apply compares them with the codec); the fields
    # the rule both reads and writes are there too
    assert premises(p) == [
        (A, "close-q4", ("Status", "mx_Custom_2", "mx_Custom_8", "mx_Custom_9"),
         {"Status": "Open", "mx_Custom_2": "Negotiation", "mx_Custom_6": "150,000.00"}),
    ]  # fmt: skip


def test_a_rule_that_sets_a_dependent_field_decided_on_its_parent(tmp_path: Path) -> None:
    # the plan checked Stage's option against Status: a Status changed since holds Stage back
    rules = f"""
    - name: stage-only
      opportunity_type: 12003
      ids: [{A}]
      set: {{mx_Custom_2: Proposal}}
    - name: both
      opportunity_type: 12003
      ids: [{B}]
      set: {{Status: Won, mx_Custom_2: Closed Won}}
    """
    p = plan(tmp_path, rules, [deal(A), deal(B)])
    assert premises(p) == [
        (A, "stage-only", ("mx_Custom_2",), {"Status": "Open"}),
        (B, "both", ("Status", "mx_Custom_2"), {"Status": "Open"}),
    ]
    # where no rule of the type made the plan read Status, nothing was decided on it
    unread = deal(A)
    unread = OpportunityRecord(A, 12003, {k: v for k, v in unread.values.items() if k != "Status"})
    again = plan(tmp_path, rules, [unread, deal(B)])
    assert [c.id for c in again.changes] == [A, B]
    assert premises(again) == [(B, "both", ("Status", "mx_Custom_2"), {"Status": "Open"})]


def test_a_rule_that_reads_nothing_has_no_premise(tmp_path: Path) -> None:
    rules = "- name: r\n  opportunity_type: 12003\n  ids: [" + A + "]\n  set: {mx_Custom_9: x}\n"
    p = plan(tmp_path, rules, [deal(A)])
    assert changes(p) == [(A, "mx_Custom_9", None, "x")]
    assert premises(p) == []


def test_a_field_two_rules_set_is_held_by_both_premises(tmp_path: Path) -> None:
    rules = """
    - name: by-status
      opportunity_type: 12003
      where: {Status: Open}
      set: {mx_Custom_10: High, mx_Custom_9: open deal}
    - name: by-value
      opportunity_type: 12003
      where: {mx_Custom_6: {gte: 100000}}
      set: {mx_Custom_10: High}
    """
    p = plan(tmp_path, rules, [deal(A), deal(B, mx_Custom_6="5")])
    assert premises(p) == [
        (A, "by-status", ("mx_Custom_10", "mx_Custom_9"), {"Status": "Open"}),
        (A, "by-value", ("mx_Custom_10",), {"mx_Custom_6": "150000"}),
        (B, "by-status", ("mx_Custom_10", "mx_Custom_9"), {"Status": "Open"}),
    ]
    # the field keeps the first rule as its provenance
    assert [f.rule for f in p.changes[0].changes] == ["by-status", "by-status"]


def test_a_rule_whose_fields_are_all_current_has_no_premise(tmp_path: Path) -> None:
    rules = """
    - name: notes
      opportunity_type: 12003
      where: {Status: Open}
      set: {mx_Custom_9: x}
    - name: priority
      opportunity_type: 12003
      where: {mx_Custom_2: Negotiation}
      set: {mx_Custom_10: High}
    """
    p = plan(tmp_path, rules, [deal(A, mx_Custom_9="x")])
    assert premises(p) == [(A, "priority", ("mx_Custom_10",), {"mx_Custom_2": "Negotiation"})]


def test_a_template_reading_opp_as_a_whole_sees_only_what_its_premise_holds(
    tmp_path: Path,
) -> None:
    # `opp` holds exactly the fields the templates name: whatever reads it whole reads no other
    rules = f"""
    - name: r
      opportunity_type: 12003
      ids: [{A}]
      set:
        mx_Custom_9: "{{{{ opp | length }}}} {{{{ opp | list | join(',') }}}} {{{{ opp.Status }}}}"
    """
    p = plan(tmp_path, rules, [deal(A)])
    assert changes(p) == [(A, "mx_Custom_9", None, "1 Status Open")]
    assert premises(p) == [(A, "r", ("mx_Custom_9",), {"Status": "Open"})]


def test_targets_plan_only_the_named_rules(tmp_path: Path) -> None:
    rules = SAFE + "- name: other\n  opportunity_type: 12003\n  set: {mx_Custom_9: x}\n"
    p = plan(tmp_path, rules, [deal(A)], targets=("other",))
    assert changes(p) == [(A, "mx_Custom_9", None, "x")]
    assert [r.name for r in p.summary.rules] == ["other"]


def test_summary_and_cost(tmp_path: Path) -> None:
    records = [deal(f"{i:08d}-0000-4000-8000-000000000000") for i in range(60)]
    config = "rate_limit: {calls: 2, per_seconds: 5}\nsafety: {max_change_ratio: 1}\n"
    p = plan(tmp_path, SAFE, records, config=config)
    assert (p.summary.opportunities, p.summary.fields) == (60, 60)
    assert p.summary.transitions[0].count == 60
    assert (p.cost.read_calls, p.cost.write_calls, p.cost.min_seconds) == (3, 3, 5.0)


def test_owner_labels_name_the_users(tmp_path: Path) -> None:
    rules = "- name: r\n  opportunity_type: 12003\n  set: {Owner: george.bailey@example.com}\n"
    p = plan(tmp_path, rules, [deal(A)])
    labels: Mapping[str, str] = p.labels
    assert labels == {GEORGE: "George Bailey <george.bailey@example.com>",
                      MARY: "Mary Hatch <mary.hatch@example.com>"}  # fmt: skip


def test_ids_may_be_written_in_any_guid_form(tmp_path: Path) -> None:
    rules = """
    - name: r
      opportunity_type: 12003
      ids: ["00000001000040008000000000000000", "{00000002-0000-4000-8000-000000000000}",
            "urn:uuid:00000003-0000-4000-8000-000000000000"]
      set: {mx_Custom_10: High}
    """
    p = plan(tmp_path, rules, [deal(A), deal(B), deal(C)])
    assert [c.id for c in p.changes] == [A, B, C]
    assert p.warnings == ()


def test_a_template_reading_an_unknown_field_is_one_problem(tmp_path: Path) -> None:
    rules = """
    - name: r
      opportunity_type: 12003
      set: {mx_Custom_9: "{{ opp.mx_Custom_42 }} {{ opp.Stauts }}"}
    """
    with pytest.raises(ProjectInvalid) as caught:
        plan(tmp_path, rules, [deal(A), deal(B)])
    assert problems(caught) == [
        "rules/r.yml:3:11: rules[0]: a template reads opp.Stauts, which is not a field of "
        "opportunity type 12003 (Enterprise Deal) (did you mean 'Status'?)",
        "rules/r.yml:3:11: rules[0]: a template reads opp.mx_Custom_42, which is not a field of "
        "opportunity type 12003 (Enterprise Deal) (did you mean 'mx_Custom_2'?)",
    ]


# -- the garbage collector is paused while planning ------------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
def test_planning_pauses_the_collector_and_restores_its_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    from lsqsync.plan import planner

    seen: list[bool] = []
    diff = planner._changes

    def watched(*args: Any) -> Any:
        seen.append(gc.isenabled())
        return diff(*args)

    monkeypatch.setattr(planner, "_changes", watched)
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        assert len(plan(tmp_path, SAFE, [deal(A)]).changes) == 1
        assert seen == [False]
        assert gc.isenabled() is enabled
        with pytest.raises(UnsafePlan):  # restored on the way out of a refusal too
            plan(tmp_path, SAFE, [deal(A), deal(B)], config="safety: {max_changes: 1}\n")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


# -- templates are evaluated once per tuple of what they read ---------------------------------

# The planner evaluates a rule's `when` and templated values once per distinct tuple of the raw
# `opp` fields they read and the CSV row (`vars`, `now`, `rule`, `user()` are fixed for a plan).
# That is only correct while templates are pure functions of their context: every global,
# filter and test below was checked to be one (no `random`, no clock, no I/O, no state). Add one
# here only after checking the same; otherwise the planner must stop sharing evaluations.
PURE_FILTERS = {
    "abs", "capitalize", "count", "d", "default", "first", "float", "int", "join", "last",
    "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace", "reverse",
    "round", "select", "selectattr", "sort", "string", "sum", "title", "trim", "truncate",
    "unique", "upper",
}  # fmt: skip
PURE_TESTS = {
    "!=", "<", "<=", "==", ">", ">=", "boolean", "callable", "defined", "divisibleby", "eq",
    "equalto", "escaped", "even", "false", "filter", "float", "ge", "greaterthan", "gt", "in",
    "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none", "number",
    "odd", "sameas", "sequence", "string", "test", "true", "undefined", "upper",
}  # fmt: skip


def test_templates_can_call_only_pure_functions() -> None:
    from lsqsync.plan.planner import _base_context
    from lsqsync.rules.templates import CONTEXT_NAMES, ENV

    assert ENV.globals == {}
    assert set(ENV.filters) == PURE_FILTERS
    assert set(ENV.tests) == PURE_TESTS
    # what the context holds beyond `opp` and `row`: data, and user(), a lookup in the users
    # read once for the plan
    assert set(CONTEXT_NAMES) == {"opp", "row", "vars", "now", "rule", "user"}
    assert _base_context.__code__.co_names.count("_user_function") == 1


def test_opportunities_with_the_same_values_share_an_evaluation_but_not_a_row(
    tmp_path: Path,
) -> None:
    (tmp_path / "notes.csv").write_text(f"id,note\n{A},first\n{B},second\n{C},first\n")
    p = plan(tmp_path, """
        - name: r
          opportunity_type: 12003
          csv: {path: notes.csv, key: id}
          when: "opp.mx_Custom_6 > 100"
          set: {mx_Custom_9: "{{ row.note }} {{ opp.mx_Custom_6 }} {{ vars.region }}"}
        """, [deal(A), deal(B), deal(C), deal(C[:-1] + "9", mx_Custom_6="50")])  # fmt: skip
    assert changes(p) == [
        (A, "mx_Custom_9", None, "first 150000 APAC"),
        (B, "mx_Custom_9", None, "second 150000 APAC"),
        (C, "mx_Custom_9", None, "first 150000 APAC"),
    ]


def test_a_rule_another_rule_re_triggers_is_non_convergent(tmp_path: Path) -> None:
    """Neither rule reads `now` or its own field: the first's change re-selects the second."""
    p = plan(tmp_path, """
        - name: raise
          opportunity_type: 12003
          where: {mx_Custom_10: Low}
          set: {mx_Custom_10: High}
        - name: lower
          opportunity_type: 12003
          where: {mx_Custom_10: High}
          set: {mx_Custom_10: Low, mx_Custom_9: lowered}
        """, [deal(A)])  # fmt: skip
    assert changes(p) == [(A, "mx_Custom_10", "Low", "High")]
    assert [w.split(" again after")[0] for w in p.nonconvergent] == [
        "non-convergent rule 'lower' (rules/r.yml:7): it reads what this plan changes, so it "
        "would change Priority (mx_Custom_10)",
        "non-convergent rule 'lower' (rules/r.yml:7): it reads what this plan changes, so it "
        "would change Closing Note (mx_Custom_9)",
    ]
    assert p.nonconvergent[0].endswith(
        f" this plan is applied, e.g. {A}: 'High' -> 'Low' (1 opportunity); every plan would "
        "change it again. Make the rule settle, or give it once: true if it is a one-off job "
        "(apply refuses this plan without --allow-nonconvergent)"
    )


def test_a_non_convergent_masked_field_shows_no_value(tmp_path: Path) -> None:
    p = plan(tmp_path, """
        - name: stamp
          opportunity_type: 12003
          set: {mx_Custom_9: "seen {{ now }}"}
        """, [deal(A)], config="mask: [mx_Custom_9]\n")  # fmt: skip
    (warning,) = p.nonconvergent
    assert "its template reads `now`" in warning
    assert f"e.g. {A}: (masked) (1 opportunity)" in warning
    assert "seen" not in warning


def test_a_once_rule_skips_what_it_wrote_and_settles(tmp_path: Path) -> None:
    rules = """
        - name: stamp
          opportunity_type: 12003
          once: true
          set: {mx_Custom_9: "seen {{ now }} at {{ opp.mx_Custom_9 }}"}
        """
    p = plan(tmp_path, rules, [deal(A), deal(B)], once_written={"stamp": frozenset({A})})
    assert changes(p) == [(B, "mx_Custom_9", None, f"seen {NOW} at")]
    assert p.nonconvergent == ()
    # only once rules are skipped: the same entry for a plain rule changes nothing
    plain = plan(tmp_path, rules.replace("once: true", "once: false"), [deal(A)],
                 once_written={"stamp": frozenset({A})})  # fmt: skip
    assert len(plain.nonconvergent) == 1
    assert [c.id for c in plain.changes] == [A]


KEEP = """
    - name: keep
      opportunity_type: 12003
      where: {mx_Custom_6: {gt: 0}}
      set: {mx_Custom_9: kept}
    """
NOTE = """
    - name: note
      opportunity_type: 12003
      where: {mx_Custom_10: High}
      set: {mx_Custom_9: noted}
    """
RAISE = """
    - name: raise
      opportunity_type: 12003
      where: {mx_Custom_10: Low}
      set: {mx_Custom_10: High}
    """


@pytest.mark.parametrize("keep_first", [True, False])
def test_a_rule_the_plan_gives_nothing_new_to_read_still_holds_its_field(
    tmp_path: Path, keep_first: bool
) -> None:
    """The convergence check evaluates again only the rules that read what the plan changes
    ('note' reads mx_Custom_10); 'keep' is not evaluated again but still wants its value, and
    takes the field from a later rule as it does when planning."""
    rules = KEEP + NOTE + RAISE if keep_first else NOTE + KEEP + RAISE
    p = plan(tmp_path, rules, [deal(A)])
    assert changes(p) == [(A, "mx_Custom_10", "Low", "High"), (A, "mx_Custom_9", None, "kept")]
    if keep_first:
        assert p.nonconvergent == ()
    else:
        (warning,) = p.nonconvergent
        assert warning.startswith(
            "non-convergent rule 'note' (rules/r.yml:3): it reads what this plan changes, so it "
            "would change Closing Note (mx_Custom_9) again after this plan is applied, "
            f"e.g. {A}: 'kept' -> 'noted' (1 opportunity)"
        )


def test_a_when_that_reads_now_is_evaluated_again(tmp_path: Path) -> None:
    """'late' reads no field the plan changes, but its when reads `now`, later next time."""
    p = plan(tmp_path, RAISE + """
    - name: late
      opportunity_type: 12003
      when: "now > '2026-11-27 12:00:00'"
      set: {mx_Custom_9: late}
    """, [deal(A)])  # fmt: skip
    assert changes(p) == [(A, "mx_Custom_10", "Low", "High")]
    (warning,) = p.nonconvergent
    assert warning.startswith("non-convergent rule 'late' (rules/r.yml:8): ")
    assert (
        "change Closing Note (mx_Custom_9) again after this plan is applied, "
        f"e.g. {A}: '' -> 'late'" in warning
    )


CONVERGING_RULES = [
    """
    - name: raise
      opportunity_type: 12003
      where: {mx_Custom_10: Low}
      set: {mx_Custom_10: High}
    """,
    """
    - name: note
      opportunity_type: 12003
      where: {mx_Custom_10: High}
      set: {mx_Custom_9: "{{ 'noted' if opp.mx_Custom_6 > 100000 else 'small' }}"}
    """,
    """
    - name: keep
      opportunity_type: 12003
      where: {mx_Custom_6: {gt: 100000}}
      set: {mx_Custom_9: noted}
    """,
    """
    - name: close
      opportunity_type: 12003
      where: {Status: Open, mx_Custom_10: High}
      set: {Status: Won, mx_Custom_2: Closed Won}
    """,
    """
    - name: stamp
      opportunity_type: 12003
      when: "opp.Status == 'Won'"
      set: {mx_Custom_12: "{{ now[:10] }}"}
    """,
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_the_convergence_check_finds_what_planning_everything_again_finds(
    tmp_path: Path, order: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evaluating again only the rules whose inputs change warns exactly as planning every rule
    again over every changed opportunity does (the check as it was first written)."""
    rules = "".join(CONVERGING_RULES[i] for i in order) + CONVERGING_RULES[4]
    deals = [
        deal(f"000000{i:02d}-0000-4000-8000-000000000000", mx_Custom_10=level, mx_Custom_6=amount,
             **({"Status": "Won", "mx_Custom_2": "Closed Won"} if won else {}))
        for i, (level, amount, won) in enumerate(
            itertools.product(["Low", "High", "Medium"], ["50000", "150000"], [False, True])
        )
    ]  # fmt: skip
    found = plan(tmp_path, rules, deals, allow_large=True)

    def everything(project: Any, changes: Any) -> dict[int, set[str]]:
        ids = {c.id.lower() for c in changes}
        return {id(r): set(ids) for r in project.rules}

    monkeypatch.setattr(planner, "_affected", everything)
    expected = plan(tmp_path, rules, deals, allow_large=True)
    assert found.changes == expected.changes
    assert found.warnings == expected.warnings


def test_changes_that_write_what_a_rolled_back_run_wrote_are_marked(tmp_path: Path) -> None:
    rolled_back = (
        ("run-1", "flag", A, "mx_Custom_10", "High"),
        ("run-1", "flag", B, "mx_Custom_10", "Medium"),  # not what the rule writes now
    )
    p = plan(tmp_path, """
        - name: flag
          opportunity_type: 12003
          set: {mx_Custom_10: High}
        """, [deal(A), deal(B)], rolled_back=rolled_back)  # fmt: skip
    assert p.reapplied == {(A, "mx_Custom_10"): "run-1"}
    assert p.warnings == (
        "re-applies rolled-back run run-1: 1 field of rule 'flag' (e.g. "
        f"{A} mx_Custom_10) get the values that run wrote and a rollback put back. If the "
        "rollback was meant to last, revert these rules",
    )


# -- per rule: what it matched and how that came out -------------------------------------------


def counts(p: Plan) -> dict[str, tuple[int, int, int, int, int]]:
    """Rule → (matched, changing, current, by another rule, once)."""
    return {
        c.rule: (c.matched, c.changing, c.current, c.by_other_rule, c.once) for c in p.rule_counts
    }


def test_each_rule_says_what_it_matched_and_how_that_came_out(tmp_path: Path) -> None:
    rules = (
        """
        - name: none
          opportunity_type: 12003
          where: {Status: Lost}
          set: {mx_Custom_10: High}
        - name: first
          opportunity_type: 12003
          where: {mx_Custom_6: {gt: 100000}}
          set: {mx_Custom_10: High}
        - name: same-value-later
          opportunity_type: 12003
          ids: [A, B, C, A]
          set: {mx_Custom_10: High}
        - name: stamp
          opportunity_type: 12003
          when: "opp.mx_Custom_6 != '1'"
          once: true
          set: {mx_Custom_9: "x"}
        """.replace("A,", f"{A},")
        .replace(" B,", f" {B},")
        .replace(" C,", f" {C},")
    )
    rules = rules.replace(", A]", f", {A.replace('-', '')}]")  # A again, written otherwise
    records = [
        deal(A, mx_Custom_6="150000"),  # first changes it; same-value-later wants it too
        deal(B, mx_Custom_6="150000", mx_Custom_10="High"),  # current for both
        deal(C, mx_Custom_6="5000"),  # only same-value-later: it changes it
    ]
    p = plan(tmp_path, rules, records, once_written={"stamp": frozenset({A})})
    assert counts(p) == {
        "none": (0, 0, 0, 0, 0),
        "first": (2, 1, 1, 0, 0),
        "same-value-later": (3, 1, 1, 1, 0),
        "stamp": (3, 2, 0, 0, 1),
    }
    # the counts agree with the summary, and add up
    summary = {r.name: r.opportunities for r in p.summary.rules}
    for c in p.rule_counts:
        assert c.changing == summary[c.rule]
        assert c.matched == c.changing + c.current + c.by_other_rule + c.once


def test_the_convergence_check_counts_nothing(tmp_path: Path) -> None:
    # the check plans the rules again against the after-state: its matches are not the plan's
    rules = """
        - name: note-now
          opportunity_type: 12003
          set: {mx_Custom_9: "{{ now }}"}
        """
    p = plan(tmp_path, rules, [deal(A), deal(B)])
    assert p.nonconvergent
    assert counts(p) == {"note-now": (2, 2, 0, 0, 0)}
