"""``lsqsync emulator``: the emulator's commands (serve, run) and their options."""

from __future__ import annotations

import math
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from lsqsync.emulator.limits import PLANS, RESPONSES
from lsqsync.emulator.scenarios import DEFAULT, SCENARIOS
from lsqsync.emulator.variants import REJECTION_STATUSES
from lsqsync.errors import LsqsyncError

F = TypeVar("F", bound=Callable[..., Any])
PERSON = "mary.hatch@example.com"  # a sales user of the emulated account
ENV_HOST = "LSQ_HOST"  # as emulator.run names it (not imported: --help stays light)


@click.group()
def emulator() -> None:
    """A local LeadSquared-compatible server, for demos, tests and benchmarks."""


def _rate_limit(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, float] | None:
    if value.strip().lower() == "off":
        return None
    try:
        calls, _, seconds = value.partition("/")
        parsed = int(calls), float(seconds)
    except ValueError:
        raise click.BadParameter("expected CALLS/SECONDS (e.g. 25/5) or 'off'") from None
    if parsed[0] < 1 or not 0 < parsed[1] < math.inf:
        raise click.BadParameter("CALLS must be at least 1 and SECONDS more than 0")
    return parsed


def _emulator_options(f: F) -> F:
    """The options ``serve`` and ``run`` share, in the order ``--help`` lists them. Kept whole
    though long: it is one flat list, an option per entry, that reads like the help it becomes;
    split, the options would no longer be seen side by side."""
    rate = click.FloatRange(0.0, 1.0)
    options = [
        click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind."),
        click.option(
            "--port",
            type=click.IntRange(0, 65535),
            default=0,
            show_default=True,
            help="Port to bind; 0 picks a free one.",
        ),
        click.option(
            "--db",
            type=click.Path(dir_okay=False, path_type=Path),
            help="SQLite file to keep the data in (reused if already seeded); "
            "default: a temporary file.",
        ),
        click.option(
            "--seed", type=int, default=1, show_default=True, help="Seed of the generated data."
        ),
        click.option(
            "--opportunities",
            type=click.IntRange(0),
            default=1000,
            show_default=True,
            help="Generated opportunities, besides the Bulk Update page's two.",
        ),
        click.option(
            "--scenario",
            type=click.Choice(list(SCENARIOS)),
            default=DEFAULT,
            show_default=True,
            help="A preset for the documentation's recipes: "
            + "; ".join(
                f"{name}: {about}" for name, (about, _) in SCENARIOS.items() if name != DEFAULT
            )
            + ".",
        ),
        click.option(
            "--rate-limit",
            default="25/5",
            show_default=True,
            callback=_rate_limit,
            help="Account-wide limit CALLS/SECONDS (strict sliding window), or 'off'.",
        ),
        click.option(
            "--bulk-rate-limit",
            default="off",
            show_default=True,
            callback=_rate_limit,
            help="The bulk APIs' own limit CALLS/SECONDS, which Bulk Update also counts against.",
        ),
        click.option(
            "--rate-limit-response",
            type=click.Choice([str(r) for r in RESPONSES]),
            default="429",
            show_default=True,
            help="How a call over the limit is refused: HTTP 429, 403, or 200 with the error body.",
        ),
        click.option(
            "--plan",
            type=click.Choice(list(PLANS)),
            help="The limits of a LeadSquared plan, as documented (--rate-limit and "
            "--bulk-rate-limit, when given, win).",
        ),
        click.option(
            "--latency-ms",
            type=click.FloatRange(0),
            default=0.0,
            show_default=True,
            help="Simulated round-trip latency per call.",
        ),
        click.option(
            "--jitter-ms",
            type=click.FloatRange(0),
            default=0.0,
            show_default=True,
            help="Random +/- variation of the latency.",
        ),
        click.option(
            "--fault-rate",
            type=rate,
            default=0.0,
            show_default=True,
            help="Share of calls answered 500 with a transient (non-MX) exception.",
        ),
        click.option(
            "--drop-rate",
            type=rate,
            default=0.0,
            show_default=True,
            help="Share of calls whose connection is cut after the work is done.",
        ),
        click.option(
            "--allow-created-on",
            is_flag=True,
            help="Accept writes to CreatedOn, as accounts with that feature do.",
        ),
        click.option(
            "--page-cap",
            type=click.IntRange(1),
            default=1000,
            show_default=True,
            help="Advanced Search clamps a larger PageSize to this silently (seen above 1,000).",
        ),
        click.option(
            "--short-pages",
            is_flag=True,
            help="Advanced Search pages hold a third fewer rows than asked; RecordCount is right.",
        ),
        click.option(
            "--ignore-page-index",
            is_flag=True,
            help="Advanced Search answers page 1 whatever PageIndex asks (a broken server).",
        ),
        click.option(
            "--read-lag-ms",
            type=click.FloatRange(0),
            default=0.0,
            show_default=True,
            help="Searches and by-id reads show a write only this long after it.",
        ),
        click.option(
            "--non-admin",
            is_flag=True,
            help="The keys' user is no administrator: Advanced Search is refused (HTTP 401).",
        ),
        click.option(
            "--ignore-empty-writes",
            is_flag=True,
            help='Bulk Update leaves a field sent "" as it is (and answers that it updated it).',
        ),
        click.option(
            "--rejection-status",
            type=click.Choice([str(s) for s in REJECTION_STATUSES]),
            default="500",
            show_default=True,
            help="How a value the field cannot take rejects the whole call: HTTP 500, or 200 "
            "with the error body.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _make_emulator(options: dict[str, Any]) -> Any:
    from lsqsync.emulator.server import Emulator, Settings

    limit, bulk = options["rate_limit"], options["bulk_rate_limit"]
    if options["plan"] is not None:
        given = click.get_current_context().get_parameter_source
        account_limit, bulk_limit = PLANS[options["plan"]]
        if given("rate_limit") is ParameterSource.DEFAULT:
            limit = account_limit
        if given("bulk_rate_limit") is ParameterSource.DEFAULT:
            bulk = bulk_limit
    settings = Settings(
        rate_limit_calls=limit[0] if limit else None,
        rate_limit_seconds=limit[1] if limit else 5.0,
        bulk_rate_limit_calls=bulk[0] if bulk else None,
        bulk_rate_limit_seconds=bulk[1] if bulk else 5.0,
        rate_limit_response=int(options["rate_limit_response"]),
        latency_ms=options["latency_ms"],
        jitter_ms=options["jitter_ms"],
        fault_rate=options["fault_rate"],
        drop_rate=options["drop_rate"],
        allow_created_on=options["allow_created_on"],
        page_cap=options["page_cap"],
        short_pages=options["short_pages"],
        ignore_page_index=options["ignore_page_index"],
        read_lag_ms=options["read_lag_ms"],
        non_admin=options["non_admin"],
        ignore_empty_writes=options["ignore_empty_writes"],
        rejection_status=int(options["rejection_status"]),
    )
    try:
        return Emulator(
            host=options["host"],
            port=options["port"],
            db=options["db"],
            seed=options["seed"],
            opportunities=options["opportunities"],
            scenario=options["scenario"],
            settings=settings,
        )
    except OSError as e:
        raise LsqsyncError(
            f"emulator: cannot listen on {options['host']}:{options['port']}: {e.strerror or e}"
        ) from None
    except sqlite3.Error as e:
        raise LsqsyncError(
            f"emulator: --db {options['db']}: not a usable SQLite file ({e})"
        ) from None


@emulator.command()
@_emulator_options
def serve(**options: Any) -> None:
    """Serve until interrupted. Prints one line: the base URL and the demo keys."""
    from lsqsync.emulator.run import serve as serve_emulator

    raise SystemExit(serve_emulator(_make_emulator(options), sys.stdout))


@emulator.command(
    context_settings={"ignore_unknown_options": True},
    short_help="Run COMMAND against a new emulator (LSQ_HOST and the keys set), then stop it.",
)
@_emulator_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(command: Sequence[str], **options: Any) -> None:
    """Start an emulator, run COMMAND with LSQ_HOST and the demo keys set, then stop it.

    Exits with COMMAND's exit code, e.g. ``lsqsync emulator run -- lsqsync whoami``.
    """
    from lsqsync.emulator.run import run as run_with_emulator

    raise SystemExit(run_with_emulator(_make_emulator(options), command, sys.stderr))


@emulator.command(short_help="Edit an opportunity as a person would (ModifiedBy names them).")
@click.argument("opportunity")
@click.argument("changes", nargs=-1, required=True, metavar="FIELD=VALUE...")
@click.option(
    "--as",
    "editor",
    default=PERSON,
    show_default=True,
    metavar="EMAIL",
    help="The user who makes the edit (ModifiedBy): a person, not the API user.",
)
@click.option(
    "--url",
    envvar=ENV_HOST,
    metavar="URL",
    help=f"The emulator's base URL (default: ${ENV_HOST}, which emulator serve prints).",
)
def edit(opportunity: str, changes: Sequence[str], editor: str, url: str | None) -> None:
    """Edit an opportunity of a running emulator as a person would in LeadSquared's screens.

    OPPORTUNITY is its id (or AutoId value, DEAL-000001); each FIELD=VALUE sets a field by its
    schema name (FIELD= clears it). The values are checked as Bulk Update checks them.
    """
    from lsqsync.emulator.edit import edit_opportunity

    if not url:
        raise click.UsageError(
            f"the emulator's URL: set {ENV_HOST} (emulator serve prints it) or pass --url"
        )
    click.echo(edit_opportunity(url, opportunity, changes, editor), nl=False)
