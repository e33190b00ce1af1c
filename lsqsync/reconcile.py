"""``lsqsync reconcile``: plan every rule; apply the changes of ``apply: auto`` rules within their
limits and the project's safety limits, through the same path as ``lsqsync apply`` (state,
journal, re-checks); save the rest as a plan for review.

An opportunity is applied here only when every change the plan has for it comes from an
``apply: auto`` rule within its limits: the planner checked its fields together (a Stage under
its Status, conflicts), so they are applied together or wait for review together.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from lsqsync.apply.runner import ApplyOptions, ApplySummary, apply_plan_file
from lsqsync.config import RATIO_MIN_TOTAL, Safety
from lsqsync.display import plural
from lsqsync.plan import planfile
from lsqsync.plan.command import PlanRequest, plan_project
from lsqsync.plan.model import OpportunityChange, Plan, subset
from lsqsync.plan.planner import safety_problems
from lsqsync.rules.project import Rule

Progress = Callable[[str], None]

EXIT_NOTHING_WAITS = 0
EXIT_WAITS = 2
EXIT_PARTIAL = 3
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class ReconcileOptions:
    out: Path  # where the plan of the changes that wait for review is saved
    expires_in: timedelta | None = None  # of that plan; None: a plan's usual lifetime
    apply: ApplyOptions = field(default_factory=ApplyOptions)


@dataclass(frozen=True)
class Split:
    """A plan's changes: what reconcile may apply, what waits for review, and why each rule's
    changes wait (rule name → reason)."""

    auto: tuple[OpportunityChange, ...]
    review: tuple[OpportunityChange, ...]
    reasons: Mapping[str, str]
    # why changes of apply: auto rules wait too (the review plan's warnings)
    held: tuple[str, ...] = ()


def rule_over_limits(rule: Rule, plan: Plan) -> str | None:
    """Why the changes of an ``apply: auto`` rule exceed its own ``limits``, if they do."""
    counts = {r.name: r.opportunities for r in plan.summary.rules}
    totals = {t.opportunity_type: t.total for t in plan.summary.types}
    count = counts.get(rule.name, 0)
    limits = rule.limits
    if limits.max_changes is not None and count > limits.max_changes:
        return (
            f"it changes {plural(count, 'opportunity', 'opportunities')}, more than its "
            f"limits.max_changes ({limits.max_changes:,})"
        )
    total = totals.get(rule.opportunity_type, 0)
    ratio = limits.max_change_ratio
    if ratio is not None and total is None:
        # Defensive: a ratio that cannot be checked is not taken as kept.
        return (
            f"its limits.max_change_ratio cannot be checked: the number of opportunities of "
            f"type {rule.opportunity_type} is unknown (these keys cannot use Advanced Search)"
        )
    if ratio is None or total is None or total < RATIO_MIN_TOTAL:
        return None
    if count / total > ratio:
        return (
            f"it changes {count:,} of the {total:,} opportunities of type "
            f"{rule.opportunity_type} ({count / total:.0%}), more than its "
            f"limits.max_change_ratio ({ratio:.0%})"
        )
    return None


def split(plan: Plan, rules: Sequence[Rule], safety: Safety) -> Split:
    """Which of ``plan``'s changes reconcile applies, and which wait for review. Pure."""
    reasons: dict[str, str] = {}
    held: list[str] = []
    eligible = set()
    for rule in rules:
        if rule.apply != "auto":
            reasons[rule.name] = "apply: review"
            continue
        over = rule_over_limits(rule, plan)
        if over is None:
            eligible.add(rule.name)
        else:
            reasons[rule.name] = f"apply: auto, but {over}"
            held.append(
                f"rule '{rule.name}' is apply: auto, but {over}: its changes wait for review"
            )
    auto = tuple(c for c in plan.changes if all(f.rule in eligible for f in c.changes))
    review = tuple(c for c in plan.changes if not all(f.rule in eligible for f in c.changes))
    together = sorted({f.rule for c in review for f in c.changes if f.rule in eligible})
    for name in together:
        count = sum(1 for c in review if any(f.rule == name for f in c.changes))
        reasons[name] = (
            f"apply: auto, but {plural(count, 'opportunity', 'opportunities')} it changes "
            f"also {'has' if count == 1 else 'have'} changes that wait for review"
        )
        held.append(
            f"rule '{name}' is apply: auto, but {reasons[name].removeprefix('apply: auto, but ')}"
            ": they wait with them"
        )
    unsafe = safety_problems(auto, _totals(plan), safety)
    if unsafe:
        held.append(
            f"the changes of apply: auto rules exceed the project's safety limits "
            f"({'; '.join(unsafe)}): they wait for review"
        )
        for name in {f.rule for c in auto for f in c.changes}:
            reasons[name] = "apply: auto, but the auto rules' changes exceed the safety limits"
        auto, review = (), plan.changes
    return Split(auto, review, reasons, tuple(held))


def _totals(plan: Plan) -> dict[int, int | None]:
    return {t.opportunity_type: t.total for t in plan.summary.types}


@dataclass(frozen=True)
class Reconciled:
    applied: Plan | None  # the changes applied without review (None: nothing to apply)
    summary: ApplySummary | None  # how applying them went
    review: Plan | None  # the changes that wait for review (None: nothing waits)
    saved: Path | None  # where ``review`` was saved (None: not saved)
    reasons: Mapping[str, str]  # rule → why its changes wait
    refused: str | None = None  # why ``review`` could not be saved

    @property
    def exit_code(self) -> int:
        if self.summary is not None and self.summary.interrupted:
            return EXIT_INTERRUPTED
        if self.summary is not None and not self.summary.clean:
            return EXIT_PARTIAL
        if self.refused is not None:
            return EXIT_ERROR
        return EXIT_WAITS if self.review is not None else EXIT_NOTHING_WAITS


def reconcile(
    config_path: Path | None,
    variables: Mapping[str, Any],
    options: ReconcileOptions,
    progress: Progress | None = None,
) -> Reconciled:
    """Plan, split, save what waits for review, and apply the rest as ``lsqsync apply`` does."""
    request = PlanRequest(expires_in=options.expires_in, check_safety=False)
    planned = plan_project(config_path, variables, request, progress)
    config, plan = planned.config, planned.plan
    parts = split(plan, planned.project.rules, config.safety)
    review, saved, refused = None, None, None
    if parts.review:
        review = subset(plan, parts.review, planned.write_pace, parts.held)
        unsafe = safety_problems(review.changes, _totals(plan), config.safety)
        if unsafe:
            refused = (
                f"the changes that wait for review were not saved: {'; '.join(unsafe)}. Review "
                "the rules, or plan them with lsqsync plan --allow-large"
            )
        else:
            planfile.save(review, options.out)  # before anything is sent: never lost
            saved = options.out
    applied, summary = None, None
    if parts.auto:
        applied = subset(plan, parts.auto, planned.write_pace)
        path = config.root / ".lsqsync" / f"reconcile-{applied.digest[:12]}.json"
        planfile.save(applied, path)
        summary = apply_plan_file(path, config_path, options.apply, progress)
    return Reconciled(applied, summary, review, saved, parts.reasons, refused)


# -- output ---------------------------------------------------------------------------------


def render(result: Reconciled, fmt: Literal["text", "json"]) -> str:
    if fmt == "json":
        return json.dumps(_json(result), indent=2, ensure_ascii=False) + "\n"
    lines: list[str] = []
    if result.applied is None:
        lines.append("Nothing to apply without review.")
    else:
        lines.append(f"Applied without review (apply: auto): {_amount(result.applied)}.")
        assert result.summary is not None
        lines.append(result.summary.text().rstrip("\n"))
    if result.review is None:
        lines.append("Nothing waits for review.")
    else:
        what = _amount(result.review)
        if result.saved is not None:
            lines.append(
                f"Waiting for review: {what}, saved to {result.saved} "
                f"(digest {result.review.digest[:12]})."
            )
        else:
            lines.append(f"Waiting for review: {what}, not saved.")
        waiting = sorted({f.rule for c in result.review.changes for f in c.changes})
        lines += [f"  {name}: {result.reasons.get(name, 'apply: review')}" for name in waiting]
        if result.saved is not None:
            lines.append(
                f"Review it with: lsqsync show {result.saved}; apply it with: "
                f"lsqsync apply {result.saved}"
            )
    return "\n".join(lines) + "\n"


def _amount(plan: Plan) -> str:
    s = plan.summary
    return (
        f"{plural(s.opportunities, 'opportunity', 'opportunities')} ({plural(s.fields, 'field')})"
    )


def _json(result: Reconciled) -> dict[str, Any]:
    applied = None
    if result.applied is not None and result.summary is not None:
        applied = {
            "digest": result.applied.digest,
            "opportunities": result.applied.summary.opportunities,
            "fields": result.applied.summary.fields,
            "run": result.summary.run_id,
            "outcome": result.summary.outcome,
            "counts": result.summary.counts,
        }
    review = None
    if result.review is not None:
        review = {
            "digest": result.review.digest,
            "opportunities": result.review.summary.opportunities,
            "fields": result.review.summary.fields,
            "saved": str(result.saved) if result.saved is not None else None,
            "rules": {
                name: result.reasons.get(name, "apply: review")
                for name in sorted({f.rule for c in result.review.changes for f in c.changes})
            },
        }
    return {"applied": applied, "review": review, "refused": result.refused}
