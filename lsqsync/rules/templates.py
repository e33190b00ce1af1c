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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError, TemplateAssertionError, TemplateError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

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
    """A template that cannot be compiled or rendered; the message is for the user."""


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
    """What a template refers to: the ``opp`` fields it reads and whether it uses ``row``."""

    opp_fields: frozenset[str] = frozenset()
    row_fields: frozenset[str] = frozenset()
    uses_row: bool = False
    uses_user: bool = False
    problems: tuple[str, ...] = ()


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
        raise TemplateProblem(_syntax_error(e, source, expression)) from None
    except (SyntaxError, RecursionError, MemoryError):  # Python's own limits, while compiling
        raise TemplateProblem(TOO_NESTED) from None


def _syntax_error(e: TemplateSyntaxError, source: str, expression: bool) -> str:
    where = "" if expression or source.count("\n") == 0 else f" (template line {e.lineno})"
    return f"template syntax error: {e.message}{where}"


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
        return Analysis(problems=(str(e),))
    names = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
    problems = _name_problems(tree, names)
    opp_fields, row_fields, attribute_problems = _attributes(tree, set(vars))
    problems += attribute_problems
    problems += _statement_problems(tree)
    if "row" in names and not has_row:
        problems.append("'row' is only defined in rules that read a csv")
    problems += _filter_problems(tree)
    if not problems:  # what analyse passes must compile
        try:
            ENV.compile_expression(source) if expression else ENV.compile(source)
        except TemplateSyntaxError as e:
            problems.append(_syntax_error(e, source, expression))
        except (SyntaxError, RecursionError, MemoryError):
            problems.append(TOO_NESTED)
    return Analysis(
        opp_fields=frozenset(opp_fields),
        row_fields=frozenset(row_fields),
        uses_row="row" in names,
        uses_user="user" in names,
        problems=tuple(dict.fromkeys(problems)),
    )


def _name_problems(tree: nodes.Template, names: set[str]) -> list[str]:
    """Names read (``names``) that the template is not given. Names that a refused statement
    defines ({% set %}, {% for %}, a macro) are left to that statement's own problem."""
    problems = []
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    if any(True for _ in tree.find_all(nodes.For)):
        assigned.add("loop")
    assigned.update(m.name for m in tree.find_all(nodes.Macro))
    for name in sorted(names - assigned):
        if name in _REMOVED:
            problems.append(f"'{name}' is not available in rule templates")
        elif name not in CONTEXT_NAMES:
            problems.append(f"'{name}' is undefined (templates can use {', '.join(CONTEXT_NAMES)})")
    return problems


def _attributes(
    tree: nodes.Template, defined_vars: set[str]
) -> tuple[set[str], set[str], list[str]]:
    """The ``opp`` and ``row`` fields the template reads, and its private attributes and
    undefined ``vars`` and ``rule`` attributes."""
    problems = []
    opp_fields: set[str] = set()
    row_fields: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        attr = _attribute(node)
        if attr is None:
            continue
        if attr.startswith("_"):
            problems.append(f"access to '{attr}' is not allowed in rule templates (sandbox)")
            continue
        base = node.node
        if isinstance(base, nodes.Name) and base.ctx == "load":
            if base.name == "opp":
                opp_fields.add(attr)
            elif base.name == "row":
                row_fields.add(attr)
            elif base.name == "vars" and attr not in defined_vars:
                known = ", ".join(sorted(defined_vars)) or "none are defined"
                problems.append(f"'vars.{attr}' is undefined (vars: {known})")
            elif base.name == "rule" and attr not in RULE_ATTRIBUTES:
                problems.append(
                    f"'rule.{attr}' is undefined (rule has {', '.join(RULE_ATTRIBUTES)})"
                )
    return opp_fields, row_fields, problems


def _statement_problems(tree: nodes.Template) -> list[str]:
    """Statements and string methods that rule templates do not offer."""
    problems = []
    for node in tree.find_all(nodes.Stmt):
        if not isinstance(node, _ALLOWED_STATEMENTS):
            name = _STATEMENT_NAMES.get(type(node), f"{{% {type(node).__name__.lower()} %}}")
            problems.append(f"{name} is not available in rule templates: {STATEMENTS_ONLY}")
    for got in tree.find_all(nodes.Getattr):
        assert isinstance(got, nodes.Getattr)
        if got.attr in _BLOCKED_METHODS and not (
            isinstance(got.node, nodes.Name) and got.node.name in ("opp", "row", "vars")
        ):
            problems.append(
                f"'.{got.attr}()' is not available in rule templates (use ~ and filters)"
            )
    return problems


def _filter_problems(tree: nodes.Template) -> list[str]:
    """Filters and tests that rule templates do not offer. Jinja finds an unknown one when
    compiling, or (in a branch of an if) only when rendering: they are looked for here."""
    problems = []
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        assert isinstance(node, nodes.Filter | nodes.Test)
        is_filter = isinstance(node, nodes.Filter)
        if node.name not in (ENV.filters if is_filter else ENV.tests):
            kind = "filter" if is_filter else "test"
            problems.append(f"the {kind} '{node.name}' is not available in rule templates")
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
        TemplateProblem with a message naming what went wrong."""
        try:
            return self._render(context)
        except UndefinedError as e:
            raise TemplateProblem(f"template error: {e.message}") from None
        except SecurityError as e:
            raise TemplateProblem(f"not allowed in rule templates (sandbox): {e}") from None
        except (ArithmeticError, TypeError, ValueError, LookupError) as e:
            raise TemplateProblem(f"template error: {type(e).__name__}: {e}") from None
        except (MemoryError, RecursionError) as e:
            raise TemplateProblem(f"template too costly to render ({type(e).__name__})") from None
        except TemplateError as e:  # e.g. select('no-such-test')
            raise TemplateProblem(f"template error: {e.message or type(e).__name__}") from None


def compile_template(source: str) -> Compiled:
    try:
        template = ENV.from_string(source)
    except TemplateSyntaxError as e:
        raise TemplateProblem(f"template syntax error: {e.message}") from None

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
        raise TemplateProblem(f"template syntax error: {e.message}") from None
    return Compiled(source, True, lambda ctx: _plain(expression(**ctx)))
