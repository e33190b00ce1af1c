"""Rule templates and ``when`` expressions: what static analysis finds without data, what they
render to, and the sandbox: every escape fails, at validate time where the syntax tree shows it,
else when rendering, always as a TemplateProblem with a clear message."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Mapping
from typing import Any

import pytest

from lsqsync.rules import templates
from lsqsync.rules.templates import (
    ENV,
    STATEMENTS_ONLY,
    TOO_NESTED,
    Analysis,
    TemplateProblem,
    analyse,
    compile_expression,
    compile_template,
    is_template,
)

OPP = {
    "Status": "Open",
    "mx_Custom_2": "Proposal",
    "mx_Custom_6": 250000,
    "mx_Custom_13": False,
    "Owner": "george.bailey@example.com",
}
CONTEXT: dict[str, Any] = {
    "opp": OPP,
    "row": {"opportunity_id": "opp-1", "new_owner": "mary.hatch@example.com", "reason": "leave"},
    "vars": {"region": "APAC", "threshold": 100000},
    "now": "2024-06-30 18:00:00",
    "rule": {"name": "close-signed-deals", "description": "", "opportunity_type": 12003},
    "user": lambda email: f"user:{email}",
}
VARS = ("region", "threshold")


UNCLOSED = "template syntax error: a {{ is not closed: end it with }}"
NO_SHOUT = "the filter 'shout' is not available in rule templates"


def _static(source: str, expression: bool = False, has_row: bool = True) -> tuple[str, ...]:
    return analyse(source, expression=expression, vars=VARS, has_row=has_row).problems


def _render_problem(source: str, context: Mapping[str, Any] = CONTEXT) -> str:
    with pytest.raises(TemplateProblem) as e:
        compile_template(source).render(context)
    return str(e.value)


# -- analysis ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expression", "expected"),
    [
        ("Closed", False, Analysis()),
        (
            "{{ opp.Status }} {{ opp['mx_Custom_2'] }} {{ opp.mx_Custom_6 | int }}",
            False,
            Analysis(opp_fields=frozenset({"Status", "mx_Custom_2", "mx_Custom_6"})),
        ),
        (
            "{{ row.new_owner }}{{ row['reason'] }}",
            False,
            Analysis(row_fields=frozenset({"new_owner", "reason"}), uses_row=True),
        ),
        ("{{ user(row.new_owner) }}", False,
         Analysis(row_fields=frozenset({"new_owner"}), uses_row=True, uses_user=True)),
        # Only the field is read; what is done with its value is not a field.
        ("{{ opp.mx_Custom_9.upper() }}", False, Analysis(opp_fields=frozenset({"mx_Custom_9"}))),
        ("opp.Status == 'Open' and opp.mx_Custom_6 > vars.threshold", True,
         Analysis(opp_fields=frozenset({"Status", "mx_Custom_6"}))),
        # A computed key cannot be known without data.
        ("{{ opp['Sta' ~ 'tus'] }}", False, Analysis()),
        ("{{ rule.name }} {{ rule.description }} {{ rule.opportunity_type }} {{ now }}", False,
         Analysis(uses_now=True)),
    ],
)  # fmt: skip
def test_analysis_finds_the_fields_a_template_reads(
    source: str, expression: bool, expected: Analysis
) -> None:
    assert analyse(source, expression=expression, vars=VARS, has_row=True) == expected


@pytest.mark.parametrize(
    ("source", "expression", "has_row", "problems"),
    [
        ("{{ today }}", False, True,
         ("'today' is undefined (templates can use opp, row, vars, now, rule, user)",)),
        ("{{ vars.team }}", False, True, ("'vars.team' is undefined (vars: region, threshold)",)),
        ("{{ rule.id }}", False, True,
         ("'rule.id' is undefined (rule has name, description, opportunity_type)",)),
        ("{{ row.a }}", False, False, ("'row' is only defined in rules that read a csv",)),
        ("row.a == 1", True, False, ("'row' is only defined in rules that read a csv",)),
        ("{{ opp.Status ", False, True, (UNCLOSED,)),
        ("{{ 1 }}\n{{ 2 }}\n{{ opp.Status ", False, True, (UNCLOSED,)),
        ("opp.Status ==", True, True,
         ("template syntax error: the expression ends too soon: something is missing after its "
          "last operator",)),
        ("opp.Status == 'Open' }}", True, True,
         ("template syntax error: text after the end of the expression: compare with ==, and "
          "write a when without {{ }}",)),
        ("{{ opp | shout }}", False, True, (NO_SHOUT,)),
        ("opp.Status | shout", True, True, (NO_SHOUT,)),
        ("{% if opp.X %}{{ opp.X | shout }}{% endif %}", False, True, (NO_SHOUT,)),
        ("{{ 1 if opp.X is open else 2 }}", False, True,
         ("the test 'open' is not available in rule templates",)),
        ("{% for loop in [1] %}{% endfor %}", False, True,
         (f"{{% for %}} is not available in rule templates: {STATEMENTS_ONLY}",)),
        # A template is an expression with branches: it defines no names of its own.
        ("{% set x = 1 %}{% for y in [x] %}{{ loop.index }}{{ y }}{% endfor %}", False, True,
         (f"{{% set %}} is not available in rule templates: {STATEMENTS_ONLY}",
          f"{{% for %}} is not available in rule templates: {STATEMENTS_ONLY}")),
        ("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1) }}", False, True,
         (f"{{% macro %}} is not available in rule templates: {STATEMENTS_ONLY}",)),
        ("{% with a = 1 %}{{ a }}{% endwith %}{% set b %}x{% endset %}{{ b }}", False, True,
         (f"{{% with %}} is not available in rule templates: {STATEMENTS_ONLY}",
          f"{{% set %}}…{{% endset %}} is not available in rule templates: {STATEMENTS_ONLY}")),
        ("{% filter upper %}x{% endfilter %}{% call opp.x() %}{% endcall %}", False, True,
         (f"{{% filter %}} is not available in rule templates: {STATEMENTS_ONLY}",
          f"{{% call %}} is not available in rule templates: {STATEMENTS_ONLY}")),
    ],
)  # fmt: skip
def test_analysis_problems(
    source: str, expression: bool, has_row: bool, problems: tuple[str, ...]
) -> None:
    assert _static(source, expression, has_row) == problems


def test_everything_analysis_passes_compiles() -> None:
    for source in ("{{ opp.Status }}", "{% if opp.X %}{{ opp.X }}{% else %}-{% endif %}"):
        assert (_static(source), compile_template(source).source) == ((), source)
    assert (_static("opp.Status", True), compile_expression("opp.Status").expression) == ((), True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Won", False), ("{{ x }}", True), ("{% if %}", True), ("{# note #}", True), ("{ x }", False)],
)
def test_is_template(text: str, expected: bool) -> None:
    assert is_template(text) is expected


# -- rendering -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("opp.Status == 'Open'", True),
        ("opp.mx_Custom_2 in ['Negotiation', 'Proposal'] and vars.region == 'APAC'", True),
        ("opp.mx_Custom_6 > vars.threshold", True),
        ("opp.mx_Custom_6 < 1000 or opp.mx_Custom_13", False),
        ("not opp.mx_Custom_13", True),
        ("row.reason != ''", True),
        ("rule.opportunity_type == 12003", True),
        ("opp.Status", "Open"),
        ("opp.mx_Custom_6 // 1000", 250),
    ],
)
def test_when_expressions_render_to_values(source: str, value: object) -> None:
    rendered = compile_expression(source).render(CONTEXT)
    assert (rendered, type(rendered)) == (value, type(value))


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("Closed by rule {{ rule.name }} (was {{ opp.Status }})",
         "Closed by rule close-signed-deals (was Open)"),
        ("{{ now }}", "2024-06-30 18:00:00"),
        ("{{ user(row.new_owner) }}", "user:mary.hatch@example.com"),
        ("{{ opp.mx_Custom_6 }}", "250000"),
        ("{{ vars.region | lower }}-{{ row.reason | title }}", "apac-Leave"),
        ("{% if opp.mx_Custom_6 > vars.threshold %}High{% else %}Low{% endif %}", "High"),
        ("{{ 'x' * 3 }}{{ 2 ** 10 }}", "xxx1024"),
    ],
)  # fmt: skip
def test_templates_render_to_text(source: str, text: str) -> None:
    assert compile_template(source).render(CONTEXT) == text


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ opp.Nope }}", "template error: 'Nope' is undefined"),
        ("{{ vars.nope }}", "template error: 'nope' is undefined"),
        ("{{ missing }}", "template error: 'missing' is undefined"),
        ("{{ opp.Status + 1 }}",
         "template error: cannot use + on text and something else (join text with ~: a ~ b)"),
        ("{{ 1 / 0 }}",
         "template error: division by zero (guard the divisor: {{ a / b if b else 0 }})"),
        ("{{ opp.Status | int(strict) }}", "template error: 'strict' is undefined"),
        ("{{ [1, 2] | select('nosuch') | list }}", "template error: No test named 'nosuch'."),
        ("{{ [1] | map('shout') | list }}", "template error: No filter named 'shout'."),
        ("{% include 'x' %}",
         "template error: TypeError: no loader for this environment specified"),
    ],
)  # fmt: skip
def test_render_problems(source: str, message: str) -> None:
    assert _render_problem(source) == message


def test_compile_reports_syntax_errors() -> None:
    with pytest.raises(TemplateProblem) as template:
        compile_template("{{ x")
    with pytest.raises(TemplateProblem) as expression:
        compile_expression("x ==")
    assert (str(template.value), str(expression.value)) == (
        "template syntax error: a {{ is not closed: end it with }}",
        "template syntax error: the expression ends too soon: something is missing after its "
        "last operator",
    )


# -- the sandbox ---------------------------------------------------------------------------------

SANDBOX = "not allowed in rule templates (sandbox): "
UNSAFE_CLASS = SANDBOX + "access to attribute '__class__' of 'dict' object is unsafe."


@pytest.mark.parametrize(
    ("source", "problems"),
    [
        ("{{ opp.__class__ }}",
         ("access to '__class__' is not allowed in rule templates (sandbox)",)),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}",
         ("access to '__subclasses__' is not allowed in rule templates (sandbox)",
          "access to '__mro__' is not allowed in rule templates (sandbox)",
          "access to '__class__' is not allowed in rule templates (sandbox)")),
        ("{{ config }}", ("'config' is not available in rule templates",)),
        ("{{ request.environ }}", ("'request' is not available in rule templates",)),
        ("{{ lipsum.__globals__.os.popen('id').read() }}",
         ("'lipsum' is not available in rule templates",
          "access to '__globals__' is not allowed in rule templates (sandbox)")),
        ("{{ cycler.__init__.__globals__.os }}",
         ("'cycler' is not available in rule templates",
          "access to '__globals__' is not allowed in rule templates (sandbox)",
          "access to '__init__' is not allowed in rule templates (sandbox)")),
        ("{{ joiner() }}", ("'joiner' is not available in rule templates",)),
        ("{{ range(10 ** 9) | list }}", ("'range' is not available in rule templates",)),
        ("{{ self }}", ("'self' is not available in rule templates",)),
        ("{{ self._TemplateReference__context }}",
         ("'self' is not available in rule templates",
          "access to '_TemplateReference__context' is not allowed in rule templates (sandbox)")),
        ("{{ opp | attr('__class__') }}",
         ("the filter 'attr' is not available in rule templates",)),
        ("{{ opp['__class__'] }}",
         ("access to '__class__' is not allowed in rule templates (sandbox)",)),
        ("{{ (opp if opp else row).__class__ }}",
         ("access to '__class__' is not allowed in rule templates (sandbox)",)),
        ("{{ namespace(n=0).n }}", ("'namespace' is not available in rule templates",)),
        ("{{ dict(a=1) }}", ("'dict' is not available in rule templates",)),
        ("{{ user.__globals__ }}",
         ("access to '__globals__' is not allowed in rule templates (sandbox)",)),
        ("{{ opp.items.__self__ }}",
         ("access to '__self__' is not allowed in rule templates (sandbox)",)),
        ("{{ opp | format('x') }}", ("the filter 'format' is not available in rule templates",)),
        ("{{ 'x' | indent(10 ** 9) }}",
         ("the filter 'indent' is not available in rule templates",)),
        ("{{ 'x' | center(10 ** 9) }}",
         ("the filter 'center' is not available in rule templates",)),
        ("{{ opp | xmlattr }}", ("the filter 'xmlattr' is not available in rule templates",)),
    ],
)  # fmt: skip
def test_escapes_are_found_without_data(source: str, problems: tuple[str, ...]) -> None:
    assert _static(source) == problems


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ opp.__class__ }}", UNSAFE_CLASS),
        ("{{ config }}", "template error: 'config' is undefined"),
        ("{{ lipsum }}", "template error: 'lipsum' is undefined"),
        ("{{ range(10) }}", "template error: 'range' is undefined"),
        ("{{ namespace() }}", "template error: 'namespace' is undefined"),
        ("{{ dict() }}", "template error: 'dict' is undefined"),
        ("{{ cycler.__init__ }}",
         SANDBOX + "access to attribute '__init__' of 'StrictUndefined' object is unsafe."),
        ("{{ opp | attr('__class__') }}", "template syntax error: No filter named 'attr'."),
    ],
)  # fmt: skip
def test_escapes_also_fail_when_rendered(source: str, message: str) -> None:
    assert _render_problem(source) == message


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # Sizes: * and ** are capped.
        ("{{ 'x' * 10 ** 9 }}", SANDBOX + "a result longer than 100,000 is not allowed"),
        ("{{ 10 ** 9 * 'x' }}", SANDBOX + "a result longer than 100,000 is not allowed"),
        ("{{ [0] * 10 ** 6 }}", SANDBOX + "a result longer than 100,000 is not allowed"),
        ("{{ ('x' * 1000) * 1000 }}", SANDBOX + "a result longer than 100,000 is not allowed"),
        ("{{ 2 ** 10000 }}", SANDBOX + "exponent 10000 is too large"),
        ("{{ 2 ** -10000 }}", SANDBOX + "exponent -10000 is too large"),
        ("{{ ((10 ** 1000) ** 1000) ** 1000 }}",
         SANDBOX + "a number of more than 100,000 digits is not allowed"),
        ("{{ (10 ** 1000) ** 101 }}",
         SANDBOX + "a number of more than 100,000 digits is not allowed"),
        # Private attributes by a computed name: only the value shows it.
        ("{{ opp[['__class__'][0]] }}",
         UNSAFE_CLASS),
        ("{{ opp['__cla' ~ 'ss__'] }}",
         UNSAFE_CLASS),
        ("{{ opp[('__class__', 1)[0]] }}",
         UNSAFE_CLASS),
        ("{{ opp | selectattr('__class__') | list }}",
         SANDBOX + "access to attribute '__class__' of 'str' object is unsafe."),
        ("{{ [opp] | map('attr', '__class__') | list }}",
         "template error: No filter named 'attr'."),
        # Templates cannot change what they are given (what the next rule would see).
        ("{{ row.update({'reason': 'x'}) }}",
         SANDBOX + "access to attribute 'update' of 'dict' object is unsafe."),
        ("{{ opp.pop('Status') }}",
         SANDBOX + "access to attribute 'pop' of 'dict' object is unsafe."),
        ("{{ [].append(1) }}",
         SANDBOX + "access to attribute 'append' of 'list' object is unsafe."),
    ],
)  # fmt: skip
def test_what_only_data_shows_fails_when_rendered(source: str, message: str) -> None:
    assert (_static(source), _render_problem(source)) == ((), message)


@pytest.mark.parametrize(
    ("source", "static", "rendered"),
    [
        # Format strings reach attributes, and build huge strings: refused before rendering,
        # and by the sandbox if it ever came to that.
        ("{{ '{0.__class__}'.format(opp) }}",
         "'.format()' is not available in rule templates (use ~ and filters)", UNSAFE_CLASS),
        ("{{ '{x.__class__}'.format_map({'x': opp}) }}",
         "'.format_map()' is not available in rule templates (use ~ and filters)", UNSAFE_CLASS),
        ("{{ 'x'.ljust(3000000000) }}",
         "'.ljust()' is not available in rule templates (use ~ and filters)",
         SANDBOX + "access to attribute 'ljust' of 'str' object is unsafe."),
        ("{{ ('x' * 100000).replace('x', 'x' * 100000) }}",
         "'.replace()' is not available in rule templates (use ~ and filters)",
         SANDBOX + "access to attribute 'replace' of 'str' object is unsafe."),
    ],
)  # fmt: skip
def test_string_builders_are_refused(source: str, static: str, rendered: str) -> None:
    assert (_static(source), _render_problem(source)) == ((static,), rendered)


@pytest.mark.parametrize(
    "source",
    [
        "{{ '%*s' % (1000000000, 'x') }}",
        "{{ (['x' * 100000] * 100000) | join }}",
        "{{ ('x' * 100000) | replace('x', 'x' * 100000) }}",
        "{{ 'y' * 60000 }}{{ 'y' * 60000 }}",
    ],
)
def test_output_that_would_grow_past_any_field_is_refused_while_rendering(source: str) -> None:
    problem = _render_problem(source)
    assert problem in (
        SANDBOX + "a result longer than 100,000 is not allowed",
        SANDBOX + "%-formatting of text is not available; use ~ and filters",
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{% include 'other' %}", "{% include %} is not available in rule templates"),
        ("{% import 'm' as m %}", "{% import %} is not available in rule templates"),
        ("{% for a in 'xy' %}{% for b in 'xy' %}{% endfor %}{% endfor %}",
         "{% for %} is not available in rule templates"),
        ("{% set a = 'x' * 100000 %}{% set a = a ~ a %}{{ a }}",
         "{% set %} is not available in rule templates"),
        ("{% set big %}{{ 'x' * 100000 }}{% endset %}{{ big }}",
         "{% set %}…{% endset %} is not available in rule templates"),
        ("{% macro m(n) %}{% for i in n %}{% for j in n %}{% endfor %}{% endfor %}{% endmacro %}",
         "{% macro %} is not available in rule templates"),
    ],
)  # fmt: skip
def test_statements_a_value_never_needs_are_refused(source: str, message: str) -> None:
    assert f"{message}: {STATEMENTS_ONLY}" in _static(source)


def test_rendering_leaves_the_context_as_it_was() -> None:
    context = {"opp": {"Status": "Open"}, "vars": {"region": "APAC"}}
    for source in ("{{ opp.update({'Status': 'Won'}) }}", "{{ vars.clear() }}"):
        with pytest.raises(TemplateProblem):
            compile_template(source).render(context)
    assert context == {"opp": {"Status": "Open"}, "vars": {"region": "APAC"}}


def test_the_environment_has_no_globals_and_only_the_listed_filters() -> None:
    assert (ENV.globals, sorted(ENV.filters)) == ({}, sorted(templates._FILTERS))
    assert not {"attr", "format", "indent", "center", "wordwrap", "xmlattr", "tojson", "pprint",
                "urlize", "batch", "slice", "filesizeformat"} & set(ENV.filters)  # fmt: skip


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ user }}",
         "template error: a function is not a value (call it: user('a@example.com'))"),
        ("{{ opp.items }}",
         "template error: a function is not a value (call it: user('a@example.com'))"),
        ("{{ [now] | map(attribute='__class__') | list }}",
         SANDBOX + "access to attribute '__class__' of 'str' object is unsafe."),
        ("{{ [opp.nope] }}", "template error: 'nope' is undefined"),
    ],
)  # fmt: skip
def test_a_function_or_an_undefined_value_never_reaches_the_output(
    source: str, message: str
) -> None:
    assert _render_problem(source) == message


def test_an_undefined_when_is_a_problem_not_a_crash() -> None:
    with pytest.raises(TemplateProblem) as caught:
        compile_expression("opp.Status.nope").render(CONTEXT)
    assert str(caught.value) == "template error: text has no attribute 'nope'"


def test_the_known_cost_bypasses_end_at_once() -> None:
    """Each of these once took seconds to minutes of CPU or gigabytes of memory for one
    opportunity; now validate refuses them, or rendering stops at the first oversized value."""
    bypasses = [
        "{% set a = 'x' * 100000 %}" + "{% set a = a ~ a %}" * 16 + "{{ a }}",
        "{% set big %}{{ 'x' * 100000 }}{{ 'x' * 100000 }}{% endset %}{{ big }}",
        "{% set a = 10 ** 1000 %}" + "{% set a = a * a %}" * 16 + "{{ a }}",
        "{% macro m() %}{% for i in 'x' * 10000 %}{% endfor %}{% endmacro %}"
        "{% for j in 'x' * 10000 %}{{ m() }}{% endfor %}",
    ]
    for source in bypasses:
        started = time.process_time()
        assert any("is not available in rule templates" in p for p in _static(source))
        assert time.process_time() - started < 1.0
    assert _static("{{ " + " * ".join(["10"] * 300) + " }}") == (TOO_NESTED,)
    started = time.process_time()
    growing = [
        "{{ ('x' * 100000) + ('x' * 100000) }}",
        "{{ ((10 ** 1000) ** 60) * ((10 ** 1000) ** 60) }}",  # int * int, each within the cap
    ]
    tracemalloc.start()
    for source in growing:
        assert _render_problem(source).startswith(SANDBOX)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.process_time() - started < 1.0
    assert peak < 100 * 2**20  # the 410 MB and 2.4 GB strings of before are never built
    # Too deep for Python to compile: a problem, not a crash.
    assert _static("{{ " + " * ".join(["10"] * 300) + " }}") == (TOO_NESTED,)


# -- errors in plain words, on their line ----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("{{ opp.Status }", 1,
         "template syntax error: unexpected '}': close {{ with }} (two braces), and {% with %}"),
        ("Note:\n{{ opp.Status }", 2,
         "template syntax error: unexpected '}': close {{ with }} (two braces), and {% with %}"),
        ("{{ opp.x[0 }}", 1, "template syntax error: unexpected '}': a ']' is missing before it"),
        ("{% if opp.X %}a", 1, "template syntax error: {% if %} is not closed: end it with "
         "{% endif %}"),
        ("{{ opp.Status = 'Won' }}", 1,
         "template syntax error: '=' inside {{ … }}: compare with =="),
        ("{{ opp.Status opp.X }}", 1, "template syntax error: unexpected 'opp' inside {{ … }}: "
         "join text with ~, and put text in quotes"),
        ("{{ 'Won }}", 1, "template syntax error: a quote (') that is never closed"),
        ("{{ }}", 1, "template syntax error: an empty {{ }}: put a value in it, e.g. "
         "{{ opp.Status }}"),
        ("a\nb\n{% endif %}", 3,
         "template syntax error: {% endif %} without the {% if %} it belongs to"),
        ("{% upper %}", 1, "template syntax error: {% upper %} is not available in rule "
         f"templates: {STATEMENTS_ONLY}"),
        ("{# note", 1, "template syntax error: a {# is not closed: end it with #}"),
        ("{{ opp.X | upcase }}", 1,
         "the filter 'upcase' is not available in rule templates (did you mean 'upper'?)"),
        ("{{ opp.X | lenght }}", 1,
         "the filter 'lenght' is not available in rule templates (did you mean 'length'?)"),
        ("a\n{{ 1 if opp.X is evn else 2 }}", 2,
         "the test 'evn' is not available in rule templates (did you mean 'even'?)"),
        ("{{ usr('a@example.com') }}", 1, "'usr' is undefined (did you mean 'user'?) "
         "(templates can use opp, row, vars, now, rule, user)"),
    ],
)  # fmt: skip
def test_syntax_errors_say_what_to_do_on_their_line(source: str, line: int, message: str) -> None:
    analysis = analyse(source, expression=False, vars=VARS, has_row=True)
    assert analysis.located == [(message, line)]


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("a\nb {{ opp.mx_Custom_6 / 0 }}", 2,
         "template error: division by zero (guard the divisor: {{ a / b if b else 0 }})"),
        ("{{ opp.mx_Custom_6 + 'x' }}", 1,
         "template error: cannot use + on a number and text (join text with ~: a ~ b)"),
        ("{{ opp.empty + 1 }}", 1, "template error: cannot use + on an empty value and a number "
         "(a field is empty for this opportunity: give it a default, e.g. (opp.X or 0))"),
        ("{{ opp.empty < 3 }}", 1, "template error: cannot compare an empty value with a "
         "number using <; a field is empty for this opportunity: give it a default, e.g. "
         "(opp.X or 0)"),
        ("{{ opp.empty | length }}", 1, "template error: an empty value has no length"),
        ("{{ opp.mx_Custom_6[0] }}", 1, "template error: a number has no element 0"),
        ("{{ opp.mx_Custom_6 | join(',') }}", 1, "template error: a number is not a list"),
    ],
)  # fmt: skip
def test_runtime_errors_in_plain_words_on_their_line(source: str, line: int, message: str) -> None:
    context = {**CONTEXT, "opp": {"mx_Custom_6": 150000, "empty": None}}
    with pytest.raises(TemplateProblem) as caught:
        compile_template(source).render(context)
    assert (str(caught.value), caught.value.line) == (message, line)
