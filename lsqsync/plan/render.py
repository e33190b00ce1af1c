"""Plans for people and machines: text for a terminal, Markdown for a pull request, JSON.

One small renderer per format, each turning the same prepared data (``_View``) into lines; none
of them prints or reads the clock, so the same plan always renders the same way.

JSON is the machine form and carries the real values (``apply`` needs them). Text and Markdown
are what people and CI logs see: there, every value of a ``mask``ed field is ``***`` (summary
included), user ids are shown as "Name <email>", fields by the name LeadSquared's screens show
and their schema name (``Stage (mx_Custom_2)``, from the plan's ``field_labels``), and control
or invisible characters in values are escaped so that a value cannot forge a line or colour the
terminal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from lsqsync.config import RATIO_MIN_TOTAL, Safety
from lsqsync.display import (
    EMPTY,
    MARKDOWN_LIMIT,
    MASKED,
    FieldNames,
    capped,
    clean,
    is_masked,
    md,
    percent,
    plural,
    quote,
    seconds,
)
from lsqsync.lsq import MAX_IDS_PER_CALL
from lsqsync.plan.model import (
    FieldChange,
    OpportunityChange,
    Plan,
    RuleCount,
    TypeSummary,
    dumps,
)

Format = Literal["text", "json", "markdown"]


def apply_reads(changes: Sequence[OpportunityChange]) -> int:
    """The read calls ``apply`` makes for these changes: per opportunity type, its metadata,
    the re-check before writing and the read back after (GetOpportunitiesById, 2,000 ids a
    call each)."""
    ids: Counter[int] = Counter(c.opportunity_type for c in changes)
    return sum(1 + 2 * -(-n // MAX_IDS_PER_CALL) for n in ids.values())


FORMATS: tuple[Format, ...] = ("text", "json", "markdown")

MAX_DETAILS = 200  # opportunities shown in text before "… N more"
NEAR_LIMIT = 0.8  # warn once a plan reaches this share of a safety limit

TIMES = "\u00d7"  # the multiplication sign, as in "Status: Open -> Won (times) 120"
ARROW = "->"  # before -> after, in the summary and in the details alike
# after a field's provenance: the change writes again what a run that was rolled back wrote
REAPPLIED_MARK = "[re-applies a rolled-back run]"


def render(
    plan: Plan,
    fmt: Format,
    *,
    color: bool = False,
    max_details: int = MAX_DETAILS,
    safety: Safety | None = None,
    saved_as: str | None = None,
) -> str:
    """``plan`` as ``fmt``: "text" (``color`` adds ANSI colours; at most ``max_details``
    opportunities in detail), "markdown" (for a pull-request comment, at most MARKDOWN_LIMIT
    characters) or "json" (the saved form). ``safety`` (lsqsync.yml's limits) is for
    warnings when the plan comes close to a limit; ``saved_as`` names the plan file in the
    "N more" line."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown plan format {fmt!r} (expected one of {', '.join(FORMATS)})")
    return RENDERERS[fmt](plan, _Options(color, max_details, safety or Safety(), saved_as))


@dataclass(frozen=True)
class _Options:
    color: bool
    max_details: int
    safety: Safety
    saved_as: str | None


# -- what every rendering shows ---------------------------------------------------------------


@dataclass(frozen=True)
class _Transition:
    field: str
    before: str
    after: str
    count: int


class _View:
    """A plan prepared for display: values masked, labelled and escaped; counts derived."""

    def __init__(self, plan: Plan, safety: Safety) -> None:
        self.plan = plan
        self.short = plan.digest[:8]
        self._labels = {k.casefold(): v for k, v in plan.labels.items()}
        self._type_names = {t.opportunity_type: t.name for t in plan.summary.types}
        self._rule_files = {r.name: r.source.rpartition(":")[0] for r in plan.summary.rules}
        self.field = FieldNames(plan.field_labels)  # (schema name, type code) → shown name
        self.safety_notes = self._safety_notes(safety)

    def _safety_notes(self, safety: Safety) -> list[str]:
        """What a reviewer must see first: the limits this plan overrides or comes close to."""
        plan, max_changes, max_ratio = self.plan, safety.max_changes, safety.max_change_ratio
        notes = []
        if plan.inputs.allow_large:
            notes.append("made with --allow-large: the safety limits were overridden")
        count = plan.summary.opportunities
        if count and count >= NEAR_LIMIT * max_changes:
            where = "over" if count > max_changes else "close to"
            notes.append(
                f"{plural(count, 'opportunity', 'opportunities')} to change: {where} the limit"
                f" of {max_changes} (safety.max_changes)"
            )
        for t in plan.summary.types:
            if t.total is None or t.total < RATIO_MIN_TOTAL or not t.changing:
                continue
            share = t.changing / t.total
            if share >= NEAR_LIMIT * max_ratio:
                where = "over" if share > max_ratio else "close to"
                notes.append(
                    f"type {self.type_label(t.opportunity_type)}: {t.changing} of {t.total}"
                    f" opportunities change ({percent(share)}): {where} the limit of"
                    f" {percent(max_ratio)} (safety.max_change_ratio)"
                )
        return notes

    def value(self, field: str, value: str | None) -> str:
        if is_masked(field, self.plan.mask):
            return MASKED
        if value is None or value == "":
            return EMPTY
        label = self._labels.get(value.casefold())
        if label is not None:
            return clean(label)
        return quote(value)

    def type_label(self, code: int) -> str:
        name = self._type_names.get(code, "")
        return f"{code} {clean(name)}" if name else str(code)

    def opportunity_title(self, opp: OpportunityChange) -> str:
        # the rules are named on each field's line
        return f"opportunity {clean(opp.id)} (type {self.type_label(opp.opportunity_type)})"

    def provenance(self, change: FieldChange) -> str:
        """``# rule (line N)``: the summary names each rule's file, so a field's line names
        only the line there (the whole source when it is another file, or a run)."""
        file, _, line = change.source.rpartition(":")
        same_file = file and line.isdigit() and self._rule_files.get(change.rule) == file
        where = f"line {line}" if same_file else change.source
        return f"# {clean(change.rule)} ({clean(where)})"

    def mark(self, opp: OpportunityChange, change: FieldChange) -> str:
        """What follows a field's provenance: whether it re-applies a rolled-back run."""
        if (opp.id, change.field) in self.plan.reapplied:
            return f"  {REAPPLIED_MARK}"
        return ""

    def transitions(self) -> list[_Transition]:
        """The summary's transitions as shown; masking can make several look alike, so those
        are merged."""
        merged: Counter[tuple[str, str, str]] = Counter()
        for t in self.plan.summary.transitions:
            key = (self.field(t.field), self.value(t.field, t.before), self.value(t.field, t.after))
            merged[key] += t.count
        ordered = sorted(merged.items(), key=lambda kv: -kv[1])  # stable: keeps the plan's order
        return [_Transition(f, b, a, n) for (f, b, a), n in ordered]

    def field_counts(self) -> list[tuple[str, int]]:
        counts = Counter(f.field for opp in self.plan.changes for f in opp.changes)
        return [
            (self.field(name), n)
            for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def title(self) -> str:
        """``lsqsync plan 3f2a9c1e for HOST``: which plan, for which account."""
        return f"lsqsync plan {self.short} for {clean(self.plan.inputs.host)}"

    def meta(self) -> list[tuple[str, str]]:
        """The plan's identity and provenance, as (label, value) pairs; shown after what it
        changes, which is what a reviewer reads first."""
        p = self.plan
        rows = [
            ("digest", p.digest),
            ("created", clean(p.created_at)),
            ("expires", clean(p.expires_at)),
            ("now", clean(p.inputs.now)),
        ]
        if p.git_commit:
            rows.append(("git", clean(p.git_commit)))
        if p.state_lineage is not None:
            rows.append(("state", f"lineage {clean(p.state_lineage)} serial {p.state_serial}"))
        if p.inputs.targets:
            rows.append(("targets", ", ".join(clean(t) for t in p.inputs.targets)))
        if p.mask:
            rows.append(("masked", ", ".join(clean(m) for m in p.mask)))
        return rows

    def cost(self) -> str:
        c = self.plan.cost
        made = f"API cost: {plural(c.read_calls, 'read call')} made"
        if self.plan.empty:
            return f"{made}; nothing to apply"
        pace = (
            f"writes ≥ {seconds(c.min_seconds)} s at the rate limit"
            if c.min_seconds > 0
            else "writes within one rate-limit window"
        )
        return (
            f"{made}; to apply: {plural(c.write_calls, 'write call')}, "
            f"{plural(apply_reads(self.plan.changes), 'read call')} (re-check, read back); {pace}"
        )

    def total(self) -> str:
        s = self.plan.summary
        if self.plan.empty and self.plan.rule_counts and not _matched_any(self.plan):
            return "No changes: the rules matched no opportunity."
        if self.plan.empty:
            return "No changes. LeadSquared already matches the rules."
        return (
            f"Plan: {plural(s.opportunities, 'opportunity', 'opportunities')} to change"
            f" ({plural(s.fields, 'field')})."
        )


# -- text -------------------------------------------------------------------------------------

BOLD, RED, GREEN, YELLOW, RESET = "\x1b[1m", "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[0m"


def _text(plan: Plan, options: _Options) -> str:
    view = _View(plan, options.safety)

    def paint(code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if options.color else text

    tilde = paint(YELLOW, "~")
    lines = [paint(BOLD, view.title())]
    if plan.empty and plan.rule_counts:
        lines += ["", "Summary: no changes", "  by rule:"]
        lines += [f"    {line}" for line in _matched_lines(plan)]
    if not plan.empty:
        s = plan.summary
        lines += ["", f"Summary: {_counts(s.opportunities, s.fields)}", "  by rule:"]
        counts = _rule_counts(plan)
        lines += [
            f"    {clean(r.name)} ({clean(r.source)}): {_counts(r.opportunities, r.fields)}"
            + (f"; {matched(counts[r.name])}" if r.name in counts else "")
            for r in s.rules
        ]
        lines.append("  by type:")
        lines += [f"    {view.type_label(t.opportunity_type)}: {_share(t)}" for t in s.types]
        lines.append("  by field:")
        lines += [
            f"    {name}: {plural(n, 'opportunity', 'opportunities')}"
            for name, n in view.field_counts()
        ]
        lines.append("  most frequent changes:")
        lines += [
            f"    {t.field}: {paint(RED, before)} {ARROW} {paint(GREEN, after)} {TIMES}{t.count}"
            for t in view.transitions()
            for before, after in [_fitted(t)]
        ]
    warnings = [*view.safety_notes, *(clean(w) for w in plan.warnings)]
    if warnings:
        lines.append("")
        lines += [f"Warning: {w}" for w in warnings]
    shown = plan.changes[: max(options.max_details, 0)]
    if shown:
        lines += ["", f"Symbols: {tilde} update in place"]
    for opp in shown:
        lines += ["", f"{tilde} {view.opportunity_title(opp)}"]
        for f in opp.changes:
            lines += _field_lines(view, opp, f, tilde, paint)
    hidden = len(plan.changes) - len(shown)
    if hidden:
        lines += [
            "",
            f"… {plural(hidden, 'more opportunity', 'more opportunities')} in the saved plan"
            f" (lsqsync show {options.saved_as or 'FILE'})",
        ]
    width = max(len(label) for label, _ in view.meta()) + 1
    lines += ["", "About this plan:"]
    lines += [f"  {label + ':':<{width}} {value}" for label, value in view.meta()]
    lines += [view.cost(), "", paint(BOLD, view.total())]
    return "\n".join(lines) + "\n"


LINE_LIMIT = 200  # characters of a field's line; a longer one puts its values on lines of their own
VALUE_LIMIT = 160  # characters of a value shown on a line of its own; the saved plan has it all


def _fitted(t: _Transition) -> tuple[str, str]:
    """A transition's values, cut so that its summary line stays within LINE_LIMIT."""
    room = (LINE_LIMIT - len(t.field) - 20) // 2
    if len(t.field) + len(t.before) + len(t.after) + 20 <= LINE_LIMIT:
        return t.before, t.after
    return capped(t.before, room - 25), capped(t.after, room - 25)


def _field_lines(
    view: _View,
    opp: OpportunityChange,
    f: FieldChange,
    tilde: str,
    paint: Callable[[str, str], str],
) -> list[str]:
    """A field's change on one line, or — when that passes LINE_LIMIT — its name and rule, then
    the values on a line each, long ones cut."""
    before, after = view.value(f.field, f.before), view.value(f.field, f.after)
    provenance = view.provenance(f) + view.mark(opp, f)
    name = view.field(f.field, opp.opportunity_type)
    line = f"    {tilde} {name}: {before} {ARROW} {after}   {provenance}"
    if len(line) <= LINE_LIMIT:
        return [
            f"    {tilde} {name}: {paint(RED, before)} {ARROW} {paint(GREEN, after)}   {provenance}"
        ]
    return [
        f"    {tilde} {name}:   {provenance}",
        f"        {paint(RED, capped(before, VALUE_LIMIT))}",
        f"     {ARROW} {paint(GREEN, capped(after, VALUE_LIMIT))}",
    ]


# -- what each rule matched --------------------------------------------------------------------


def matched(count: RuleCount) -> str:
    """What ``count``'s rule matched and how that came out: ``matched 0``, ``matched 40, all
    current``, ``matched 3, all change``, ``matched 10: 3 change, 7 current``."""
    if not count.matched:
        return "matched 0"
    if count.current == count.matched:
        return f"matched {count.matched}, all current"
    if count.changing == count.matched:
        return f"matched {count.matched}, all change"
    parts = [
        f"{n} {what}"
        for n, what in (
            (count.changing, "change"),
            (count.current, "current"),
            (count.by_other_rule, "changed by another rule"),
            (count.once, "left alone (once: true)"),
        )
        if n
    ]
    return f"matched {count.matched}: {', '.join(parts)}"


def _matched_any(plan: Plan) -> bool:
    return any(c.matched for c in plan.rule_counts)


def _rule_counts(plan: Plan) -> dict[str, RuleCount]:
    return {c.rule: c for c in plan.rule_counts}


def _matched_lines(plan: Plan) -> list[str]:
    """Each rule's ``name (source): matched …``, for a plan without changes (whose summary,
    which says it otherwise, is not shown)."""
    sources = {r.name: r.source for r in plan.summary.rules}
    return [
        f"{clean(c.rule)} ({clean(sources.get(c.rule, ''))}): {matched(c)}"
        for c in plan.rule_counts
    ]


def _counts(opportunities: int, fields: int) -> str:
    return f"{plural(opportunities, 'opportunity', 'opportunities')}, {plural(fields, 'field')}"


def _share(t: TypeSummary) -> str:
    if t.total is None:
        return f"{t.changing} changing (of an unknown number)"
    share = f" ({percent(t.changing / t.total)})" if t.total else ""
    return f"{t.changing} of {t.total} changing{share}"


# -- markdown ---------------------------------------------------------------------------------


def _code(text: str) -> str:
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _table(header: Sequence[str], align: str, rows: Sequence[Sequence[str]]) -> list[str]:
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    return [row(header), row(["---:" if a == "r" else "---" for a in align]), *map(row, rows)]


def _markdown(plan: Plan, options: _Options) -> str:
    view = _View(plan, options.safety)
    s = plan.summary
    head = [f"### lsqsync plan {_code(view.short)} for {_code(clean(plan.inputs.host))}", ""]
    for note in view.safety_notes:  # a paragraph each: GitHub joins adjacent lines in files
        head += [f"**⚠️ {md(note)}**", ""]
    if plan.empty and plan.rule_counts:
        head += ["#### Summary: no changes", "", *_markdown_rules(plan)]
    if not plan.empty:
        head += [f"#### Summary: {_counts(s.opportunities, s.fields)}", ""]
        head += _markdown_rules(plan)
        head.append("")
        head += _table(
            ["Type", "Changing", "Total", "Share"],
            "lrrr",
            [
                [
                    md(view.type_label(t.opportunity_type)),
                    str(t.changing),
                    "unknown" if t.total is None else str(t.total),
                    percent(t.changing / t.total) if t.total else "",
                ]
                for t in s.types
            ],
        )
        head.append("")
        head += _table(
            ["Field", "Opportunities"], "lr", [[md(f), str(n)] for f, n in view.field_counts()]
        )
        head += ["", "Most frequent changes:", ""]
        head += _table(
            ["Field", "Before", "After", "Count"],
            "lllr",
            [[md(t.field), md(t.before), md(t.after), str(t.count)] for t in view.transitions()],
        )
    if plan.warnings:
        head += ["", "#### Warnings", ""]
        head += [f"- {md(clean(w))}" for w in plan.warnings]
    head += ["", "About this plan:", ""]
    head += [f"- {label}: {_code(value)}" for label, value in view.meta()]
    head += ["", md(view.cost())]
    tail = ["", view.total()]
    return _fit(head, _diff_blocks(view), tail, len(plan.changes), s.fields)


def _markdown_rules(plan: Plan) -> list[str]:
    """The summary's table of rules, with what each matched where the plan says it (only
    that for a plan without changes)."""
    counts = _rule_counts(plan)
    if plan.empty:
        return _table(
            ["Rule", "Source", "Matched"],
            "lll",
            [[md(clean(r.name)), md(clean(r.source)), md(_matched_cell(counts.get(r.name)))]
             for r in plan.summary.rules],
        )  # fmt: skip
    rows = [
        [md(clean(r.name)), md(clean(r.source)), str(r.opportunities), str(r.fields)]
        + ([md(_matched_cell(counts.get(r.name)))] if counts else [])
        for r in plan.summary.rules
    ]
    if counts:
        return _table(["Rule", "Source", "Opportunities", "Fields", "Matched"], "llrrl", rows)
    return _table(["Rule", "Source", "Opportunities", "Fields"], "llrr", rows)


def _matched_cell(count: RuleCount | None) -> str:
    return matched(count).removeprefix("matched ") if count is not None else ""


def _diff_blocks(view: _View) -> Iterator[str]:
    """One block of ``diff`` lines per opportunity: GitHub colours ``-`` red and ``+`` green."""
    for opp in view.plan.changes:
        lines = [f"~ {view.opportunity_title(opp)}"]
        for f in opp.changes:
            name = view.field(f.field, opp.opportunity_type)
            lines.append(f"-     {name}: {view.value(f.field, f.before)}")
            lines.append(
                f"+     {name}: {view.value(f.field, f.after)}   "
                f"{view.provenance(f)}{view.mark(opp, f)}"
            )
        yield "\n".join(lines) + "\n"


def _fit(head: list[str], blocks: Iterator[str], tail: list[str], total: int, fields: int) -> str:
    """Head, as many whole opportunity blocks (of ``total``) as fit in MARKDOWN_LIMIT, tail."""
    top, bottom = "\n".join(head) + "\n", "\n".join(tail) + "\n"
    if not total:
        return _cap(top, len(bottom)) + bottom
    title = f"Details: {_counts(total, fields)}"
    open_, close = f"\n<details><summary>{title}</summary>\n\n```diff\n", "```\n\n</details>\n"
    note = (
        f"\ndetails truncated: {{}} of {total} opportunities shown;"
        " the full plan is in the artifact\n"
    )
    reserve = len(open_) + len(close) + len(note) + len(str(total)) + len(bottom)
    top = _cap(top, reserve)
    budget = MARKDOWN_LIMIT - len(top) - reserve
    shown: list[str] = []
    for block in blocks:
        if len(block) > budget:
            break
        shown.append(block)
        budget -= len(block)
    body = top
    if shown:
        body += open_ + "".join(shown) + close
    if len(shown) < total:
        body += note.format(len(shown))
    return body + bottom


def _cap(top: str, reserve: int) -> str:
    # Only a pathological summary (thousands of rules or warnings) gets here: cut it at a line.
    room = MARKDOWN_LIMIT - reserve
    if len(top) <= room:
        return top
    marker = "\n\n… summary truncated; the full plan is in the artifact\n"
    return top[: top.rfind("\n", 0, room - len(marker)) + 1] + marker


def _json(plan: Plan, options: _Options) -> str:
    return dumps(plan)


RENDERERS: dict[str, Callable[[Plan, _Options], str]] = {
    "text": _text,
    "json": _json,
    "markdown": _markdown,
}
