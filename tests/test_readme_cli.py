"""The command reference (docs/reference/commands.md) covers the command line: every command has
its section there, every option of a command is named in that section, and the reference names
nothing the command line lacks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click

from lsqsync.cli import cli

REFERENCE = Path(__file__).parents[1] / "docs" / "reference" / "commands.md"
LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def commands(command: click.Command, path: str = "lsqsync") -> Iterator[tuple[str, click.Command]]:
    """Every visible command path of the tree, the root group first."""
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            if not sub.hidden:
                yield from commands(sub, f"{path} {name}")


def long_options(command: click.Command) -> list[str]:
    return [
        name
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden
        for name in (*param.opts, *param.secondary_opts)
        if name.startswith("--") and name != "--help"
    ]


def subsections() -> dict[str, str]:
    """Command path → the text of its section. A heading may name several commands
    (`lsqsync emulator serve`, `lsqsync emulator run`) that share one section."""
    out: dict[str, str] = {}
    for block in re.split(r"^(?=## )", REFERENCE.read_text(), flags=re.M):
        heading, _, body = block.partition("\n")
        if heading.startswith("## "):
            for path in re.findall(r"`(lsqsync(?: [a-z-]+)*)`", heading):
                out[path] = body
    return out


def option_cells(body: str) -> list[str]:
    """The options a subsection's option table lists (the first cell of each row)."""
    rows = re.findall(r"^\| `([^`]*)`", body, flags=re.M)
    return [name for row in rows for name in LONG_OPTION.findall(row)]


def test_the_cli_reference_documents_every_command_and_option() -> None:
    sections = subsections()
    missing: list[str] = []
    for path, command in commands(cli):
        if isinstance(command, click.Group) and path != "lsqsync":
            # A group has no options of its own; each of its commands needs its subsection.
            assert not long_options(command), f"`{path}` has options: document them"
            continue
        body = sections.get(path)
        if body is None:
            missing.append(f"command `{path}` has no '## `{path}`' section")
            continue
        missing += [
            f"option {name} of `{path}` is not in its section"
            for name in long_options(command)
            if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", body)
        ]
    assert not missing, f"{REFERENCE.name} lacks:\n" + "\n".join(missing)


def test_the_cli_reference_documents_nothing_the_cli_lacks() -> None:
    known = dict(commands(cli))
    extra: list[str] = []
    for path, body in subsections().items():
        command = known.get(path)
        if command is None:
            extra.append(f"`{path}` is documented but is not a command")
            continue
        options = set(long_options(command))
        extra += [
            f"option {name} is documented for `{path}` but `{path}` has no such option"
            for name in option_cells(body)
            if name not in options
        ]
    assert not extra, f"{REFERENCE.name} names what the CLI lacks:\n" + "\n".join(extra)
