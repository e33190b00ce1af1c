"""The command line. Commands parse options, call one core function and map the result to an
exit code; ``main`` is the one boundary where errors become messages and exit codes:

0 success · 1 error (bad input, API refused; usage errors too; for ``apply``: nothing was sent)
· 2 ``plan --detailed-exitcode`` found changes · 3 ``apply`` finished with failed, stale, not
sent, not persisted or unknown records · 130 interrupted.

Every command's options are declared here, in one file, so that ``--help``, completion and the
command reference in docs/ (a test compares them) have one source; the module is long because the
options are, while each command's body is a few lines. The emulator's commands live in
``lsqsync.emulator.cli``.

Commands import what they run inside their body: ``lsqsync --help`` and shell completion then
load click and this module only (0.13 s, against 0.31 s with every command's modules; measured
with ``python -c 'import ...'`` on a 2-core machine).
"""

from __future__ import annotations

import io
import logging
import math
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar

import click

from lsqsync import __version__, resources
from lsqsync.emulator.cli import emulator
from lsqsync.errors import LsqsyncError

if TYPE_CHECKING:
    from lsqsync.config import Config
    from lsqsync.lsq import LsqClient
    from lsqsync.plan.command import PlanRequest
    from lsqsync.plan.model import Plan
    from lsqsync.state.store import StateFile

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130


@dataclass
class Invocation:
    """What the global options said, for ``main`` (which runs outside click's context)."""

    debug: bool = False


class Finite(click.FloatRange):
    """A number in a range, and finite: NaN passes every comparison a range makes (and
    ``--lock-timeout nan`` waited forever)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def short_help(command: click.Command) -> str:
    """What a command's line in its group's --help says: its ``short_help``, else the first
    sentence of its help — whole, never cut at a width with "..." as click would."""
    if command.short_help:
        return command.short_help
    paragraph = (command.help or "").split("\n\n")[0]
    text = " ".join(paragraph.split()).replace("\b ", "")
    found = re.search(r"(?<=[.!?])\s", text)
    return text[: found.start()] if found else text


class Group(click.Group):
    """A group whose --help lists each command with a whole sentence (wrapped, not cut); its
    subgroups are of this class too."""

    group_class = type

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [
            (name, short_help(command))
            for name in self.list_commands(ctx)
            if (command := self.get_command(ctx, name)) is not None and not command.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _version_message() -> str:
    return f"%(prog)s %(version)s ({resources.versions_text()})"


@click.group(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="lsqsync", message=_version_message())
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show tracebacks for unexpected errors.")
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write every HTTP exchange with LeadSquared to FILE, one JSON line each (keys "
    "redacted, mask: fields masked; it holds CRM data: mode 0600).",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool, trace_path: Path | None) -> None:
    """lsqsync: declarative, reviewable bulk changes to LeadSquared opportunities."""
    ctx.ensure_object(Invocation).debug = debug
    level = logging.DEBUG if verbose > 1 or debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    if trace_path is not None:
        from lsqsync.lsq import trace

        tracing = trace.TraceFile(trace_path)
        trace.install(tracing)

        def stop() -> None:
            trace.install(None)
            tracing.close()

        ctx.call_on_close(stop)


cli.add_command(emulator)


# -- reading LeadSquared --------------------------------------------------------------------

CONFIG = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="lsqsync.yml, or its folder (default: ./lsqsync.yml).",
)


def _format(*choices: str, help: str | None = None) -> Callable[[F], F]:
    return click.option(
        "--format", "fmt", type=click.Choice(choices), default="text", show_default=True, help=help
    )


FORMAT = _format("text", "json")


def _client(config_path: Path | None) -> LsqClient:
    from lsqsync.config import optional_config
    from lsqsync.state.location import open_client

    return open_client(optional_config(config_path))


@cli.command()
@CONFIG
def whoami(config_path: Path | None) -> None:
    """Check the host and keys: print the API user and the account's API host."""
    from lsqsync import browse

    with _client(config_path) as client:
        click.echo(browse.whoami(client), nl=False)


@cli.command()
@FORMAT
@CONFIG
def doctor(fmt: Literal["text", "json"], config_path: Path | None) -> None:
    """Check, without changing anything, what lsqsync needs from the account: host and TLS,
    keys, role, every endpoint, data types, clock, rate limit, state. Exit 1 if a check fails."""
    from lsqsync import doctor as diagnosis

    checks = diagnosis.doctor(config_path)
    click.echo(diagnosis.render(checks, fmt), nl=False)
    raise SystemExit(EXIT_ERROR if diagnosis.failed(checks) else EXIT_OK)


@cli.group()
def types() -> None:
    """Opportunity types and their fields."""


@types.command("show")
@click.argument("code", type=int)
@FORMAT
@CONFIG
def types_show(code: int, fmt: Literal["text", "json"], config_path: Path | None) -> None:
    """The fields of opportunity type CODE: schema names, data types, flags, options."""
    from lsqsync import browse

    with _client(config_path) as client:
        click.echo(browse.type_fields(client, code, fmt), nl=False)


@types.command("pull")
@click.argument("codes", metavar="[CODE]...", nargs=-1, type=click.IntRange(1))
@CONFIG
def types_pull(codes: tuple[int, ...], config_path: Path | None) -> None:
    """Write each opportunity type's metadata to types/CODE.json: the reviewed snapshot of the
    account's fields that validate checks offline and lsqsync test plans against.

    Without CODE: the types the rules use and those types/ already has."""
    from lsqsync.clock import utcnow
    from lsqsync.config import load_config
    from lsqsync.rules import typefiles
    from lsqsync.rules.project import load_project
    from lsqsync.state.location import open_client

    config = load_config(config_path)
    if not codes:
        rules = load_project(config).rules
        codes = tuple(typefiles.wanted_codes(config, (r.opportunity_type for r in rules)))
    with open_client(config) as client:
        pulled = typefiles.pull(client, config, sorted(set(codes)), utcnow())
    for p in pulled:
        click.echo(f"{p.file}  {p.name}: {p.fields} fields ({p.status})")


@cli.group()
def opportunities() -> None:
    """Read opportunities."""


@opportunities.command("list")
@click.option("--type", "code", type=int, required=True, help="The OpportunityEventCode.")
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="FIELD=VALUE|FIELD=OP:VALUE",
    help="Only opportunities meeting this condition, as in a rule's where (repeatable: all "
    "must hold). OP: eq, ne, in, not_in, gt, gte, lt, lte, contains, startswith, empty; in "
    "and not_in take comma-separated values.",
)
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option(
    "--columns",
    help="Comma-separated fields, by schema or display name.  [default: Status,Owner,ModifiedOn "
    "and the --where fields]",
)
@_format("text", "json", "csv", help="csv: for a spreadsheet.")
@CONFIG
def opportunities_list(
    code: int,
    where: tuple[str, ...],
    limit: int,
    columns: str | None,
    fmt: Literal["text", "json", "csv"],
    config_path: Path | None,
) -> None:
    """The first opportunities of a type, oldest first, that meet every --where condition
    (Owner shown as an email)."""
    from lsqsync import browse
    from lsqsync.config import optional_config
    from lsqsync.rules.project import condition_from_text
    from lsqsync.state.location import open_client

    conditions = [condition_from_text(text) for text in where]
    wanted = [c.strip() for c in (columns or "").split(",") if c.strip()]
    config = optional_config(config_path)
    mask = config.mask if config else ()
    with open_client(config) as client:
        listed = browse.list_opportunities(client, code, wanted, limit, fmt, mask, conditions)
    click.echo(listed, nl=False)


@cli.group()
def users() -> None:
    """The account's users."""


@users.command("list")
@_format("text", "json", "csv", help="csv: for a spreadsheet.")
@CONFIG
def users_list(fmt: Literal["text", "json", "csv"], config_path: Path | None) -> None:
    """Every user, active and inactive: email, name, role, status, id. A User field and
    user() take an active user's email or id."""
    from lsqsync import browse

    with _client(config_path) as client:
        click.echo(browse.list_users(client, fmt), nl=False)


# -- rules ------------------------------------------------------------------------------------

VAR = click.option(
    "--var",
    "var_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a variable of lsqsync.yml (repeatable).",
)
VAR_FILE = click.option(
    "--var-file",
    "var_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A YAML mapping of variables (repeatable; --var wins).",
)


@cli.command()
@CONFIG
@VAR
@VAR_FILE
@_format("text", "json", "github", help="github: workflow-command annotations for pull requests.")
@click.option("--online", is_flag=True, help="Also check fields and options against LeadSquared.")
def validate(
    config_path: Path | None,
    var_pairs: tuple[str, ...],
    var_files: tuple[Path, ...],
    fmt: Literal["text", "json", "github"],
    online: bool,
) -> None:
    """Check lsqsync.yml and every rule file; list every problem with its file:line:col.

    Offline unless --online. Exit 0 when valid, 1 otherwise.
    """
    from lsqsync import validate as validation
    from lsqsync.documents.problems import report, warning_text
    from lsqsync.rules.project import parse_vars

    result = validation.validate(config_path, parse_vars(var_pairs, var_files), online)
    if fmt == "text":
        click.echo(warning_text(result.warnings), nl=False, err=True)
    click.echo(report(result.problems, fmt, result.summary, result.warnings), nl=False)
    raise SystemExit(EXIT_ERROR if result.problems else EXIT_OK)


@cli.command("test")
@CONFIG
@_format("text", "github", help="github: also workflow-command annotations for pull requests.")
def test_command(config_path: Path | None, fmt: Literal["text", "github"]) -> None:
    """Run the rule tests (tests/*.yml): plan each test's opportunities offline against the
    snapshot in types/ and compare with what it expects. Exit 1 if any test fails."""
    from lsqsync import ruletest

    report = ruletest.run_tests(config_path)
    click.echo(ruletest.render(report, fmt), nl=False)
    raise SystemExit(EXIT_OK if report.ok else EXIT_ERROR)


# -- plans ------------------------------------------------------------------------------------

PLAN_FORMAT = _format("text", "json", "markdown", help="markdown: for a pull-request comment.")


def _max_details(default: int, help: str | None = None) -> Callable[[F], F]:
    return click.option(
        "--max-details",
        type=click.IntRange(0),
        default=default,
        show_default=True,
        help=help or "Opportunities shown in detail (text; a saved plan has all).",
    )


def _sending(f: F) -> F:
    """The options of the commands that send a plan (apply, reconcile): workers and the lock."""
    options = [
        click.option(
            "--workers",
            type=click.IntRange(1, 16),
            default=4,
            show_default=True,
            help="Batches in flight at once (all share the account's rate limit).",
        ),
        click.option(
            "--lock-timeout",
            type=Finite(0),
            default=0.0,
            show_default=True,
            help="Seconds to wait for another run's lock before giving up.",
        ),
        click.option(
            "--lock-expiry",
            type=Finite(min=1),
            default=3600.0,
            show_default=True,
            help="Seconds without a sign of life after which another run's lock is taken over.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


COLOR = click.option(
    "--color/--no-color",
    default=None,
    help="Colour the text format (default: on a TTY without NO_COLOR).",
)


def _use_color(choice: bool | None) -> bool:
    import os

    if choice is not None:
        return choice
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _progress(every: float | None = None) -> Callable[[str], None] | None:
    """Progress lines on stderr: all of them on a terminal; otherwise (CI logs) at most one
    every ``every`` seconds, or none when ``every`` is None."""
    import time

    if sys.stderr.isatty():
        return lambda message: click.echo(f"lsqsync: {message}", err=True)
    if every is None:
        return None
    last = [float("-inf")]

    def periodic(message: str) -> None:
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            click.echo(f"lsqsync: {message}", err=True)

    return periodic


@cli.command()
@CONFIG
@VAR
@VAR_FILE
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the plan (JSON) for review and for apply.",
)
@PLAN_FORMAT
@COLOR
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there are no changes, 2 when there are, 1 on error.",
)
@click.option(
    "--target", "targets", multiple=True, metavar="RULE", help="Plan only this rule (repeatable)."
)
@click.option(
    "--allow-large",
    is_flag=True,
    help="Allow a plan over the safety limits (recorded in the plan).",
)
@_max_details(200)
@click.option(
    "--now",
    "now",
    metavar="'YYYY-MM-DD HH:MM:SS'",
    help="The UTC time templates see as now (default: the current time).",
)
@click.option(
    "--expires-in",
    "expires_in",
    type=Finite(min=0, min_open=True, max=24 * 30),
    metavar="HOURS",
    help="How long the saved plan may be applied (apply refuses it later).  [default: 24]",
)
@click.option(
    "--explain",
    "explain_ids",
    multiple=True,
    metavar="ID",
    help="Instead of the plan, show how each rule comes out for this opportunity (id or AutoId"
    " value; repeatable): its where, when and set values, with the values they read. Saves no"
    " plan.",
)
def plan(
    config_path: Path | None,
    var_pairs: tuple[str, ...],
    var_files: tuple[Path, ...],
    out: Path | None,
    fmt: Literal["text", "json", "markdown"],
    color: bool | None,
    detailed_exitcode: bool,
    targets: tuple[str, ...],
    allow_large: bool,
    max_details: int,
    now: str | None,
    expires_in: float | None,
    explain_ids: tuple[str, ...],
) -> None:
    """Read the opportunities the rules select and show what would change."""
    from lsqsync.plan import command as planning
    from lsqsync.plan import planfile
    from lsqsync.rules.project import parse_vars

    variables = parse_vars(var_pairs, var_files)
    lifetime = None if expires_in is None else timedelta(hours=expires_in)
    request = planning.PlanRequest(targets, allow_large, now, lifetime)
    if explain_ids:
        _explain(config_path, variables, request, explain_ids, fmt, out, detailed_exitcode)
    config, result = planning.make_plan(config_path, variables, request, _progress())
    if out is not None:
        planfile.save(result, out)
    _echo_plan(result, fmt, color, max_details, config, out)
    if out is not None:
        _saved("plan", result, out)
    raise SystemExit(EXIT_CHANGES if detailed_exitcode and not result.empty else EXIT_OK)


def _explain(
    config_path: Path | None,
    variables: Mapping[str, Any],
    request: PlanRequest,
    ids: tuple[str, ...],
    fmt: Literal["text", "json", "markdown"],
    out: Path | None,
    detailed_exitcode: bool,
) -> NoReturn:
    """``plan --explain``: print how the rules come out for ``ids``; exit as ``plan`` does
    (with --detailed-exitcode, 2 when one of them changes)."""
    from lsqsync.plan import command as planning
    from lsqsync.plan import explain

    if out is not None:
        raise click.UsageError("--explain saves no plan: leave out --out, or plan without it")
    if fmt == "markdown":
        raise click.UsageError("--explain prints text or json, not markdown")
    found = planning.explain_project(config_path, variables, request, ids, _progress())
    text = explain.render_json(found) if fmt == "json" else explain.render_text(found)
    click.echo(text, nl=False)
    changes = any(e.changes for e in found)
    raise SystemExit(EXIT_CHANGES if detailed_exitcode and changes else EXIT_OK)


@cli.command()
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@PLAN_FORMAT
@COLOR
@_max_details(1000)
def show(
    plan_file: Path, fmt: Literal["text", "json", "markdown"], color: bool | None, max_details: int
) -> None:
    """Render a saved plan (checks its schema and digest; needs no network)."""
    from lsqsync.config import optional_config
    from lsqsync.plan import planfile

    _echo_plan(planfile.load(plan_file), fmt, color, max_details, optional_config(None), plan_file)


def _echo_plan(
    plan: Plan,
    fmt: Literal["text", "json", "markdown"],
    color: bool | None,
    max_details: int,
    config: Config | None,
    saved_as: Path | None = None,
) -> None:
    """Print ``plan`` as ``fmt`` (``saved_as``: the file the "N more" line points to)."""
    from lsqsync.plan import render

    text = render.render(
        plan,
        fmt,
        color=_use_color(color) and fmt == "text",
        max_details=max_details,
        safety=config.safety if config else None,
        saved_as=str(saved_as) if saved_as is not None else None,
    )
    click.echo(text, nl=False)


def _saved(what: str, plan: Plan, path: Path) -> None:
    click.echo(f"Saved the {what} to {path} (digest {plan.digest[:12]}).", err=True)


# -- apply and the state file ---------------------------------------------------------------------


@cli.command("apply")
@click.argument(
    "plan_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@CONFIG
@VAR
@VAR_FILE
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="RULE",
    help="Without PLAN_FILE: plan only this rule (repeatable).",
)
@click.option(
    "--allow-large", is_flag=True, help="Without PLAN_FILE: allow a plan over the safety limits."
)
@click.option(
    "--auto-approve",
    is_flag=True,
    help="Without PLAN_FILE: apply the new plan without asking (needed with no TTY).",
)
@_max_details(200, "Without PLAN_FILE: opportunities of the new plan shown in detail.")
@_sending
@click.option(
    "--ignore-rule-changes",
    is_flag=True,
    help="Apply the reviewed plan even though rule files changed since (recorded).",
)
@click.option(
    "--no-verify",
    is_flag=True,
    help="Do not read back the fields written to check that LeadSquared holds them (recorded).",
)
@click.option(
    "--allow-nonconvergent",
    is_flag=True,
    help="Apply a plan whose rules would change their fields again on every plan (recorded).",
)
@click.option(
    "--verify-wait",
    type=Finite(0, 600),
    default=20.0,
    show_default=True,
    help="Seconds to wait for written values to show in reads before calling them not persisted.",
)
def apply_command(
    plan_file: Path | None,
    config_path: Path | None,
    var_pairs: tuple[str, ...],
    var_files: tuple[Path, ...],
    targets: tuple[str, ...],
    allow_large: bool,
    auto_approve: bool,
    max_details: int,
    workers: int,
    lock_timeout: float,
    lock_expiry: float,
    ignore_rule_changes: bool,
    no_verify: bool,
    allow_nonconvergent: bool,
    verify_wait: float,
) -> None:
    """Apply a saved plan: re-check each field, send 25 opportunities a call, read back what
    was written, record it all.

    Applying the same plan again resumes it: confirmed fields are never sent twice. Without
    PLAN_FILE, make a plan, show it, and apply it after a 'yes' (or --auto-approve); any other
    answer applies nothing and exits 1. Exit 3 when some fields failed, were stale, not sent or
    not persisted, or have an unknown outcome; 1 also when nothing was sent; 130 when
    interrupted.
    """
    from lsqsync.apply.runner import ApplyOptions, apply_plan_file
    from lsqsync.plan.command import PlanRequest
    from lsqsync.rules.project import parse_vars

    if plan_file is None:
        variables = parse_vars(var_pairs, var_files)
        request = PlanRequest(targets, allow_large)
        plan_file = _plan_and_confirm(config_path, variables, request, auto_approve, max_details)
        if plan_file is None:
            raise SystemExit(EXIT_OK)

    options = ApplyOptions(
        workers=workers,
        lock_timeout=lock_timeout,
        lock_expiry=lock_expiry,
        ignore_rule_changes=ignore_rule_changes,
        verify=not no_verify,
        verify_wait=verify_wait,
        allow_nonconvergent=allow_nonconvergent,
    )
    summary = apply_plan_file(plan_file, config_path, options, _progress(every=10.0))
    click.echo(summary.text(), nl=False)
    if summary.interrupted:
        raise SystemExit(EXIT_INTERRUPTED)
    raise SystemExit(EXIT_OK if summary.clean else EXIT_INCOMPLETE)


def _plan_and_confirm(
    config_path: Path | None,
    variables: dict[str, Any],
    request: PlanRequest,
    auto_approve: bool,
    max_details: int,
) -> Path | None:
    """Plan, show the plan, ask; the saved plan to apply, or None when there is nothing to do.
    An answer other than 'yes' exits 1, as Terraform's does: nothing was applied."""
    from lsqsync.errors import LsqsyncError
    from lsqsync.plan import command as planning
    from lsqsync.plan import planfile

    if not auto_approve and not sys.stdin.isatty():
        raise LsqsyncError(
            "apply without a plan file needs --auto-approve when there is no terminal to ask "
            "on (or make a plan with 'lsqsync plan --out FILE' and apply the file)"
        )
    config, result = planning.make_plan(config_path, variables, request, _progress())
    _echo_plan(result, "text", None, max_details, config)
    if result.empty:
        return None
    if not auto_approve:
        question = f"Apply plan {result.digest[:12]}? Only 'yes' will be accepted"
        if click.prompt(question, default="", show_default=False).strip() != "yes":
            click.echo("Not applied: the answer was not 'yes'.", err=True)
            raise SystemExit(EXIT_ERROR)
    path = config.root / ".lsqsync" / f"plan-{result.digest[:12]}.json"
    planfile.save(result, path)
    return path


@cli.command()
@CONFIG
@VAR
@VAR_FILE
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".lsqsync/review.plan.json"),
    show_default=True,
    help="Where to save the plan of the changes that wait for review.",
)
@FORMAT
@click.option(
    "--expires-in",
    "expires_in",
    type=Finite(min=0, min_open=True, max=24 * 30),
    metavar="HOURS",
    help="How long the saved plan may be applied.  [default: 24]",
)
@_sending
def reconcile(
    config_path: Path | None,
    var_pairs: tuple[str, ...],
    var_files: tuple[Path, ...],
    out: Path,
    fmt: Literal["text", "json"],
    expires_in: float | None,
    workers: int,
    lock_timeout: float,
    lock_expiry: float,
) -> None:
    """Plan every rule; apply the changes of 'apply: auto' rules within their limits and the
    safety limits, as apply does; save the rest as a plan for review.

    Exit 0 when nothing waits for review, 2 when changes wait, 3 when some applied fields
    failed, were stale or have an unknown outcome, 1 on error.
    """
    from lsqsync import reconcile as standing
    from lsqsync.apply.runner import ApplyOptions
    from lsqsync.rules.project import parse_vars

    options = standing.ReconcileOptions(
        out=out,
        expires_in=None if expires_in is None else timedelta(hours=expires_in),
        apply=ApplyOptions(workers=workers, lock_timeout=lock_timeout, lock_expiry=lock_expiry),
    )
    variables = parse_vars(var_pairs, var_files)
    result = standing.reconcile(config_path, variables, options, _progress(every=10.0))
    click.echo(standing.render(result, fmt), nl=False)
    if result.refused is not None:
        click.echo(f"error: {result.refused}", err=True)
    raise SystemExit(result.exit_code)


@cli.group("state")
def state_group() -> None:
    """The state (a SQLite file or a PostgreSQL workspace): runs, their per-field results, the
    lock."""


def _state_file(config_path: Path | None, *, read_only: bool = True) -> tuple[StateFile, Config]:
    from lsqsync.config import load_config
    from lsqsync.state.location import open_state

    config = load_config(config_path)
    return open_state(config, read_only=read_only, create=False), config


@state_group.command(
    "path", short_help="Print where the state is: the file, or the database and workspace."
)
@CONFIG
def state_path(config_path: Path | None) -> None:
    """Print where the state is (`state:` in lsqsync.yml), whether or not it exists yet: the
    file, or the database URL (no password) and the workspace."""
    from lsqsync.config import load_config, state_location

    config = load_config(config_path)
    click.echo(state_location(config).describe(config.root))


@state_group.command("runs")
@CONFIG
@FORMAT
def state_runs(config_path: Path | None, fmt: Literal["text", "json"]) -> None:
    """Every apply run, oldest first."""
    from lsqsync.state.report import render_runs

    st, _ = _state_file(config_path)
    with st:
        click.echo(render_runs(st.runs(), fmt), nl=False)


@state_group.command("show")
@click.argument("run_id")
@CONFIG
@_format(
    "text",
    "json",
    "csv",
    "markdown",
    help="csv: one row per field, for a spreadsheet; markdown: for a pull-request comment.",
)
def state_show(
    run_id: str, config_path: Path | None, fmt: Literal["text", "json", "csv", "markdown"]
) -> None:
    """One run and the result of each field it planned (RUN_ID may be a unique prefix, or
    'last' for the most recent run)."""
    from lsqsync.rules.typefiles import field_labels
    from lsqsync.state.report import render_run

    st, config = _state_file(config_path)
    with st:
        run = st.run(run_id)
        labels = field_labels(config, st.field_labels(run.id))
        shown = render_run(run, st.results(run.id), fmt, mask=config.mask, field_labels=labels)
        click.echo(shown, nl=False)


@state_group.command("workspaces")
@CONFIG
@FORMAT
def state_workspaces(config_path: Path | None, fmt: Literal["text", "json"]) -> None:
    """The workspaces of the project's PostgreSQL state: serial, runs, last run, lock. The
    project's own is marked *."""
    from lsqsync.config import load_config, state_location
    from lsqsync.state.location import workspaces
    from lsqsync.state.report import render_workspaces

    config = load_config(config_path)
    listed = workspaces(config)
    click.echo(render_workspaces(listed, state_location(config).workspace, fmt), nl=False)


@state_group.command(
    "migrate",
    short_help="Copy the whole state to a new SQLite file or PostgreSQL workspace, checked.",
)
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL|PATH",
    help="The new state: a postgresql:// URL (no password in it) or a SQLite file.",
)
@click.option(
    "--workspace",
    metavar="NAME",
    help="The workspace at a --to URL (default: the project's).",
)
@CONFIG
def state_migrate(target: str, workspace: str | None, config_path: Path | None) -> None:
    """Copy the project's state — every run, journal row, field result, last-written value,
    lineage and serial — to a new state elsewhere, check counts and checksums, and leave the
    source as it was."""
    from lsqsync.config import load_config
    from lsqsync.state.migrate import migrate

    click.echo(migrate(load_config(config_path), target, workspace).text(), nl=False)


@state_group.command("unlock")
@click.argument("lock_id")
@CONFIG
def state_unlock(lock_id: str, config_path: Path | None) -> None:
    """Remove a stale lock; needs its exact id (shown in the 'locked' error)."""
    st, _ = _state_file(config_path, read_only=False)
    with st:
        lock = st.unlock(lock_id)
    click.echo(
        f"Removed the lock {lock.id} held by {lock.holder} (pid {lock.pid}) since {lock.since}."
    )


@cli.command()
@CONFIG
@FORMAT
@click.option(
    "--accept",
    "accept_run",
    metavar="RUN",
    is_flag=False,
    flag_value="",
    help="Take LeadSquared's current values as the known ones for the drifted fields run RUN "
    "wrote ('last' for the latest run): recorded as a run of its own, nothing is sent.",
)
@click.option(
    "--all", "accept_all", is_flag=True, help="With --accept: every drifted field, whatever run."
)
@click.option(
    "--undo-accept",
    "undo_run",
    metavar="RUN",
    help="Put back the known values a --accept run replaced (recorded as a run too).",
)
def drift(
    config_path: Path | None,
    fmt: Literal["text", "json"],
    accept_run: str | None,
    accept_all: bool,
    undo_run: str | None,
) -> None:
    """Fields whose value in LeadSquared is no longer what lsqsync last wrote (exit 2 if any).

    --accept RUN (or --accept --all) records LeadSquared's values as known, so that drift
    reports only later edits; --undo-accept RUN reverses that.
    """
    from lsqsync.history import drift as undo
    from lsqsync.state.location import open_client

    accepting = _drift_accept(accept_run, accept_all, undo_run)
    st, config = _state_file(config_path, read_only=accepting is None and undo_run is None)
    if undo_run is not None:
        with st:
            accepted = undo.undo_accept(st, undo_run)
        click.echo(undo.render_accepted(accepted, fmt, config.mask), nl=False)
        raise SystemExit(EXIT_OK)
    with st, open_client(config) as client:
        if accepting is not None:
            accepted = undo.accept(client, st, accepting or None)
            click.echo(undo.render_accepted(accepted, fmt, config.mask), nl=False)
            raise SystemExit(EXIT_OK)
        drifted = undo.drift(client, st)
    click.echo(undo.render_drift(drifted, fmt, config.mask), nl=False)
    raise SystemExit(EXIT_CHANGES if drifted else EXIT_OK)


def _drift_accept(accept_run: str | None, accept_all: bool, undo_run: str | None) -> str | None:
    """What ``drift`` is to accept: None (nothing), "" (every drifted field) or a run."""
    if accept_run == "--all":  # `--accept --all`: click takes --all as --accept's value
        accept_run, accept_all = "", True
    if undo_run is not None and (accept_run is not None or accept_all):
        raise click.UsageError("--undo-accept cannot be combined with --accept")
    if accept_all and accept_run is None:
        raise click.UsageError("--all goes with --accept: lsqsync drift --accept --all")
    if accept_run is not None and bool(accept_run) == accept_all:
        raise click.UsageError(
            "--accept takes RUN (the drifted fields that run wrote) or --all (every drifted "
            "field), one of the two"
        )
    return accept_run


@cli.command()
@click.argument("run_id")
@CONFIG
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to save the rollback plan (review it, then apply it).",
)
@PLAN_FORMAT
@_max_details(200)
def rollback(
    run_id: str,
    config_path: Path | None,
    out: Path,
    fmt: Literal["text", "json", "markdown"],
    max_details: int,
) -> None:
    """Write a plan that puts back what run RUN_ID changed, where nobody changed it since."""
    from lsqsync.history import rollback as undo
    from lsqsync.plan import planfile
    from lsqsync.state.location import open_client

    st, config = _state_file(config_path)
    rules = _rule_names(config_path)
    with st, open_client(config) as client:
        result = undo.rollback(client, st, run_id, config, rules=rules)
    planfile.save(result.plan, out)
    _echo_plan(result.plan, fmt, False, max_details, config, out)
    _saved("rollback plan", result.plan, out)


def _rule_names(config_path: Path | None) -> frozenset[str] | None:
    """The names of the project's rules; None when the project cannot be read."""
    from lsqsync.errors import LsqsyncError
    from lsqsync.rules.project import load

    try:
        return frozenset(r.name for r in load(config_path, {})[1].rules)
    except LsqsyncError:
        return None


# -- a new rule repository ------------------------------------------------------------------


@cli.command(
    "init",
    short_help="Start a rule repository: lsqsync.yml, an example rule, a CI workflow and more.",
)
@click.argument(
    "directory", required=False, default=".", type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "--branch",
    default="main",
    show_default=True,
    help="The branch pull requests merge into: the workflow applies plans merged there.",
)
@click.option(
    "--state",
    "state",
    type=click.Choice(["sqlite", "postgres"]),
    default="sqlite",
    show_default=True,
    help="Where CI keeps the state: a SQLite file on the lsqsync-state branch, or a PostgreSQL "
    "database the team shares (URL and password from repository secrets).",
)
@click.option(
    "--schedule",
    metavar="CRON",
    help="Also write a scheduled workflow that runs reconcile and drift at CRON (UTC), e.g. "
    "'0 6 * * 1-5'.",
)
@click.option(
    "--git/--no-git",
    "git",
    default=None,
    help="Make DIRECTORY a git repository (git init) if it is not in one.  [default: ask on a "
    "terminal; otherwise no]",
)
def init_command(
    directory: Path,
    branch: str,
    state: Literal["sqlite", "postgres"],
    schedule: str | None,
    git: bool | None,
) -> None:
    """Start a rule repository in DIRECTORY (default: here): lsqsync.yml, an example rule and
    its test, a snapshot of the emulator's example type, the schemas for editors, .gitignore, a
    pre-commit hook and a GitHub Actions workflow (and, with --schedule, a scheduled one).

    An existing file is never overwritten: it is listed as skipped. Outside a git repository it
    offers git init on a terminal (--git/--no-git decide without asking).
    """
    from lsqsync.config import display_path
    from lsqsync.scaffold import git_init, in_git_repository, init

    try:
        result = init(directory, branch, state, schedule)
    except OSError as e:
        raise LsqsyncError(f"init: {e.filename or directory}: {e.strerror or e}") from None
    shown = display_path(directory)
    click.echo(result.report(shown), nl=False)
    if result.warning:
        click.echo(f"warning: {result.warning}", err=True)
    if git is None and result.created and in_git_repository(directory) is False:
        asking = sys.stdin.isatty() and sys.stdout.isatty()
        git = asking and click.confirm(f"Make {shown} a git repository (git init)?", default=True)
        if not git:
            click.echo(f"{shown} is not a git repository yet: git init (or lsqsync init --git).")
    if git:
        click.echo(git_init(directory, branch))


# -- schemas ---------------------------------------------------------------------------------


@cli.command("schema")
@click.argument("name", type=click.Choice(resources.SCHEMA_NAMES))
def schema_command(name: str) -> None:
    """Print the JSON Schema NAME shipped with lsqsync (for editors and other tools)."""
    click.echo(resources.schema_text(name), nl=False)


# -- shell completion ------------------------------------------------------------------------

COMPLETE_VAR = "_LSQSYNC_COMPLETE"


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_command(shell: str) -> None:
    """Print the completion script for SHELL (commands, options, choices).

    \b
    bash: add   eval "$(lsqsync completion bash)"   to ~/.bashrc
    zsh:  add   eval "$(lsqsync completion zsh)"    to ~/.zshrc
    fish: run   lsqsync completion fish > ~/.config/fish/completions/lsqsync.fish
    """
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # click ships bash, zsh and fish
    script = complete(cli, {}, "lsqsync", COMPLETE_VAR).source()
    click.echo(script, nl=not script.endswith("\n"))


# -- the boundary ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: run the CLI and turn every outcome into an exit code."""
    for stream in (sys.stdout, sys.stderr):
        # A terminal or CI log that cannot show "→" or a CRM value's script gets an escape,
        # not a UnicodeEncodeError after every read was made.
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
    invocation = Invocation()  # click parses --debug: an argument meant for a child is not it
    try:
        code = cli.main(args=argv, prog_name="lsqsync", standalone_mode=False, obj=invocation)
    except click.exceptions.Exit as e:
        code = e.exit_code
    except click.Abort:
        click.echo("interrupted", err=True)
        code = EXIT_INTERRUPTED
    except click.ClickException as e:
        e.show()
        # click uses 2 for usage errors; lsqsync reserves 2 for "plan has changes".
        code = EXIT_ERROR
    except LsqsyncError as e:
        click.echo(f"error: {e}", err=True)
        code = e.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = EXIT_INTERRUPTED
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else EXIT_ERROR if e.code else EXIT_OK
    except Exception as e:
        if invocation.debug:
            traceback.print_exc()
        else:
            click.echo(
                f"unexpected error: {type(e).__name__}: {e} (run with --debug for the traceback)",
                err=True,
            )
        code = EXIT_ERROR
    sys.exit(code if isinstance(code, int) else EXIT_OK)
