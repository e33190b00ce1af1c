"""Jinja templates in rule values and ``when`` expressions, run in a sandbox.

Rules may come from an untrusted pull request and are planned in CI, next to the API keys. So
templates run in Jinja's ``ImmutableSandboxedEnvironment`` (no attribute starting with ``_``, no
unsafe methods, no methods that change a list or dict: one rule cannot change the ``opp`` or
``vars`` the next one sees), with ``StrictUndefined`` (a misspelt name is an error, not an empty
string), with no globals but lsqsync's own (no ``range``, ``lipsum``, ``cycler``, ``joiner``,
``namespace``, ``dict``), a reduced set of filters (none that can build very large strings from
small input), and ``*``/``**`` capped so that ``'x' * 10**9`` cannot exhaust memory.

Everything that can be found without data is found at ``validate`` time by walking the
template's syntax tree: syntax errors, undefined names, access to private attributes, ``vars``
names that are not defined, ``row`` in a rule without a CSV, filters and tests that are not
available. What analysis passes compiles.
"""

from __future__ import annotations

import contextlib
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError, TemplateAssertionError, TemplateError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from lsqsync.display import did_you_mean

CONTEXT_NAMES = ("opp", "row", "vars", "now", "rule", "user")
RULE_ATTRIBUTES = ("name", "description", "opportunity_type")
# Names people may try from other Jinja set-ups; they are not available here.
_REMOVED = ("range", "lipsum", "cycler", "joiner", "namespace", "dict", "config", "self", "request")
_FILTERS = (
    "abs", "capitalize", "count", "d", "default", "first", "float", "int", "join", "last",
    "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace", "reverse",
    "round", "select", "selectattr", "sort", "string", "sum", "title", "trim", "truncate",
    "unique", "upper",
)  # fmt: skip
MAX_SIZE = 100_000  # longest string or list a template may build (and most digits of a number)
# String methods that build a large string from a small template ('x'.ljust(10**9)), or format
# with Python's mini-language (which reaches attributes: '{0.__class__}'.format(x)).
_BLOCKED_METHODS = frozenset(
    ["format", "format_map", "ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join",
     "encode", "translate"]
)  # fmt: skip
# A rule template is an expression with branches: {{ … }} and {% if %}/{% elif %}/{% else %}.
# Every other statement is refused: variables ({% set %}), loops, macros and blocks are what
# turn a small template into a program that doubles a string sixteen times or loops 10⁸ times.
_ALLOWED_STATEMENTS = (nodes.Output, nodes.If)
_STATEMENT_NAMES = {
    nodes.Assign: "{% set %}",
    nodes.AssignBlock: "{% set %}…{% endset %}",
    nodes.For: "{% for %}",
    nodes.Macro: "{% macro %}",
    nodes.CallBlock: "{% call %}",
    nodes.FilterBlock: "{% filter %}",
    nodes.With: "{% with %}",
    nodes.Block: "{% block %}",
    nodes.Include: "{% include %}",
    nodes.Extends: "{% extends %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from … import %}",
}
TOO_NESTED = "the template nests too deeply to compile (write it in smaller parts)"
STATEMENTS_ONLY = "a template is {{ … }} with {% if %}/{% elif %}/{% else %}"


class TemplateProblem(Exception):
    """A template that cannot be compiled or rendered; the message is for the user, ``line``
    the template's line it is about (1 when not known)."""

    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.line = line


def _weight(value: Any) -> int:
    """How much memory a value stands for: characters, plus the weight of list items."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list | tuple):
        return len(value) + sum(_weight(v) for v in value)
    return 1


def _checked(size: int) -> None:
    if size > MAX_SIZE:
        raise SecurityError(f"a result longer than {MAX_SIZE:,} is not allowed")


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "%", "+"])

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _BLOCKED_METHODS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def call_binop(self, context: Context, op: str, left: Any, right: Any) -> Any:
        if op == "%":
            if isinstance(left, str):
                raise SecurityError("%-formatting of text is not available; use ~ and filters")
            return operator.mod(left, right)
        if op == "**":
            if isinstance(right, int | float) and abs(right) > 1000:
                raise SecurityError(f"exponent {right} is too large")
            # (10 ** 1000) ** 1000 has a small exponent too, but a million digits.
            if isinstance(left, int) and abs(left) > 1 and right * math.log10(abs(left)) > MAX_SIZE:
                raise SecurityError(f"a number of more than {MAX_SIZE:,} digits is not allowed")
            return operator.pow(left, right)
        if op == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _checked(_weight(left) + _weight(right))
            return operator.add(left, right)
        # a product's digits are about the sum of its factors' digits (3.32 bits a digit)
        both_int = isinstance(left, int) and isinstance(right, int)
        if both_int and left.bit_length() + right.bit_length() > MAX_SIZE * 3.33:
            raise SecurityError(f"a number of more than {MAX_SIZE:,} digits is not allowed")
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(times, int):
                _checked(_weight(seq) * times)
        return operator.mul(left, right)


def _join(value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value)
    _checked(sum(_weight(str(v)) for v in items) + len(d) * max(0, len(items) - 1))
    return str(_FILTER_IMPLEMENTATIONS["join"](_EVAL, items, d, attribute))


def _replace(s: str, old: str, new: str, count: int | None = None) -> str:
    text, old, new = str(s), str(old), str(new)
    occurrences = text.count(old) if old else len(text) + 1
    if count is not None:
        occurrences = min(occurrences, count)
    _checked(len(text) + occurrences * max(0, len(new) - len(old)))
    return str(_FILTER_IMPLEMENTATIONS["replace"](_EVAL, text, old, new, count))


def _plain(value: Any) -> Any:
    """``value`` if it is data. A missing name or attribute (an Undefined, also inside a list),
    a function or a macro is an error, never a value: rendered, it would put ``[Undefined]`` or
    ``<function … at 0x7f…>`` into a CRM field."""
    if isinstance(value, Undefined):
        str(value)  # raises the error that names what is missing (or why it is unsafe)
        raise TemplateProblem("template error: a value is undefined")  # pragma: no cover
    if callable(value):
        raise TemplateProblem(
            "template error: a function is not a value (call it: user('a@example.com'))"
        )
    if isinstance(value, list | tuple):
        for item in value:
            _plain(item)
    elif isinstance(value, dict):
        for item in value.values():
            _plain(item)
    return value


def _environment() -> _Environment:
    # An empty field is None: it renders as "", never as the word "None".
    env = _Environment(
        undefined=StrictUndefined,
        autoescape=False,
        finalize=lambda v: "" if v is None else _plain(v),
    )
    env.globals.clear()
    env.filters = {name: env.filters[name] for name in _FILTERS}
    env.filters["join"] = _join
    env.filters["replace"] = _replace
    env.tests = dict(env.tests)
    return env


_FILTER_IMPLEMENTATIONS = dict(ImmutableSandboxedEnvironment().filters)
ENV = _environment()
_EVAL = EvalContext(ENV)


@dataclass(frozen=True)
class Analysis:
    """What a template refers to: the ``opp`` fields it reads and whether it uses ``row``;
    and its problems, each with the template line it is on (``problem_lines``, in order)."""

    opp_fields: frozenset[str] = frozenset()
    row_fields: frozenset[str] = frozenset()
    uses_row: bool = False
    uses_user: bool = False
    uses_now: bool = False
    problems: tuple[str, ...] = ()
    problem_lines: tuple[int, ...] = field(default=(), compare=False)

    @property
    def located(self) -> list[tuple[str, int]]:
        """(problem, template line) pairs; line 1 where none is known."""
        lines = (*self.problem_lines, *[1] * len(self.problems))
        return list(zip(self.problems, lines, strict=False))


Issue = tuple[str, int]  # a problem and the template line it is on


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def _parse(source: str, expression: bool) -> nodes.Template:
    try:
        if expression:
            # Its syntax errors read better than the wrapped one's. An assertion error means it
            # parses: analyse reports what does not compile (an unknown filter …).
            with contextlib.suppress(TemplateAssertionError):
                ENV.compile_expression(source)
            return ENV.parse("{{ (" + source + ") }}")
        return ENV.parse(source)
    except TemplateSyntaxError as e:
        raise TemplateProblem(_syntax_error(e), e.lineno) from None
    except (SyntaxError, RecursionError, MemoryError):  # Python's own limits, while compiling
        raise TemplateProblem(TOO_NESTED) from None


# Jinja's syntax errors in plain words, with what to do: (pattern of Jinja's message, the
# message; $1 is the pattern's group)
_SYNTAX_ERRORS = (
    (r"unexpected '\}'$", "unexpected '}': close {{ with }} (two braces), and {% with %}"),
    (r"unexpected '\}', expected '(.)'", "unexpected '}': a '$1' is missing before it"),
    (r"unexpected end of template, expected 'end of print statement'",
     "a {{ is not closed: end it with }}"),
    (r"Unexpected end of template\. .* needs to be closed is '(\w+)'",
     "{% $1 %} is not closed: end it with {% end$1 %}"),
    (r"expected token 'end of print statement', got '='", "'=' inside {{ … }}: compare with =="),
    (r"expected token 'end of print statement', got '(.*)'",
     "unexpected '$1' inside {{ … }}: join text with ~, and put text in quotes"),
    (r"unexpected char ['\"](.)['\"] at", "a quote ($1) that is never closed"),
    (r"Expected an expression, got 'end of print statement'",
     "an empty {{ }}: put a value in it, e.g. {{ opp.Status }}"),
    (r"Encountered unknown tag '(end\w+|else|elif)'",
     "{% $1 %} without the {% if %} it belongs to"),
    (r"Encountered unknown tag '(\w+)'",
     "{% $1 %} is not available in rule templates: " + STATEMENTS_ONLY),
    (r"unexpected 'end of template'$",
     "the expression ends too soon: something is missing after its last operator"),
    (r"chunk after expression",
     "text after the end of the expression: compare with ==, and write a when without {{ }}"),
    (r"Missing end of comment tag", "a {# is not closed: end it with #}"),
)  # fmt: skip


def _syntax_error(e: TemplateSyntaxError) -> str:
    """Jinja's syntax error in plain words (its line is the problem's place)."""
    message = (e.message or "").strip()
    for pattern, plain in _SYNTAX_ERRORS:
        found = re.search(pattern, message)
        if found:
            message = plain.replace("$1", found.group(1)) if found.groups() else plain
            break
    return f"template syntax error: {message}"


def analyse(source: str, *, expression: bool, vars: Iterable[str], has_row: bool) -> Analysis:
    """Check a template (or a ``when`` expression) without data."""
    if expression and source.lstrip().startswith(("{{", "{%")):
        return Analysis(
            problems=(
                "'when' is an expression: write it without {{ }} "
                "(e.g. when: \"opp.Status == 'Open'\")",
            )
        )
    try:
        tree = _parse(source, expression)
    except TemplateProblem as e:
        return Analysis(problems=(str(e),), problem_lines=(e.line,))
    names = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
    issues = _name_problems(tree, names)
    opp_fields, row_fields, attribute_problems = _attributes(tree, set(vars))
    issues += attribute_problems
    issues += _statement_problems(tree)
    if "row" in names and not has_row:
        line = min(n.lineno for n in tree.find_all(nodes.Name) if n.name == "row")
        issues.append(("'row' is only defined in rules that read a csv", line))
    issues += _filter_problems(tree)
    if not issues:  # what analyse passes must compile
        try:
            ENV.compile_expression(source) if expression else ENV.compile(source)
        except TemplateSyntaxError as e:
            issues.append((_syntax_error(e), e.lineno))
        except (SyntaxError, RecursionError, MemoryError):
            issues.append((TOO_NESTED, 1))
    first = dict(reversed(issues))  # each problem once, on the first line it is found
    return Analysis(
        opp_fields=frozenset(opp_fields),
        row_fields=frozenset(row_fields),
        uses_row="row" in names,
        uses_user="user" in names,
        uses_now="now" in names,
        problems=tuple(dict.fromkeys(m for m, _ in issues)),
        problem_lines=tuple(first[m] for m in dict.fromkeys(m for m, _ in issues)),
    )


def _name_problems(tree: nodes.Template, names: set[str]) -> list[Issue]:
    """Names read (``names``) that the template is not given. Names that a refused statement
    defines ({% set %}, {% for %}, a macro) are left to that statement's own problem."""
    problems: list[Issue] = []
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    if any(True for _ in tree.find_all(nodes.For)):
        assigned.add("loop")
    assigned.update(m.name for m in tree.find_all(nodes.Macro))
    lines: dict[str, int] = {}
    for n in tree.find_all(nodes.Name):
        lines.setdefault(n.name, n.lineno)
    for name in sorted(names - assigned):
        if name in _REMOVED:
            problems.append((f"'{name}' is not available in rule templates", lines[name]))
        elif name not in CONTEXT_NAMES:
            known = ", ".join(CONTEXT_NAMES)
            hint = did_you_mean(name, CONTEXT_NAMES)
            problems.append(
                (f"'{name}' is undefined{hint} (templates can use {known})", lines[name])
            )
    return problems


def _attributes(
    tree: nodes.Template, defined_vars: set[str]
) -> tuple[set[str], set[str], list[Issue]]:
    """The ``opp`` and ``row`` fields the template reads, and its private attributes and
    undefined ``vars`` and ``rule`` attributes."""
    problems: list[Issue] = []
    opp_fields: set[str] = set()
    row_fields: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        attr = _attribute(node)
        if attr is None:
            continue
        if attr.startswith("_"):
            problems.append(
                (f"access to '{attr}' is not allowed in rule templates (sandbox)", node.lineno)
            )
            continue
        base = node.node
        if isinstance(base, nodes.Name) and base.ctx == "load":
            if base.name == "opp":
                opp_fields.add(attr)
            elif base.name == "row":
                row_fields.add(attr)
            elif base.name == "vars" and attr not in defined_vars:
                known = ", ".join(sorted(defined_vars)) or "none are defined"
                problems.append((f"'vars.{attr}' is undefined (vars: {known})", node.lineno))
            elif base.name == "rule" and attr not in RULE_ATTRIBUTES:
                problems.append(
                    (f"'rule.{attr}' is undefined (rule has {', '.join(RULE_ATTRIBUTES)})",
                     node.lineno)
                )  # fmt: skip
    return opp_fields, row_fields, problems


def _statement_problems(tree: nodes.Template) -> list[Issue]:
    """Statements and string methods that rule templates do not offer."""
    problems: list[Issue] = []
    for node in tree.find_all(nodes.Stmt):
        if not isinstance(node, _ALLOWED_STATEMENTS):
            name = _STATEMENT_NAMES.get(type(node), f"{{% {type(node).__name__.lower()} %}}")
            problems.append(
                (f"{name} is not available in rule templates: {STATEMENTS_ONLY}", node.lineno)
            )
    for got in tree.find_all(nodes.Getattr):
        assert isinstance(got, nodes.Getattr)
        if got.attr in _BLOCKED_METHODS and not (
            isinstance(got.node, nodes.Name) and got.node.name in ("opp", "row", "vars")
        ):
            problems.append(
                (f"'.{got.attr}()' is not available in rule templates (use ~ and filters)",
                 got.lineno)
            )  # fmt: skip
    return problems


# What people write from other template languages, and the filter that does it here.
_FILTER_SYNONYMS = {
    "upcase": "upper", "uppercase": "upper", "downcase": "lower", "lowercase": "lower",
    "strip": "trim", "len": "length", "size": "length", "str": "string", "integer": "int",
    "number": "float", "titlecase": "title", "capitalise": "capitalize",
}  # fmt: skip


def _filter_problems(tree: nodes.Template) -> list[Issue]:
    """Filters and tests that rule templates do not offer (with the closest that they do).
    Jinja finds an unknown one when compiling, or (in a branch of an if) only when rendering:
    they are looked for here."""
    problems: list[Issue] = []
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        assert isinstance(node, nodes.Filter | nodes.Test)
        is_filter = isinstance(node, nodes.Filter)
        known = ENV.filters if is_filter else ENV.tests
        if node.name not in known:
            kind = "filter" if is_filter else "test"
            synonym = _FILTER_SYNONYMS.get(node.name.lower()) if is_filter else None
            close = did_you_mean(node.name, known, cutoff=0.75)
            hint = f" (did you mean '{synonym}'?)" if synonym else close
            problems.append(
                (f"the {kind} '{node.name}' is not available in rule templates{hint}", node.lineno)
            )
    return problems


def _attribute(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


@dataclass(frozen=True)
class Compiled:
    """A compiled template or expression, ready to render against a context."""

    source: str
    expression: bool
    _render: Callable[[Mapping[str, Any]], Any] = field(repr=False, compare=False)

    def render(self, context: Mapping[str, Any]) -> Any:
        """The value (a string for templates, any value for expressions). Raises
        TemplateProblem with a message naming what went wrong, and on which line."""
        try:
            return self._render(context)
        except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError,
                MemoryError, RecursionError) as e:  # fmt: skip
            line = 1 if self.expression else _template_line(e)
            raise TemplateProblem(_render_message(e), line) from None


def _render_message(e: BaseException) -> str:
    if isinstance(e, UndefinedError):
        found = re.fullmatch(r"'?(\w+) object'? has no (attribute|element) (.+)", e.message or "")
        if found:
            kind, what, name = found.groups()
            if kind == "dict":  # opp, row, vars: a name that is not there
                return f"template error: {name} is undefined"
            return f"template error: {_kind(kind)} has no {what} {name}"
        return f"template error: {e.message}"
    if isinstance(e, SecurityError):
        return f"not allowed in rule templates (sandbox): {e}"
    if isinstance(e, MemoryError | RecursionError):
        return f"template too costly to render ({type(e).__name__})"
    if isinstance(e, TemplateError):  # e.g. select('no-such-test')
        return f"template error: {e.message or type(e).__name__}"
    return f"template error: {runtime_error(e)}"


def _template_line(error: BaseException | None) -> int:
    """The template line an error was raised on (Jinja's tracebacks name it); else 1."""
    line, tb = 1, error.__traceback__ if error is not None else None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


_KINDS = {
    "int": "a number", "float": "a number", "Decimal": "a number", "str": "text",
    "Markup": "text", "NoneType": "an empty value", "bool": "true or false", "list": "a list",
    "tuple": "a list", "dict": "a mapping", "datetime": "a date and time", "date": "a date",
    "datetime.datetime": "a date and time", "datetime.date": "a date",
}  # fmt: skip
_EMPTY_HINT = "a field is empty for this opportunity: give it a default, e.g. (opp.X or 0)"


def _kind(name: str) -> str:
    return _KINDS.get(name, f"a {name}")


def runtime_error(e: BaseException) -> str:
    """What went wrong while a template ran, in plain words (not ``ZeroDivisionError: …``)."""
    text = str(e)
    if isinstance(e, ZeroDivisionError):
        return "division by zero (guard the divisor: {{ a / b if b else 0 }})"
    found = re.fullmatch(r"unsupported operand type\(s\) for (.+): '(.+)' and '(.+)'", text)
    if found:
        op, left, right = found.groups()
        hint = _EMPTY_HINT if "NoneType" in (left, right) else "join text with ~: a ~ b"
        return f"cannot use {op} on {_kind(left)} and {_kind(right)} ({hint})"
    if re.fullmatch(r'can only concatenate str \(not "(.+)"\) to str', text):
        return "cannot use + on text and something else (join text with ~: a ~ b)"
    found = re.fullmatch(r"'(.+)' not supported between instances of '(.+)' and '(.+)'", text)
    if found:
        op, left, right = found.groups()
        hint = f"; {_EMPTY_HINT}" if "NoneType" in (left, right) else ""
        return f"cannot compare {_kind(left)} with {_kind(right)} using {op}{hint}"
    found = re.fullmatch(r"object of type '(.+)' has no len\(\)", text)
    if found:
        return f"{_kind(found.group(1))} has no length"
    found = re.fullmatch(r"'(.+)' object is not (iterable|subscriptable)", text)
    if found:
        what = "a list" if found.group(2) == "iterable" else "indexed with [ ]"
        return f"{_kind(found.group(1))} is not {what}"
    if isinstance(e, IndexError):
        return "an index past the end of the text or list"
    if isinstance(e, ValueError) and text.startswith("user():"):
        return text
    return f"{type(e).__name__}: {text}"


def compile_template(source: str) -> Compiled:
    try:
        template = ENV.from_string(source)
    except TemplateSyntaxError as e:
        raise TemplateProblem(_syntax_error(e), e.lineno) from None

    def render(context: Mapping[str, Any]) -> str:
        # Streamed, so that output larger than any field is refused before it is built.
        out, size = [], 0
        for chunk in template.generate(**context):
            size += len(chunk)
            _checked(size)
            out.append(chunk)
        return "".join(out)

    return Compiled(source, False, render)


def compile_expression(source: str) -> Compiled:
    try:
        expression = ENV.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as e:
        raise TemplateProblem(_syntax_error(e), e.lineno) from None
    return Compiled(source, True, lambda ctx: _plain(expression(**ctx)))
